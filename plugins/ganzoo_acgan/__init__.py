"""ACGAN (Odena et al. 2017, arXiv 1610.09585) as an auxiliary objective: the critic gets one head per condition
and learns to predict the condition of real images; the generator is rewarded when the critic reads the
requested condition off its images.

Continuous conditions use mean squared error on their (standardised) values; categorical ones use
cross-entropy on the head's raw logits (``F.cross_entropy`` applies log-softmax itself: a softmax before it, as
in PyTorch-GAN's acgan, flattens the gradients). Rows whose category is missing (an all-zero one-hot) are left
out of the cross-entropy. With WGAN-GP the penalty concerns the adversarial score only; the critic's terms
here are computed on real images, so it never learns the labels of its own fakes.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from ganzoo import Auxiliary, Batch, Condition, CriticOutput, GanzooError, hookimpl


class ACGANOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weights: dict[str, float] = Field({}, description="weight of each condition's term, by condition name "
                                                      "(default 1.0)")


class ACGAN(Auxiliary):
    def __init__(self, options: ACGANOptions):
        self.weights = options.weights
        self.slots: list[tuple[str, str, int, int]] = []

    def outputs(self, conditions: Mapping[str, Condition]) -> dict[str, int]:
        if not conditions:
            raise GanzooError("acgan needs conditions to predict: set conditions, for example "
                              "conditions = [\"audio-features\"]")
        unknown = set(self.weights) - set(conditions)
        if unknown:
            raise GanzooError(f"invalid config: options.acgan.weights names {', '.join(sorted(unknown))}, not a "
                              f"condition of this run ({', '.join(conditions)})")
        start, self.slots = 0, []
        for name, condition in conditions.items():
            self.slots.append((name, condition.kind, start, condition.dim))
            start += condition.dim
        return {head_name(name): dim for name, _, _, dim in self.slots}

    def _terms(self, out: CriticOutput, condition: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = {}
        for name, kind, start, dim in self.slots:
            prediction = out.aux[head_name(name)].float()
            target = condition[:, start:start + dim].float()
            if kind == "categorical":
                labelled = target.sum(dim=1) > 0
                loss = (F.cross_entropy(prediction[labelled], target[labelled].argmax(dim=1)) if labelled.any()
                        else prediction.sum() * 0.0)
            else:
                loss = F.mse_loss(prediction, target)
            terms[head_name(name)] = self.weights.get(name, 1.0) * loss
        return terms

    def critic_terms(self, batch: Batch):
        """Learnt on real images and their conditions only."""
        return self._terms(batch.real_out, batch.condition)

    def generator_terms(self, batch: Batch):
        return self._terms(batch.fake_out, batch.condition)


def head_name(condition: str) -> str:
    return f"acgan_{condition}"


@hookimpl
def register_auxiliaries(register):
    register("acgan", ACGAN, options=ACGANOptions, description="ACGAN heads (Odena et al. 2017): the critic reads "
                                                               "each condition back")
