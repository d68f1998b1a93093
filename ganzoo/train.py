"""The training loop, in four named phases:

1. set-up: the config resolved against the registry and checked (``plan_run``), data opened, model built, a
   checkpoint restored;
2. the critic phase: ``n_critic`` updates of the critic on real batches and fakes from the current generator;
3. the generator phase: one update of the generator against the frozen critic;
4. bookkeeping: the generator's average, metrics, sample grids, evaluations, checkpoints.

Every component of the recipe sees one ``Batch`` record per update (``ganzoo.interfaces.Batch``). Plugins
enter at named points only: the latent optimiser before each phase's generator pass, the augmentations in front
of every critic call, the auxiliaries beside the loss in both phases.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torchvision.utils import make_grid, save_image
from tqdm import tqdm

import ganzoo
from ganzoo import context as run_context
from ganzoo.checkpoint import (field, load_checkpoint, load_optimiser_state, load_weights, remove_partial_saves,
                               save_checkpoint)
from ganzoo.conditions import condition_record, encode
from ganzoo.config import TrainConfig
from ganzoo.context import RunContext
from ganzoo.data.loader import BatchSampler, ResidentBatches, StreamedBatches, fits_on_device
from ganzoo.data.sources import open_dataset
from ganzoo.errors import GanzooError
from ganzoo.evaluation import TrainingEvaluator
from ganzoo.files import FolderLock, check_folder_entries, make_subfolder, open_regular, write_atomically
from ganzoo.interfaces import Batch, CriticOutput, ImageData, Terms
from ganzoo.model import (SAMPLE_GRID, Model, RunPlan, build_model, check_init_source, initialise_from, merge_terms,
                          plan_run)
from ganzoo.plugins import Registry, get_registry


RUN_FILES = ("checkpoint.pt", "config.json", "metrics.jsonl", "samples.png", "eval_protocol.json")
RUN_FOLDERS = ("samples", "tensorboard")
"""What a training process writes in its run folder (besides the lock): none of it may be a symbolic link."""


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
        except ImportError:
            self.tensorboard = None
        else:
            self.tensorboard = SummaryWriter(str(make_subfolder(run_dir / "tensorboard")))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        with open_regular(self.path, "a") as f:
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


@dataclass
class Progress:
    """Where the run stands: generator steps done and training seconds spent (across resumes)."""

    step: int = 0
    elapsed_s: float = 0.0


class Trainer:
    """One model, its data and its context; ``critic_phase`` and ``generator_phase`` are one training step."""

    def __init__(self, model: Model, batches: ResidentBatches | StreamedBatches, context: RunContext,
                 config: TrainConfig):
        self.model, self.batches, self.context, self.config = model, batches, context, config
        self.generator = context.wrap(model.generator)
        self.critic = context.wrap(model.critic)
        model.generator, model.critic = run_context.unwrap(self.generator), run_context.unwrap(self.critic)
        if config.compile:
            self.generator = torch.compile(self.generator)
        plan = model.plan
        self.critic_trainable = [p for p in model.critic.parameters() if p.requires_grad]  # frozen blocks stay so
        self.augmentations = list(plan.augmentations.values())
        self.uses_latent_step = {phase: plan.latent_optimiser is not None and phase in plan.latent_optimiser.applies_to
                                 for phase in ("critic", "generator")}

    def critic_view(self, critic):
        """``critic`` behind the run's augmentations: what every phase, penalty and latent step calls."""
        if not self.augmentations:
            return critic

        def augmented(images: torch.Tensor, condition: torch.Tensor | None) -> CriticOutput:
            for augmentation in self.augmentations:
                images = augmentation.augment(images)
            return critic(images, condition)
        return augmented

    def latents(self, condition: torch.Tensor | None, phase: str) -> torch.Tensor:
        z = self.context.per_sample_randn(self.config.batch_size, self.config.model.latent_dim)
        if self.uses_latent_step[phase]:
            z = self.model.plan.latent_optimiser.optimise(z, condition, self.model.generator,
                                                          self.critic_view(self.model.critic))
        return z

    def critic_phase(self, step: int) -> Terms:
        """``n_critic`` critic updates; returns the last update's terms."""
        model = self.model
        critic = self.critic_view(self.critic)
        model.generator.train()
        for iteration in range(model.loss.n_critic):
            real, condition = self.batches.real_batch()
            z = self.latents(condition, "critic")
            with torch.no_grad(), self.context.autocast():
                fake = self.generator(z, condition).float()
            if model.loss.critic_input_gradients:
                real, fake = real.requires_grad_(True), fake.requires_grad_(True)
            with self.context.autocast():
                real_out, fake_out = critic(real, condition), critic(fake, condition)
            batch = Batch("critic", fake, fake_out.float(), condition, critic, self.context, step, iteration, real,
                          real_out.float())
            terms = self.terms(batch)
            model.optimiser_d.zero_grad(set_to_none=True)
            sum(terms.values()).backward()
            model.optimiser_d.step()
            for augmentation in self.augmentations:
                augmentation.observe(batch)
        return terms

    def generator_phase(self, step: int) -> Terms:
        """One generator update against the critic, frozen (and not synchronised: its gradients are not
        wanted) but left in train mode. Conditions are drawn from the data's own rows."""
        model = self.model
        critic = self.critic_view(model.critic)
        for parameter in self.critic_trainable:
            parameter.requires_grad_(False)
        try:
            real = real_out = None
            if model.loss.generator_needs_real:
                real, real_condition = self.batches.real_batch()
                with torch.no_grad(), self.context.autocast():
                    real_out = critic(real, real_condition).float()
            condition = self.batches.random_conditions(self.config.batch_size)
            z = self.latents(condition, "generator")
            with self.context.autocast():
                fake = self.generator(z, condition)
                fake_out = critic(fake, condition)
            batch = Batch("generator", fake, fake_out.float(), condition, critic, self.context, step, 0, real,
                          real_out)
            terms = self.terms(batch)
            model.optimiser_g.zero_grad(set_to_none=True)
            sum(terms.values()).backward()
            model.optimiser_g.step()
        finally:
            for parameter in self.critic_trainable:
                parameter.requires_grad_(True)
        return terms

    def terms(self, batch: Batch) -> Terms:
        """The loss's and every auxiliary's terms for ``batch``, checked and merged."""
        model, plan = self.model, self.model.plan
        method = "critic_terms" if batch.phase == "critic" else "generator_terms"
        owners: dict[str, str] = {}
        terms: Terms = {}
        for name, component in [(plan.recipe.loss.name, plan.loss), *plan.auxiliaries.items()]:
            merge_terms(terms, model.checked(getattr(component, method)(batch), name, batch.phase), name, owners, plan)
        return {name: value.float().reshape(()) for name, value in terms.items()}


def train(config: TrainConfig, run_dir: str | Path, resume: dict[str, Any] | None = None,
          registry: Registry | None = None, progress: bool = True) -> dict[str, Any]:
    """Train ``config.recipe`` into ``run_dir``, continuing from ``resume`` (a loaded checkpoint) if given.

    Stops after ``config.steps`` generator steps in total, after ``config.minutes`` (or ``cpu_minutes`` of CPU
    time), or on Ctrl-C / SIGTERM, and always leaves a checkpoint. Returns a summary (steps done, why it stopped,
    paths). Launched by torchrun, it trains data-parallel: ``batch_size`` per rank, rank 0 alone writing the run
    folder, which it locks against a second process for as long as it trains.
    """
    run_dir = Path(run_dir)
    if run_context.rank_from_environment() != 0:
        return run(config, run_dir, resume, registry or get_registry(), progress)
    with FolderLock(run_dir, "training"):
        check_folder_entries(run_dir, RUN_FILES, RUN_FOLDERS)
        if resume is None and (run_dir / "checkpoint.pt").exists():
            raise GanzooError(f"{run_dir} already holds a run; continue it with --resume {run_dir}")
        remove_partial_saves(run_dir / "checkpoint.pt")
        return run(config, run_dir, resume, registry or get_registry(), progress)


def run(config: TrainConfig, run_dir: Path, resume: dict[str, Any] | None, registry: Registry,
        progress: bool) -> dict[str, Any]:
    # 1. set-up: everything checked before data is opened; rank 0 prepares (and caches) the dataset first
    plan = plan_run(config, registry)
    context = run_context.setup(config.device, config.amp)
    torch.manual_seed(config.seed)
    ranks = context.ranks
    if not ranks.is_main:
        context.barrier()
    data = open_dataset(plan.dataset, config.data.image_size, registry, config.options, ranks=ranks,
                        progress=progress and ranks.is_main)
    if ranks.is_main:
        context.barrier()
    init = load_checkpoint(config.init_from) if config.init_from and resume is None else None
    if init is not None:
        check_init_source(plan, init, config.init_from)
    model = build_model(plan, data, context, condition_states=condition_states(resume or init))
    if init is not None:
        initialise_from(model, init, config.init_from)
    resident = (fits_on_device(data.images, model.spec.condition_dim, context.device)
                if config.data.on_device == "auto" else config.data.on_device)
    sampler_device = context.device if resident else None
    if data.population is None:
        sampler = BatchSampler(len(data.images), config.batch_size * ranks.world_size, config.seed, context,
                               sampler_device)
    else:
        sampler = BatchSampler(len(data.images), config.batch_size, config.seed + ranks.rank, device=sampler_device)
    fixed_latent = torch.randn(SAMPLE_GRID, config.model.latent_dim,
                               generator=torch.Generator().manual_seed(config.seed)).to(context.device)
    fixed_condition = model.encode_conditions(data, torch.arange(SAMPLE_GRID) % len(data.images), context.device)
    progress_state = restore(resume, model, sampler, data) if resume else Progress()
    if config.steps is not None and progress_state.step >= config.steps:
        raise GanzooError(f"{run_dir} is already at step {progress_state.step}; pass --steps above "
                          f"{progress_state.step} to train further")
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    batches = (ResidentBatches if resident else StreamedBatches)(
        data.images, lambda rows: encode(model.conditions, data.rows(rows), "cpu"), sampler, context, memory_format)
    trainer = Trainer(model, batches, context, config)
    writes = ranks.is_main
    log = Bookkeeping(config, plan, model, data, run_dir, progress_state, fixed_latent, fixed_condition, batches,
                      registry, context, progress) if writes else None

    deadline = time.perf_counter() + config.minutes * 60 if config.minutes else math.inf
    cpu_deadline = time.process_time() + config.cpu_minutes * 60 if config.cpu_minutes else math.inf
    stopped_by = "steps"
    try:
        with StopRequest() as stop:
            while progress_state.step < (config.steps or math.inf):
                if not ranks.distributed or progress_state.step % config.log_every == 0:
                    out_of_time, interrupted = context.any_rank([
                        time.perf_counter() > deadline or time.process_time() > cpu_deadline, stop.requested])
                    if out_of_time or interrupted:
                        stopped_by = "minutes" if out_of_time else "interrupt"
                        break
                # 2. the critic phase, 3. the generator phase
                critic_terms = trainer.critic_phase(progress_state.step)
                generator_terms = trainer.generator_phase(progress_state.step)
                # 4. bookkeeping
                model.ema.update(model.generator)
                progress_state.step += 1
                if writes:
                    log.after_step(critic_terms, generator_terms)
    except BaseException:
        if writes:
            log.bar.close()  # end the progress line before the error is printed
        raise
    finally:
        batches.close()
    if writes:
        log.close()
    context.barrier()
    return {"run_dir": str(run_dir), "step": progress_state.step, "stopped_by": stopped_by,
            "checkpoint": str(run_dir / "checkpoint.pt"), "samples": str(run_dir / "samples.png")}


class Bookkeeping:
    """What rank 0 does after each step: metrics.jsonl and the progress bar every ``log_every`` steps, sample
    grids, evaluations and checkpoints at theirs, and all of it once more at the end."""

    def __init__(self, config: TrainConfig, plan: RunPlan, model: Model, data: ImageData, run_dir: Path,
                 progress_state: Progress, fixed_latent, fixed_condition, batches, registry: Registry,
                 context: RunContext, progress: bool):
        self.config, self.plan, self.model, self.data, self.run_dir = config, plan, model, data, run_dir
        self.state, self.fixed_latent, self.fixed_condition, self.batches = (progress_state, fixed_latent,
                                                                             fixed_condition, batches)
        self.context = context
        write_atomically(run_dir / "config.json", config.model_dump_json(indent=1))
        keep_metrics_until(run_dir / "metrics.jsonl", progress_state.step)
        self.log = RunLog(run_dir)
        self.evaluate = None
        if config.eval_every:
            reference = (open_dataset(config.eval_reference, config.data.image_size, registry, config.options,
                                      wanted=config.eval_images, progress=progress)
                         if config.eval_reference else None)
            with torch.random.fork_rng():  # building an extractor may draw random numbers: keep training's own
                self.evaluate = TrainingEvaluator(config, data, registry, context.device, run_dir, progress,
                                                  reference)
        self.condition_state = (condition_record(model.conditions, data.fit_metadata, config.seed)
                                if model.conditions else None)
        self.started = time.perf_counter() - progress_state.elapsed_s
        self.interval_start, self.interval_steps = time.perf_counter(), 0
        self.bar = tqdm(total=config.steps, initial=progress_state.step, desc=config.recipe, unit="step",
                        disable=not progress, dynamic_ncols=True)

    def after_step(self, critic_terms: Terms, generator_terms: Terms) -> None:
        config, step = self.config, self.state.step
        self.interval_steps += 1
        self.bar.update(1)
        if step % config.log_every == 0:
            self.log_metrics(critic_terms, generator_terms)
        if step % config.sample_every == 0:
            self.write_samples()
        if self.evaluate and step % config.eval_every == 0:
            with torch.random.fork_rng():
                self.log.scalars(step, self.evaluate(self.model.ema.module.eval(), self.model.conditions))
        if step % config.checkpoint_every == 0:
            self.save()

    def log_metrics(self, critic_terms: Terms, generator_terms: Terms) -> None:
        """One metrics.jsonl row: each term by name (this rank's), augmentation statistics, throughput."""
        elapsed = time.perf_counter() - self.interval_start
        values = {f"critic/{k}": v.item() for k, v in critic_terms.items()}
        values |= {f"generator/{k}": v.item() for k, v in generator_terms.items()}
        for name, augmentation in self.plan.augmentations.items():
            values |= {f"{name}/{k}": float(v) for k, v in augmentation.statistics().items()}
        values["critic_images_per_s"] = (self.interval_steps * self.model.loss.n_critic * self.config.batch_size
                                         * self.context.ranks.world_size / elapsed)
        values["elapsed_s"] = time.perf_counter() - self.started
        self.log.scalars(self.state.step, values)
        self.bar.set_postfix(D=f"{sum(v for k, v in values.items() if k.startswith('critic/')):.3f}",
                             G=f"{sum(v for k, v in values.items() if k.startswith('generator/')):.3f}",
                             img_s=f"{values['critic_images_per_s']:.0f}")
        self.interval_start, self.interval_steps = time.perf_counter(), 0

    def write_samples(self) -> None:
        ema = self.model.ema.module
        ema.eval()
        with torch.no_grad():
            images = ema(self.fixed_latent, self.fixed_condition).float().cpu()
        png = io.BytesIO()
        save_image(images, png, format="png", nrow=int(math.sqrt(len(images))), normalize=True, value_range=(-1, 1))
        folder = make_subfolder(self.run_dir / "samples")
        write_atomically(folder / f"step_{self.state.step:07d}.png", png.getvalue())
        write_atomically(self.run_dir / "samples.png", png.getvalue())
        self.log.image(self.state.step, (images[:16] + 1) / 2)

    def save(self) -> None:
        """A checkpoint of everything resume needs; never one of weights that diverged."""
        model = self.model
        if not all(bool(torch.isfinite(p).all()) for p in model.generator.parameters()):
            raise GanzooError(f"training diverged at step {self.state.step}: the generator's weights hold NaN or "
                              f"infinity. {self.run_dir / 'checkpoint.pt'} keeps the last finite state; lower the "
                              "learning rates")
        self.state.elapsed_s = time.perf_counter() - self.started
        save_checkpoint(checkpoint_state(self.config, model, self.state, self.batches.position, self.data,
                                         self.condition_state), self.run_dir / "checkpoint.pt")

    def close(self) -> None:
        self.bar.close()
        self.write_samples()
        self.save()
        self.log.close()


def checkpoint_state(config: TrainConfig, model: Model, progress_state: Progress, position: int,
                     data: ImageData, conditions: dict | None) -> dict[str, Any]:
    return {
        "ganzoo_version": ganzoo.__version__,
        "config": config.model_dump_json(),
        "step": progress_state.step,
        "elapsed_s": progress_state.elapsed_s,
        "data_fingerprint": data.fingerprint,
        "spec": dataclasses.asdict(model.spec),
        "generator": model.generator.state_dict(),
        "critic": model.critic.state_dict(),
        "ema": model.ema.state_dict(),
        "optimiser_g": model.optimiser_g.state_dict(),
        "optimiser_d": model.optimiser_d.state_dict(),
        "components": model.component_states(),
        "sampler_position": position,
        "conditions": conditions,
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore(state: dict[str, Any], model: Model, sampler: BatchSampler, data: ImageData) -> Progress:
    """Load a checkpoint's training state into ``model`` and ``sampler``; returns where the run stood."""
    if field(state, "data_fingerprint", str) != data.fingerprint:
        raise GanzooError("the dataset differs from the one this run was trained on "
                          f"(fingerprint {data.fingerprint}, checkpoint {state['data_fingerprint']})")
    load_weights(model.generator, state["generator"], "generator")
    load_weights(model.critic, state["critic"], "critic")
    load_weights(model.ema, state["ema"], "EMA generator")
    load_optimiser_state(model.optimiser_g, field(state, "optimiser_g", dict), "generator")
    load_optimiser_state(model.optimiser_d, field(state, "optimiser_d", dict), "critic")
    try:
        torch.set_rng_state(field(state, "rng_cpu", torch.Tensor))
    except (ValueError, TypeError, RuntimeError) as error:
        raise GanzooError(f"the checkpoint's random state does not fit this run: "
                          f"{str(error).splitlines()[0][:200]}") from None
    model.load_component_states(field(state, "components", dict))
    sampler.position = field(state, "sampler_position", int)
    if sampler.position > 1 << 53:
        raise GanzooError(f"the checkpoint's data position {sampler.position} is not a position a run reaches")
    if field(state, "rng_cuda", list) and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    return Progress(field(state, "step", int), float(field(state, "elapsed_s", (int, float))))


def condition_states(state: dict[str, Any] | None) -> dict | None:
    """The fitted condition states a checkpoint kept, if any: a resumed or initialised run encodes its
    conditions as the checkpoint's run did, whatever its own data's statistics."""
    if state is None:
        return None
    record = state.get("conditions")
    return record.get("states") if isinstance(record, dict) else None


def keep_metrics_until(path: Path, step: int) -> None:
    """Drop metrics.jsonl rows logged after ``step`` (left by a run that went on past the checkpoint it is resumed
    from), so that no step is logged twice."""
    if not os.path.lexists(path):
        return
    kept = []
    with open_regular(path) as f:
        for line in f:
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line.rstrip("\n") + "\n")
            except (ValueError, KeyError, TypeError):
                continue
    write_atomically(path, "".join(kept))
