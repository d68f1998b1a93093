import pytest

from ganzoo.runtime.config import apply_override, build_config
from ganzoo.api.errors import GanzooError

from conftest import assert_user_error, invoke


def test_overrides_parse_yaml_scalars_and_nest():
    config = build_config({"recipe": "wgan"}, overrides=("data.image_size=32", "options.wgan.betas=[0.5, 0.99]",
                                                          "system.channels_last=true", "model.ema_decay=0.99"))
    assert config.data.image_size == 32 and config.system.channels_last is True and config.model.ema_decay == 0.99
    assert config.options["wgan"]["betas"] == [0.5, 0.99]


def test_files_yaml_and_toml(tmp_path):
    (tmp_path / "a.yaml").write_text("schedule:\n  batch_size: 8\ndata:\n  image_size: 32\n")
    (tmp_path / "b.toml").write_text("[schedule]\nbatch_size = 4\n[model]\nwidth = 16\n")
    assert build_config(config_file=str(tmp_path / "a.yaml")).schedule.batch_size == 8
    config = build_config(config_file=str(tmp_path / "b.toml"), overrides=("schedule.batch_size=2",))
    assert (config.schedule.batch_size, config.model.width) == (2, 16)


@pytest.mark.parametrize("overrides, message", [
    (("schedule.batch_size=0",), "schedule.batch_size: Input should be greater than 0 (got 0)"),
    (("data.image_size=4",), "data.image_size: Input should be greater than or equal to 8"),
    (("learning_rate=1",), "learning_rate: Extra inputs are not permitted"),
    (("model.width=wide",), "model.width: Input should be a valid integer"),
])
def test_invalid_values_name_the_field(overrides, message):
    with pytest.raises(GanzooError, match="invalid config") as error:
        build_config(overrides=overrides)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_bad_assignment_and_bad_file(tmp_path):
    with pytest.raises(GanzooError, match="key=value"):
        apply_override({}, "no_equals_sign")
    (tmp_path / "bad.toml").write_text("batch_size = = 3")
    with pytest.raises(GanzooError, match="not valid TOML: .*line 1"):
        build_config(config_file=str(tmp_path / "bad.toml"))
    with pytest.raises(GanzooError, match="cannot read config"):
        build_config(config_file=str(tmp_path / "missing.yaml"))


def test_cli_config_error_is_one_line_exit_2(tmp_path):
    result = invoke("train", "wgan", "--set", "schedule.batch_size=-3", "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "Error: invalid config: schedule.batch_size: Input should be greater than 0 (got -3)"]


def test_cli_component_option_error(tmp_path):
    result = invoke("train", "wgan", "--set", "options.wgan.n_critic=0", "--set", "options.synthcovers.count=64",
                    "--set", "data.image_size=32", "--set", "schedule.batch_size=8", "--out", tmp_path / "run")
    assert_user_error(result, "options.wgan.n_critic: Input should be greater than 0")
    assert not (tmp_path / "run" / "config.json").exists()  # checked before anything was written
    typo = invoke("train", "wgan", "--set", "model.widht=8", "--out", tmp_path / "run")
    assert_user_error(typo, "model.widht: Extra inputs are not permitted", "did you mean model.width for model.widht?")
    moved = invoke("train", "wgan", "--set", "batch_size=8", "--out", tmp_path / "run")
    assert_user_error(moved, "batch_size is schedule.batch_size now")
    assert not (tmp_path / "run").exists()
