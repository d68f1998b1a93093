"""ganzoo's built-in metrics, as metric plugins: ``fid``, ``kid``, ``is``, ``pr`` and ``cond``.

FID, KID and IS are computed by torchmetrics from the features (or logits) the harness extracted, in float64;
``pr`` (improved precision and recall, Kynkaanniemi et al. 2019) by torch-fidelity on the same features;
``cond`` generates covers for requested conditions and measures the features back with the reference
dataset's measuring function. torchmetrics is imported when a score is computed, not when plugins load, so that
every command starts without it.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ganzoo import GanzooError, ImageData, Metric, MetricInputs, hookimpl

STANDARD_KID_SUBSET = 1000
STANDARD_PR_IMAGES = 1000


class _Precomputed(nn.Module):
    """Lets torchmetrics accumulate features the harness already extracted."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID between two feature sets (N, F), by torchmetrics in float64."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=_Precomputed(real.shape[1]))
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return float(metric.compute())


def kernel_distance(real: torch.Tensor, fake: torch.Tensor, seed: int, subsets: int = 100,
                    subset_size: int = STANDARD_KID_SUBSET) -> tuple[float, float, int]:
    """KID (mean, std over subsets, subset size) by torchmetrics; subsets drawn with ``seed``."""
    from torchmetrics.image.kid import KernelInceptionDistance

    subset = min(subset_size, len(real), len(fake))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features")  # that is the intent
        metric = KernelInceptionDistance(feature=_Precomputed(real.shape[1]), subsets=subsets, subset_size=subset)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std), subset


def precision_recall(real: torch.Tensor, fake: torch.Tensor, neighbourhood: int = 3) -> tuple[float, float]:
    """Improved precision and recall by torch-fidelity, on the given features, with k nearest neighbours."""
    from torch_fidelity.metric_prc import prc_features_to_metric

    result = prc_features_to_metric(fake.float(), real.float(), prc_neighborhood=neighbourhood,
                                    save_cpu_ram=False, verbose=False)
    return result["precision"], result["recall"]


def inception_score(logits: torch.Tensor, seed: int, splits: int = 10) -> tuple[float, float]:
    from torchmetrics.image.inception import InceptionScore

    metric = InceptionScore(feature=_Precomputed(logits.shape[1]), splits=splits)
    metric.update(logits.double())
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def condition_fidelity(sampler, count: int, seed: int, data: ImageData) -> dict[str, dict[str, float]]:
    """Per feature ``data`` can measure: rank correlation and R^2 between the values requested (random rows of
    ``data``, the reference) and the values measured back from covers generated for them. An unconditional
    generator ignores its requests, which gives the chance baseline."""
    if data.measure is None:
        raise GanzooError(f"the cond metric needs a dataset that can measure features back from images; "
                          f"{data.name!r} cannot (synthcovers can)")
    from torchmetrics.functional import r2_score, spearman_corrcoef

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


def fewer_than_features(name: str, generated: int, real: int | None, num_features: int | None) -> list[str]:
    if real is None or num_features is None or min(generated, real) >= num_features:
        return []
    return [f"{name} from {generated} generated and {real} real images (fewer than the extractor's {num_features} "
            "features) is dominated by the sample size: compare it only with scores of the same counts "
            "(published FIDs use 50,000 generated images)"]


class FID(Metric):
    primary = "fid"

    def compute(self, inputs: MetricInputs) -> dict:
        return {"fid": frechet_distance(inputs.real_features, inputs.fake_features)}

    def warnings(self, generated, real, num_features):
        return fewer_than_features("FID", generated, real, num_features)


class KIDOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subsets: int = Field(100, gt=0, description="random subsets the mean and spread are taken over")
    subset_size: int = Field(STANDARD_KID_SUBSET, ge=2, description="images per subset (fewer if either side has "
                                                                    "fewer)")


class KID(Metric):
    primary = "kid_mean"

    def __init__(self, options: KIDOptions):
        self.options = options

    def compute(self, inputs: MetricInputs) -> dict:
        mean, std, self.subset = kernel_distance(inputs.real_features, inputs.fake_features, inputs.seed,
                                                 self.options.subsets, self.options.subset_size)
        return {"kid_mean": mean, "kid_std": std}

    def protocol(self, inputs: MetricInputs) -> dict:
        return {"kid_subsets": self.options.subsets, "kid_subset_size": self.subset}

    def warnings(self, generated, real, num_features):
        subset = min(generated, real, self.options.subset_size)
        if subset >= self.options.subset_size:
            return []
        same = " every subset is the whole set, so kid_std is 0 and says nothing;" if generated == real else ""
        return [f"KID from subsets of {subset} images instead of {self.options.subset_size}:{same} use at least "
                f"{self.options.subset_size} images on each side"]


class ISOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    splits: int = Field(10, gt=0, description="splits the score's mean and spread are taken over")


class InceptionScoreMetric(Metric):
    needs_features = False
    needs_reference = False
    needs_logits = True
    minimum_real = 0
    primary = "is_mean"
    lower_is_better = False

    def __init__(self, options: ISOptions):
        self.options = options
        self.minimum_generated = options.splits

    def compute(self, inputs: MetricInputs) -> dict:
        mean, std = inception_score(inputs.fake_logits, inputs.seed, self.options.splits)
        return {"is_mean": mean, "is_std": std}

    def protocol(self, inputs: MetricInputs) -> dict:
        return {"is_splits": self.options.splits}


class PROptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    neighbourhood: int = Field(3, gt=0, description="k of the k-nearest-neighbour manifolds (the paper's 3)")


class PrecisionRecall(Metric):
    primary = "precision"
    lower_is_better = False

    def __init__(self, options: PROptions):
        self.options = options
        self.minimum_generated = self.minimum_real = options.neighbourhood + 1

    def compute(self, inputs: MetricInputs) -> dict:
        precision, recall = precision_recall(inputs.real_features, inputs.fake_features, self.options.neighbourhood)
        return {"precision": precision, "recall": recall}

    def protocol(self, inputs: MetricInputs) -> dict:
        return {"pr_neighbourhood": self.options.neighbourhood}

    def warnings(self, generated, real, num_features):
        if min(generated, real) >= STANDARD_PR_IMAGES:
            return []
        return [f"precision and recall from {min(generated, real)} images per side are noisy (the paper uses "
                "50,000)"]


class ConditionFidelity(Metric):
    """Rank correlation and R^2 between requested and measured-back features."""

    needs_features = False
    needs_sampler = True
    minimum_real = 0
    primary = "cond"

    def compute(self, inputs: MetricInputs) -> dict:
        return {"cond": condition_fidelity(inputs.sampler, inputs.count, inputs.seed, inputs.reference)}

    def protocol(self, inputs: MetricInputs) -> dict:
        ignored = "" if inputs.sampler.conditions else ", ignored by this unconditional checkpoint (chance level)"
        return {"cond_requests": f"random rows of the reference {inputs.reference.name}{ignored}",
                "cond_images": inputs.count}


@hookimpl
def register_metrics(register):
    register("fid", lambda options: FID(), default=True,
             description="Frechet Inception distance (Heusel et al. 2017)")
    register("kid", KID, options=KIDOptions, description="kernel Inception distance (Binkowski et al. 2018)")
    register("is", InceptionScoreMetric, options=ISOptions,
             description="Inception Score (Salimans et al. 2016); needs the extractor's classifier")
    register("pr", PrecisionRecall, options=PROptions,
             description="improved precision and recall (Kynkaanniemi et al. 2019)")
    register("cond", lambda options: ConditionFidelity(),
             description="whether covers follow their conditions (a checkpoint and a measurable dataset)")
