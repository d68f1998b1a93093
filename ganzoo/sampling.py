"""Rebuild a trained generator from a checkpoint (weights only) for sampling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ganzoo.checkpoint import load_checkpoint
from ganzoo.config import TrainConfig
from ganzoo.interfaces import ArchitectureSpec, Generator
from ganzoo.plugins import Registry, get_registry


def load_generator(path: str | Path, device: torch.device, registry: Registry | None = None,
                   ) -> tuple[Generator, dict[str, Any]]:
    """The checkpoint's EMA generator in eval mode, and the checkpoint's state."""
    registry = registry or get_registry()
    state = load_checkpoint(path)
    config = TrainConfig.model_validate_json(state["config"])
    architecture = registry.recipe(config.recipe).architecture
    options = {"width": config.model.width, **config.options.get(architecture.name, {})}
    spec = ArchitectureSpec(**state["spec"])
    generator, _ = architecture.factory(spec, options)
    prefix = "module."
    generator.load_state_dict({k[len(prefix):]: v for k, v in state["ema"].items() if k.startswith(prefix)})
    return generator.to(device).eval(), state
