"""Rebuild a trained generator (and its conditions) from a checkpoint, weights only, for sampling."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganzoo.checkpoint import checkpoint_config, field, load_checkpoint, load_weights
from ganzoo.conditions import (UNCONDITIONAL, condition_for, encode, given_rows, probe_rows, read_record,
                               requested_rows, restore_conditions, sweep_values)
from ganzoo.config import TrainConfig
from ganzoo.errors import GanzooError
from ganzoo.interfaces import ArchitectureSpec, Condition, Critic, Generator, Metadata, random_rows
from ganzoo.memory import check_fits, network_footprint
from ganzoo.model import build_networks, check_architecture
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
    """A fresh generator and critic of the architecture, options and spec a checkpoint was trained with. The
    spec is untrusted: what the architecture cannot build, or what cannot fit in memory, is refused before
    anything is allocated."""
    config = checkpoint_config(state)
    component = registry.recipe(config.recipe).architecture
    architecture = registry.create("architecture", component.name, config.options.get(component.name))
    spec = checkpoint_spec(state, config)
    check_architecture(architecture, component.label, spec.image_size, spec.condition_dim > 0,
                       list(spec.aux_outputs), prefix="checkpoint is not usable: ")
    footprint = network_footprint(lambda: architecture.build(spec), SAMPLING_BATCH, spec.latent_dim,
                                  spec.condition_dim, spec.image_size, spec.channels)
    if footprint is not None:
        check_fits(footprint.sampling(), torch.device("cpu"),
                   f"the checkpoint's networks ({component.name} at {spec.image_size} px, model.width {spec.width}, "
                   f"latent size {spec.latent_dim})", "this checkpoint cannot be used on this machine")
    return build_networks(architecture, spec, component.label)


def load_generator(path: str | Path, device: torch.device, registry: Registry | None = None,
                   ) -> tuple[Generator, dict[str, Any]]:
    """The checkpoint's EMA generator in eval mode, and the checkpoint's state."""
    state = load_checkpoint(path)
    generator, _ = checkpoint_networks(state, registry or get_registry())
    prefix = "module."
    load_weights(generator, {k[len(prefix):]: v for k, v in field(state, "ema", dict).items()
                             if k.startswith(prefix)}, "generator")
    return generator.to(device).eval(), state


SAMPLING_BATCH = 256
"""Covers generated per forward pass."""

QUANTISATION = "generated images rounded to uint8: round((x + 1) * 127.5), ganzoo.sampling.to_uint8"


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] to uint8 pixels, as a PNG would store them: round((x + 1) * 127.5)."""
    return images.float().add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)


@dataclass
class Sampler:
    """Draws uint8 covers from a checkpoint. Conditional models take unrequested features from ``table``, rows
    of the training data's conditioned columns (the rows a checkpoint keeps, or the whole table during
    training); without one, every conditioned feature must be requested."""

    generator: Generator
    config: TrainConfig
    conditions: dict[str, Condition]
    table: Metadata | None
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

    def generate(self, count: int, seed: int, rows: Metadata | None = None, batch_size: int = SAMPLING_BATCH,
                 latents: torch.Tensor | None = None):
        """Yield uint8 image batches (B, 3, S, S); ``rows`` gives the conditions (random rows of the table by
        default), ``latents`` the noise (drawn from ``seed`` by default)."""
        if self.conditions and rows is None:
            rows = self.rows_for({}, count, seed, nearest=False)
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

    def rows_for(self, request: dict[str, Any], count: int, seed: int, nearest: bool = True) -> Metadata:
        """Condition rows with the requested values; the other columns from the table's rows that match the
        request (``requested_rows``), or random rows of it when ``nearest`` is False."""
        if self.table is None:
            return given_rows(self.conditions, request, count)
        if not nearest:
            return random_rows(self.table, count, seed + 1)
        return requested_rows(self.table, request, count, seed + 1)

    def sweep_columns(self, column: str, steps: int) -> list:
        """The values a sweep of ``column`` steps through, one per column of its grid."""
        return sweep_values(self.summary, condition_for(self.conditions, column), column, steps)

    def sweep(self, column: str, steps: int, count: int, seed: int, request: dict[str, Any] | None = None,
              ) -> tuple[torch.Tensor, Metadata, int]:
        """A grid of ``count`` rows by the sweep's columns: each row keeps one noise vector and one condition
        row, and ``column`` steps through ``ganzoo.conditions.sweep_values`` along it. Returns the images in
        row-major order, their condition rows and the number of columns."""
        request = dict(request or {})
        values = self.sweep_columns(column, steps)
        request.pop(column, None)
        if self.table is None:
            request[column] = values[0]  # a placeholder: the sweep sets this column below
        base = self.rows_for(request, count, seed)
        rows = {name: np.repeat(values_, len(values)) for name, values_ in base.items()}
        rows[column] = np.tile(np.asarray(values, dtype=rows[column].dtype), count)
        latents = self.latents(count, seed).repeat_interleave(len(values), dim=0)
        return torch.cat(list(self.generate(len(latents), seed, rows, latents=latents))), rows, len(values)


def load_sampler(path: str | Path, device: torch.device, registry: Registry | None = None) -> Sampler:
    """A Sampler for a checkpoint, from what the checkpoint holds alone (never its training data): the EMA
    generator, and for a conditional model its conditions' fitted states, column summary and training rows,
    each checked as untrusted input."""
    registry = registry or get_registry()
    generator, state = load_generator(path, device, registry)
    config = checkpoint_config(state)
    step = field(state, "step", int)
    summary, table, conditions = None, None, {}
    if config.conditions:
        record = state.get("conditions")
        summary, table = read_record(record, config.conditions)
        conditions = restore_conditions(config.conditions, config.options, registry, record.get("states"),
                                        probe_rows(summary, table), "the checkpoint's record of its conditions")
    width = sum(condition.dim for condition in conditions.values())
    if width != checkpoint_spec(state, config).condition_dim:
        raise GanzooError(f"checkpoint is not usable: its conditions encode {width} values, its networks take "
                          f"{checkpoint_spec(state, config).condition_dim}")
    return Sampler(generator, config, conditions, table, device, step, summary)
