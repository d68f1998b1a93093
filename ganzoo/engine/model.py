"""From a plan to a model: conditions fitted (or restored), networks, optimisers and the generator's average
built and checked against what their plugins promised (``build_model``); a run started from another run's
weights (``check_init_source``, ``initialise_from``)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ganzoo.api.errors import GanzooError, warn
from ganzoo.api.interfaces import (AdversarialLoss, ArchitectureSpec, Condition, Critic, CriticOutput, Generator,
                                   ImageData)
from ganzoo.engine.conditioning import fit_conditions, restore_conditions
from ganzoo.engine.plan import NetworkPlan, RunPlan, stored_config
from ganzoo.registry.components import blame
from ganzoo.runtime.checkpoint import field as checkpoint_field, load_weights
from ganzoo.runtime.context import RunContext
from ganzoo.runtime.memory import check_fits, format_bytes, network_footprint

SAMPLE_GRID = 64
"""Covers in the fixed-noise sample grid of a run."""


@dataclass
class Model:
    """Everything a run trains: networks, the recipe's components, the fitted conditions, optimisers and the
    generator's exponential moving average."""

    plan: RunPlan
    spec: ArchitectureSpec
    generator: Generator
    critic: Critic
    conditions: dict[str, Condition]
    optimiser_g: torch.optim.Optimizer
    optimiser_d: torch.optim.Optimizer
    ema: GeneratorAverage

    @property
    def loss(self) -> AdversarialLoss:
        return self.plan.loss

    def stateful_components(self) -> dict[str, Any]:
        """The recipe's components by name, whose state checkpoints keep."""
        plan = self.plan
        components: dict[str, Any] = {plan.recipe.loss.name: plan.loss}
        if plan.latent_optimiser is not None:
            components[plan.recipe.latent_optimiser.name] = plan.latent_optimiser
        return components | plan.auxiliaries | plan.augmentations

    def component_states(self) -> dict[str, dict]:
        return {name: component.state_dict() for name, component in self.stateful_components().items()}

    def load_component_states(self, states: dict[str, dict]) -> None:
        for name, component in self.stateful_components().items():
            with blame(self.plan.label(name), "cannot restore the state the checkpoint holds for it"):
                component.load_state_dict(states.get(name, {}))


def build_model(plan: RunPlan, data: ImageData, context: RunContext, condition_states: dict | None = None) -> Model:
    """Fit the conditions (or restore the fitted ``condition_states`` a checkpoint kept), build and check the
    networks, freeze the critic blocks the config asks to, and make the optimisers and EMA around them."""
    config, conditions = plan.config, plan.conditions
    if condition_states is not None:
        restore_conditions(conditions, plan.labels, condition_states, data.fit_metadata, "the training data")
    else:
        fit_conditions(conditions, plan.labels, data.fit_metadata)
    aux_outputs: dict[str, int] = {}
    asked_by: dict[str, str] = {}
    for name, auxiliary in plan.auxiliaries.items():
        with blame(plan.label(name), "failed to name its outputs"):
            outputs = auxiliary.outputs(conditions)
        aux_outputs.update(outputs)
        asked_by.update({output: plan.label(name) for output in outputs})
    spec = ArchitectureSpec(image_size=config.data.image_size, latent_dim=config.model.latent_dim,
                            width=config.model.width, condition_dim=sum(c.dim for c in conditions.values()),
                            aux_outputs=aux_outputs, critic_batchnorm=plan.loss.allows_critic_batchnorm)
    check_training_fits(plan, spec, context.device)
    generator, critic = plan.networks.build(spec)
    check_networks(generator, critic, spec, plan.networks, asked_by)
    memory_format = torch.channels_last if config.system.channels_last else torch.contiguous_format
    compiled_on_cuda = config.system.compile and context.device.type == "cuda"
    generator = generator.to(context.device, memory_format=torch.contiguous_format if compiled_on_cuda
                             else memory_format)  # inductor asserted NCHW strides in convolution_backward (H100)
    critic = critic.to(context.device, memory_format=memory_format)
    freeze_critic_blocks(plan, critic, config.model.freeze_critic_blocks)
    with blame(plan.label(plan.recipe.loss.name), "failed to make its optimisers"):
        optimiser_g, optimiser_d = plan.loss.optimisers(generator, critic)
    ema = GeneratorAverage(generator, config.model.ema_decay, half_life(config, context.ranks.world_size))
    return Model(plan, spec, generator, critic, conditions, optimiser_g, optimiser_d, ema)


def freeze_critic_blocks(plan: RunPlan, critic: Critic, count: int) -> None:
    """Freeze the critic's first ``count`` blocks, as the architecture lists them (FreezeD, Mo et al. 2020)."""
    if not count:
        return
    blocks = plan.networks.critic_blocks(critic)
    if len(blocks) < count:
        raise GanzooError(f"model.freeze_critic_blocks={count}, but {plan.networks.critic_label} lists "
                          f"{len(blocks)} critic blocks" + ("" if blocks else " (it does not name them, so none "
                                                                              "can be frozen)"))
    for block in blocks[:count]:
        block.requires_grad_(False)


def check_init_source(plan: RunPlan, source: dict, path: str) -> None:
    """Before anything is built: the run that ``--init-from`` names must have this run's architecture, image
    size, widths, latent size, conditions (and their options), architecture options and critic normalisation;
    the first difference is one line."""
    theirs = stored_config(source, plan.registry, path)
    ours = plan.config
    spec = checkpoint_field(source, "spec", dict, path)
    architecture = plan.recipe.architecture.name
    their_recipe = plan.registry.recipe(theirs.recipe, theirs.data.image_size)
    differences = [
        ("architecture", architecture, their_recipe.architecture.name),
        ("critic", plan.networks.critic_name, getattr(their_recipe.one("critic"), "name", None)),
        ("data.image_size", ours.data.image_size, spec.get("image_size")),
        ("model.width", ours.model.width, spec.get("width")),
        ("model.latent_dim", ours.model.latent_dim, spec.get("latent_dim")),
        ("model.conditions", ours.model.conditions, theirs.model.conditions),
        *[(f"options.{name}", settled(plan, kind, name, ours.options), settled(plan, kind, name, theirs.options))
          for kind, name in [("architecture", architecture), *(("condition", c) for c in ours.model.conditions)]],
    ]
    for name, mine, source_value in differences:
        if mine != source_value:
            raise GanzooError(f"--init-from {path}: its {name} is {source_value!r}, this run's is {mine!r}")
    if spec.get("critic_batchnorm") != plan.loss.allows_critic_batchnorm:
        allows = {True: "allows", False: "forbids"}
        raise GanzooError(f"--init-from {path}: its loss {their_recipe.loss.name!r} "
                          f"{allows[bool(spec.get('critic_batchnorm'))]} batch norm in the critic and this run's "
                          f"{plan.recipe.loss.name!r} {allows[plan.loss.allows_critic_batchnorm]} it, so the critics "
                          "differ; fine-tune with a loss that treats batch norm as the source's did")


def settled(plan: RunPlan, kind: str, name: str, options: dict) -> dict:
    """A component's options with its defaults filled in, as plain data: two configs that spell the same options
    differently compare equal."""
    parsed = plan.registry.get(kind, name).parse_options(options.get(name))
    return parsed.model_dump() if hasattr(parsed, "model_dump") else parsed


def initialise_from(model: Model, source: dict, path: str) -> None:
    """Start ``model`` from another run's generator, critic and average (weights only; fresh optimisers), after
    ``check_init_source``; its condition width and extra critic outputs must be this model's too."""
    spec = checkpoint_field(source, "spec", dict, path)
    for name, mine, source_value in [("condition width", model.spec.condition_dim, spec.get("condition_dim")),
                                     ("extra critic outputs", model.spec.aux_outputs, spec.get("aux_outputs"))]:
        if mine != source_value:
            raise GanzooError(f"--init-from {path}: its {name} is {source_value!r}, this run's is {mine!r}")
    load_weights(model.generator, checkpoint_field(source, "generator", dict, path), "generator")
    load_weights(model.critic, checkpoint_field(source, "critic", dict, path), "critic")
    load_weights(model.ema, checkpoint_field(source, "ema", dict, path), "EMA generator")


def check_networks(generator: Generator, critic: Critic, spec: ArchitectureSpec, networks: NetworkPlan,
                   asked_by: dict[str, str]) -> None:
    """One forward pass of two samples in eval mode, without gradients and with its own random numbers (so
    training is unchanged): the generator's images and the critic's score, patches and extra outputs must have
    the shapes the spec asked for. A broken promise names the plugin that built the network (``asked_by``: who
    asked for each output). In a conditional run, a generator or critic whose outputs do not change with the
    conditions is warned about."""
    noise = torch.Generator().manual_seed(0)
    z = torch.randn(2, spec.latent_dim, generator=noise)
    c = torch.randn(2, spec.condition_dim, generator=noise) if spec.condition_dim else None
    modes = generator.training, critic.training
    generator.eval(), critic.eval()
    try:
        with torch.no_grad():
            with blame(networks.architecture_label, "fails on a batch of 2"):
                images = generator(z, c)
            expected = (2, spec.channels, spec.image_size, spec.image_size)
            if not isinstance(images, torch.Tensor) or tuple(images.shape) != expected:
                found = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
                raise GanzooError(f"{networks.architecture_label} broke its promise: its generator made {found} for "
                                  f"a batch of 2, not {expected}")
            with blame(networks.critic_label, "fails on a batch of 2"):
                out = critic(images, c)
            if c is not None:
                warn_if_unconditioned(generator, critic, z, c, images, out, networks)
    finally:
        generator.train(modes[0]), critic.train(modes[1])
    check_critic_output(out, spec, networks.critic_label, asked_by)


def check_critic_output(out, spec: ArchitectureSpec, label: str, asked_by: dict[str, str]) -> None:
    """The critic's output for a batch of 2: a score (2,), patches (2, K) if any, every extra output asked for."""
    if not isinstance(out, CriticOutput) or tuple(out.score.shape) != (2,):
        found = tuple(out.score.shape) if isinstance(out, CriticOutput) else type(out).__name__
        raise GanzooError(f"{label} broke its promise: its critic must return a CriticOutput with a score of shape "
                          f"(2,) for a batch of 2, got {found}")
    if out.patches is not None and (out.patches.ndim != 2 or out.patches.shape[0] != 2):
        raise GanzooError(f"{label} broke its promise: its critic's patch scores must be (2, K) for a batch of 2, "
                          f"got {tuple(out.patches.shape)}")
    for name, width in spec.aux_outputs.items():
        value = out.aux.get(name)
        if value is None or tuple(value.shape) != (2, width):
            found = "nothing" if value is None else f"shape {tuple(value.shape)}"
            raise GanzooError(f"{label} broke its promise: its critic returned {found} for the extra output "
                              f"{name!r} of width {width} that {asked_by.get(name, 'an auxiliary')} asked for")


def warn_if_unconditioned(generator: Generator, critic: Critic, z: torch.Tensor, c: torch.Tensor,
                          images: torch.Tensor, out: CriticOutput, networks: NetworkPlan) -> None:
    """Warn when the generator's images or the critic's scores are the same for other conditions: such a network
    trains without ever seeing them."""
    other = c.flip(0) + 1.0
    if torch.equal(generator(z, other), images):
        warn(f"{networks.architecture_label}'s generator ignores the conditions of this conditional run")
    if isinstance(out, CriticOutput) and torch.equal(critic(images, other).score, out.score):
        warn(f"{networks.critic_label}'s critic ignores the conditions of this conditional run")


def check_training_fits(plan: RunPlan, spec: ArchitectureSpec, device: torch.device) -> None:
    """Refuse, in one line, a run whose networks and batch cannot fit in ``device``'s free memory."""
    config = plan.config
    footprint = network_footprint(lambda: plan.networks.build(spec), config.schedule.batch_size, spec.latent_dim,
                                  spec.condition_dim, spec.image_size, spec.channels)
    if footprint is None:
        return
    parameters, activations = footprint.training()
    fixed_latents = SAMPLE_GRID * spec.latent_dim * 4
    check_fits(parameters + activations + fixed_latents, device,
               f"training {config.recipe} (parameters with gradients and optimiser state {format_bytes(parameters)}, "
               f"activations for batch_size {config.schedule.batch_size} {format_bytes(activations)})",
               "lower batch_size, model.width or model.latent_dim")


def half_life(config, world_size: int) -> HalfLife | None:
    """The average's half-life in images, when the config gives one (``model.ema_kimg``)."""
    model = config.model
    if model.ema_kimg is None:
        return None
    ramp = None if model.ema_ramp_kimg is None else model.ema_ramp_kimg * 1000
    return HalfLife(model.ema_kimg * 1000, model.ema_rampup, ramp, config.schedule.batch_size * world_size)


@dataclass(frozen=True)
class HalfLife:
    """An average whose decay follows from a half-life in images (stylegan2-ada's ``ema_kimg``): after an update
    of ``batch`` images the old average keeps 0.5 ** (batch / half-life) of its weight. Early weights fade
    quickly when the half-life ramps up: at most ``rampup`` x the images seen so far (stylegan2-ada, Projected
    GAN), or growing from 0 along a half cosine over ``ramp_images`` (R3GAN)."""

    images: float
    rampup: float | None
    ramp_images: float | None
    batch: int

    def decay(self, updates: int) -> float:
        seen, images = updates * self.batch, self.images
        if self.rampup is not None:
            images = min(images, seen * self.rampup)
        if self.ramp_images is not None:
            images *= 0.5 * (1 - math.cos(math.pi * min(seen / self.ramp_images, 1.0)))
        return 0.5 ** (self.batch / max(images, 1e-8))


class GeneratorAverage(nn.Module):
    """An exponential moving average of the generator's parameters, used for samples and ``generate``.

    Parameters are averaged; buffers (batch norm's running statistics) are copied from the generator, as
    Projected GAN and stylegan2-ada do. A spectrally normalised layer divides its weight by sigma = u . W v with
    its own vectors u, v, which are unit singular vectors of the weight they were estimated for: an average of
    such vectors is not one (it is shorter), so averaging them would underestimate sigma and blow the weight up.
    The average's vectors are instead copied from the generator and then refined by a power iteration on the
    averaged weight (``refresh_spectral_norms``), so the average divides by its own largest singular value.

    The decay ramps up as min(decay, (1 + n) / (10 + n)) after n updates, so early random weights fade out of
    short runs instead of dominating them; or, given a ``half_life``, it follows from the images each update
    adds. The first update copies. Its state dict is torch's AveragedModel's
    (``module.*`` and ``n_averaged``); unlike AveragedModel it counts updates on the host, so an update reads
    nothing back from the device (AveragedModel tests its device counter twice per update, a host sync each
    time on a GPU), and it averages all parameters of a dtype in one ``_foreach_lerp_``.
    """

    def __init__(self, generator: Generator, decay: float, half_life: HalfLife | None = None):
        super().__init__()
        self.module = copy.deepcopy(generator).requires_grad_(False)
        self.decay = decay
        self.half_life = half_life
        self.register_buffer("n_averaged", torch.tensor(0, dtype=torch.long, device=first_device(generator)))
        self.updates = 0

    @torch.no_grad()
    def update(self, generator: Generator) -> None:
        averaged, current = list(self.module.parameters()), [p.detach() for p in generator.parameters()]
        decay = self.current_decay()
        if self.updates == 0 or decay == 0:
            torch._foreach_copy_(averaged, current)
        else:
            weight = 1 - decay
            floats = [(a, c) for a, c in zip(averaged, current) if a.is_floating_point()]
            if floats:
                torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], weight)
        buffers = list(self.module.buffers())
        if buffers:
            torch._foreach_copy_(buffers, [b.detach() for b in generator.buffers()])
        if self.updates and decay:
            refresh_spectral_norms(self.module)
        self.updates += 1
        self.n_averaged.fill_(self.updates)

    def current_decay(self) -> float:
        """The share of the old average the next update keeps."""
        if self.half_life is not None:
            return self.half_life.decay(self.updates)
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict, assign)
        self.updates = int(self.n_averaged)
        return result


@torch.no_grad()
def refresh_spectral_norms(module: nn.Module, iterations: int | None = None) -> None:
    """Refine the singular vectors of every spectral norm (``torch.nn.utils.parametrizations.spectral_norm``) in
    ``module`` by power iterations on its current weight: ``iterations`` each, or the parametrisation's own count
    (one, by default) when None. It runs the parametrisation itself in training mode, which is what updates its
    vectors."""
    for layer in module.modules():
        for parametrisations in getattr(layer, "parametrizations", {}).values():
            for parametrisation in parametrisations:
                if not hasattr(parametrisation, "_u"):
                    continue
                mode, count = parametrisation.training, parametrisation.n_power_iterations
                parametrisation.n_power_iterations = iterations or count
                parametrisation.train()
                try:
                    parametrisation(parametrisations.original)
                finally:
                    parametrisation.train(mode)
                    parametrisation.n_power_iterations = count


def first_device(module: nn.Module) -> torch.device:
    return next((t.device for t in module.parameters()), torch.device("cpu"))
