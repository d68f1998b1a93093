"""Rebuild a trained generator (and its conditions) from a checkpoint, weights only, for sampling."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganzoo.checkpoint import load_checkpoint
from ganzoo.config import TrainConfig
from ganzoo.interfaces import ArchitectureSpec, Condition, Generator, ImageData
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


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] to uint8 pixels, as a PNG would store them: round((x + 1) * 127.5)."""
    return images.float().add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)


@dataclass
class Sampler:
    """Draws uint8 covers from a checkpoint; conditional models take conditions from training-data rows."""

    generator: Generator
    config: TrainConfig
    conditions: list[Condition]
    data: ImageData | None
    device: torch.device
    step: int = 0

    @property
    def image_size(self) -> int:
        return self.config.data.image_size

    def rows(self, count: int, seed: int) -> np.ndarray:
        """Indices of ``count`` random training rows (the conditions' joint distribution), seeded."""
        generator = torch.Generator().manual_seed(seed)
        return torch.randint(len(self.data.images), (count,), generator=generator).numpy()

    @torch.no_grad()
    def generate(self, count: int, seed: int, rows: np.ndarray | None = None, batch_size: int = 256):
        """Yield uint8 image batches (B, 3, S, S); ``rows`` picks the conditions (random rows by default)."""
        latent_generator = torch.Generator().manual_seed(seed)
        if self.conditions and rows is None:
            rows = self.rows(count, seed + 1)
        for start in range(0, count, batch_size):
            size = min(batch_size, count - start)
            z = torch.randn(size, self.generator.latent_dim, generator=latent_generator).to(self.device)
            c = None
            if self.conditions:
                batch_rows = self.data.rows(rows[start:start + size])
                c = torch.cat([cond.encode(batch_rows) for cond in self.conditions], dim=1).to(self.device)
            yield to_uint8(self.generator(z, c)).cpu()


def load_sampler(path: str | Path, device: torch.device, registry: Registry | None = None) -> Sampler:
    """A Sampler for a checkpoint; for conditional models the training data is opened to fit the conditions."""
    from ganzoo.data import open_dataset

    registry = registry or get_registry()
    generator, state = load_generator(path, device, registry)
    config = TrainConfig.model_validate_json(state["config"])
    conditions, data = [], None
    if config.conditions:
        data = open_dataset(config.data, registry)
        for name in config.conditions:
            condition = registry.get("condition", name).factory(config.options.get(name, {}))
            condition.fit(data.metadata)
            conditions.append(condition)
    return Sampler(generator, config, conditions, data, device, state["step"])
