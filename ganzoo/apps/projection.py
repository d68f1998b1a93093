"""Finding the latent (and condition row) whose cover is closest to a real cover, and variations around it
(``ganzoo project``).

The search starts from the best of a few random candidates and optimises with Adam against a distance of pixels
(mean squared error at full, half and quarter size) plus, when the run's critic offers frozen pretrained features
(``Critic.perceptual_features``: the projected critic's EfficientNet), the mean squared difference of their
channel-normalised maps, as LPIPS compares images. What it optimises is the ``space``: the latent z; or, for a
generator with a W space (``MappedGenerator``), the candidate's w (``w``), or one w per layer (``w+``), as
stylegan2-ada's projector does: its learning-rate ramps, and noise on w (5 % of w's spread, fading out over the
first three quarters of the steps). Unlike that projector, the per-pixel noise maps are not optimised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ganzoo.api.errors import GanzooError
from ganzoo.api.interfaces import Critic, Metadata
from ganzoo.engine.conditioning import encode
from ganzoo.engine.sampling import Sampler
from ganzoo.runtime.pixels import to_uint8


SPACES = ("z", "w", "w+")
W_NOISE, W_NOISE_STEPS, RAMP_UP, RAMP_DOWN = 0.05, 0.75, 0.05, 0.25
"""stylegan2-ada's projector: noise on w of this fraction of w's spread, fading (squared) to nothing over this
share of the steps; the learning rate rises over the first RAMP_UP and falls (cosine) over the last RAMP_DOWN."""


@dataclass
class Projection:
    """What was found in ``space``: the latent (1, latent_dim), w (1, w_dim) or w+ (1, layers, w_dim); the
    condition row; their cover; and the distances before and after."""

    space: str
    latent: torch.Tensor
    rows: Metadata | None
    cover: torch.Tensor
    start: dict[str, float]
    end: dict[str, float]


class Distance:
    """Pixel distance at three scales, plus perceptual distance when ``critic`` offers frozen features."""

    def __init__(self, target: torch.Tensor, critic: Critic | None, feature_weight: float):
        self.target, self.critic, self.feature_weight = target, critic, feature_weight
        self.target_features = self.features(target)
        if self.target_features is not None:
            self.target_features = [f.detach() for f in self.target_features]

    def features(self, images: torch.Tensor) -> list[torch.Tensor] | None:
        found = self.critic.perceptual_features(images) if self.critic is not None else None
        return [F.normalize(f, dim=1) for f in found] if found else None

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per image (B,): ``pixel``, ``features`` (when offered) and their weighted ``total``."""
        pixel = sum(F.mse_loss(F.avg_pool2d(images, k), F.avg_pool2d(self.target, k).expand_as(
            F.avg_pool2d(images, k)), reduction="none").mean(dim=(1, 2, 3)) for k in (1, 2, 4)) / 3
        terms = {"pixel": pixel, "total": pixel}
        features = self.features(images)
        if features is not None:
            perceptual = sum((f - t).pow(2).sum(dim=1).mean(dim=(1, 2))
                             for f, t in zip(features, self.target_features)) / len(features)
            terms |= {"features": perceptual, "total": pixel + self.feature_weight * perceptual}
        return terms


def project(sampler: Sampler, critic: Critic | None, target: torch.Tensor, steps: int, seed: int, space: str = "z",
            candidates: int = 64, learning_rate: float | None = None, feature_weight: float = 1.0,
            progress: bool = True) -> Projection:
    """Project ``target`` (uint8 (3, S, S)) into ``sampler``'s generator: the best of ``candidates`` random latents
    (and, for a conditional model, random training rows), then ``steps`` Adam steps in ``space`` (at 0.05 for z,
    0.1 ramped for w and w+, by default)."""
    device, generator = sampler.device, sampler.generator
    if space not in SPACES:
        raise GanzooError(f"cannot project in {space!r}: the spaces are {', '.join(SPACES)}")
    if space != "z" and not sampler.mapped:
        raise GanzooError(f"projecting in {space.upper()} needs a W space; this model ({sampler.config.recipe}) "
                          "has none: project in z")
    for parameter in generator.parameters():
        parameter.requires_grad_(False)
    if critic is not None:
        critic = critic.to(device).eval().requires_grad_(False)
    distance = Distance(target.to(device).float().div(127.5).sub(1).unsqueeze(0), critic, feature_weight)
    latents = sampler.latents(candidates, seed).to(device)
    rows = sampler.rows_for({}, candidates, seed, nearest=False) if sampler.conditions else None
    with torch.no_grad():
        scores = torch.cat([distance(generator(latents[i:i + 16], condition(sampler, rows, slice(i, i + 16))))
                            ["total"] for i in tqdm(range(0, candidates, 16), desc=f"1/2 choosing the best of "
                                                    f"{candidates} latents", unit="batch of 16", disable=not progress)])
    best = int(scores.argmin())
    chosen = {k: v[best:best + 1] for k, v in rows.items()} if rows is not None else None
    c = encode(sampler.conditions, chosen, device) if chosen is not None else None
    if space == "z":
        found, render, schedule = latents[best:best + 1].clone(), (lambda z: generator(z, c)), None
    else:
        with torch.no_grad():
            found = generator.mapping(latents[best:best + 1], c)
        found = found[:, None].repeat(1, generator.layers, 1) if space == "w+" else found
        render, schedule = generator.synthesis, WSchedule(w_spread(sampler, seed), learning_rate or 0.1, steps, seed)
    found.requires_grad_(True)
    optimiser = torch.optim.Adam([found], lr=learning_rate or 0.05)
    with torch.no_grad():
        start = {k: float(v) for k, v in distance(render(found)).items()}
    for step in tqdm(range(steps), desc=f"2/2 projecting in {space}", unit="step", disable=not progress):
        noise = schedule.noise(step, found, optimiser) if schedule else 0
        loss = distance(render(found + noise))["total"].sum()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        cover = render(found)
        end = {k: float(v) for k, v in distance(cover).items()}
    return Projection(space, found.detach().cpu(), chosen, to_uint8(cover[0]).cpu(), start, end)


def w_spread(sampler: Sampler, seed: int, count: int = 1000) -> float:
    """How far a mapped generator's w lie from their average: the root mean squared distance, over ``count``
    random latents (and training rows)."""
    rows = sampler.rows_for({}, count, seed + 1, nearest=False) if sampler.conditions else None
    w = sampler.w_of(sampler.latents(count, seed + 1), rows)
    return float((w - sampler.generator.w_average).pow(2).sum(dim=1).mean().sqrt())


class WSchedule:
    """stylegan2-ada's projector's schedule in W: the learning rate's ramps and the fading noise on w."""

    def __init__(self, spread: float, learning_rate: float, steps: int, seed: int):
        self.spread, self.learning_rate, self.steps = spread, learning_rate, max(steps, 1)
        self.random = torch.Generator().manual_seed(seed)

    def noise(self, step: int, w: torch.Tensor, optimiser: torch.optim.Optimizer) -> torch.Tensor:
        """Set this step's learning rate and return the noise to add to ``w``."""
        t = step / self.steps
        ramp = 0.5 - 0.5 * np.cos(min(1.0, (1.0 - t) / RAMP_DOWN) * np.pi)
        for group in optimiser.param_groups:
            group["lr"] = self.learning_rate * ramp * min(1.0, t / RAMP_UP)
        scale = self.spread * W_NOISE * max(0.0, 1.0 - t / W_NOISE_STEPS) ** 2
        return scale * torch.randn(w.shape, generator=self.random).to(w.device)


def condition(sampler: Sampler, rows: Metadata | None, part: slice) -> torch.Tensor | None:
    if rows is None:
        return None
    return encode(sampler.conditions, {k: v[part] for k, v in rows.items()}, sampler.device)


def variations(sampler: Sampler, projection: Projection, count: int, spread: float, seed: int) -> torch.Tensor:
    """uint8 covers (count, 3, S, S) around the projection, with its condition row: in z, the latent plus
    Gaussian noise of standard deviation ``spread``; in W (and W+), w plus ``spread`` times a random w's offset
    from the average w."""
    noise = torch.randn(count, sampler.generator.latent_dim, generator=torch.Generator().manual_seed(seed))
    rows = {k: np.repeat(v, count) for k, v in projection.rows.items()} if projection.rows is not None else None
    if projection.space == "z":
        return sampler.render(projection.latent + spread * noise, rows)
    offset = sampler.w_of(noise, rows) - sampler.generator.w_average
    w = projection.latent.to(sampler.device) + spread * (offset[:, None] if projection.space == "w+" else offset)
    return sampler.synthesised(w)


def record(projection: Projection, steps: int, seed: int) -> dict[str, Any]:
    """What ``ganzoo project`` writes to projection.json."""
    rows = ({k: (v[0].item() if hasattr(v[0], "item") else v[0]) for k, v in projection.rows.items()}
            if projection.rows is not None else None)
    return {"space": projection.space, "steps": steps, "seed": seed, "distance_start": projection.start,
            "distance_end": projection.end, "condition_row": rows, "latent": projection.latent[0].tolist()}
