"""Sample-quality metrics (FID, KID, IS) and condition fidelity, each score stored with its full protocol.

Scores are computed by torchmetrics from features that a registered feature extractor produces; reference
features are cached on disk by reference fingerprint, extractor protocol, image count and seed.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from torch import nn
from torchmetrics.functional import r2_score, spearman_corrcoef
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance
from tqdm import tqdm

import ganzoo
from ganzoo.config import DataConfig, cache_root
from ganzoo.data.sources import open_dataset
from ganzoo.errors import GanzooError
from ganzoo.interfaces import FeatureExtractor, ImageData
from ganzoo.plugins import Registry, get_registry
from ganzoo.sampling import Sampler, load_sampler

METRICS = ("fid", "kid", "is", "pr", "cond")
PR_NEIGHBOURHOOD = 3
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
IS_SPLITS = 10
QUANTISATION = "generated images rounded to uint8: round((x + 1) * 127.5), ganzoo.sampling.to_uint8"
PROTOCOL_KEYS = ("real_images", "generated_images", "extractor", "image_size", "reference_fingerprint",
                 "quantisation")


class _Precomputed(nn.Module):
    """Lets torchmetrics accumulate features the harness already extracted."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID between two feature sets (N, F), by torchmetrics in float64."""
    metric = FrechetInceptionDistance(feature=_Precomputed(real.shape[1]))
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return float(metric.compute())


def kernel_distance(real: torch.Tensor, fake: torch.Tensor, seed: int) -> tuple[float, float, int]:
    """KID (mean, std over subsets, subset size) by torchmetrics; subsets drawn with ``seed``."""
    subset = min(KID_SUBSET_SIZE, len(real), len(fake))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features")  # that is the intent
        metric = KernelInceptionDistance(feature=_Precomputed(real.shape[1]), subsets=KID_SUBSETS,
                                         subset_size=subset)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std), subset


def precision_recall(real: torch.Tensor, fake: torch.Tensor) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) by torch-fidelity, on the given features,
    with k = PR_NEIGHBOURHOOD nearest neighbours."""
    from torch_fidelity.metric_prc import prc_features_to_metric

    result = prc_features_to_metric(fake.float(), real.float(), prc_neighborhood=PR_NEIGHBOURHOOD,
                                    save_cpu_ram=False, verbose=False)
    return result["precision"], result["recall"]


def inception_score(logits: torch.Tensor, seed: int) -> tuple[float, float]:
    metric = InceptionScore(feature=_Precomputed(logits.shape[1]), splits=IS_SPLITS)
    metric.update(logits.double())
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def extract(extractor: FeatureExtractor, batches: Iterable[torch.Tensor], total: int, device: torch.device,
            with_logits: bool, desc: str, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Features (and logits) of uint8 image batches (B, 3, S, S), batched on ``device`` without gradients."""
    features, logits = [], []
    with torch.inference_mode(), tqdm(total=total, desc=desc, unit="img", disable=not progress) as bar:
        for batch in batches:
            batch = batch.to(device, non_blocking=True)
            features.append(extractor(batch).double().cpu())
            if with_logits:
                logits.append(extractor.logits(batch).double().cpu())
            bar.update(len(batch))
    return torch.cat(features), (torch.cat(logits) if with_logits else None)


def batches_of(images: np.ndarray, indices: np.ndarray, batch_size: int) -> Iterator[torch.Tensor]:
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

    def features(self, extractor: FeatureExtractor, device: torch.device, with_logits: bool = False,
                 progress: bool = True) -> torch.Tensor:
        indices = pick(len(self.data.images), self.count, self.seed)
        key = hashlib.sha256(json.dumps([self.data.fingerprint, extractor.protocol, len(indices), self.seed],
                                        sort_keys=True).encode()).hexdigest()[:24]
        path = cache_dir() / f"{self.data.name}-{key}.pt"
        if path.is_file():
            return torch.load(path, weights_only=True)["features"]
        features, _ = extract(extractor, batches_of(self.data.images, indices, 64), len(indices), device,
                              with_logits=False, desc=f"features {self.data.name}", progress=progress)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        torch.save({"features": features}, temporary)
        os.replace(temporary, path)
        return features


def open_reference(name: str, image_size: int, count: int, seed: int, registry: Registry) -> Reference:
    """A dataset plugin (synthesised with ``count`` images), a prepared store or an image folder."""
    data = open_dataset(DataConfig(name=name, image_size=image_size, count=count, seed=seed), registry)
    return Reference(data=data, count=count, seed=seed)


def build_extractor(name: str, options: dict, registry: Registry, device: torch.device) -> FeatureExtractor:
    return registry.get("feature_extractor", name).factory(options).to(device).eval()


def condition_fidelity(sampler, count: int, seed: int, data: ImageData) -> dict[str, dict[str, float]]:
    """Per feature ``data`` can measure: rank correlation and R^2 between the values requested (random rows of
    ``data``) and the values measured back from covers generated for them. An unconditional generator ignores
    its requests, which gives the chance baseline."""
    if data.measure is None:
        raise GanzooError(f"the cond metric needs a dataset that can measure features back from images; "
                          f"{data.name!r} cannot (synthcovers can)")
    requested = data.random_rows(count, seed + 1)
    images = torch.cat(list(sampler.generate(count, seed, rows=requested if sampler.conditions else None)))
    measured = data.measure(images.permute(0, 2, 3, 1).numpy())
    result = {}
    for feature, values in measured.items():
        target = torch.as_tensor(np.asarray(requested[feature], dtype=np.float64))
        estimate = torch.as_tensor(np.asarray(values, dtype=np.float64))
        result[feature] = {"spearman": float(spearman_corrcoef(estimate, target)),
                           "r2": float(r2_score(estimate, target))}
    return result


def library_version(name: str) -> str | None:
    try:
        return importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return None


MINIMUM_IMAGES = {"fid": (2, 2), "kid": (2, 2), "pr": (PR_NEIGHBOURHOOD + 1, PR_NEIGHBOURHOOD + 1),
                  "is": (IS_SPLITS, 0), "cond": (2, 0)}
"""Per metric, the fewest (generated, real) images it can be computed from at all."""
GENERATION_BATCH = 64


def check_counts(metrics: tuple[str, ...], generated: int, real: int | None) -> None:
    """Refuse counts a metric cannot be computed from, naming the minimum."""
    for metric in metrics:
        least_generated, least_real = MINIMUM_IMAGES[metric]
        if generated < least_generated:
            raise GanzooError(f"{metric} needs at least {least_generated} generated images; the source gives "
                              f"{generated}")
        if real is not None and least_real and real < least_real:
            raise GanzooError(f"{metric} needs at least {least_real} reference images; the reference gives {real}")


def small_sample_warnings(metrics: tuple[str, ...], generated: int, real: int | None, num_features: int) -> list[str]:
    """What a score computed from this few images cannot tell."""
    warnings_ = []
    if "fid" in metrics and min(generated, real) < num_features:
        warnings_.append(f"FID from {generated} generated and {real} real images (fewer than the extractor's "
                         f"{num_features} features) is dominated by the sample size: compare it only with FIDs of "
                         "the same counts (published FIDs use 50,000 generated images)")
    if "kid" in metrics and min(generated, real) < KID_SUBSET_SIZE:
        subset = min(generated, real)
        same = " every subset is the whole set, so kid_std is 0 and says nothing;" if generated == real else ""
        warnings_.append(f"KID from subsets of {subset} images instead of {KID_SUBSET_SIZE}:{same} use at least "
                         f"{KID_SUBSET_SIZE} images on each side")
    if "pr" in metrics and min(generated, real) < 1000:
        warnings_.append(f"precision and recall from {min(generated, real)} images per side are noisy (the paper "
                         "uses 50,000)")
    return warnings_


def run_bench(source: str, metrics: tuple[str, ...], ref: str, generated: int, real: int, seed: int,
              extractor_name: str, extractor_options: dict, device: torch.device, image_size: int | None = None,
              registry: Registry | None = None, progress: bool = True) -> dict[str, Any]:
    """Score ``source`` (a checkpoint, run folder, store, image folder or dataset name) against ``ref``.

    Everything that can be checked is checked before images are generated or features extracted: metric
    names, the reference, image counts against each metric's minimum. Scores from too few images to mean
    anything come with warnings in ``protocol["warnings"]``.
    """
    registry = registry or get_registry()
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise GanzooError(f"unknown metric {unknown[0]!r} (choose from {', '.join(METRICS)})")
    source_path = Path(source)
    is_checkpoint = source_path.is_file() or (source_path / "checkpoint.pt").is_file()
    sampler = load_sampler(source, device, registry) if is_checkpoint else None
    size = sampler.image_size if sampler else (image_size or 64)
    scores: dict[str, Any] = {}
    protocol: dict[str, Any] = {"source": str(source), "seed": seed, "image_size": size, "device": str(device),
                                "ganzoo_version": ganzoo.__version__,
                                "torchmetrics_version": library_version("torchmetrics")}
    sample_metrics = tuple(m for m in metrics if m != "cond")
    needs_reference = bool({"fid", "kid", "pr"} & set(metrics)) or ("cond" in metrics and sampler is not None
                                                                     and not sampler.conditions)
    reference = open_reference(ref, size, real, seed, registry) if needs_reference else None
    real_count = min(real, len(reference.data.images)) if reference else None
    source_data = None
    if sampler is None:
        if "cond" in metrics:
            raise GanzooError("the cond metric needs a checkpoint: it generates covers for requested features")
        source_data = open_dataset(DataConfig(name=source, image_size=size, count=generated, seed=seed), registry)
        generated = min(generated, len(source_data.images))
    check_counts(metrics, generated, real_count if {"fid", "kid", "pr"} & set(metrics) else None)
    warnings_: list[str] = []

    if "cond" in metrics:
        if sampler.conditions:
            if sampler.data is None:
                raise GanzooError("the cond metric asks for the conditions of training rows, and this "
                                  "checkpoint's training data is not available")
            requests, protocol["cond_requests"] = sampler.data, "rows of the training data"
        else:
            requests = reference.data
            protocol["cond_requests"] = f"rows of {ref}, ignored by this unconditional checkpoint (chance level)"
        scores["cond"] = condition_fidelity(sampler, generated, seed, requests)
        protocol["cond_images"] = generated
    if not sample_metrics:
        return {"scores": scores, "protocol": protocol | {"warnings": warnings_}}

    extractor = build_extractor(extractor_name, extractor_options, registry, device)
    with_logits = "is" in sample_metrics
    if with_logits:  # fail before any extraction if the network has no classifier
        extractor.logits(torch.zeros(1, 3, size, size, dtype=torch.uint8, device=device))
    warnings_ += small_sample_warnings(sample_metrics, generated, real_count, extractor.num_features)
    if sampler:
        fake, logits = extract(extractor, sampler.generate(generated, seed, batch_size=GENERATION_BATCH), generated,
                               device, with_logits, desc="features generated", progress=progress)
        protocol |= {"source_step": sampler.step, "quantisation": QUANTISATION}
    else:
        indices = pick(len(source_data.images), generated, seed)
        fake, logits = extract(extractor, batches_of(source_data.images, indices, GENERATION_BATCH), len(indices),
                               device, with_logits, desc=f"features {source_data.name}", progress=progress)
        protocol |= {"source_fingerprint": source_data.fingerprint, "quantisation": "uint8 source images"}
    protocol |= {"generated_images": len(fake), "extractor": extractor.protocol}

    if "is" in sample_metrics:
        scores["is_mean"], scores["is_std"] = inception_score(logits, seed)
        protocol["is_splits"] = IS_SPLITS
    if {"fid", "kid", "pr"} & set(sample_metrics):
        real_features = reference.features(extractor, device, progress=progress)
        protocol |= {"reference": ref, "reference_fingerprint": reference.data.fingerprint,
                     "real_images": len(real_features)}
        if "fid" in sample_metrics:
            scores["fid"] = frechet_distance(real_features, fake)
        if "kid" in sample_metrics:
            scores["kid_mean"], scores["kid_std"], protocol["kid_subset_size"] = kernel_distance(
                real_features, fake, seed)
            protocol["kid_subsets"] = KID_SUBSETS
        if "pr" in sample_metrics:
            scores["precision"], scores["recall"] = precision_recall(real_features, fake)
            protocol["pr_neighbourhood"] = PR_NEIGHBOURHOOD
    return {"scores": scores, "protocol": protocol | {"warnings": warnings_}}


class TrainingEvaluator:
    """FID of the EMA generator against the training data, for ``eval_every`` during training.

    Uses its own seeded random generators, so evaluating never changes the training run's randomness.
    """

    def __init__(self, config, data: ImageData, registry: Registry, device: torch.device, run_dir: Path,
                 progress: bool):
        self.config, self.data, self.device, self.progress = config, data, device, progress
        self.extractor = build_extractor(config.eval_extractor, config.options.get(config.eval_extractor, {}),
                                         registry, device)
        self.reference = Reference(data=data, count=config.eval_images, seed=config.seed)
        self.real = self.reference.features(self.extractor, device, progress=progress)
        self.protocol = {"metric": "fid", "real_images": len(self.real), "generated_images": config.eval_images,
                         "extractor": self.extractor.protocol, "image_size": config.data.image_size,
                         "reference": config.data.name, "reference_fingerprint": data.fingerprint,
                         "quantisation": QUANTISATION, "seed": config.seed, "device": str(device),
                         "ganzoo_version": ganzoo.__version__,
                         "torchmetrics_version": library_version("torchmetrics")}
        (run_dir / "eval_protocol.json").write_text(json.dumps(self.protocol, indent=1))

    def __call__(self, generator, conditions) -> dict[str, float]:
        """FID of ``generator`` (conditioned on random training rows through ``conditions``, if any)."""
        sampler = Sampler(generator, self.config, conditions, self.data, self.device)
        count = self.config.eval_images
        fake, _ = extract(self.extractor, sampler.generate(count, seed=self.config.seed + 1), count, self.device,
                          False, "eval", progress=False)
        return {"eval/fid": frechet_distance(self.real, fake)}


@dataclass
class RunScores:
    """One training run's evaluated metric over steps, with the protocol it was measured under."""

    run: str
    recipe: str
    steps: list[int]
    values: list[float]
    protocol: dict[str, Any]


def read_run_scores(run_dir: str | Path, metric: str) -> RunScores:
    run_dir = Path(run_dir)
    try:
        config = json.loads((run_dir / "config.json").read_text())
        protocol = json.loads((run_dir / "eval_protocol.json").read_text())
        lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    except FileNotFoundError as error:
        raise GanzooError(f"{run_dir} has no {Path(error.filename).name}: train it with --set eval_every=N "
                          "to record scores") from None
    except ValueError as error:
        raise GanzooError(f"{run_dir}: unreadable run files ({error})") from None
    key = f"eval/{metric}"
    points = [(line["step"], line[key]) for line in lines if key in line]
    if not points:
        raise GanzooError(f"{run_dir} recorded no {metric} scores")
    return RunScores(run=str(run_dir), recipe=config.get("recipe", "?"), steps=[s for s, _ in points],
                     values=[v for _, v in points], protocol=protocol)


def protocol_differences(runs: list[RunScores]) -> list[str]:
    """Protocol fields (of PROTOCOL_KEYS) on which the runs disagree."""
    return [key for key in PROTOCOL_KEYS
            if len({json.dumps(r.protocol.get(key), sort_keys=True) for r in runs}) > 1]


def leaderboard(runs: list[RunScores], metric: str, allow_mixed_protocols: bool = False) -> str:
    """A markdown table ranking runs by their best (lowest) score."""
    differing = protocol_differences(runs)
    if differing and not allow_mixed_protocols:
        raise GanzooError(f"the runs' {metric} scores were measured under different protocols "
                          f"({', '.join(differing)} differ); they are not comparable. Pass "
                          "--allow-mixed-protocols to list them anyway")
    ranked = sorted(runs, key=lambda r: min(r.values))
    lines = [f"| rank | run | recipe | best {metric} | at step | last {metric} | last step |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for rank, r in enumerate(ranked, 1):
        best = int(np.argmin(r.values))
        lines.append(f"| {rank} | {r.run} | {r.recipe} | {r.values[best]:.2f} | {r.steps[best]} | "
                     f"{r.values[-1]:.2f} | {r.steps[-1]} |")
    if differing:
        lines.append(f"\nWarning: protocols differ in {', '.join(differing)}; scores are not comparable.")
    return "\n".join(lines)
