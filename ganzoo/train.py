"""The training loop: critic phase, generator phase, EMA, bookkeeping. Plugins enter through the recipe's
components (architecture, adversarial loss, latent optimiser, auxiliary objectives) and the conditions."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel
from torchvision.utils import make_grid, save_image
from tqdm import tqdm

import ganzoo
from ganzoo import distributed
from ganzoo.bench import TrainingEvaluator
from ganzoo.checkpoint import field, load_weights, remove_partial_saves, save_checkpoint
from ganzoo.conditions import condition_record, encode, fit_conditions
from ganzoo.config import TrainConfig
from ganzoo.data.sources import open_dataset
from ganzoo.errors import GanzooError
from ganzoo.files import FolderLock
from ganzoo.interfaces import (AdversarialLoss, ArchitectureSpec, Auxiliary, Condition, Critic, Generator, ImageData,
                               LatentOptimiser)
from ganzoo.memory import check_fits, format_bytes, training_footprint
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
        """Conditions of ``count`` random dataset rows (this rank's share): the data's own joint distribution."""
        if not self.conditions:
            return None
        rows = distributed.rank_slice(torch.randint(len(data.images), (count * distributed.current().world_size,)))
        return self.encode_conditions(data, rows, device)


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
    conditions = fit_conditions(config.conditions, config.options, registry, data.fit_metadata)
    condition_dim = sum(c.dim for c in conditions.values())
    auxiliaries = [a.factory(component_options(config, a.name)) for a in recipe.auxiliaries]
    aux_outputs: dict[str, int] = {}
    for auxiliary in auxiliaries:
        aux_outputs.update(auxiliary.outputs(conditions))
    spec = ArchitectureSpec(image_size=config.data.image_size, latent_dim=config.model.latent_dim,
                            condition_dim=condition_dim, aux_outputs=aux_outputs,
                            critic_batchnorm=loss.allows_critic_batchnorm)
    architecture_options = {"width": config.model.width, **component_options(config, recipe.architecture.name)}
    check_training_fits(config, lambda: recipe.architecture.factory(spec, architecture_options), spec, device)
    generator, critic = recipe.architecture.factory(spec, architecture_options)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    generator = generator.to(device, memory_format=memory_format)
    critic = critic.to(device, memory_format=memory_format)
    optimiser_g, optimiser_d = loss.optimisers(generator, critic)
    ema = AveragedModel(generator, multi_avg_fn=ema_with_warmup(config.ema_decay), use_buffers=True)
    return Model(spec, generator, critic, loss, latent_optimiser, auxiliaries, conditions, optimiser_g, optimiser_d,
                 ema)


def check_training_fits(config: TrainConfig, build, spec: ArchitectureSpec, device: torch.device) -> None:
    """Refuse, in one line, a run whose networks and batch cannot fit in ``device``'s free memory."""
    footprint = training_footprint(build, config.batch_size, spec.latent_dim, spec.condition_dim, spec.image_size,
                                   spec.channels)
    if footprint is None:
        return
    parameters, activations = footprint
    fixed_latents = SAMPLE_GRID * spec.latent_dim * 4
    check_fits(parameters + activations + fixed_latents, device,
               f"training {config.recipe} (parameters with gradients and optimiser state {format_bytes(parameters)}, "
               f"activations for batch_size {config.batch_size} {format_bytes(activations)})",
               "lower batch_size, model.width or model.latent_dim")


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
    """Shuffled batches, reshuffled every epoch from (seed, epoch) alone, so ``position`` is the whole state.

    Under DDP every rank walks the same global batches of ``batch_size`` x world size and takes its own slice
    (``rank_slices``): the ranks never read the same row within an epoch. On a sharded store each rank holds its
    own rows and walks them alone.
    """

    def __init__(self, count: int, batch_size: int, seed: int, rank_slices: bool = True):
        if count < batch_size:
            raise GanzooError(f"dataset has {count} images, fewer than the batch of {batch_size}")
        self.count, self.batch_size, self.seed, self.rank_slices = count, batch_size, seed, rank_slices
        self.batches_per_epoch = count // batch_size
        self.position = 0
        self._epoch, self._order = -1, None

    def next(self) -> torch.Tensor:
        epoch, index = divmod(self.position, self.batches_per_epoch)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._order = epoch, torch.randperm(self.count, generator=generator)
        self.position += 1
        batch = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        return distributed.rank_slice(batch) if self.rank_slices else batch


class BatchLoader:
    """Reads the sampler's upcoming batches from the store in background threads, in order.

    Reads overlap each other (several page faults in flight when the store is not cached) and the training
    step. ``position`` is the sampler position of the next batch handed out, which is what a checkpoint keeps:
    batches read ahead but not used are read again after a resume.
    """

    def __init__(self, images, sampler: BatchSampler, lookahead: int = 4):
        self.images, self.sampler, self.lookahead = images, sampler, lookahead
        self.pool = ThreadPoolExecutor(max(lookahead, 1), thread_name_prefix="ganzoo-loader")
        self.pending: deque = deque()
        for part in getattr(images, "parts", [images]):
            read_ahead(part)

    def _gather(self, indices: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.images[indices.numpy()])

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch's row indices and its images (uint8, B x S x S x 3)."""
        while len(self.pending) <= self.lookahead:
            indices = self.sampler.next()
            self.pending.append((indices, self.pool.submit(self._gather, indices)))
        indices, images = self.pending.popleft()
        return indices, images.result()

    @property
    def position(self) -> int:
        return self.sampler.position - len(self.pending)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def read_ahead(images) -> None:
    """Ask the kernel to read a memory-mapped store into the page cache in the background, when it fits in half
    the memory: random reads of an uncached store run at disk latency (benchmarks/bench_loader.py)."""
    filename = getattr(images, "filename", None)
    if filename is None or not hasattr(os, "posix_fadvise"):
        return
    if os.path.getsize(filename) > os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2:
        return
    descriptor = os.open(filename, os.O_RDONLY)
    try:
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_WILLNEED)
    finally:
        os.close(descriptor)


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

    def image(self, step: int, images: torch.Tensor) -> None:
        """A batch of images (B, 3, S, S) in [0, 1], logged as one grid."""
        if self.tensorboard:
            self.tensorboard.add_image("samples", make_grid(images, nrow=int(math.sqrt(len(images)))), step)

    def close(self) -> None:
        if self.tensorboard:
            self.tensorboard.close()


def to_images(batch_uint8: torch.Tensor, device, memory_format) -> torch.Tensor:
    images = batch_uint8.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    return images.contiguous(memory_format=memory_format)


def checkpoint_state(config, model: Model, step, loader: BatchLoader, data, conditions: dict | None,
                     elapsed_s: float) -> dict[str, Any]:
    return {
        "ganzoo_version": ganzoo.__version__,
        "config": config.model_dump_json(),
        "step": step,
        "elapsed_s": elapsed_s,
        "data_fingerprint": data.fingerprint,
        "spec": dataclasses.asdict(model.spec),
        "generator": model.generator.state_dict(),
        "critic": model.critic.state_dict(),
        "ema": model.ema.state_dict(),
        "optimiser_g": model.optimiser_g.state_dict(),
        "optimiser_d": model.optimiser_d.state_dict(),
        "sampler_position": loader.position,
        "conditions": conditions,
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore(state: dict[str, Any], model: Model, sampler: BatchSampler, data: ImageData) -> tuple[int, float]:
    """Load a checkpoint's training state into ``model`` and ``sampler``; returns (step, elapsed seconds)."""
    if field(state, "data_fingerprint", str) != data.fingerprint:
        raise GanzooError("the dataset differs from the one this run was trained on "
                          f"(fingerprint {data.fingerprint}, checkpoint {state['data_fingerprint']})")
    load_weights(model.generator, state["generator"], "generator")
    load_weights(model.critic, state["critic"], "critic")
    load_weights(model.ema, state["ema"], "EMA generator")
    try:
        model.optimiser_g.load_state_dict(field(state, "optimiser_g", dict))
        model.optimiser_d.load_state_dict(field(state, "optimiser_d", dict))
        torch.set_rng_state(field(state, "rng_cpu", torch.Tensor))
    except (ValueError, KeyError, TypeError, RuntimeError) as error:
        raise GanzooError(f"the checkpoint's optimiser or random state does not fit this run: "
                          f"{str(error).splitlines()[0][:200]}") from None
    sampler.position = field(state, "sampler_position", int)
    if field(state, "rng_cuda", list) and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    return field(state, "step", int), float(field(state, "elapsed_s", (int, float)))


def weights_finite(model: Model) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.generator.parameters())


def keep_metrics_until(path: Path, step: int) -> None:
    """Drop metrics.jsonl rows logged after ``step`` (left by a run that went on past the checkpoint it is resumed
    from), so that no step is logged twice."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line + "\n")
        except (ValueError, KeyError, TypeError):
            continue
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text("".join(kept))
    os.replace(temporary, path)


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
    and always leaves a checkpoint. Returns a summary (steps done, why it stopped, paths). Launched by torchrun,
    it trains data-parallel: ``batch_size`` per rank, rank 0 alone writing the run folder, which it locks
    against a second process for as long as it trains.
    """
    run_dir = Path(run_dir)
    if not distributed.current_rank_is_main():
        return _train(config, run_dir, resume, registry, progress)
    with FolderLock(run_dir, "training"):
        if resume is None and (run_dir / "checkpoint.pt").exists():
            raise GanzooError(f"{run_dir} already holds a run; continue it with --resume {run_dir}")
        remove_partial_saves(run_dir / "checkpoint.pt")
        return _train(config, run_dir, resume, registry, progress)


def _train(config: TrainConfig, run_dir: Path, resume: dict[str, Any] | None, registry: Registry | None,
           progress: bool) -> dict[str, Any]:
    registry = registry or get_registry()
    ranks, device = distributed.setup(config.device)
    torch.manual_seed(config.seed)
    if not ranks.is_main:
        distributed.barrier()  # rank 0 prepares (and caches) the dataset first
    data = open_dataset(config.data, registry, progress=progress and ranks.is_main)
    if ranks.is_main:
        distributed.barrier()
    model = build_model(config, registry, data, device)
    loss = model.loss
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    if data.population is None:
        sampler = BatchSampler(len(data.images), config.batch_size * ranks.world_size, config.seed)
    else:
        sampler = BatchSampler(len(data.images), config.batch_size, config.seed + ranks.rank, rank_slices=False)
    fixed_latent = torch.randn(SAMPLE_GRID, config.model.latent_dim,
                               generator=torch.Generator().manual_seed(config.seed)).to(device)
    fixed_condition = model.encode_conditions(data, torch.arange(SAMPLE_GRID) % len(data.images), device)
    step, elapsed_before = restore(resume, model, sampler, data) if resume else (0, 0.0)
    if config.steps is not None and step >= config.steps:
        raise GanzooError(f"{run_dir} is already at step {step}; pass --steps above {step} to train further")
    loader = BatchLoader(data.images, sampler)
    condition_state = condition_record(model.conditions, data.fit_metadata) if model.conditions else None
    generator, critic = distributed.wrap(model.generator, device), distributed.wrap(model.critic, device)
    model.generator, model.critic = distributed.unwrap(generator), distributed.unwrap(critic)
    if config.compile:
        generator = torch.compile(generator)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.amp)

    writes = ranks.is_main
    if writes:
        (run_dir / "config.json").write_text(config.model_dump_json(indent=1))
        keep_metrics_until(run_dir / "metrics.jsonl", step)
    log = RunLog(run_dir) if writes else None
    evaluate = None
    if config.eval_every and writes:
        with torch.random.fork_rng():  # building an extractor may draw random numbers: keep training's own
            evaluate = TrainingEvaluator(config, data, registry, device, run_dir, progress)
    uses_latent_step = {phase: model.latent_optimiser is not None and phase in model.latent_optimiser.applies_to
                        for phase in ("critic", "generator")}

    def latents(condition, phase):
        z = distributed.per_sample_randn(config.batch_size, config.model.latent_dim, device=device)
        if uses_latent_step[phase]:
            z = model.latent_optimiser.optimise(z, condition, model.generator, model.critic)
        return z

    def save():
        if not writes:
            return
        if not weights_finite(model):
            raise GanzooError(f"training diverged at step {step}: the generator's weights hold NaN or infinity. "
                              f"{run_dir / 'checkpoint.pt'} keeps the last finite state; lower the learning rates")
        save_checkpoint(checkpoint_state(config, model, step, loader, data, condition_state,
                                         time.perf_counter() - started), run_dir / "checkpoint.pt")

    started = time.perf_counter() - elapsed_before
    deadline = started + config.minutes * 60 if config.minutes else math.inf
    target = config.steps or math.inf
    bar = tqdm(total=config.steps, initial=step, desc=config.recipe, unit="step", disable=not (progress and writes),
               dynamic_ncols=True)
    interval_start, interval_steps = time.perf_counter(), 0
    stopped_by = "steps"
    with StopRequest() as stop:
        while step < target:
            out_of_time, interrupted = distributed.any_rank([time.perf_counter() > deadline, stop.requested], device)
            if out_of_time or interrupted:
                stopped_by = "minutes" if out_of_time else "interrupt"
                break
            # critic phase: n_critic updates on real batches and fakes from the current generator
            model.generator.train()
            model.critic.requires_grad_(True)
            for _ in range(loss.n_critic):
                indices, batch = loader.next()
                real = to_images(batch, device, memory_format)
                condition = model.encode_conditions(data, indices, device)
                z = latents(condition, "critic")
                with torch.no_grad(), autocast:
                    fake = generator(z, condition).float()
                with autocast:
                    real_out, fake_out = critic(real, condition), critic(fake, condition)
                    critic_terms = loss.critic_terms(critic, real, fake, condition, real_out, fake_out)
                    for auxiliary in model.auxiliaries:
                        critic_terms.update(auxiliary.critic_terms(real_out, condition))
                model.optimiser_d.zero_grad(set_to_none=True)
                sum(critic_terms.values()).float().backward()
                model.optimiser_d.step()

            # generator phase: conditions drawn from the data's own rows, the critic frozen (and not synchronised)
            model.critic.requires_grad_(False)
            condition = model.sample_conditions(data, config.batch_size, device)
            z = latents(condition, "generator")
            with autocast:
                fake_out = model.critic(generator(z, condition), condition)
                generator_terms = loss.generator_terms(fake_out)
                for auxiliary in model.auxiliaries:
                    generator_terms.update(auxiliary.generator_terms(fake_out, condition))
            model.optimiser_g.zero_grad(set_to_none=True)
            sum(generator_terms.values()).float().backward()
            model.optimiser_g.step()
            model.ema.update_parameters(model.generator)
            step += 1
            interval_steps += 1
            bar.update(1)

            # bookkeeping on rank 0 (its own shard's terms): metrics, sample grids, checkpoints
            if writes and step % config.log_every == 0:
                elapsed = time.perf_counter() - interval_start
                values = {f"critic/{k}": v.item() for k, v in critic_terms.items()}
                values |= {f"generator/{k}": v.item() for k, v in generator_terms.items()}
                values["critic_images_per_s"] = (interval_steps * loss.n_critic * config.batch_size
                                                 * ranks.world_size / elapsed)
                values["elapsed_s"] = time.perf_counter() - started
                log.scalars(step, values)
                bar.set_postfix(D=f"{sum(v for k, v in values.items() if k.startswith('critic/')):.3f}",
                                G=f"{sum(v for k, v in values.items() if k.startswith('generator/')):.3f}",
                                img_s=f"{values['critic_images_per_s']:.0f}")
                interval_start, interval_steps = time.perf_counter(), 0
            if writes and step % config.sample_every == 0:
                write_samples(model, run_dir, step, fixed_latent, fixed_condition, log)
            if evaluate and step % config.eval_every == 0:
                with torch.random.fork_rng():
                    log.scalars(step, evaluate(model.ema.module.eval(), model.conditions))
            if step % config.checkpoint_every == 0:
                save()
    bar.close()
    loader.close()
    if writes:
        write_samples(model, run_dir, step, fixed_latent, fixed_condition, log)
        save()
        log.close()
    distributed.barrier()
    return {"run_dir": str(run_dir), "step": step, "stopped_by": stopped_by,
            "checkpoint": str(run_dir / "checkpoint.pt"), "samples": str(run_dir / "samples.png")}
