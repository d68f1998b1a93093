"""Rebuild a trained generator (and its conditions) from a checkpoint, weights only, for sampling."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganzoo.checkpoint import checkpoint_config, field, load_checkpoint, load_weights
from ganzoo.conditions import (UNCONDITIONAL, column_summary, condition_for, encode, fit_conditions, given_rows,
                               requested_rows, restore_conditions, sweep_values)
from ganzoo.config import TrainConfig
from ganzoo.data.sources import open_dataset
from ganzoo.errors import GanzooError
from ganzoo.interfaces import ArchitectureSpec, Condition, Critic, Generator, ImageData, Metadata
from ganzoo.model import build_networks
from ganzoo.plugins import Registry, get_registry


def checkpoint_spec(state: dict[str, Any], config: TrainConfig) -> ArchitectureSpec:
    """The ArchitectureSpec a checkpoint's networks were built from, checked against its config."""
    try:
        spec = ArchitectureSpec(**field(state, "spec", dict))
    except (TypeError, ValueError) as error:
        raise GanzooError(f"checkpoint is not usable: its 'spec' is malformed ({error})") from None
    if (spec.image_size, spec.latent_dim, spec.width) != (config.data.image_size, config.model.latent_dim,
                                                          config.model.width):
        raise GanzooError("checkpoint is not usable: its spec and config disagree on the image size or latent size")
    return spec


def checkpoint_networks(state: dict[str, Any], registry: Registry) -> tuple[Generator, Critic]:
    """A fresh generator and critic of the architecture, options and spec a checkpoint was trained with."""
    config = checkpoint_config(state)
    component = registry.recipe(config.recipe).architecture
    architecture = registry.create("architecture", component.name, config.options.get(component.name))
    return build_networks(architecture, checkpoint_spec(state, config), component.label)


def load_generator(path: str | Path, device: torch.device, registry: Registry | None = None,
                   ) -> tuple[Generator, dict[str, Any]]:
    """The checkpoint's EMA generator in eval mode, and the checkpoint's state."""
    state = load_checkpoint(path)
    generator, _ = checkpoint_networks(state, registry or get_registry())
    prefix = "module."
    load_weights(generator, {k[len(prefix):]: v for k, v in field(state, "ema", dict).items()
                             if k.startswith(prefix)}, "generator")
    return generator.to(device).eval(), state


QUANTISATION = "generated images rounded to uint8: round((x + 1) * 127.5), ganzoo.sampling.to_uint8"


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] to uint8 pixels, as a PNG would store them: round((x + 1) * 127.5)."""
    return images.float().add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)


@dataclass
class Sampler:
    """Draws uint8 covers from a checkpoint. Conditional models take unrequested features from training-data
    rows when the data is at hand (``data``); without it, every conditioned feature must be requested."""

    generator: Generator
    config: TrainConfig
    conditions: dict[str, Condition]
    data: ImageData | None
    device: torch.device
    step: int = 0
    summary: dict[str, dict] | None = None
    """Per condition column, the training data's range and median or categories (``column_summary``)."""

    @property
    def image_size(self) -> int:
        return self.config.data.image_size

    def latents(self, count: int, seed: int) -> torch.Tensor:
        return torch.randn(count, self.generator.latent_dim, generator=torch.Generator().manual_seed(seed))

    @torch.no_grad()
    def render(self, z: torch.Tensor, rows: Metadata | None = None) -> torch.Tensor:
        """uint8 images (B, 3, S, S) for latents ``z`` and, for a conditional model, condition ``rows``."""
        return to_uint8(self.generator(z.to(self.device), encode(self.conditions, rows, self.device))).cpu()

    def generate(self, count: int, seed: int, rows: Metadata | None = None, batch_size: int = 256,
                 latents: torch.Tensor | None = None):
        """Yield uint8 image batches (B, 3, S, S); ``rows`` gives the conditions (random rows by default),
        ``latents`` the noise (drawn from ``seed`` by default)."""
        if self.conditions and rows is None:
            rows = self.data.random_rows(count, seed + 1) if self.data else given_rows(self.conditions, {}, count)
        z = self.latents(count, seed) if latents is None else latents
        for start in range(0, count, batch_size):
            batch_rows = {k: v[start:start + batch_size] for k, v in rows.items()} if self.conditions else None
            yield self.render(z[start:start + batch_size], batch_rows)

    def covers(self, count: int, seed: int, request: dict[str, Any] | None = None,
               ) -> tuple[torch.Tensor, Metadata | None]:
        """``count`` covers for a request (column -> value, see ``ganzoo.conditions.parse_request``), and the
        condition rows they were generated for. Unrequested features follow the training data."""
        request = request or {}
        if request and not self.conditions:
            raise GanzooError(UNCONDITIONAL)
        rows = self.rows_for(request, count, seed) if self.conditions else None
        return torch.cat(list(self.generate(count, seed, rows))), rows

    def rows_for(self, request: dict[str, Any], count: int, seed: int) -> Metadata:
        if self.data is None:
            return given_rows(self.conditions, request, count)
        return requested_rows(self.data.metadata, request, count, seed + 1)

    def sweep(self, column: str, steps: int, count: int, seed: int, request: dict[str, Any] | None = None,
              ) -> tuple[torch.Tensor, Metadata, int]:
        """A grid of ``count`` rows by the sweep's columns: each row keeps one noise vector and one condition
        row, and ``column`` steps through ``ganzoo.conditions.sweep_values`` along it. Returns the images in
        row-major order, their condition rows and the number of columns."""
        request = dict(request or {})
        condition = condition_for(self.conditions, column)
        values = sweep_values(self.summary, condition, column, steps)
        request.pop(column, None)
        if self.data is None:
            request[column] = values[0]  # a placeholder: the sweep sets this column below
        base = self.rows_for(request, count, seed)
        rows = {name: np.repeat(values_, len(values)) for name, values_ in base.items()}
        rows[column] = np.tile(np.asarray(values, dtype=rows[column].dtype), count)
        latents = self.latents(count, seed).repeat_interleave(len(values), dim=0)
        return torch.cat(list(self.generate(len(latents), seed, rows, latents=latents))), rows, len(values)


def load_sampler(path: str | Path, device: torch.device, registry: Registry | None = None) -> Sampler:
    """A Sampler for a checkpoint. For a conditional model the training data is opened when it is at hand; the
    conditions come from the checkpoint's record, or are fitted to that data for checkpoints without one."""
    registry = registry or get_registry()
    generator, state = load_generator(path, device, registry)
    config = checkpoint_config(state)
    step = field(state, "step", int)
    if not config.conditions:
        return Sampler(generator, config, {}, None, device, step)
    record = state.get("conditions") or {}
    if not isinstance(record, dict):
        raise GanzooError("checkpoint is not usable: its 'conditions' record is malformed")
    try:
        data = open_dataset(config.data.name, config.data.image_size, registry, config.options, progress=False)
    except GanzooError:
        if record.get("states") is None:
            raise
        data = None
    if record.get("states") is not None:
        try:
            conditions = restore_conditions(config.conditions, config.options, registry, record["states"])
            summary = dict(record["columns"])
        except GanzooError:
            raise
        except Exception as error:  # a condition plugin reading a state it did not write
            raise GanzooError(f"checkpoint is not usable: its conditions' fitted state is malformed "
                              f"({type(error).__name__}: {str(error)[:100]})") from None
    else:
        conditions = fit_conditions(config.conditions, config.options, registry, data.metadata)
        summary = column_summary(conditions, data.metadata)
    return Sampler(generator, config, conditions, data, device, step, summary)
