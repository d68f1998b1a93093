"""The registry: listing, broken and duplicate plugins, recipe errors, and a real third-party package."""

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ganzoo import hookimpl
from ganzoo.errors import GanzooError
from ganzoo.plugins import load_plugins

from conftest import REPO, TINY_FLAGS, run_ganzoo


def fake_distribution(site: Path, name: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """An installed distribution (dist-info with entry points) plus its modules, without pip."""
    dist_info = site / f"{name}-0.3.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.3.0\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (dist_info / "entry_points.txt").write_text(f"[ganzoo]\n{lines}\n")
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))


def test_plugins_lists_builtins_with_components():
    result = run_ganzoo("plugins", "--json")
    assert result.returncode == 0, result.stderr
    listing = {p["name"]: p for p in json.loads(result.stdout)}
    assert {"kind": "architecture", "name": "dcgan"} in listing["dcgan"]["components"]
    assert {"kind": "loss", "name": "wgan"} in listing["wgan"]["components"]
    assert {"kind": "dataset", "name": "synthcovers"} in listing["synthcovers"]["components"]
    assert listing["wgan"]["version"]
    text = run_ganzoo("plugins").stdout
    assert "wgan" in text and "loss: wgan" in text


def test_broken_plugin_is_reported_and_others_work(tmp_path):
    fake_distribution(tmp_path, "broken_plugin", {"broken": "ganzoo_broken"},
                      {"ganzoo_broken": "raise ImportError('needs a library that is not installed')"})
    result = run_ganzoo("plugins", "--json", env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0
    assert "plugin 'broken' failed to load: ImportError: needs a library" in result.stderr
    assert "wgan" in {p["name"] for p in json.loads(result.stdout)}


def test_duplicate_names_are_an_error_naming_both(tmp_path):
    fake_distribution(tmp_path, "copycat", {"copycat": "ganzoo_copycat"}, {"ganzoo_copycat": """
        from ganzoo import hookimpl

        @hookimpl
        def register_losses(register):
            register("wgan", lambda options: None)
        """})
    result = run_ganzoo("plugins", env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 2
    assert "'wgan' is registered twice" in result.stderr
    assert "plugin 'wgan'" in result.stderr and "plugin 'copycat'" in result.stderr
    restricted = run_ganzoo("plugins", env={"PYTHONPATH": str(tmp_path), "GANZOO_LOAD_PLUGINS": "dcgan,wgan"})
    assert restricted.returncode == 0
    assert "copycat" not in restricted.stdout and "synthcovers" not in restricted.stdout


def test_unknown_recipe_names_close_matches(tmp_path):
    result = run_ganzoo("train", "wgna", "--out", tmp_path / "run")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown component" in lines[0] and "did you mean 'wgan'" in lines[0]


class ExtraLosses:
    @hookimpl
    def register_losses(self, register):
        register("otherloss", lambda options: None)


def test_recipe_composition_rules():
    registry = load_plugins({"extra": ExtraLosses()})
    recipe = registry.recipe("wgan")
    assert (recipe.architecture.name, recipe.loss.name, recipe.latent_optimiser) == ("dcgan", "wgan", None)
    with pytest.raises(GanzooError, match="names no adversarial loss"):
        registry.recipe("dcgan")
    with pytest.raises(GanzooError, match="more than one loss: wgan, otherloss"):
        registry.recipe("wgan+otherloss")
    with pytest.raises(GanzooError, match="unknown dataset 'synthcover'; did you mean 'synthcovers'"):
        registry.get("dataset", "synthcover")


def guide_files() -> dict[str, str]:
    guide = (REPO / "docs" / "plugins.md").read_text()
    return {name: body for name, body in re.findall(r"```\w+ file=(\S+)\n(.*?)```", guide, flags=re.S)}


def test_third_party_package_from_the_guide(tmp_path):
    package = tmp_path / "mygan"
    package.mkdir()
    files = guide_files()
    assert set(files) == {"pyproject.toml", "ganzoo_mygan.py"}
    for name, body in files.items():
        (package / name).write_text(body)
    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                              "--no-build-isolation", "--target", str(site), str(package)],
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    env = {"PYTHONPATH": str(site)}
    listing = {p["name"]: p for p in json.loads(run_ganzoo("plugins", "--json", env=env).stdout)}
    assert listing["mygan"]["version"] == "0.1.0"
    assert listing["mygan"]["components"] == [{"kind": "architecture", "name": "mygan"}]
    run = tmp_path / "run"
    result = run_ganzoo("train", "mygan+wgan", *TINY_FLAGS, "--set", "options.mygan.hidden=32", "--steps", "3",
                        "--out", run, "--quiet", env=env)
    assert result.returncode == 0, result.stderr
    assert "step 3: finished" in result.stdout
    assert (run / "checkpoint.pt").is_file() and (run / "samples.png").is_file()
    generated = run_ganzoo("generate", run, "-n", "4", "--out", tmp_path / "grid.png", env=env)
    assert generated.returncode == 0, generated.stderr
