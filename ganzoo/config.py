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


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(Strict):
    name: str = Field("synthcovers", description="a dataset plugin name, a prepared store or an image folder")
    image_size: Literal[32, 64, 128] = 64
    count: int = Field(8192, gt=0, description="images to synthesise (procedural datasets)")
    seed: int = 0


class ModelConfig(Strict):
    latent_dim: int = Field(128, gt=0)
    width: int = Field(64, gt=0, description="channels of the widest-resolution layer")


class TrainConfig(Strict):
    recipe: str = "wgan"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    conditions: list[str] = []
    batch_size: int = Field(64, gt=0)
    steps: int | None = Field(2000, gt=0, description="total generator steps")
    minutes: float | None = Field(None, gt=0, description="wall-clock budget; stops at whichever comes first")
    seed: int = 0
    ema_decay: float = Field(0.999, ge=0, lt=1)
    log_every: int = Field(10, gt=0)
    sample_every: int = Field(200, gt=0)
    checkpoint_every: int = Field(500, gt=0)
    eval_every: int | None = Field(None, gt=0, description="log FID against the training data every N steps")
    eval_images: int = Field(1000, gt=1, description="real and generated images per evaluation")
    eval_extractor: str = Field("inception", description="feature extractor plugin for evaluations")
    device: str = "auto"
    channels_last: bool = Field(True, description="NHWC memory format (measured faster on CPU: benchmarks/)")
    amp: bool = Field(False, description="bf16 autocast for forward passes (meant for CUDA; losses in fp32)")
    compile: bool = Field(False, description="torch.compile the generator (the critic's gradient penalty "
                                             "needs double backward, which compiled graphs lack)")
    options: dict[str, dict[str, Any]] = Field({}, description="per-component options, by component name")


def cache_root() -> Path:
    """Where ganzoo caches prepared stores and reference features: $GANZOO_CACHE or ~/.cache/ganzoo."""
    return Path(os.environ.get("GANZOO_CACHE", Path.home() / ".cache" / "ganzoo"))


def format_validation_error(error: pydantic.ValidationError, prefix: str = "") -> str:
    """One line naming each bad field and why."""
    parts = []
    for item in error.errors():
        field = ".".join(str(p) for p in (prefix, *item["loc"]) if p != "")
        given = f" (got {item['input']!r})" if item["type"] != "missing" and "input" in item else ""
        parts.append(f"{field or 'config'}: {item['msg']}{given}")
    return "invalid config: " + "; ".join(parts)


Model = TypeVar("Model", bound=BaseModel)


def parse_options(model: type[Model], options: dict[str, Any], where: str) -> Model:
    """Validate a component's options; errors name the field as ``where.field``."""
    try:
        return model.model_validate(options)
    except pydantic.ValidationError as error:
        raise GanzooError(format_validation_error(error, where)) from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise GanzooError(f"cannot read config {path}: {error.strerror}") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as error:
        raise GanzooError(f"config {path} is not valid {path.suffix.lstrip('.') or 'YAML'}: "
                          f"{str(error).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise GanzooError(f"config {path} must hold a mapping of settings")
    return data


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b.c=value`` in place; the value is read as a YAML scalar or list (``1e-4``, ``true``, ``[0, 0.9]``)."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise GanzooError(f"--set expects key=value, got {assignment!r}")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
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
