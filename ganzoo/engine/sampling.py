"""Sampling covers from a trained generator: ``Sampler`` (random, requested and swept conditions) and
``load_sampler``, which rebuilds it from a checkpoint alone, weights only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ganzoo.api.errors import GanzooError
from ganzoo.api.interfaces import Condition, Generator, MappedGenerator, Metadata, VectorGenerator, random_rows
from ganzoo.engine.conditioning import (UNCONDITIONAL, condition_for, encode, given_rows, probe_rows, read_record,
                                        requested_rows, restore_conditions, sweep_values)
from ganzoo.engine.plan import NetworkPlan, plan_networks, stored_config
from ganzoo.engine.run_state import checkpoint_networks, checkpoint_spec
from ganzoo.registry.components import Registry
from ganzoo.registry.loading import get_registry
from ganzoo.runtime.checkpoint import field, load_checkpoint, load_weights
from ganzoo.runtime.config import TrainConfig
from ganzoo.runtime.pixels import to_uint8


def load_generator(state: dict[str, Any], plan: NetworkPlan, device: torch.device) -> Generator:
    """A checkpoint's EMA generator, in eval mode on ``device``."""
    generator, _ = checkpoint_networks(state, plan)
    prefix = "module."
    load_weights(generator, {k[len(prefix):]: v for k, v in field(state, "ema", dict).items()
                             if k.startswith(prefix)}, "generator")
    return generator.to(device).eval()


SAMPLING_BATCH = 256
"""Covers generated per forward pass."""

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
    truncation: float = 1.0
    """The truncation trick's psi: latents are drawn, then pulled toward the average latent by this factor (the
    prior's mean, zero; for a generator with a W space, the running mean of w, in W); 1 leaves them alone, lower
    trades variety for typical covers."""

    @property
    def image_size(self) -> int:
        return self.config.data.image_size

    @property
    def mapped(self) -> bool:
        """Whether the generator has a W space (a ``MappedGenerator``): truncation and walks happen there."""
        return isinstance(self.generator, MappedGenerator)

    def latents(self, count: int, seed: int) -> torch.Tensor:
        z = torch.randn(count, self.generator.latent_dim, generator=torch.Generator().manual_seed(seed))
        return z * self.truncation if self.truncation != 1 and not self.mapped else z

    def interpolation(self, count: int, keyframes: int, frames: int, seed: int) -> Iterator[torch.Tensor]:
        """Yield, frame by frame, ``count`` covers (uint8 (count, 3, S, S)) that each walk through ``keyframes``
        latents and back to the first, ``frames`` frames per stretch, along great circles of the latent sphere
        (slerp); each walk keeps one condition row."""
        keys = self.latents(count * keyframes, seed).reshape(keyframes, count, -1)
        rows = self.rows_for({}, count, seed, nearest=False) if self.conditions else None
        if self.mapped:  # straight lines in W, between the mapped (and truncated) keys
            keys = torch.stack([self.w_of(key, rows) for key in keys])
        for start in range(keyframes):
            end = (start + 1) % keyframes
            for frame in range(frames):
                if self.mapped:
                    yield self.synthesised(keys[start].lerp(keys[end], frame / frames))
                else:
                    yield self.render(slerp(keys[start], keys[end], frame / frames), rows)

    @torch.no_grad()
    def style_mix(self, count: int, seed: int) -> torch.Tensor:
        """A style-mixing grid, (count + 1)^2 uint8 covers row by row: the top row the covers of ``count`` latents
        (the columns'), the left column those of ``count`` more (the rows'), each inner cover its row's w with
        its column's in the first half of the layers (the coarse ones: layout and shapes), the corner blank."""
        if not self.mapped:
            raise GanzooError(f"--mix mixes styles in W; this model ({self.config.recipe}) has no W space")
        rows = self.rows_for({}, 2 * count, seed, nearest=False) if self.conditions else None
        w = self.w_of(self.latents(2 * count, seed), rows)
        columns, lines = w[:count], w[count:]
        coarse = self.generator.layers // 2
        mixed = lines[:, None, None].repeat(1, count, self.generator.layers, 1)
        mixed[:, :, :coarse] = columns[None, :, None]
        singles = self.synthesised(w)
        cells = self.synthesised(mixed.flatten(0, 1)).unflatten(0, (count, count))
        top = torch.cat([torch.zeros_like(singles[:1]), singles[:count]])
        body = torch.cat([singles[count:, None], cells], dim=1)
        return torch.cat([top[None], body]).flatten(0, 1)

    @torch.no_grad()
    def w_of(self, z: torch.Tensor, rows: Metadata | None = None) -> torch.Tensor:
        """A mapped generator's w for latents ``z`` (and condition ``rows``), truncated toward its average."""
        w = self.generator.mapping(z.to(self.device), encode(self.conditions, rows, self.device))
        return self.generator.w_average.lerp(w, self.truncation) if self.truncation != 1 else w

    @torch.no_grad()
    def synthesised(self, w: torch.Tensor) -> torch.Tensor:
        """uint8 images (B, 3, S, S) a mapped generator synthesises from ``w`` ((B, w_dim) or (B, layers, w_dim))."""
        return to_uint8(self.generator.synthesis(w.to(self.device))).cpu()

    @torch.no_grad()
    def render(self, z: torch.Tensor, rows: Metadata | None = None) -> torch.Tensor:
        """uint8 images (B, 3, S, S) for latents ``z`` and, for a conditional model, condition ``rows``."""
        if self.mapped:
            return self.synthesised(self.w_of(z, rows))
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
        """``count`` covers for a request (column -> value, see ``ganzoo.engine.conditioning.parse_request``), and the
        condition rows they were generated for. Unrequested features follow the training data."""
        rows = self.request_rows(request, count, seed)
        return torch.cat(list(self.generate(count, seed, rows))), rows

    @property
    def draws(self) -> bool:
        """Whether the generator draws its covers at any size and as SVG (a ``VectorGenerator``)."""
        return isinstance(self.generator, VectorGenerator)

    def covers_at(self, size: int, count: int, seed: int, request: dict[str, Any] | None,
                  indices: list[int] | None = None) -> tuple[Iterator[np.ndarray], Metadata | None]:
        """The covers ``covers`` gives (those at ``indices``, or all), one uint8 (S, S, 3) array at a time: drawn at
        ``size`` by a generator that draws, else at the model's size (for an upscaler to enlarge). With the
        condition rows of all ``count``."""
        if not self.draws:
            images, rows = self.covers(count, seed, request)
            return (images[index].permute(1, 2, 0).numpy() for index in
                    (range(count) if indices is None else indices)), rows
        return self.each_cover(count, seed, request, indices, lambda z, c: to_uint8(
            self.generator.draw(z, c, size)).cpu()[0].permute(1, 2, 0).numpy())

    def svgs(self, size: int, count: int, seed: int, request: dict[str, Any] | None,
             indices: list[int] | None = None) -> tuple[Iterator[str], Metadata | None]:
        """The covers ``covers`` gives (those at ``indices``, or all) as SVG documents of ``size`` px, one at a
        time, with the condition rows of all ``count``; only a generator that draws has them."""
        self.check_draws()
        return self.each_cover(count, seed, request, indices, lambda z, c: self.generator.svg(z, c, size)[0])

    def each_cover(self, count: int, seed: int, request: dict[str, Any] | None, indices: list[int] | None,
                   make) -> tuple[Iterator[Any], Metadata | None]:
        """``make(z, c)`` for each of the covers ``covers`` gives (those at ``indices``, or all), one at a time,
        without gradients; with the condition rows of all ``count``."""
        z, rows = self.latents(count, seed), self.request_rows(request, count, seed)

        def made():
            for index in (range(count) if indices is None else indices):
                with torch.no_grad():
                    yield make(z[index:index + 1].to(self.device),
                               encode(self.conditions, one_row(rows, index), self.device))

        return made(), rows

    def check_draws(self) -> None:
        """Refuse, in one line, what only a generator that draws has (SVG)."""
        if not self.draws:
            raise GanzooError(f"this model paints pixels ({self.config.recipe}); SVG covers need a vector "
                              "architecture such as shapes")

    def request_rows(self, request: dict[str, Any] | None, count: int, seed: int) -> Metadata | None:
        """The condition rows ``covers`` uses for a request (None for an unconditional model)."""
        if request and not self.conditions:
            raise GanzooError(UNCONDITIONAL)
        return self.rows_for(request or {}, count, seed) if self.conditions else None

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
        row, and ``column`` steps through ``ganzoo.engine.conditioning.sweep_values`` along it. Returns the images in
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


def one_row(rows: Metadata | None, index: int) -> Metadata | None:
    return {name: values[index:index + 1] for name, values in rows.items()} if rows is not None else None


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between rows of ``a`` and ``b`` (their norms interpolated linearly)."""
    norm_a, norm_b = a.norm(dim=1, keepdim=True), b.norm(dim=1, keepdim=True)
    unit_a, unit_b = a / norm_a, b / norm_b
    angle = torch.arccos((unit_a * unit_b).sum(dim=1, keepdim=True).clamp(-1, 1))
    sine = torch.sin(angle)
    straight = sine < 1e-6  # (anti)parallel rows: a straight line is as good as any
    weight_a = torch.where(straight, 1 - t, torch.sin((1 - t) * angle) / sine.clamp_min(1e-6))
    weight_b = torch.where(straight, t, torch.sin(t * angle) / sine.clamp_min(1e-6))
    return (weight_a * unit_a + weight_b * unit_b) * ((1 - t) * norm_a + t * norm_b)


def load_sampler(path: str | Path, device: torch.device, registry: Registry | None = None) -> Sampler:
    """A Sampler for a checkpoint, from what the checkpoint holds alone (never its training data): the EMA
    generator, and for a conditional model its conditions' fitted states, column summary and training rows,
    each checked as untrusted input."""
    state = load_checkpoint(path)
    registry = registry or get_registry()
    config = stored_config(state, registry)
    plan = plan_networks(config, registry)
    generator = load_generator(state, plan, device)
    step = field(state, "step", int)
    summary, table, conditions = None, None, plan.conditions
    if conditions:
        record = state.get("conditions")
        summary, table = read_record(record, config.model.conditions)
        restore_conditions(conditions, plan.labels, record.get("states"), probe_rows(summary, table),
                           "the checkpoint's record of its conditions")
    width = sum(condition.dim for condition in conditions.values())
    if width != checkpoint_spec(state, config).condition_dim:
        raise GanzooError(f"checkpoint is not usable: its conditions encode {width} values, its networks take "
                          f"{checkpoint_spec(state, config).condition_dim}")
    return Sampler(generator, config, conditions, table, device, step, summary)
