"""The contracts between the engine and plugins. A plugin implements one of these by reading its docstring.

Shapes: images are float tensors (B, C, S, S) in [-1, 1]; latents ``z`` are (B, latent_dim); conditions ``c`` are
(B, condition_dim) float tensors, or ``None`` for an unconditional model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Literal, Mapping

import numpy as np
import torch
from torch import nn

from ganzoo.errors import GanzooError

Metadata = dict[str, np.ndarray]
"""A metadata table: column name -> array with one entry per image."""


@dataclass(frozen=True)
class ArchitectureSpec:
    """What the engine asks an architecture factory to build.

    ``aux_outputs`` names the auxiliary outputs the critic must return (name -> width), requested by auxiliary
    objectives such as ACGAN. ``critic_batchnorm`` is False when the loss forbids batch statistics in the critic
    (a gradient penalty is per sample, so Gulrajani et al. remove batch norm from the critic).
    """

    image_size: int
    latent_dim: int
    channels: int = 3
    condition_dim: int = 0
    aux_outputs: dict[str, int] = field(default_factory=dict)
    critic_batchnorm: bool = True

    def __post_init__(self):
        for name, least in (("image_size", 1), ("latent_dim", 1), ("channels", 1), ("condition_dim", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"{name} must be a whole number of at least {least}, not {value!r}")
        if not isinstance(self.aux_outputs, dict) or not all(
                isinstance(k, str) and isinstance(v, int) and v > 0 for k, v in self.aux_outputs.items()):
            raise ValueError("aux_outputs must map names to positive widths")
        if not isinstance(self.critic_batchnorm, bool):
            raise ValueError("critic_batchnorm must be true or false")


class Generator(nn.Module):
    """``G(z, c) -> images in [-1, 1]`` of shape (B, channels, image_size, image_size)."""

    latent_dim: int

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError


@dataclass
class CriticOutput:
    """The critic's verdict: ``score`` (B,) for the adversarial loss, ``aux`` the named auxiliary outputs."""

    score: torch.Tensor
    aux: dict[str, torch.Tensor] = field(default_factory=dict)


class Critic(nn.Module):
    """``D(x, c) -> CriticOutput``: one adversarial score per image plus the auxiliary outputs of its spec."""

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> CriticOutput:
        raise NotImplementedError


Terms = dict[str, torch.Tensor]
"""Named scalar loss terms. The engine sums them, backpropagates the sum and logs each term by name."""


class AdversarialLoss(ABC):
    """An adversarial objective: the critic and generator terms plus the optimisers it was designed with.

    ``n_critic`` critic steps run per generator step. Set ``allows_critic_batchnorm`` to False when a term
    (such as a gradient penalty) must see each sample independently.
    """

    n_critic: int = 1
    allows_critic_batchnorm: bool = True

    @abstractmethod
    def optimisers(self, generator: Generator, critic: Critic) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        """Return (generator optimiser, critic optimiser)."""

    @abstractmethod
    def critic_terms(self, critic: Critic, real: torch.Tensor, fake: torch.Tensor, condition: torch.Tensor | None,
                     real_out: CriticOutput, fake_out: CriticOutput) -> Terms:
        """Terms the critic minimises. ``fake`` is detached; ``critic`` may be called again (regularisers)."""

    @abstractmethod
    def generator_terms(self, fake_out: CriticOutput) -> Terms:
        """Terms the generator minimises, from the critic's verdict on generated images."""


class LatentOptimiser(ABC):
    """Moves latents before they are used, as LOGAN does. ``applies_to`` names the phases that use the result:
    a subset of {"critic", "generator"}."""

    applies_to: frozenset[str] = frozenset({"critic", "generator"})

    @abstractmethod
    def optimise(self, z: torch.Tensor, condition: torch.Tensor | None, generator: Generator, critic: Critic,
                 ) -> torch.Tensor:
        """Return the new latents, detached: no gradient may reach G or D through this step."""


class Auxiliary(ABC):
    """An auxiliary objective on named critic outputs (an ACGAN head, for example)."""

    @abstractmethod
    def outputs(self, conditions: Mapping[str, Condition]) -> dict[str, int]:
        """The auxiliary critic outputs this objective needs: name -> width. Called once when the model is built,
        with the run's conditions by name, in the order their encodings are concatenated."""

    @abstractmethod
    def critic_terms(self, real_out: CriticOutput, real_condition: torch.Tensor | None) -> Terms:
        """Terms the critic minimises, computed on real images and their conditions."""

    @abstractmethod
    def generator_terms(self, fake_out: CriticOutput, condition: torch.Tensor | None) -> Terms:
        """Terms the generator minimises for images generated with ``condition``."""


class Condition(ABC):
    """Turns metadata into a conditioning vector. ``fit`` learns from the training table (vocabulary,
    normalisation); ``encode`` maps rows to a (B, dim) float tensor; ``describe`` is one line for the CLI.

    ``kind`` is "continuous" (``dim`` real values) or "categorical" (a one-hot over ``dim`` classes, all zeros
    where the value is missing or unknown). ``columns`` names the metadata columns it reads, after ``fit``.
    """

    dim: int
    kind: Literal["continuous", "categorical"] = "continuous"
    columns: tuple[str, ...] = ()

    @abstractmethod
    def fit(self, metadata: Metadata) -> None:
        """Learn whatever the encoding needs from the whole training table."""

    @abstractmethod
    def encode(self, metadata: Metadata) -> torch.Tensor:
        """Encode rows (all columns sliced alike) to a float tensor (rows, dim)."""

    @abstractmethod
    def describe(self) -> str:
        """One line saying what this condition encodes."""

    def state(self) -> dict | None:
        """What ``fit`` learnt, as plain data (numbers, strings, lists), kept in checkpoints so that sampling
        needs no training data; None (the default) when the condition cannot be restored that way."""
        return None

    def load_state(self, state: dict) -> None:
        """Restore what ``state`` returned, in place of ``fit``."""
        raise NotImplementedError(f"{type(self).__name__} keeps no state")

    def unit(self, column: str) -> str:
        """The unit values of ``column`` are in, for display ("BPM", "dB"); empty when unitless."""
        return ""

    def parse(self, column: str, text: str):
        """A value asked for on the command line for one of ``columns``; raises GanzooError naming the valid
        values or range when ``text`` is not one."""
        try:
            return float(text)
        except ValueError:
            raise GanzooError(f"{column} must be a number, not {text!r}") from None


class FeatureExtractor(nn.Module):
    """Image features for metrics: ``forward(images)`` maps uint8 images (B, 3, H, W) to float features
    (B, num_features); it resizes and normalises as its network requires.

    ``protocol`` describes what a score depends on (network, weights hash, input size, resize method) and is
    recorded beside every score. ``logits`` gives classifier logits for the Inception Score where the network
    has a classifier; the default raises a GanzooError saying so.
    """

    num_features: int
    protocol: dict

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        raise GanzooError(f"feature extractor {self.protocol.get('extractor', type(self).__name__)!r} has no "
                          "classifier, so it cannot compute the Inception Score")


@dataclass
class ImageData:
    """A dataset: uint8 images (N, S, S, 3), possibly memory-mapped or sharded, and a metadata table with N rows.

    ``fingerprint`` identifies the content (used in run folders and benchmark protocols). ``measure``, where the
    dataset has one, reads features back from uint8 images (N, S, S, 3) as metadata-like columns: the ``cond``
    metric uses it to score whether generated covers follow the conditions they were given.
    """

    name: str
    images: np.ndarray
    metadata: Metadata
    fingerprint: str
    measure: Callable[[np.ndarray], dict[str, np.ndarray]] | None = None
    population: Metadata | None = None
    """Set when the rows are one DDP rank's shards of a sharded store: the whole store's metadata table, which
    conditions are fitted on so that every rank encodes them alike. Each rank samples its own rows."""

    def __post_init__(self):
        if self.images.ndim != 4 or self.images.shape[3] != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"dataset {self.name!r}: images must be uint8 (N, S, S, 3), got "
                             f"{self.images.dtype} {self.images.shape}")
        for column, values in self.metadata.items():
            if len(values) != len(self.images):
                raise ValueError(f"dataset {self.name!r}: metadata column {column!r} has {len(values)} rows "
                                 f"for {len(self.images)} images")

    @property
    def fit_metadata(self) -> Metadata:
        """The table conditions are fitted on: the whole store's, also when the rows are one rank's shards."""
        return self.metadata if self.population is None else self.population

    def rows(self, indices) -> Metadata:
        """The metadata of the given image indices."""
        return {column: values[indices] for column, values in self.metadata.items()}

    def random_rows(self, count: int, seed: int) -> Metadata:
        """``count`` rows drawn at random with replacement (the columns' joint distribution), seeded."""
        generator = torch.Generator().manual_seed(seed)
        return self.rows(torch.randint(len(self.images), (count,), generator=generator).numpy())
