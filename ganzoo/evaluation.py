"""Computing metric plugins: images generated (or taken from a source) once, features extracted once, every
metric fed what it declared it needs. ``ganzoo bench`` and the evaluation during training both go through
``evaluate``; reference features are cached on disk by reference fingerprint, extractor protocol, image count
and seed."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from tqdm import tqdm

import ganzoo
from ganzoo.config import cache_root
from ganzoo.errors import GanzooError
from ganzoo.files import write_atomically
from ganzoo.interfaces import FeatureExtractor, ImageData, Metric, MetricInputs
from ganzoo.plugins import Registry, blame
from ganzoo.sampling import QUANTISATION, Sampler

BATCH = 64
"""Images per extraction batch (and per generated batch): small enough for the progress bar to move."""


def extract(extractor: FeatureExtractor, batches: Iterable[torch.Tensor], total: int, device: torch.device,
            with_logits: bool, desc: str, progress: bool = True, with_features: bool = True,
            ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Features (and logits) of uint8 image batches (B, 3, S, S), batched on ``device`` without gradients."""
    features, logits = [], []
    with torch.inference_mode(), tqdm(total=total, desc=desc, unit="img", disable=not progress) as bar:
        for batch in batches:
            batch = batch.to(device, non_blocking=True)
            if with_features:
                features.append(extractor(batch).double().cpu())
            if with_logits:
                logits.append(extractor.logits(batch).double().cpu())
            bar.update(len(batch))
    return (torch.cat(features) if with_features else None), (torch.cat(logits) if with_logits else None)


def batches_of(images: np.ndarray, indices: np.ndarray, batch_size: int = BATCH) -> Iterator[torch.Tensor]:
    """uint8 (N, S, S, 3) rows -> uint8 batches (B, 3, S, S)."""
    for start in range(0, len(indices), batch_size):
        yield torch.from_numpy(np.ascontiguousarray(images[indices[start:start + batch_size]])).permute(0, 3, 1, 2)


def pick(count_available: int, count: int, seed: int) -> np.ndarray:
    """Sorted indices of ``count`` images drawn without replacement (all of them if fewer)."""
    if count >= count_available:
        return np.arange(count_available)
    order = torch.randperm(count_available, generator=torch.Generator().manual_seed(seed)).numpy()
    return np.sort(order[:count])


def cache_dir() -> Path:
    return cache_root() / "features"


@dataclass
class Reference:
    """Real images to compare against, with their features computed once and cached."""

    data: ImageData
    count: int
    seed: int

    @property
    def size(self) -> int:
        """How many reference images a score uses: ``count``, or all of them if the data has fewer."""
        return min(self.count, len(self.data.images))

    def features(self, extractor: FeatureExtractor, device: torch.device, progress: bool = True) -> torch.Tensor:
        indices = pick(len(self.data.images), self.count, self.seed)
        key = hashlib.sha256(json.dumps([self.data.fingerprint, extractor.protocol, len(indices), self.seed],
                                        sort_keys=True).encode()).hexdigest()[:24]
        path = cache_dir() / f"{self.data.name}-{key}.pt"
        if path.is_file():
            try:
                return torch.load(path, weights_only=True)["features"]
            except Exception:  # a damaged cache entry is recomputed
                path.unlink(missing_ok=True)
        features, _ = extract(extractor, batches_of(self.data.images, indices), len(indices), device,
                              with_logits=False, desc=f"features {self.data.name}", progress=progress)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        torch.save({"features": features}, temporary)
        os.replace(temporary, path)
        return features


def build_extractor(name: str, options: dict | None, registry: Registry, device: torch.device) -> FeatureExtractor:
    return registry.create("feature_extractor", name, options).to(device).eval()


def build_metrics(names: Iterable[str], options: dict, registry: Registry) -> dict[str, Metric]:
    """The named metric plugins, in order, built from ``options[name]``."""
    return {name: registry.create("metric", name, options.get(name)) for name in dict.fromkeys(names)}


def check_counts(metrics: dict[str, Metric], registry: Registry, generated: int, real: int | None) -> None:
    """Refuse counts a metric cannot be computed from, naming the minimum."""
    for name, metric in metrics.items():
        if generated < metric.minimum_generated:
            raise GanzooError(f"{name} needs at least {metric.minimum_generated} generated images; the source gives "
                              f"{generated}")
        if metric.needs_reference and real is not None and real < metric.minimum_real:
            raise GanzooError(f"{name} needs at least {metric.minimum_real} reference images; the reference gives "
                              f"{real}")


def library_version(name: str) -> str | None:
    try:
        return importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return None


def base_protocol(seed: int, image_size: int, device: torch.device) -> dict[str, Any]:
    return {"seed": seed, "image_size": image_size, "device": str(device), "ganzoo_version": ganzoo.__version__,
            "torchmetrics_version": library_version("torchmetrics")}


def evaluate(metrics: dict[str, Metric], registry: Registry, count: int, seed: int, device: torch.device,
             sampler: Sampler | None = None, source: ImageData | None = None, reference: Reference | None = None,
             extractor: FeatureExtractor | None = None, progress: bool = True) -> tuple[dict, dict]:
    """Scores of every metric and the protocol they were computed under. Generated images come from
    ``sampler`` (``count`` of them, seeded) or are drawn from ``source``; features are extracted once with
    ``extractor`` when some metric needs them, and reference features come from ``reference``."""
    with_features = any(m.needs_features for m in metrics.values())
    with_logits = any(m.needs_logits for m in metrics.values())
    inputs = MetricInputs(count=count, seed=seed, sampler=sampler,
                          reference=reference.data if reference is not None else None)
    protocol: dict[str, Any] = {}
    if with_features or with_logits:
        if sampler is not None:
            batches, total = sampler.generate(count, seed, batch_size=BATCH), count
            protocol |= {"source_step": sampler.step, "quantisation": QUANTISATION}
        else:
            indices = pick(len(source.images), count, seed)
            batches, total = batches_of(source.images, indices), len(indices)
            protocol |= {"source_fingerprint": source.fingerprint, "quantisation": "uint8 source images"}
        inputs.fake_features, inputs.fake_logits = extract(
            extractor, batches, total, device, with_logits, desc="features generated" if sampler else
            f"features {source.name}", progress=progress, with_features=with_features)
        protocol |= {"generated_images": total, "extractor": extractor.protocol}
        if with_features and any(m.needs_reference and m.needs_features for m in metrics.values()):
            inputs.real_features = reference.features(extractor, device, progress=progress)
            protocol |= {"reference_fingerprint": reference.data.fingerprint, "real_images": reference.size}
    scores: dict[str, Any] = {}
    for name, metric in metrics.items():
        label = registry.get("metric", name).label
        with blame(label, "failed"):
            result = metric.compute(inputs)
            settings = metric.protocol(inputs)
        if not isinstance(result, dict) or not isinstance(settings, dict):
            raise GanzooError(f"{label} broke its promise: compute and protocol must return dicts")
        clash = set(result) & set(scores)
        if clash:
            raise GanzooError(f"{label} returns a score named {sorted(clash)[0]!r}, which another metric returns too")
        scores |= result
        protocol |= settings
    return scores, protocol


def flatten_scores(scores: dict[str, Any], prefix: str) -> dict[str, float]:
    """Numeric scores as ``prefix/name`` (nested tables as ``prefix/name/key/...``), for metrics.jsonl."""
    flat = {}
    for name, value in scores.items():
        if isinstance(value, dict):
            flat |= flatten_scores(value, f"{prefix}/{name}")
        elif isinstance(value, (int, float)):
            flat[f"{prefix}/{name}"] = float(value)
    return flat


class TrainingEvaluator:
    """``eval_metrics`` of the EMA generator against the training data (or ``reference``, such as a held-out
    split), for ``eval_every`` during training.

    Uses its own seeded random generators, so evaluating never changes the training run's randomness.
    """

    def __init__(self, config, data: ImageData, registry: Registry, device: torch.device, run_dir: Path,
                 progress: bool, reference: ImageData | None = None):
        self.config, self.data, self.registry, self.device = config, data, registry, device
        self.metrics = build_metrics(config.eval_metrics, config.options, registry)
        needs_extractor = any(m.needs_features or m.needs_logits for m in self.metrics.values())
        extractor_name = config.eval_extractor or registry.default("feature_extractor").name
        self.extractor = (build_extractor(extractor_name, config.options.get(extractor_name), registry, device)
                          if needs_extractor else None)
        reference = reference if reference is not None else data
        self.reference = Reference(data=reference, count=config.eval_images, seed=config.seed)
        check_counts(self.metrics, registry, config.eval_images, self.reference.size)
        if self.extractor is not None and any(m.needs_reference for m in self.metrics.values()):
            self.reference.features(self.extractor, device, progress=progress)  # cached before training starts
        self.protocol = base_protocol(config.seed, config.data.image_size, device) | {
            "metrics": list(self.metrics), "reference": config.eval_reference or config.data.name,
            "reference_fingerprint": reference.fingerprint,
            "real_images": self.reference.size, "generated_images": config.eval_images,
            "extractor": self.extractor.protocol if self.extractor else None, "quantisation": QUANTISATION}
        write_atomically(run_dir / "eval_protocol.json", json.dumps(self.protocol, indent=1))

    def __call__(self, generator, conditions) -> dict[str, float]:
        """The scores of ``generator`` (conditioned on random training rows through ``conditions``, if any)."""
        sampler = Sampler(generator, self.config, conditions, self.data, self.device)
        scores, _ = evaluate(self.metrics, self.registry, self.config.eval_images, self.config.seed + 1,
                             self.device, sampler=sampler, reference=self.reference, extractor=self.extractor,
                             progress=False)
        return flatten_scores(scores, "eval")
