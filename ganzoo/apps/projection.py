"""Finding the latent (and condition row) whose cover is closest to a real cover, and variations around it
(``ganzoo project``).

The search starts from the best of a few random candidates and optimises the latent with Adam against a
distance of pixels (mean squared error at full, half and quarter size) plus, when the run's critic offers frozen
pretrained features (``Critic.perceptual_features``: the projected critic's EfficientNet), the mean squared
difference of their channel-normalised maps, as LPIPS compares images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ganzoo.api.interfaces import Critic, Metadata
from ganzoo.engine.conditioning import encode
from ganzoo.engine.sampling import Sampler
from ganzoo.runtime.pixels import to_uint8


@dataclass
class Projection:
    """The latent (1, latent_dim) and condition row found, their cover, and the distances before and after."""

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


def project(sampler: Sampler, critic: Critic | None, target: torch.Tensor, steps: int, seed: int,
            candidates: int = 64, learning_rate: float = 0.05, feature_weight: float = 1.0,
            progress: bool = True) -> Projection:
    """Project ``target`` (uint8 (3, S, S)) into ``sampler``'s generator: the best of ``candidates`` random latents
    (and, for a conditional model, random training rows), then ``steps`` Adam steps on the latent."""
    device = sampler.device
    generator = sampler.generator
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
    z = latents[best:best + 1].clone().requires_grad_(True)
    optimiser = torch.optim.Adam([z], lr=learning_rate)
    with torch.no_grad():
        start = {k: float(v) for k, v in distance(generator(z, c)).items()}
    for _ in tqdm(range(steps), desc="2/2 projecting", unit="step", disable=not progress):
        loss = distance(generator(z, c))["total"].sum()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        cover = generator(z, c)
        end = {k: float(v) for k, v in distance(cover).items()}
    return Projection(z.detach().cpu(), chosen, to_uint8(cover[0]).cpu(), start, end)


def condition(sampler: Sampler, rows: Metadata | None, part: slice) -> torch.Tensor | None:
    if rows is None:
        return None
    return encode(sampler.conditions, {k: v[part] for k, v in rows.items()}, sampler.device)


def variations(sampler: Sampler, projection: Projection, count: int, spread: float, seed: int) -> torch.Tensor:
    """uint8 covers (count, 3, S, S) from the projected latent plus Gaussian noise of standard deviation
    ``spread``, with the projection's condition row."""
    noise = torch.randn(count, projection.latent.shape[1], generator=torch.Generator().manual_seed(seed))
    rows = {k: np.repeat(v, count) for k, v in projection.rows.items()} if projection.rows is not None else None
    return sampler.render(projection.latent + spread * noise, rows)


def record(projection: Projection, steps: int, seed: int) -> dict[str, Any]:
    """What ``ganzoo project`` writes to projection.json."""
    rows = ({k: (v[0].item() if hasattr(v[0], "item") else v[0]) for k, v in projection.rows.items()}
            if projection.rows is not None else None)
    return {"steps": steps, "seed": seed, "distance_start": projection.start, "distance_end": projection.end,
            "condition_row": rows, "latent": projection.latent[0].tolist()}
