"""Computing metric plugins: images generated (or taken from a source) once, features extracted once, every
metric fed what it declared it needs. ``ganzoo bench`` and the evaluation during training both go through
``evaluate``; reference features are cached on disk by reference fingerprint, extractor protocol, image count
and seed."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

import ganzoo
from ganzoo.api.errors import GanzooError
from ganzoo.runtime.files import cache_root, write_atomically
from ganzoo.api.interfaces import FeatureExtractor, ImageData, Metric, MetricInputs
from ganzoo.registry.components import Registry, blame
from ganzoo.runtime.pixels import QUANTISATION
from ganzoo.runtime.untrusted import ArraySpec, finite, parse_json, read_npz, validated

BATCH = 64
"""Images per extraction batch (and per generated batch): small enough for the progress bar to move."""


def extract(extractor: FeatureExtractor, batches: Iterable[torch.Tensor], total: int, device: torch.device,
            with_logits: bool, desc: str, progress: bool = True, with_features: bool = True,
            ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Features (and logits) of uint8 image batches (B, 3, S, S), batched on ``device`` without gradients. With
    ``progress``, a bar, and after the first batch a line with the pace and the time the rest will take."""
    features, logits = [], []
    started = time.perf_counter()
    with torch.inference_mode(), tqdm(total=total, desc=desc, unit="img", disable=not progress) as bar:
        for batch in batches:
            batch = batch.to(device, non_blocking=True)
            if with_features:
                features.append(extractor(batch).double().cpu())
            if with_logits:
                logits.append(extractor.logits(batch).double().cpu())
            if progress and bar.n == 0 and total > len(batch):
                tqdm.write(pace_line(desc, (time.perf_counter() - started) / len(batch), total - len(batch), device))
            bar.update(len(batch))
    return (torch.cat(features) if with_features else None), (torch.cat(logits) if with_logits else None)


def pace_line(desc: str, seconds: float, left: int, device: torch.device) -> str:
    """After the first batch: seconds an image and the time the ``left`` images will take; on a CPU, when that is
    long, the smaller counts ganzoo's own CPU benchmarks use."""
    line = f"{desc}: {seconds:.3f} s an image after the first batch, about {tqdm.format_interval(seconds * left)} more"
    if device.type == "cpu" and seconds * left > 180:
        line += (" (a CPU is slow at this: -n 1000 --real 1000 takes a fifth as long, with FID biased upwards at "
                 "fewer images, so compare only scores of equal counts)")
    return line


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
    """Real images to compare against, with their features computed once and cached; or, read from a statistics
    file (``load_reference_statistics``), features alone, with the extractor protocol they were taken under."""

    data: ImageData
    count: int
    seed: int
    stored: torch.Tensor | None = None
    stored_protocol: dict[str, Any] | None = None

    @property
    def size(self) -> int:
        """How many reference images a score uses: ``count``, or all of them if the data has fewer."""
        return len(self.stored) if self.stored is not None else min(self.count, len(self.data.images))

    @property
    def indices(self) -> np.ndarray:
        """The reference images a score uses."""
        return pick(len(self.data.images), self.count, self.seed)

    def features(self, extractor: FeatureExtractor, device: torch.device, progress: bool = True) -> torch.Tensor:
        if self.stored is not None:
            if json.dumps(extractor.protocol, sort_keys=True) != json.dumps(self.stored_protocol, sort_keys=True):
                raise GanzooError(f"the reference statistics of {self.data.name!r} were taken with another extractor "
                                  f"protocol ({describe_difference(self.stored_protocol, extractor.protocol)}); "
                                  "export them again with this one")
            return self.stored
        indices = self.indices
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


STATISTICS_FORMAT = "ganzoo-reference-statistics"


def save_reference_statistics(reference: Reference, extractor: FeatureExtractor, image_size: int,
                              device: torch.device, path: str | Path, progress: bool = True) -> None:
    """Write a reference's features, and what they were taken from and under, to an .npz file (no pickle)."""
    features = reference.features(extractor, device, progress)
    about = {"format": STATISTICS_FORMAT, "reference": reference.data.name,
             "reference_fingerprint": reference.data.fingerprint, "image_size": image_size, "seed": reference.seed,
             "real_images": len(features), "extractor": extractor.protocol}
    buffer = io.BytesIO()
    np.savez(buffer, features=features.numpy(), about=np.array(json.dumps(about)))
    write_atomically(path, buffer.getvalue())


class StatisticsAbout(BaseModel):
    """What a statistics file says about its features (its ``about`` array, JSON)."""

    model_config = ConfigDict(extra="allow")
    format: str
    image_size: int = Field(ge=8, le=4096)
    reference: str = ""
    reference_fingerprint: str = ""
    seed: int = Field(0, ge=0)
    extractor: dict[str, Any] | None = None


MAX_REFERENCE_FEATURES = 1 << 27
"""Feature values a statistics file may hold: 65,536 images of 2,048 features is 1 GiB of float64."""


def load_reference_statistics(path: str | Path) -> tuple[Reference, int]:
    """A Reference holding the features of a statistics file (checked through the untrusted-file door: array
    types and sizes before loading, the ``about`` record's fields, finite values), and the image size they were
    taken at."""
    what = "ganzoo reference statistics file"
    arrays = read_npz(path, what, {"features": ArraySpec("float64", 2, MAX_REFERENCE_FEATURES),
                                   "about": ArraySpec("str", 0, 1)})
    about = validated(parse_json(str(arrays["about"]), f"{path}: its 'about' record"), StatisticsAbout, str(path))
    if about.format != STATISTICS_FORMAT:
        raise GanzooError(f"{path} is not a {what} (format {about.format!r})")
    features = arrays["features"]
    if len(features) < 2 or not np.isfinite(features).all():
        raise GanzooError(f"{path} holds malformed features ({features.dtype} {features.shape}, finite: "
                          f"{bool(np.isfinite(features).all())})")
    data = ImageData(about.reference or str(path), np.zeros((0, about.image_size, about.image_size, 3), np.uint8),
                     {}, about.reference_fingerprint)
    return Reference(data, len(features), about.seed, torch.from_numpy(features), about.extractor), about.image_size


def describe_difference(ours: Any, theirs: Any) -> str:
    """The first key on which two protocols differ, as ``key: a != b``."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key in sorted(set(ours) | set(theirs)):
            if ours.get(key) != theirs.get(key):
                return f"{key}: {ours.get(key)!r} != {theirs.get(key)!r}"
    return f"{ours!r} != {theirs!r}"


@dataclass
class ScoringPlan:
    """Metric plugins and the feature extractor they need (None when none needs one), each built once from its
    validated options, with the labels errors name them by."""

    metrics: dict[str, Metric]
    labels: dict[str, str]
    extractor: FeatureExtractor | None = None

    @property
    def needs_logits(self) -> bool:
        return any(m.needs_logits for m in self.metrics.values())

    def on(self, device: torch.device) -> ScoringPlan:
        """This plan with its extractor on ``device``, in eval mode."""
        if self.extractor is not None:
            self.extractor = self.extractor.to(device).eval()
        return self

    def check_counts(self, generated: int, real: int | None) -> None:
        """Refuse counts a metric cannot be computed from, naming the minimum."""
        for name, metric in self.metrics.items():
            if generated < metric.minimum_generated:
                raise GanzooError(f"{name} needs at least {metric.minimum_generated} generated images; the source "
                                  f"gives {generated}")
            if metric.needs_reference and real is not None and real < metric.minimum_real:
                raise GanzooError(f"{name} needs at least {metric.minimum_real} reference images; the reference "
                                  f"gives {real}")

    def warnings(self, generated: int, real: int | None) -> list[str]:
        """What scores from this few images cannot tell, from every metric."""
        features = self.extractor.num_features if self.extractor is not None else None
        return [warning for name, metric in self.metrics.items()
                for warning in self.blamed(name, "failed to say what its counts mean",
                                           lambda m=metric: m.warnings(generated, real, features))]

    def blamed(self, name: str, doing: str, call):
        with blame(self.labels[name], doing):
            return call()


def plan_scoring(metric_names: Iterable[str] | None, extractor_name: str | None, options: Mapping[str, Any],
                 registry: Registry) -> ScoringPlan:
    """The named metrics (the default metric when none) and, if one needs features or logits, the named feature
    extractor (the default one when None), built from ``options``."""
    names = list(dict.fromkeys(metric_names or [registry.default("metric").name]))
    metrics = {name: registry.create("metric", name, options.get(name)) for name in names}
    labels = {name: registry.get("metric", name).label for name in names}
    extractor = None
    if any(m.needs_features or m.needs_logits for m in metrics.values()):
        extractor_name = extractor_name or registry.default("feature_extractor").name
        extractor = registry.create("feature_extractor", extractor_name, options.get(extractor_name))
        labels[extractor_name] = registry.get("feature_extractor", extractor_name).label
    return ScoringPlan(metrics, labels, extractor)


def library_version(name: str) -> str | None:
    try:
        return importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return None


def base_protocol(seed: int, image_size: int, device: torch.device) -> dict[str, Any]:
    return {"seed": seed, "image_size": image_size, "device": str(device), "ganzoo_version": ganzoo.__version__,
            "torchmetrics_version": library_version("torchmetrics")}


def evaluate(plan: ScoringPlan, count: int, seed: int, device: torch.device, sampler=None,
             source: ImageData | None = None, reference: Reference | None = None, progress: bool = True,
             ) -> tuple[dict, dict]:
    """Scores of every metric of ``plan`` and the protocol they were computed under. Generated images come from
    ``sampler`` (``count`` of them, seeded: anything with ``generate(count, seed, batch_size=)`` yielding uint8
    (B, 3, S, S) batches, and ``step``) or are drawn from ``source``; features are extracted once when some
    metric needs them; metrics that ask for pixels get both sides as uint8 (N, 3, S, S)."""
    metrics = plan.metrics.values()
    with_features = any(m.needs_features for m in metrics)
    with_images = any(m.needs_images for m in metrics)
    inputs = MetricInputs(count=count, seed=seed, sampler=sampler if any(m.needs_sampler for m in metrics) else None,
                          reference=reference.data if reference is not None else None)
    protocol: dict[str, Any] = {}
    if with_features or plan.needs_logits or with_images:
        if sampler is not None:
            batches, total = sampler.generate(count, seed, batch_size=BATCH), count
            protocol |= {"source_step": sampler.step, "quantisation": QUANTISATION}
        else:
            indices = pick(len(source.images), count, seed)
            batches, total = batches_of(source.images, indices), len(indices)
            protocol |= {"source_fingerprint": source.fingerprint, "quantisation": "uint8 source images"}
        if with_images:
            batches = list(batches)
            inputs.fake_images = torch.cat(batches)
        if with_features or plan.needs_logits:
            inputs.fake_features, inputs.fake_logits = extract(
                plan.extractor, batches, total, device, plan.needs_logits, desc="features generated" if sampler
                else f"features {source.name}", progress=progress, with_features=with_features)
            protocol |= {"extractor": plan.extractor.protocol}
        protocol |= {"generated_images": total}
        needing_reference = [m for m in metrics if m.needs_reference]
        if with_features and any(m.needs_features for m in needing_reference):
            inputs.real_features = reference.features(plan.extractor, device, progress=progress)
        if with_images and any(m.needs_images for m in needing_reference):
            if reference.stored is not None:
                raise GanzooError("a metric here compares pixels, and reference statistics hold features only; "
                                  "give the reference's images")
            inputs.real_images = torch.cat(list(batches_of(reference.data.images, reference.indices)))
        if needing_reference:
            protocol |= {"reference_fingerprint": reference.data.fingerprint, "real_images": reference.size}
    scores: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for name, metric in plan.metrics.items():
        started = time.perf_counter()
        with tqdm(total=1, desc=f"metric {name}", unit="metric", disable=not progress) as bar:
            result, settings = plan.blamed(name, "failed", lambda m=metric: (m.compute(inputs), m.protocol(inputs)))
            bar.update(1)
        seconds[name] = round(time.perf_counter() - started, 3)
        if not isinstance(result, dict) or not isinstance(settings, dict):
            raise GanzooError(f"{plan.labels[name]} broke its promise: compute and protocol must return dicts")
        check_scores(result, plan.labels[name])
        clash = set(result) & set(scores)
        if clash:
            raise GanzooError(f"{plan.labels[name]} returns a score named {sorted(clash)[0]!r}, which another metric "
                              "returns too")
        scores |= result
        protocol |= settings
    return scores, protocol | {"metric_seconds": seconds}


def check_scores(scores: dict, label: str, prefix: str = "") -> None:
    """A metric's promise: scores by name, each a finite number or a table (a dict) of them."""
    for name, value in scores.items():
        if not isinstance(name, str):
            raise GanzooError(f"{label} broke its promise: its scores are named by strings, not {name!r}")
        if isinstance(value, dict):
            check_scores(value, label, f"{prefix}{name}.")
        elif not finite(value):
            raise GanzooError(f"{label} broke its promise: its score {prefix}{name} is {value!r}, not a finite "
                              "number")


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
    """The evaluation during training: the plan's metrics of a sampler (the EMA generator's) against
    ``reference`` (the training data or a held-out split), every ``evaluation.every`` steps.

    Uses its own seeded random generators, so evaluating never changes the training run's randomness. The
    protocol is written to ``eval_protocol.json`` in the run folder, and reference features are extracted (or
    read from the cache) before training starts.
    """

    def __init__(self, plan: ScoringPlan, images: int, seed: int, reference: ImageData, reference_name: str,
                 image_size: int, device: torch.device, run_dir: Path, progress: bool):
        self.plan, self.images, self.seed, self.device = plan.on(device), images, seed, device
        self.reference = Reference(data=reference, count=images, seed=seed)
        plan.check_counts(images, self.reference.size)
        if plan.extractor is not None and any(m.needs_reference for m in plan.metrics.values()):
            self.reference.features(plan.extractor, device, progress=progress)
        self.protocol = base_protocol(seed, image_size, device) | {
            "metrics": list(plan.metrics), "reference": reference_name,
            "reference_fingerprint": reference.fingerprint, "real_images": self.reference.size,
            "generated_images": images, "extractor": plan.extractor.protocol if plan.extractor else None,
            "quantisation": QUANTISATION}
        write_atomically(run_dir / "eval_protocol.json", json.dumps(self.protocol, indent=1))

    def __call__(self, sampler) -> dict[str, float]:
        """The scores of the images ``sampler`` generates, as ``eval/NAME`` values."""
        scores, _ = evaluate(self.plan, self.images, self.seed + 1, self.device, sampler=sampler,
                             reference=self.reference, progress=False)
        return flatten_scores(scores, "eval")
