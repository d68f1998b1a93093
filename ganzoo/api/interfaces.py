"""The contracts between the engine and plugins. A plugin implements one of these by reading its docstring.

Shapes: images are float tensors (B, C, S, S) in [-1, 1]; latents ``z`` are (B, latent_dim); conditions ``c`` are
(B, condition_dim) float tensors, or ``None`` for an unconditional model.

Every recipe component (loss, latent optimiser, auxiliary, augmentation) may keep state: ``state_dict()``
returns it as tensors and plain data, and ``load_state_dict()`` restores it; checkpoints carry it, so a
stateful component resumes exactly. The defaults keep nothing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping

import numpy as np
import torch
from torch import nn

from ganzoo.api.errors import GanzooError

if TYPE_CHECKING:
    from PIL import Image

    from ganzoo.runtime.context import RunContext

Metadata = dict[str, np.ndarray]
"""A metadata table: column name -> array with one entry per image."""

Terms = dict[str, torch.Tensor]
"""Named scalar loss terms. The engine sums them, backpropagates the sum and logs each term by name."""


class Stateful:
    """State a component keeps between steps (a lazy regulariser's counter, an adaptive probability)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise GanzooError(f"{type(self).__name__} keeps no state, but the checkpoint holds some for it")


@dataclass(frozen=True)
class ArchitectureSpec:
    """What the engine asks an architecture to build.

    ``width`` is ``model.width``: the channels of the widest-resolution layer, the one size knob every
    architecture shares (architectures take no ``width`` option of their own). ``aux_outputs`` names the extra
    outputs the critic must return (name -> width), requested by auxiliary objectives such as ACGAN.
    ``critic_batchnorm`` is False when the loss forbids batch statistics in the critic (a gradient penalty is
    per sample, so Gulrajani et al. remove batch norm from the critic).
    """

    image_size: int
    latent_dim: int
    width: int = 64
    channels: int = 3
    condition_dim: int = 0
    aux_outputs: dict[str, int] = field(default_factory=dict)
    critic_batchnorm: bool = True

    def __post_init__(self):
        for name, least in (("image_size", 1), ("latent_dim", 1), ("width", 1), ("channels", 1),
                            ("condition_dim", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"{name} must be a whole number of at least {least}, not {value!r}")
        if not isinstance(self.aux_outputs, dict) or not all(
                isinstance(k, str) and isinstance(v, int) and v > 0 for k, v in self.aux_outputs.items()):
            raise ValueError("aux_outputs must map names to positive widths")
        if not isinstance(self.critic_batchnorm, bool):
            raise ValueError("critic_batchnorm must be true or false")


IMAGE_RANGE_TOLERANCE = 0.05
"""How far past [-1, 1] a bounded generator's images may reach on the first step before it is refused."""


class Generator(nn.Module):
    """``G(z, c) -> images in [-1, 1]`` of shape (B, channels, image_size, image_size)."""

    latent_dim: int

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError


class MappedGenerator(Generator):
    """A generator with an intermediate latent space W (StyleGAN's): ``forward(z, c)`` is
    ``synthesis(mapping(z, c))``, and ``w_average`` (a buffer) is the running mean of w over training. Truncation
    and interpolation then work in W, where they work best: truncation pulls w toward ``w_average``.
    ``synthesis`` takes w as (B, w_dim), or (B, layers, w_dim) for a w per layer (style mixing)."""

    w_average: torch.Tensor
    layers: int

    def mapping(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def synthesis(self, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class VectorGenerator(Generator):
    """A generator whose covers are shapes, not pixels: ``forward`` draws them at the image size (what the critic
    sees), ``draw`` at any size, ``svg`` as SVG documents, all from the same ``(z, c)``. generate, the studio and
    finished covers draw such a model's covers at the size asked for instead of enlarging them."""

    def draw(self, z: torch.Tensor, c: torch.Tensor | None, size: int) -> torch.Tensor:
        """Images in [-1, 1] of shape (B, channels, size, size)."""
        raise NotImplementedError

    def svg(self, z: torch.Tensor, c: torch.Tensor | None, size: int) -> list[str]:
        """One SVG document per cover, ``size`` x ``size`` px."""
        raise NotImplementedError


@dataclass
class CriticOutput:
    """The critic's verdict: ``score`` (B,) for the adversarial loss, ``aux`` the named extra outputs (B, width),
    and, for a critic that judges patches or scales apart (PatchGAN, Projected GAN), ``patches`` (B, K): one
    score per patch, whose mean is ``score``; losses that average their terms over patches read them through
    ``patch_scores``. The engine hands losses and auxiliaries these in float32, whatever precision the forward
    pass ran in."""

    score: torch.Tensor
    aux: dict[str, torch.Tensor] = field(default_factory=dict)
    patches: torch.Tensor | None = None

    def float(self) -> CriticOutput:
        return CriticOutput(self.score.float(), {name: value.float() for name, value in self.aux.items()},
                            self.patches.float() if self.patches is not None else None)

    def patch_scores(self) -> torch.Tensor:
        """(B, K) scores: the patches when the critic gives them, else the score as one patch (B, 1)."""
        return self.patches if self.patches is not None else self.score[:, None]


class Critic(nn.Module):
    """``D(x, c) -> CriticOutput``: one adversarial score per image plus the extra outputs of its spec.

    ``perceptual_features`` is optional: a critic built on a frozen pretrained network (the projected critic)
    returns that network's feature maps of images in [-1, 1], which ``ganzoo project`` compares covers by;
    a critic whose features were learnt in the game has none worth comparing (None).
    """

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> CriticOutput:
        raise NotImplementedError

    def perceptual_features(self, x: torch.Tensor) -> list[torch.Tensor] | None:
        """Frozen feature maps of ``x`` (differentiable with respect to it), or None."""
        return None


class Architecture(ABC):
    """A generator/critic pair and what it supports. The engine checks a run against ``image_sizes``,
    ``conditional`` and ``extra_outputs`` before building, and the built networks' outputs after.

    ``image_sizes``: the sizes it can build (any collection: a tuple, a ``range``). ``conditional``: whether the
    networks take conditions (if not, a run with conditions is refused). ``extra_outputs``: whether the critic
    can return the extra outputs auxiliaries ask for. ``bounded_output``: whether the generator's images lie in
    [-1, 1] (a final tanh), which the engine checks on the first training step (within ``IMAGE_RANGE_TOLERANCE``);
    a generator that ends without a squashing layer (R3GAN's) says False, and its samples are clamped.
    """

    image_sizes: Collection[int] = (32, 64, 128)
    conditional: bool = True
    extra_outputs: bool = True
    bounded_output: bool = True

    @abstractmethod
    def build(self, spec: ArchitectureSpec) -> tuple[Generator, Critic]:
        """A freshly initialised (generator, critic) for ``spec``."""

    def critic_blocks(self, critic: Critic) -> list[nn.Module]:
        """The critic's blocks from input to output, for freezing the first k when fine-tuning (FreezeD);
        the default has none, so freezing is refused."""
        return []


class CriticArchitecture(ABC):
    """A critic chosen apart from the generator (a recipe's ``critic`` kind): it replaces the critic of the
    recipe's architecture, whose generator it trains. ``image_sizes``, ``conditional`` and ``extra_outputs`` are
    checked as an architecture's are."""

    image_sizes: Collection[int] = (32, 64, 128)
    conditional: bool = True
    extra_outputs: bool = True

    @abstractmethod
    def build(self, spec: ArchitectureSpec) -> Critic:
        """A freshly initialised critic for ``spec``."""

    def critic_blocks(self, critic: Critic) -> list[nn.Module]:
        """The critic's trainable blocks from input to output, for freezing when fine-tuning (none by default)."""
        return []


@dataclass
class Batch:
    """What a phase hands every component: one record per critic or generator update.

    ``phase`` is "critic" or "generator". ``real`` and ``real_out`` are set in the critic phase, and in the
    generator phase when the loss asks for them (``AdversarialLoss.generator_needs_real``); ``fake`` is
    detached in the critic phase. ``condition`` conditions both (the generator phase's are the conditions the
    fakes were generated for). ``critic`` may be called again (regularisers); in the generator phase it is the
    critic with its parameters frozen, in train mode. ``generator``, in the generator phase, is the generator
    being trained (for regularisers that run it again: path length). ``step`` counts finished generator steps;
    ``iteration`` is the critic update within the step (0 in the generator phase).
    """

    phase: Literal["critic", "generator"]
    fake: torch.Tensor
    fake_out: CriticOutput
    condition: torch.Tensor | None
    critic: Callable[[torch.Tensor, torch.Tensor | None], CriticOutput]
    context: RunContext
    step: int
    iteration: int = 0
    real: torch.Tensor | None = None
    real_out: CriticOutput | None = None
    generator: Generator | None = None

    def per_sample_rand(self, *shape: int) -> torch.Tensor:
        """Uniform noise (B, *shape) for this batch's samples: the rows one process would draw for them, so
        data-parallel ranks draw alike (the gradient penalty's interpolation uses it)."""
        return self.context.per_sample_rand(self.fake.shape[0], *shape, device=self.fake.device,
                                            dtype=self.fake.dtype)


class AdversarialLoss(Stateful, ABC):
    """An adversarial objective: the critic and generator terms plus the optimisers it was designed with.

    ``n_critic`` critic updates run per generator update. ``allows_critic_batchnorm`` is False when a term
    (such as a gradient penalty) must see each sample independently. ``generator_needs_real`` asks for a real
    batch and its critic output in the generator phase (relativistic losses). ``critic_input_gradients`` makes
    the real and fake images of the critic phase require gradients before the critic sees them, so that R1/R2
    penalties can differentiate the same forward pass.
    """

    n_critic: int = 1
    allows_critic_batchnorm: bool = True
    generator_needs_real: bool = False
    critic_input_gradients: bool = False

    @abstractmethod
    def optimisers(self, generator: Generator, critic: Critic) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        """Return (generator optimiser, critic optimiser)."""

    @abstractmethod
    def critic_terms(self, batch: Batch) -> Terms:
        """Terms the critic minimises."""

    @abstractmethod
    def generator_terms(self, batch: Batch) -> Terms:
        """Terms the generator minimises."""

    def follow_schedule(self, images: int) -> None:
        """Called before every training step with the images the generator has made so far (all processes
        together: steps x batch x processes), for a loss whose settings follow a schedule (R3GAN's learning rate,
        beta2 and gamma). The default follows none."""


class LatentOptimiser(Stateful, ABC):
    """Moves latents before they are used, as LOGAN does. ``applies_to`` names the phases that use the result:
    a subset of {"critic", "generator"}."""

    applies_to: frozenset[str] = frozenset({"critic", "generator"})

    @abstractmethod
    def optimise(self, z: torch.Tensor, condition: torch.Tensor | None, generator: Generator, critic: Critic,
                 ) -> torch.Tensor:
        """Return the new latents, detached: no gradient may reach G or D through this step."""


class Auxiliary(Stateful, ABC):
    """An auxiliary objective on named extra critic outputs (an ACGAN head, for example)."""

    @abstractmethod
    def outputs(self, conditions: Mapping[str, Condition]) -> dict[str, int]:
        """The extra critic outputs this objective needs: name -> width. Called once when the model is built,
        with the run's conditions by name, in the order their encodings are concatenated."""

    @abstractmethod
    def critic_terms(self, batch: Batch) -> Terms:
        """Terms the critic minimises."""

    @abstractmethod
    def generator_terms(self, batch: Batch) -> Terms:
        """Terms the generator minimises."""


class Augmentation(Stateful, ABC):
    """A differentiable augmentation of every image batch the critic sees, real and fake alike, in both phases
    (gradients flow through it to the generator)."""

    @abstractmethod
    def augment(self, images: torch.Tensor) -> torch.Tensor:
        """The augmented batch, same shape; differentiable with respect to ``images``."""

    def observe(self, batch: Batch) -> None:
        """Called after every critic update with its record (ADA reads the overfitting signal here)."""

    def follow_schedule(self, images: int) -> None:
        """Called before every training step with the images the generator has made so far (all processes
        together), for an augmentation whose strength follows a schedule (R3GAN's fixed probability schedule).
        The default follows none."""

    def statistics(self) -> dict[str, float]:
        """Values to log beside the loss terms (ADA's probability)."""
        return {}


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


@dataclass
class ImageData:
    """Images and their metadata: uint8 images (N, S, S, 3), possibly memory-mapped or sharded, and a metadata
    table with N rows.

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
    preparation: dict | None = None
    """What preparing a folder of images into this data reported (files kept, dropped and fixed, by reason), when
    the data came from one."""

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
        return random_rows(self.metadata, count, seed) if self.metadata else {}


def random_rows(metadata: Metadata, count: int, seed: int) -> Metadata:
    """``count`` rows of a table drawn at random with replacement (the columns' joint distribution), seeded."""
    total = len(next(iter(metadata.values())))
    chosen = torch.randint(total, (count,), generator=torch.Generator().manual_seed(seed)).numpy()
    return {column: values[chosen] for column, values in metadata.items()}


class Dataset(ABC):
    """A dataset plugin: ``image_sizes`` it can give (None: any size), and ``load`` to make or read the images.

    ``load(image_size, wanted)``: ``wanted`` is how many images the caller would like (a benchmark's reference
    count), which a procedural dataset may honour and a fixed one ignores (None: its own default).
    ``memory(image_size, wanted)`` says how many bytes ``load`` will hold in memory, so the engine can refuse a
    dataset that cannot fit before it is made (None: unknown or memory-mapped).
    """

    image_sizes: Collection[int] | None = None

    @abstractmethod
    def load(self, image_size: int, wanted: int | None = None) -> ImageData:
        """The images at ``image_size`` px with their metadata."""

    def memory(self, image_size: int, wanted: int | None = None) -> int | None:
        return None


class FeatureExtractor(nn.Module):
    """Image features for metrics: ``forward(images)`` maps uint8 images (B, 3, H, W) to float features
    (B, num_features); it resizes and normalises as its network requires.

    ``protocol`` describes what a score depends on (network, weights hash, input size, resize method) and is
    recorded beside every score. ``logits`` gives classifier logits (the Inception Score); an extractor without
    a classifier keeps the default, which raises a GanzooError saying so.
    """

    num_features: int
    protocol: dict

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        raise GanzooError(f"feature extractor {self.protocol.get('extractor', type(self).__name__)!r} has no "
                          "classifier, so it cannot compute the Inception Score")


@dataclass
class MetricInputs:
    """What a metric is computed from, filled in only with what it declared it needs (the rest None).

    ``fake_features`` / ``real_features``: extractor features (N, F) in float64 of the generated (or source)
    and reference images. ``fake_logits``: classifier logits of the generated images. ``fake_images`` /
    ``real_images``: the pixels themselves, uint8 (N, 3, S, S), in that one layout whatever the source (a
    checkpoint, a store, a folder, a dataset). ``sampler``: the checkpoint's ``ganzoo.engine.sampling.Sampler``
    (conditional metrics generate their own covers). ``reference``: the reference ImageData, for its metadata
    and measuring function. ``count``: generated images asked for; ``seed``: the benchmark seed.
    """

    count: int
    seed: int
    fake_features: torch.Tensor | None = None
    real_features: torch.Tensor | None = None
    fake_logits: torch.Tensor | None = None
    fake_images: torch.Tensor | None = None
    real_images: torch.Tensor | None = None
    sampler: Any = None
    reference: ImageData | None = None


class Metric(ABC):
    """A score of generated images, for ``ganzoo bench`` and for evaluation during training.

    Declare what it needs: ``needs_features`` (extractor features of generated and, with ``needs_reference``,
    reference images), ``needs_logits`` (classifier logits of generated images), ``needs_images`` (the pixels of
    both sides), ``needs_sampler`` (a checkpoint to generate from; such a metric cannot score an image folder).
    ``minimum_generated`` and ``minimum_real`` are the fewest images it can be computed from at all;
    ``lower_is_better`` orders leaderboards by its ``primary`` score.
    """

    needs_features: bool = True
    needs_reference: bool = True
    needs_logits: bool = False
    needs_images: bool = False
    needs_sampler: bool = False
    minimum_generated: int = 2
    minimum_real: int = 2
    primary: str = ""
    lower_is_better: bool = True

    @abstractmethod
    def compute(self, inputs: MetricInputs) -> dict[str, Any]:
        """Scores by name (a number, or a table such as cond's per-feature fits)."""

    def protocol(self, inputs: MetricInputs) -> dict[str, Any]:
        """Settings the scores depend on, recorded beside them (subset sizes, neighbourhoods)."""
        return {}

    def warnings(self, generated: int, real: int | None, num_features: int | None) -> list[str]:
        """What scores from this few images cannot tell (printed, and kept in the protocol)."""
        return []


class TrackIds(ABC):
    """Track identifiers in features files: ``columns`` that may hold them (first present wins), and ``parse``
    turning a pasted id, URI or URL into the id (None when the text holds none). The id must appear verbatim in
    the text it is parsed from: lookups read only the lines of a features file that contain it."""

    columns: tuple[str, ...] = ()

    @abstractmethod
    def parse(self, text: str) -> str | None:
        """The track id in ``text``, or None."""


class Upscaler(ABC):
    """Makes covers larger (``generate --size``): ``upscale`` returns an RGB image (the input is one) of
    ``size`` x ``size`` px, larger than the input."""

    @abstractmethod
    def upscale(self, image: Image.Image, size: int) -> Image.Image:
        """``image`` at ``size`` px."""
