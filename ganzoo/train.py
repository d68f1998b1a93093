"""The training loop: critic phase, generator phase, EMA, bookkeeping. Plugins enter through the recipe's
components (architecture, adversarial loss, latent optimiser, auxiliary objectives) and the conditions."""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel
from torchvision.utils import save_image
from tqdm import tqdm

import ganzoo
from ganzoo.bench import TrainingEvaluator
from ganzoo.checkpoint import load_weights, save_checkpoint
from ganzoo.conditions import encode, fit_conditions
from ganzoo.config import TrainConfig
from ganzoo.data import open_dataset
from ganzoo.errors import GanzooError
from ganzoo.interfaces import (AdversarialLoss, ArchitectureSpec, Auxiliary, Condition, Critic, Generator, ImageData,
                               LatentOptimiser)
from ganzoo.plugins import Registry, get_registry

SAMPLE_GRID = 64


@dataclass
class Model:
    """Everything a recipe builds: networks, objectives, optimisers and the generator's EMA."""

    spec: ArchitectureSpec
    generator: Generator
    critic: Critic
    loss: AdversarialLoss
    latent_optimiser: LatentOptimiser | None
    auxiliaries: list[Auxiliary]
    conditions: dict[str, Condition]
    optimiser_g: torch.optim.Optimizer
    optimiser_d: torch.optim.Optimizer
    ema: AveragedModel

    def encode_conditions(self, data: ImageData, indices: torch.Tensor, device) -> torch.Tensor | None:
        """The conditions of the given dataset rows, or None for an unconditional model."""
        return encode(self.conditions, data.rows(indices.numpy()), device)

    def sample_conditions(self, data: ImageData, count: int, device) -> torch.Tensor | None:
        """Conditions of ``count`` random dataset rows: the data's own joint distribution."""
        if not self.conditions:
            return None
        return self.encode_conditions(data, torch.randint(len(data.images), (count,)), device)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise GanzooError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GanzooError("device cuda was asked for but no CUDA GPU is available")
    return device


def component_options(config: TrainConfig, name: str) -> dict[str, Any]:
    return dict(config.options.get(name, {}))


def build_model(config: TrainConfig, registry: Registry, data: ImageData, device: torch.device) -> Model:
    """Compose the recipe through the interfaces: no component is special-cased here."""
    recipe = registry.recipe(config.recipe)
    used = {c.name for c in (recipe.architecture, recipe.loss, recipe.latent_optimiser, *recipe.auxiliaries) if c}
    unused = set(config.options) - used - set(config.conditions) - {config.eval_extractor}
    if unused:
        raise GanzooError(f"invalid config: options for {', '.join(sorted(unused))}, which recipe "
                          f"{config.recipe!r} does not use")
    loss = recipe.loss.factory(component_options(config, recipe.loss.name))
    latent_optimiser = (recipe.latent_optimiser.factory(component_options(config, recipe.latent_optimiser.name))
                        if recipe.latent_optimiser else None)
    conditions = fit_conditions(config.conditions, config.options, registry, data.metadata)
    condition_dim = sum(c.dim for c in conditions.values())
    auxiliaries = [a.factory(component_options(config, a.name)) for a in recipe.auxiliaries]
    aux_outputs: dict[str, int] = {}
    for auxiliary in auxiliaries:
        aux_outputs.update(auxiliary.outputs(conditions))
    spec = ArchitectureSpec(image_size=config.data.image_size, latent_dim=config.model.latent_dim,
                            condition_dim=condition_dim, aux_outputs=aux_outputs,
                            critic_batchnorm=loss.allows_critic_batchnorm)
    architecture_options = {"width": config.model.width, **component_options(config, recipe.architecture.name)}
    generator, critic = recipe.architecture.factory(spec, architecture_options)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    generator = generator.to(device, memory_format=memory_format)
    critic = critic.to(device, memory_format=memory_format)
    optimiser_g, optimiser_d = loss.optimisers(generator, critic)
    ema = AveragedModel(generator, multi_avg_fn=ema_with_warmup(config.ema_decay), use_buffers=True)
    return Model(spec, generator, critic, loss, latent_optimiser, auxiliaries, conditions, optimiser_g, optimiser_d,
                 ema)


def ema_with_warmup(decay: float):
    """EMA whose decay ramps up as min(decay, (1 + n) / (10 + n)) after n updates, so early random weights fade
    out of short runs instead of dominating them."""

    def average(averaged: list[torch.Tensor], current: list[torch.Tensor], updates: torch.Tensor) -> None:
        weight = 1 - torch.clamp((1 + updates) / (10 + updates), max=decay)
        for average_value, value in zip(averaged, current):
            if average_value.is_floating_point():
                average_value.lerp_(value, weight.to(average_value.dtype))
            else:
                average_value.copy_(value)

    return average


class BatchSampler:
    """Shuffled batches, reshuffled every epoch from (seed, epoch) alone, so ``position`` is the whole state."""

    def __init__(self, count: int, batch_size: int, seed: int):
        if count < batch_size:
            raise GanzooError(f"dataset has {count} images, fewer than batch_size {batch_size}")
        self.count, self.batch_size, self.seed = count, batch_size, seed
        self.batches_per_epoch = count // batch_size
        self.position = 0
        self._epoch, self._order = -1, None

    def next(self) -> torch.Tensor:
        epoch, index = divmod(self.position, self.batches_per_epoch)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._order = epoch, torch.randperm(self.count, generator=generator)
        self.position += 1
        return self._order[index * self.batch_size:(index + 1) * self.batch_size]


class StopRequest:
    """Turns the first Ctrl-C or SIGTERM into a request to checkpoint and stop after the current step."""

    def __init__(self):
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("\nganzoo: stopping after this step to write a checkpoint (Ctrl-C again aborts without one)",
              file=sys.stderr)

    def __enter__(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


class RunLog:
    """metrics.jsonl in the run folder, plus TensorBoard scalars and images when tensorboard is installed."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "metrics.jsonl"
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:
            self.tensorboard = None

    def scalars(self, step: int, values: dict[str, float]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        if self.tensorboard:
            for name, value in values.items():
                self.tensorboard.add_scalar(name, value, step)

    def image(self, step: int, grid: torch.Tensor) -> None:
        if self.tensorboard:
            self.tensorboard.add_image("samples", grid, step)

    def close(self) -> None:
        if self.tensorboard:
            self.tensorboard.close()


def to_images(batch_uint8: torch.Tensor, device, memory_format) -> torch.Tensor:
    images = batch_uint8.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    return images.contiguous(memory_format=memory_format)


def checkpoint_state(config, model: Model, step, sampler, data) -> dict[str, Any]:
    return {
        "ganzoo_version": ganzoo.__version__,
        "config": config.model_dump_json(),
        "step": step,
        "data_fingerprint": data.fingerprint,
        "spec": dataclasses.asdict(model.spec),
        "generator": model.generator.state_dict(),
        "critic": model.critic.state_dict(),
        "ema": model.ema.state_dict(),
        "optimiser_g": model.optimiser_g.state_dict(),
        "optimiser_d": model.optimiser_d.state_dict(),
        "sampler_position": sampler.position,
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore(state: dict[str, Any], model: Model, sampler: BatchSampler, data: ImageData) -> int:
    if state["data_fingerprint"] != data.fingerprint:
        raise GanzooError("the dataset differs from the one this run was trained on "
                          f"(fingerprint {data.fingerprint}, checkpoint {state['data_fingerprint']})")
    load_weights(model.generator, state["generator"], "generator")
    load_weights(model.critic, state["critic"], "critic")
    load_weights(model.ema, state["ema"], "EMA generator")
    model.optimiser_g.load_state_dict(state["optimiser_g"])
    model.optimiser_d.load_state_dict(state["optimiser_d"])
    sampler.position = state["sampler_position"]
    torch.set_rng_state(state["rng_cpu"])
    if state["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    return state["step"]


def write_samples(model: Model, run_dir: Path, step: int, fixed_latent, fixed_condition, log: RunLog) -> None:
    model.ema.module.eval()
    with torch.no_grad():
        images = model.ema.module(fixed_latent, fixed_condition).float().cpu()
    grid_path = run_dir / "samples" / f"step_{step:07d}.png"
    grid_path.parent.mkdir(parents=True, exist_ok=True)
    save_image(images, grid_path, nrow=int(math.sqrt(len(images))), normalize=True, value_range=(-1, 1))
    save_image(images, run_dir / "samples.png", nrow=int(math.sqrt(len(images))), normalize=True,
               value_range=(-1, 1))
    log.image(step, (images[:16] + 1) / 2)


def train(config: TrainConfig, run_dir: str | Path, resume: dict[str, Any] | None = None,
          registry: Registry | None = None, progress: bool = True) -> dict[str, Any]:
    """Train ``config.recipe`` into ``run_dir``, continuing from ``resume`` (a loaded checkpoint) if given.

    Stops after ``config.steps`` generator steps in total, after ``config.minutes``, or on Ctrl-C / SIGTERM,
    and always leaves a checkpoint. Returns a summary (steps done, why it stopped, paths).
    """
    registry = registry or get_registry()
    run_dir = Path(run_dir)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    data = open_dataset(config.data, registry, progress=progress)
    model = build_model(config, registry, data, device)
    generator, critic, loss = model.generator, model.critic, model.loss
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    sampler = BatchSampler(len(data.images), config.batch_size, config.seed)
    fixed_latent = torch.randn(SAMPLE_GRID, config.model.latent_dim,
                               generator=torch.Generator().manual_seed(config.seed)).to(device)
    fixed_condition = model.encode_conditions(data, torch.arange(SAMPLE_GRID) % len(data.images), device)
    step = restore(resume, model, sampler, data) if resume else 0

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(config.model_dump_json(indent=1))
    log = RunLog(run_dir)
    evaluate = None
    if config.eval_every:
        with torch.random.fork_rng():  # building an extractor may draw random numbers: keep training's own
            evaluate = TrainingEvaluator(config, data, registry, device, run_dir, progress)
    uses_latent_step = {phase: model.latent_optimiser is not None and phase in model.latent_optimiser.applies_to
                        for phase in ("critic", "generator")}

    def latents(condition, phase):
        z = torch.randn(config.batch_size, config.model.latent_dim, device=device)
        if uses_latent_step[phase]:
            z = model.latent_optimiser.optimise(z, condition, generator, critic)
        return z

    def save():
        save_checkpoint(checkpoint_state(config, model, step, sampler, data),
                        run_dir / "checkpoint.pt")

    started = time.perf_counter()
    deadline = started + config.minutes * 60 if config.minutes else math.inf
    target = config.steps or math.inf
    bar = tqdm(total=config.steps, initial=step, desc=config.recipe, unit="step", disable=not progress,
               dynamic_ncols=True)
    interval_start, interval_steps = time.perf_counter(), 0
    stopped_by = "steps"
    with StopRequest() as stop:
        while step < target:
            if time.perf_counter() > deadline:
                stopped_by = "minutes"
                break
            if stop.requested:
                stopped_by = "interrupt"
                break
            # critic phase: n_critic updates on real batches and fakes from the current generator
            generator.train()
            critic.requires_grad_(True)
            for _ in range(loss.n_critic):
                indices = sampler.next()
                real = to_images(torch.from_numpy(data.images[indices.numpy()]), device, memory_format)
                condition = model.encode_conditions(data, indices, device)
                z = latents(condition, "critic")
                with torch.no_grad():
                    fake = generator(z, condition)
                real_out, fake_out = critic(real, condition), critic(fake, condition)
                critic_terms = loss.critic_terms(critic, real, fake, condition, real_out, fake_out)
                for auxiliary in model.auxiliaries:
                    critic_terms.update(auxiliary.critic_terms(real_out, condition))
                model.optimiser_d.zero_grad(set_to_none=True)
                sum(critic_terms.values()).backward()
                model.optimiser_d.step()

            # generator phase: conditions drawn from the data's own rows, the critic frozen
            critic.requires_grad_(False)
            condition = model.sample_conditions(data, config.batch_size, device)
            fake_out = critic(generator(latents(condition, "generator"), condition), condition)
            generator_terms = loss.generator_terms(fake_out)
            for auxiliary in model.auxiliaries:
                generator_terms.update(auxiliary.generator_terms(fake_out, condition))
            model.optimiser_g.zero_grad(set_to_none=True)
            sum(generator_terms.values()).backward()
            model.optimiser_g.step()
            model.ema.update_parameters(generator)
            step += 1
            interval_steps += 1
            bar.update(1)

            # bookkeeping: metrics, sample grids, checkpoints
            if step % config.log_every == 0:
                elapsed = time.perf_counter() - interval_start
                values = {f"critic/{k}": v.item() for k, v in critic_terms.items()}
                values |= {f"generator/{k}": v.item() for k, v in generator_terms.items()}
                values["critic_images_per_s"] = interval_steps * loss.n_critic * config.batch_size / elapsed
                values["elapsed_s"] = time.perf_counter() - started
                log.scalars(step, values)
                bar.set_postfix(D=f"{sum(v for k, v in values.items() if k.startswith('critic/')):.3f}",
                                G=f"{sum(v for k, v in values.items() if k.startswith('generator/')):.3f}",
                                img_s=f"{values['critic_images_per_s']:.0f}")
                interval_start, interval_steps = time.perf_counter(), 0
            if step % config.sample_every == 0:
                write_samples(model, run_dir, step, fixed_latent, fixed_condition, log)
            if evaluate and step % config.eval_every == 0:
                with torch.random.fork_rng():
                    log.scalars(step, evaluate(model.ema.module.eval(), model.conditions))
            if step % config.checkpoint_every == 0:
                save()
    bar.close()
    write_samples(model, run_dir, step, fixed_latent, fixed_condition, log)
    save()
    log.close()
    return {"run_dir": str(run_dir), "step": step, "stopped_by": stopped_by,
            "checkpoint": str(run_dir / "checkpoint.pt"), "samples": str(run_dir / "samples.png")}
