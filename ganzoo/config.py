"""Run configuration: pydantic models, read from YAML or TOML plus ``key=value`` overrides."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal, TypeVar

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field

from ganzoo.errors import GanzooError
from ganzoo.limits import MAX_SEED

MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_VALUES = 10_000
"""A config holds at most this many values once YAML aliases are expanded: an alias bomb stops here."""
MAX_SHOWN_INPUT = 60


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(Strict):
    name: str | None = Field(None, description="a dataset plugin, a prepared store or an image folder "
                                               "(default: the default dataset plugin)")
    image_size: int = Field(64, ge=8, le=4096, description="side of the square images, in pixels; the "
                                                          "architecture says which sizes it can build")
    on_device: bool | Literal["auto"] = Field("auto", description="hold the whole dataset on the training device "
                                                                   "(auto: when it fits in half its free memory)")

    @pydantic.model_validator(mode="before")
    @classmethod
    def moved_fields(cls, data: Any) -> Any:
        moved = sorted({"count", "seed"} & set(data)) if isinstance(data, dict) else []
        if moved:
            raise ValueError(f"data.{moved[0]} is an option of the dataset plugin now: set "
                             f"options.<dataset>.{moved[0]} (options.synthcovers.{moved[0]} for the default)")
        return data


class ModelConfig(Strict):
    latent_dim: int = Field(128, gt=0)
    width: int = Field(64, gt=0, description="channels of the widest-resolution layer (ArchitectureSpec.width)")


class TrainConfig(Strict):
    recipe: str = Field("dcgan+ns+diffaug", description="the best recipe of the CPU leaderboard "
                                                        "(benchmarks/RESULTS.md)")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    conditions: list[str] = []
    batch_size: int = Field(64, gt=0)
    steps: int | None = Field(2000, gt=0, description="total generator steps")
    minutes: float | None = Field(None, gt=0, description="wall-clock budget; stops at whichever comes first")
    cpu_minutes: float | None = Field(None, gt=0, description="budget of this process's CPU time (all threads): "
                                                              "the same work on a busy or an idle machine")
    seed: int = Field(0, ge=0, le=MAX_SEED)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    log_every: int = Field(10, gt=0)
    sample_every: int = Field(200, gt=0)
    checkpoint_every: int = Field(500, gt=0)
    eval_every: int | None = Field(None, gt=0, description="evaluate eval_metrics against the training data "
                                                           "every N steps")
    eval_images: int = Field(1000, gt=1, description="real and generated images per evaluation")
    eval_metrics: list[str] = Field(["fid"], min_length=1, description="metric plugins evaluated during training")
    eval_extractor: str | None = Field(None, description="feature extractor plugin for evaluations (default: "
                                                         "the default extractor)")
    init_from: str | None = Field(None, description="start from this checkpoint's (or run's) generator, critic "
                                                     "and average; fresh optimisers, step 0")
    freeze_critic_blocks: int = Field(0, ge=0, description="freeze the critic's first k blocks (FreezeD)")
    eval_reference: str | None = Field(None, description="evaluate against this dataset, store or folder instead of "
                                                         "the training data (a held-out split)")
    device: str = "auto"
    channels_last: bool = Field(True, description="NHWC memory format (measured faster on CPU: benchmarks/)")
    amp: bool = Field(False, description="bf16 autocast for forward passes (meant for CUDA; losses in fp32)")
    compile: bool = Field(False, description="torch.compile the generator (the critic's gradient penalty "
                                             "needs double backward, which compiled graphs lack)")
    options: dict[str, dict[str, Any]] = Field({}, description="per-component options, by component name")


def cache_root() -> Path:
    """Where ganzoo caches prepared stores and reference features: $GANZOO_CACHE or ~/.cache/ganzoo."""
    return Path(os.environ.get("GANZOO_CACHE", Path.home() / ".cache" / "ganzoo"))


def format_validation_error(error: pydantic.ValidationError, prefix: str = "", heading: str = "invalid config") -> str:
    """One line, after ``heading``, naming each bad field and why (the first few, each value shown shortened)."""
    parts = []
    items = error.errors(include_url=False)
    for item in items[:5]:
        field = ".".join(str(p) for p in (prefix, *item["loc"]) if p != "")
        given = f" (got {shorten(repr(item['input']))})" if item["type"] != "missing" and "input" in item else ""
        parts.append(f"{field or 'config'}: {item['msg']}{given}")
    more = f"; and {len(items) - 5} more" if len(items) > 5 else ""
    return f"{heading}: " + "; ".join(parts) + more


def shorten(text: str, limit: int = MAX_SHOWN_INPUT) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


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


Model = TypeVar("Model", bound=BaseModel)


def parse_options(model: type[Model], options: dict[str, Any], where: str) -> Model:
    """Validate a component's options; errors name the field as ``where.field``."""
    try:
        return model.model_validate(options)
    except pydantic.ValidationError as error:
        raise GanzooError(format_validation_error(error, where)) from None


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
    *parents, leaf = key.strip().split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise GanzooError(f"--set {key}: {part!r} is a value, not a section")
        node = child
    node[leaf] = value


def build_config(base: dict[str, Any] | None = None, config_file: str | None = None,
                 overrides: tuple[str, ...] = ()) -> TrainConfig:
    data: dict[str, Any] = dict(base or {})
    if config_file:
        data.update(read_config_file(config_file))
    for assignment in overrides:
        apply_override(data, assignment)
    try:
        return TrainConfig.model_validate(data)
    except pydantic.ValidationError as error:
        raise GanzooError(format_validation_error(error)) from None
