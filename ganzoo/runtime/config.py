"""Run configuration: pydantic models, read from YAML or TOML plus ``key=value`` overrides."""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field

from ganzoo.api.errors import GanzooError
from ganzoo.api.options import format_validation_error
from ganzoo.runtime.limits import MAX_SEED

MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_VALUES = 10_000
"""A config holds at most this many values once YAML aliases are expanded: an alias bomb stops here."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(Strict):
    """What is trained on."""

    name: str | None = Field(None, description="a dataset plugin, a prepared store or an image folder "
                                               "(default: the default dataset plugin)")
    image_size: int = Field(64, ge=8, le=4096, description="side of the square images, in pixels; the "
                                                          "architecture says which sizes it can build")
    mirror: bool = Field(False, description="also train on every image flipped left to right (stylegan2-ada's "
                                            "--mirror): twice the data for covers whose left and right may swap")
    on_device: bool | Literal["auto"] = Field("auto", description="hold the whole dataset on the training device "
                                                                   "(auto: when it fits in half its free memory)")


class ModelConfig(Strict):
    """The networks, what they are conditioned on, and where their weights start."""

    latent_dim: int = Field(128, gt=0)
    width: int = Field(64, gt=0, description="channels of the widest-resolution layer (ArchitectureSpec.width)")
    conditions: list[str] = Field([], description="condition plugins, in the order their encodings are joined")
    ema_decay: float = Field(0.999, ge=0, lt=1, description="decay of the generator's average (samples, generate)")
    ema_kimg: float | None = Field(None, gt=0, description="the average's half-life in thousands of images, in "
                                                           "place of ema_decay (stylegan2-ada, Projected GAN)")
    ema_rampup: float | None = Field(None, gt=0, description="with ema_kimg: the half-life is at most this share "
                                                             "of the images seen so far (stylegan2-ada: 0.05)")
    ema_ramp_kimg: float | None = Field(None, gt=0, description="with ema_kimg: the half-life grows from 0 along "
                                                                "a half cosine over this many kimg (R3GAN)")
    init_from: str | None = Field(None, description="start from this checkpoint's (or run's) generator, critic "
                                                     "and average; fresh optimisers, step 0")
    freeze_critic_blocks: int = Field(0, ge=0, description="freeze the critic's first k blocks (FreezeD)")


class ScheduleConfig(Strict):
    """How long a run trains, on what batches, and how often it logs, samples and saves."""

    batch_size: int = Field(64, gt=0)
    steps: int | None = Field(2000, gt=0, description="total generator steps")
    minutes: float | None = Field(None, gt=0, description="wall-clock budget; stops at whichever comes first")
    cpu_minutes: float | None = Field(None, gt=0, description="budget of this process's CPU time (all threads): "
                                                              "the same work on a busy or an idle machine")
    log_every: int = Field(10, gt=0)
    sample_every: int = Field(200, gt=0)
    checkpoint_every: int = Field(500, gt=0)
    snapshot_every: int | None = Field(None, gt=0, description="keep the weights every N steps as "
                                                               "snapshots/step_N.pt, scored if the run evaluates; "
                                                               "best.pt follows the best score")
    keep_snapshots: int = Field(5, gt=0, description="the newest snapshots kept (best.pt is kept apart)")


class EvaluationConfig(Strict):
    """Scores computed while training, into metrics.jsonl as ``eval/SCORE``."""

    every: int | None = Field(None, gt=0, description="evaluate every N steps (none: never)")
    images: int = Field(1000, gt=1, description="real and generated images per evaluation")
    metrics: list[str] | None = Field(None, min_length=1, description="metric plugins (default: the default "
                                                                      "metric)")
    extractor: str | None = Field(None, description="feature extractor plugin (default: the default extractor)")
    reference: str | None = Field(None, description="evaluate against this dataset, store or folder instead of "
                                                    "the training data (a held-out split)")


class SystemConfig(Strict):
    """Where and how the run computes."""

    device: str = "auto"
    seed: int = Field(0, ge=0, le=MAX_SEED)
    channels_last: bool = Field(True, description="NHWC memory format (measured faster on CPU: benchmarks/)")
    amp: bool = Field(False, description="bf16 autocast for forward passes (meant for CUDA; losses in fp32)")
    compile: bool = Field(False, description="torch.compile the generator (the critic's gradient penalty "
                                             "needs double backward, which compiled graphs lack)")


class TrainConfig(Strict):
    """A training run, grouped as StudioGAN groups its configs: the recipe, then data, model, schedule,
    evaluation, system, and each component's options under ``options.NAME``."""

    recipe: str | None = Field(None, description="components joined with '+' (default: the recipe the installed "
                                                 "plugins declare as default)")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    system: SystemConfig = SystemConfig()
    options: dict[str, dict[str, Any]] = Field({}, description="per-component options, by component name")


MOVED = {**{key: f"schedule.{key}" for key in ScheduleConfig.model_fields},
         **{key: f"model.{key}" for key in ("conditions", "ema_decay", "init_from", "freeze_critic_blocks")},
         **{key: f"system.{key}" for key in SystemConfig.model_fields},
         **{f"eval_{key}": f"evaluation.{key}" for key in EvaluationConfig.model_fields}}
"""Settings that stood at the top of a config before it was grouped: where each lives now."""


def regrouped(data: dict[str, Any]) -> dict[str, Any]:
    """A config written before the grouping (a checkpoint's), with each top-level setting moved to its group."""
    data = dict(data)
    for old, new in MOVED.items():
        if old in data:
            group, key = new.split(".")
            data[group] = {**data.get(group, {}), key: data.pop(old)}
    return data


def known_keys(model: type[BaseModel] = TrainConfig, prefix: str = "") -> list[str]:
    """Every settable key of a config model, dotted (``schedule.batch_size``), for suggestions."""
    keys = []
    for name, info in model.model_fields.items():
        keys.append(prefix + name)
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            keys += known_keys(info.annotation, f"{prefix}{name}.")
    return keys


def unknown_key_hints(error: pydantic.ValidationError) -> str:
    """For settings the config does not have: where a moved one lives now, or the nearest known key."""
    hints = []
    for item in error.errors(include_url=False):
        if item["type"] != "extra_forbidden":
            continue
        key = ".".join(str(part) for part in item["loc"])
        if key in MOVED:
            hints.append(f"{key} is {MOVED[key]} now")
            continue
        close = difflib.get_close_matches(key, known_keys(), n=1, cutoff=0.6)
        if close:
            hints.append(f"did you mean {close[0]} for {key}?")
    return f" ({'; '.join(hints)})" if hints else ""


def count_values(data: Any, limit: int = MAX_CONFIG_VALUES) -> int:
    """How many values ``data`` holds with shared (aliased) parts counted each time they appear; stops counting
    past ``limit``. Linear in the distinct objects, however often they are shared."""
    sizes: dict[int, int] = {}

    def size(node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        total = 1
        for child in children:
            total = min(total + size(child), limit + 1)
        if isinstance(node, (dict, list)):
            sizes[id(node)] = total
        return total

    try:
        return size(data)
    except RecursionError:
        return limit + 1


def check_size(data: Any, where: str) -> None:
    if count_values(data) > MAX_CONFIG_VALUES:
        raise GanzooError(f"{where} holds more than {MAX_CONFIG_VALUES:,} values once its YAML aliases are "
                          "expanded; a config is never that large")


def yaml_error(error: yaml.YAMLError) -> str:
    """A YAML error as one line with its line and column."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML or TOML config file as a dict: at most 1 MiB of UTF-8 text and ``MAX_CONFIG_VALUES`` values."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise GanzooError(f"config {path} is larger than {MAX_CONFIG_BYTES >> 20} MiB; a config is never that "
                              "large")
        raw = path.read_bytes()
    except OSError as error:
        raise GanzooError(f"cannot read config {path}: {error.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise GanzooError(f"config {path} is not UTF-8 text (byte {raw[error.start]:#04x} at offset "
                          f"{error.start})") from None
    kind = "TOML" if path.suffix == ".toml" else "YAML"
    try:
        data = tomllib.loads(text) if kind == "TOML" else yaml.safe_load(text)
    except tomllib.TOMLDecodeError as error:
        raise GanzooError(f"config {path} is not valid TOML: {str(error).splitlines()[0]}") from None
    except yaml.YAMLError as error:
        raise GanzooError(f"config {path} is not valid YAML: {yaml_error(error)}") from None
    except RecursionError:
        raise GanzooError(f"config {path} is nested too deeply") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise GanzooError(f"config {path} must hold a mapping of settings")
    check_size(data, f"config {path}")
    return data


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b.c=value`` in place; the value is read as a YAML scalar or list (``1e-4``, ``true``, ``[0, 0.9]``)."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise GanzooError(f"--set expects key=value, got {assignment!r}")
    try:
        value = yaml.safe_load(raw)
    except (yaml.YAMLError, RecursionError):
        value = raw
    check_size(value, f"--set {key.strip()}")
    set_value(data, key.strip(), value, f"--set {key}")


def set_value(data: dict[str, Any], key: str, value: Any, where: str = "") -> None:
    """``data[a][b][c] = value`` for the dotted ``key`` ``a.b.c``, making the sections on the way."""
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise GanzooError(f"{where or key}: {part!r} is a value, not a section")
        node = child
    node[leaf] = value


def build_config(base: dict[str, Any] | None = None, config_file: str | None = None,
                 overrides: tuple[str, ...] = (), settings: dict[str, Any] | None = None) -> TrainConfig:
    """A validated config from ``base``, a config file's settings over it, ``--set`` overrides over both and
    ``settings`` (dotted key -> value, from command-line flags) over all; a setting the config does not have is
    named with the nearest one it has."""
    return validate_config(gather_settings(base, config_file, overrides, settings))


def gather_settings(base: dict[str, Any] | None = None, config_file: str | None = None,
                    overrides: tuple[str, ...] = (), settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The settings ``build_config`` validates, as given (nothing filled in), so that callers can tell what the
    user set from what a default would fill."""
    data: dict[str, Any] = dict(base or {})
    if config_file:
        data.update(read_config_file(config_file))
    for assignment in overrides:
        apply_override(data, assignment)
    for key, value in (settings or {}).items():
        set_value(data, key, value)
    return data


def given(data: dict[str, Any], key: str) -> bool:
    """Whether the dotted ``key`` is set in gathered settings."""
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def validate_config(data: Any) -> TrainConfig:
    try:
        return TrainConfig.model_validate(data)
    except pydantic.ValidationError as error:
        raise GanzooError(format_validation_error(error) + unknown_key_hints(error)) from None
