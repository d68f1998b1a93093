"""The registry: listing, broken and duplicate plugins, recipe errors, every broken promise as one line naming
the plugin, and the guide's own third-party package exercising every kind through the CLI."""

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from PIL import Image
from pydantic import BaseModel

from ganzoo import Architecture, Augmentation, Critic, CriticOutput, Generator, hookimpl
from ganzoo.registry import loading as plugins_module
from ganzoo.runtime.checkpoint import load_checkpoint
from ganzoo.api.errors import GanzooError
from ganzoo.registry.components import LOAD_PLUGINS_ENV
from ganzoo.registry.loading import load_plugins

from conftest import REPO, TINY_FLAGS, assert_user_error, cover_folder, invoke, run_ganzoo


def fake_distribution(site: Path, name: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """An installed distribution (dist-info with entry points) plus its modules, without pip."""
    dist_info = site / f"{name}-0.3.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.3.0\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (dist_info / "entry_points.txt").write_text(f"[ganzoo]\n{lines}\n")
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))


def test_plugins_lists_builtins_with_components_defaults_and_options():
    result = invoke("plugins", "--json")
    assert result.exit_code == 0, result.output
    listing = {p["name"]: p for p in json.loads(result.stdout)}
    components = {(c["kind"], c["name"]): c for p in listing.values() for c in p["components"]}
    assert components[("architecture", "dcgan")]["default"] == "at 8 to 63 px"
    assert components[("augmentation", "diffaug")]["default"] is True
    assert components[("loss", "wgan")]["options"]["n_critic"] == 5
    assert components[("dataset", "synthcovers")]["options"] == {"count": 8192, "seed": 0}
    assert {("metric", name) for name in ("fid", "kid", "is", "pr", "cond")} <= set(components)
    assert ("command", "data spotify") in components and ("track_ids", "spotify") in components
    assert listing["wgan"]["version"] and listing["wgan"]["error"] is None
    text = invoke("plugins").stdout
    assert "loss: wgan - WGAN-GP" in text and "dataset: synthcovers (default)" in text
    assert "architecture: fastgan (default at 64 to 1024 px)" in text


def test_broken_plugins_are_listed_with_their_error_and_others_work(tmp_path):
    fake_distribution(tmp_path, "broken_plugin", {"broken": "ganzoo_broken", "typo": "ganzoo_typo"}, {
        "ganzoo_broken": "raise ImportError('needs a library that is not installed')",
        "ganzoo_typo": """
            from ganzoo import hookimpl

            @hookimpl
            def register_architecture(register):
                register("typonet", lambda options: None)
            """})
    env = {"PYTHONPATH": str(tmp_path)}
    result = run_ganzoo("plugins", "--json", env=env)
    assert result.returncode == 0
    listing = {p["name"]: p for p in json.loads(result.stdout)}
    assert listing["broken"]["error"] == "importing it raised ImportError: needs a library that is not installed"
    assert listing["typo"]["error"] == ("it implements 'register_architecture', which is not a ganzoo hook (did "
                                        "you mean 'register_architectures'?)")
    assert listing["typo"]["components"] == [] and "wgan" in listing
    assert "plugin 'typo' failed to load" in result.stderr
    used = run_ganzoo("train", "typonet+wgan", *TINY_FLAGS, "--out", tmp_path / "run", env=env)
    lines = used.stderr.strip().splitlines()
    assert used.returncode == 2 and len(lines) == 3  # each broken plugin said once, then the one error line
    assert lines[0] == ("ganzoo: plugin 'broken' failed to load: importing it raised ImportError: needs a library "
                        "that is not installed")
    assert "unknown component in recipe 'typonet+wgan': 'typonet'" in lines[2]
    assert "plugin 'typo' failed to load: it implements 'register_architecture'" in lines[2]
    trained = run_ganzoo("train", "wgan", *TINY_FLAGS, "--steps", "1", "--out", tmp_path / "ok", "--quiet", env=env)
    assert trained.returncode == 0 and "plugin 'broken' failed to load" in trained.stderr


def test_duplicate_names_are_an_error_naming_both(tmp_path):
    fake_distribution(tmp_path, "copycat", {"copycat": "ganzoo_copycat"}, {"ganzoo_copycat": """
        from ganzoo import hookimpl

        @hookimpl
        def register_losses(register):
            register("wgan", lambda options: None)
        """})
    result = run_ganzoo("plugins", env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 2
    assert "'wgan' is registered twice: as a loss by plugin 'wgan' and as a loss by plugin 'copycat'" in result.stderr
    restricted = run_ganzoo("plugins", env={"PYTHONPATH": str(tmp_path), "GANZOO_LOAD_PLUGINS": "dcgan,wgan"})
    assert restricted.returncode == 0
    assert "copycat" not in restricted.stdout and "synthcovers" not in restricted.stdout


def test_unknown_recipe_names_close_matches(tmp_path):
    line = assert_user_error(invoke("train", "wgna", "--out", tmp_path / "run"), "unknown component")
    assert "did you mean 'wgan'" in line


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
    with pytest.raises(GanzooError, match="names 'logan' twice"):
        registry.recipe("wgan+logan+logan")
    with pytest.raises(GanzooError, match="unknown dataset 'synthcover'; did you mean 'synthcovers'"):
        registry.get("dataset", "synthcover")


class SizedDefaults:
    """Claims the default architecture and loss at some image sizes only."""

    def __init__(self, prefix, sizes):
        self.prefix, self.sizes = prefix, sizes

    @hookimpl
    def register_architectures(self, register):
        register(f"{self.prefix}arch", lambda options: Plain(), default=self.sizes)

    @hookimpl
    def register_losses(self, register):
        register(f"{self.prefix}loss", lambda options: None, default=self.sizes)


def test_defaults_can_depend_on_the_image_size(monkeypatch):
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "augment")
    registry = load_plugins({"small": SizedDefaults("small", range(8, 64)),
                             "big": SizedDefaults("big", range(64, 257))})
    assert registry.default_recipe(32) == "smallarch+smallloss+diffaug"
    assert registry.default_recipe(128) == "bigarch+bigloss+diffaug"
    assert registry.recipe("bigloss", 128).architecture.name == "smallarch"  # a recipe means one network
    with pytest.raises(GanzooError, match="no installed plugin provides a default loss"):
        registry.default_recipe(512)


class RecipeSettingsPlugin:
    """Registers settings for recipes: a general one and a more specific one that refines it."""

    def __init__(self, key="options.hinge.n_critic"):
        self.key = key

    @hookimpl
    def register_recipes(self, register):
        register("hinge", settings={self.key: 3, "options.hinge.lr_critic": 1e-3}, cpu={"model.width": 12})
        register("hinge+diffaug", settings={self.key: 4}, gpu={"model.width": 48}, source="a paper")


@pytest.mark.parametrize("device, n_critic, lr, width", [("cpu", 4, 1e-3, 12), ("cuda", 4, 1e-3, 48)])
def test_recipes_carry_their_settings_per_device_and_the_user_wins(monkeypatch, device, n_critic, lr, width):
    from ganzoo.engine.defaults import fill_in
    from ganzoo.runtime.config import validate_config

    monkeypatch.setenv(LOAD_PLUGINS_ENV, "dcgan,losses,augment,synthcovers")
    registry = load_plugins({"papers": RecipeSettingsPlugin()})
    settings, notes = fill_in({"recipe": "hinge+diffaug", "system": {"device": device}}, registry)
    config = validate_config(settings)
    assert (config.options["hinge"]["n_critic"], config.options["hinge"]["lr_critic"]) == (n_critic, lr)
    assert config.model.width == width
    assert any("hinge+diffaug's settings" in note and "a paper" in note for note in notes)
    mine, _ = fill_in({"recipe": "hinge+diffaug", "system": {"device": device}, "model": {"width": 7},
                       "options": {"hinge": {"n_critic": 9}}}, registry)
    assert mine["model"]["width"] == 7 and mine["options"]["hinge"] == {"n_critic": 9, "lr_critic": 1e-3}
    plain, _ = fill_in({"recipe": "ns", "system": {"device": device}}, registry)
    assert "options" not in plain  # no registration names ns


def test_the_built_in_recipes_carry_their_papers_settings():
    from ganzoo.engine.defaults import fill_in
    from ganzoo.registry.loading import get_registry

    settings, _ = fill_in({"recipe": "fastgan+projected+hinge+diffaug", "system": {"device": "cuda"}},
                          get_registry())
    assert settings["options"]["hinge"] == {"n_critic": 1, "betas": [0.0, 0.99], "lr_generator": 2e-4,
                                            "lr_critic": 2e-4}  # Projected GAN's
    assert settings["options"]["projected"] == {"paper_layout": True} and settings["options"]["diffaug"]["cutout"] == 0.2
    settings, _ = fill_in({"recipe": "fastgan+hinge+recon+diffaug", "system": {"device": "cpu"}}, get_registry())
    assert settings["options"]["hinge"]["margin"] == [0.8, 1.0] and settings["model"]["width"] == 16  # FastGAN's


def test_a_recipe_setting_that_is_no_config_key_fails_its_plugin(monkeypatch):
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "")
    registry = load_plugins({"papers": RecipeSettingsPlugin(key="model.widht")})
    assert "registered the setting 'model.widht' for recipe 'hinge', which is not a config key" in \
        registry.plugins["papers"].error


def test_two_defaults_at_one_size_stop_only_what_needs_that_default(monkeypatch):
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "")
    registry = load_plugins({"small": SizedDefaults("small", range(8, 64)), "big": SizedDefaults("big", range(63, 257))})
    assert registry.clashes["architecture"].startswith("2 plugins claim the default architecture at 63 px")
    assert registry.default_recipe(32) == "smallarch+smallloss" and registry.default_recipe(128) == "bigarch+bigloss"
    with pytest.raises(GanzooError, match="2 plugins claim the default architecture at 63 px: .*'smallarch'.*'bigarch'"):
        registry.default_recipe(63)


# --- broken promises, through the CLI -------------------------------------------------------------------------

class PlainGenerator(Generator):
    def __init__(self, spec):
        super().__init__()
        self.latent_dim, self.size = spec.latent_dim, spec.image_size
        self.net = nn.Linear(spec.latent_dim, 3 * spec.image_size ** 2)

    def forward(self, z, c=None):
        return torch.tanh(self.net(z)).view(-1, 3, self.size, self.size)


class PlainCritic(Critic):
    """Returns a score and nothing else, whatever extra outputs were asked for."""

    def __init__(self, spec):
        super().__init__()
        self.net = nn.Linear(3 * spec.image_size ** 2, 1)

    def forward(self, x, c=None):
        return CriticOutput(self.net(x.flatten(1)).squeeze(1))


class Plain(Architecture):
    image_sizes = (32,)

    def __init__(self, conditional=True, extra_outputs=True, wrong_shape=False):
        self.conditional, self.extra_outputs, self.wrong_shape = conditional, extra_outputs, wrong_shape

    def build(self, spec):
        generator = PlainGenerator(spec)
        if self.wrong_shape:
            generator.size = 16
            generator.net = nn.Linear(spec.latent_dim, 3 * 16 ** 2)
        return generator, PlainCritic(spec)


class ScoreVectorLoss:
    """A loss whose critic terms are not scalars."""

    @hookimpl
    def register_losses(self, register):
        from ganzoo_wgan import WGANGP, WGANGPOptions

        class Vector(WGANGP):
            def critic_terms(self, batch):
                return {"per_sample": batch.fake_out.score - batch.real_out.score}

        register("vectorloss", lambda options: Vector(WGANGPOptions(n_critic=1)))


class StepMistakes:
    """Components that break their promises only once training runs: a loss that raises, one that calls the
    critic without conditions, augmentations that change the shape or cut the gradient, an options model that
    does not forbid unknown fields."""

    @hookimpl
    def register_losses(self, register):
        from ganzoo_wgan import WGANGP, WGANGPOptions

        class Raising(WGANGP):
            def critic_terms(self, batch):
                raise KeyError("missing")

        class Unconditioned(WGANGP):
            def critic_terms(self, batch):
                return {"again": batch.critic(batch.fake).score.mean()}

        class Lax(BaseModel):
            scale: float = 1.0

        register("raising", lambda options: Raising(WGANGPOptions(n_critic=1)))
        register("unconditioned", lambda options: Unconditioned(WGANGPOptions(n_critic=1)))
        register("lax", lambda options: Raising(WGANGPOptions(n_critic=1)), options=Lax)

    @hookimpl
    def register_augmentations(self, register):
        class Crop(Augmentation):
            def augment(self, images):
                return images[:, :, 1:, 1:]

        class Detached(Augmentation):
            def augment(self, images):
                return images.detach()

        register("crop", lambda options: Crop())
        register("detached", lambda options: Detached())


class Promises:
    @hookimpl
    def register_architectures(self, register):
        register("plain", lambda options: Plain())
        register("unconditional", lambda options: Plain(conditional=False))
        register("wrongshape", lambda options: Plain(wrong_shape=True))
        register("notanarchitecture", lambda options: "a string")


@pytest.fixture
def promises(monkeypatch):
    monkeypatch.setattr(plugins_module, "_registry", load_plugins({"promises": Promises(),
                                                                   "vector": ScoreVectorLoss(),
                                                                   "mistakes": StepMistakes()}))


@pytest.mark.parametrize("recipe, settings, message", [
    ("plain+wgan", ["data.image_size=16"], "architecture 'plain' (plugin 'promises') builds images of 32 px, not "
                                           "data.image_size=16"),
    ("unconditional+wgan", ['model.conditions=["audio-features"]'], "architecture 'unconditional' (plugin 'promises') "
                                                              "does not take conditions"),
    ("plain+wgan+acgan", ['model.conditions=["audio-features"]'], "architecture 'plain' (plugin 'promises') broke its "
                                                            "promise: its critic returned nothing for the extra "
                                                            "output 'acgan_audio-features' of width 10 that "
                                                            "auxiliary 'acgan' (plugin 'acgan') asked for"),
    ("wrongshape+wgan", [], "architecture 'wrongshape' (plugin 'promises') broke its promise: its generator made "
                            "(2, 3, 16, 16)"),
    ("notanarchitecture+wgan", [], "architecture 'notanarchitecture' (plugin 'promises') broke its promise: its "
                                   "factory returned a str, not an architecture"),
    ("plain+vectorloss", [], "loss 'vectorloss' (plugin 'vector') broke its promise: its critic terms must be a "
                             "dict of named scalar tensors, got 'per_sample': (16,)"),
    ("dcgan+wgan", ["options.dcgan.width=8"], "options.dcgan.width: architecture 'dcgan' (plugin 'dcgan') has no "
                                              "such option"),
    ("dcgan+lax", ["options.lax.scael=2"], "options.lax.scael: loss 'lax' (plugin 'mistakes') has no such option; "
                                           "did you mean 'scale'?"),
    ("dcgan+raising", [], "loss 'raising' (plugin 'mistakes') failed in the critic phase: KeyError: 'missing'"),
    ("dcgan+unconditioned", ['model.conditions=["audio-features"]'],
     "loss 'unconditioned' (plugin 'mistakes') broke its promise: it called the critic without conditions"),
    ("dcgan+wgan+crop", [], "augmentation 'crop' (plugin 'mistakes') broke its promise: it returned (16, 3, 31, 31) "
                            "for a batch of (16, 3, 32, 32)"),
    ("dcgan+wgan+detached", [], "augmentation 'detached' (plugin 'mistakes') broke its promise: its output does not "
                                "depend differentiably on its input"),
])
def test_broken_promises_are_one_line_naming_the_plugin(promises, tmp_path, recipe, settings, message):
    """Every one through the command line: one line naming the plugin and the promise, no checkpoint."""
    flags = [x for setting in settings for x in ("--set", setting)]
    tiny = ["--set", "data.image_size=32", "--set", "options.synthcovers.count=64", "--set", "model.latent_dim=8",
            "--set", "model.width=8", "--set", "schedule.batch_size=16"]
    assert_user_error(invoke("train", recipe, *tiny, *flags, "--out", tmp_path / "run"), message)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


class Deaf:
    """An architecture whose generator and critic never look at the conditions they are given."""

    @hookimpl
    def register_architectures(self, register):
        register("deaf", lambda options: Plain())


def test_a_conditional_run_whose_networks_ignore_the_conditions_is_warned_about(monkeypatch, tmp_path):
    monkeypatch.setattr(plugins_module, "_registry", load_plugins({"deaf": Deaf()}))
    result = invoke("train", "deaf+wgan", "--set", "data.image_size=32", "--set", "options.synthcovers.count=32",
                    "--set", "model.latent_dim=8", "--set", "schedule.batch_size=16", "--set",
                    'model.conditions=["audio-features"]', "--steps", "1", "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    assert "warning: architecture 'deaf' (plugin 'deaf')'s generator ignores the conditions" in result.stderr
    assert "critic ignores the conditions" in result.stderr


# --- the guide's package, every kind through the CLI --------------------------------------------------------

def guide_files() -> dict[str, str]:
    guide = (REPO / "docs" / "plugins.md").read_text()
    return {name: body for name, body in re.findall(r"```\w+ file=(\S+)\n(.*?)```", guide, flags=re.S)}


@pytest.fixture(scope="module")
def stripes_site(tmp_path_factory):
    """The guide's package, pip-installed into a folder that PYTHONPATH points at."""
    root = tmp_path_factory.mktemp("guide")
    package = root / "stripes"
    package.mkdir()
    files = guide_files()
    assert set(files) == {"pyproject.toml", "ganzoo_stripes.py"}
    for name, body in files.items():
        (package / name).write_text(body)
    site = root / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                              "--no-build-isolation", "--target", str(site), str(package)],
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    return {"PYTHONPATH": str(site)}


STRIPES_RUN = ["mlp+pair+nudge+drift+flip", "--set", "data.name=stripes", "--set", "data.image_size=16",
               "--set", 'model.conditions=["angle"]', "--set", "options.mlp.hidden=32", "--set", "schedule.batch_size=8",
               "--set", "model.latent_dim=8", "--set", "schedule.log_every=1", "--set", "schedule.checkpoint_every=1",
               "--set", "options.stripes.count=64", "--quiet"]


def test_the_guides_package_registers_every_kind(stripes_site):
    listing = {p["name"]: p for p in json.loads(run_ganzoo("plugins", "--json", env=stripes_site).stdout)}
    kinds = {(c["kind"], c["name"]) for c in listing["stripes"]["components"]}
    assert kinds == {("architecture", "mlp"), ("loss", "pair"), ("latent_optimiser", "nudge"),
                     ("auxiliary", "drift"), ("augmentation", "flip"), ("condition", "angle"), ("dataset", "stripes"),
                     ("feature_extractor", "colourstats"), ("metric", "mean-gap"), ("metric", "colour-gap"),
                     ("track_ids", "catalogue"), ("upscaler", "blocks"), ("command", "data stripes-angles")}
    assert listing["stripes"]["version"] == "0.1.0"
    angles = run_ganzoo("data", "stripes-angles", "--count", "3", env=stripes_site)
    assert angles.returncode == 0 and len(angles.stdout.split()) == 3


def test_the_guides_package_trains_resumes_exactly_and_is_scored_by_its_metric(stripes_site, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert run_ganzoo("train", *STRIPES_RUN, "--steps", "4", "--out", straight, env=stripes_site).returncode == 0
    first = run_ganzoo("train", *STRIPES_RUN, "--steps", "2", "--out", split, env=stripes_site)
    assert first.returncode == 0, first.stderr
    resumed = run_ganzoo("train", "--resume", split, "--steps", "4", "--quiet", env=stripes_site)
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_checkpoint(straight), load_checkpoint(split)
    for key in ("generator", "critic", "ema", "components", "sampler_position", "rng_cpu"):
        assert json.dumps(a[key], default=lambda t: t.tolist()) == json.dumps(b[key], default=lambda t: t.tolist()), key
    assert a["components"]["pair"] == {"updates": 4} and a["components"]["flip"] == {"seen": 32}
    assert json.loads((split / "config.json").read_text())["options"]["pair"] == {"every": 4}  # its recipe settings
    rows = [json.loads(line) for line in (split / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3, 4]
    assert {"critic/pair", "critic/r1", "critic/drift", "generator/pair", "flip/seen"} <= set().union(*rows)
    scored = run_ganzoo("bench", split, "--metric", "mean-gap", "--extractor", "colourstats", "--ref", "stripes",
                        "-n", "32", "--real", "32", "--out", tmp_path / "bench.json", env=stripes_site)
    assert scored.returncode == 0, scored.stderr
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["scores"]["mean_gap"] > 0 and result["protocol"]["extractor"]["extractor"] == "colourstats"
    folder = cover_folder(tmp_path / "covers", count=4)  # a pixel metric scores a folder as it scores a checkpoint
    for source in (folder, split):
        colour = run_ganzoo("bench", source, "--size", "16", "--metric", "colour-gap", "--ref", "stripes", "-n", "4",
                            "--real", "16", "--out", tmp_path / "colour.json", env=stripes_site)
        assert colour.returncode == 0, colour.stderr
        assert json.loads((tmp_path / "colour.json").read_text())["scores"]["colour_gap"] > 0
    enlarged = run_ganzoo("generate", split, "--size", "48", "--upscaler", "blocks", "--out", tmp_path / "big.png",
                          env=stripes_site)
    assert enlarged.returncode == 0, enlarged.stderr
    big = np.asarray(Image.open(tmp_path / "big.png"))
    assert big.shape == (48, 48, 3) and np.array_equal(big[::3, ::3], big[1::3, 1::3])  # 3x3 blocks
