"""The training loop, in four named phases:

1. set-up: the config planned into components and checked (``plan_run``), data opened, model built, a
   checkpoint restored (``set_up``);
2. the critic phase: the scheduled settings of the loss and augmentations for this step, then ``n_critic``
   updates of the critic on real batches and fakes from the current generator;
3. the generator phase: one update of the generator against the frozen critic;
4. bookkeeping: the generator's average, metrics, sample grids, evaluations, checkpoints.

Every component of the recipe sees one ``Batch`` record per update (``ganzoo.api.interfaces.Batch``). Plugins
enter at named points only: the latent optimiser before each phase's generator pass, the augmentations in front
of every critic call, the auxiliaries beside the loss in both phases. Every call into a plugin names the plugin
when it fails, and the promises the engine cannot check at build time (an augmentation keeps the shape and lets
gradients through, a loss passes the conditions to the critic, terms are named scalars) are checked on first use.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import signal
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ganzoo.api.errors import GanzooError
from ganzoo.api.interfaces import IMAGE_RANGE_TOLERANCE, Batch, CriticOutput, ImageData, Terms
from ganzoo.data.loader import BatchSampler, ResidentBatches, StreamedBatches, fits_on_device
from ganzoo.data.sources import open_source
from ganzoo.engine.bookkeeping import RUN_FILES, RUN_FOLDERS, Bookkeeping
from ganzoo.engine.conditioning import encode
from ganzoo.engine.model import SAMPLE_GRID, Model, build_model, check_init_source, initialise_from
from ganzoo.engine.plan import RunPlan, plan_run
from ganzoo.engine.run_state import BUDGET_KEYS, Progress, condition_states, restore
from ganzoo.registry.components import Registry, blame
from ganzoo.registry.loading import get_registry
from ganzoo.runtime import context as run_context
from ganzoo.runtime.checkpoint import load_checkpoint, remove_partial_saves
from ganzoo.runtime.config import TrainConfig
from ganzoo.runtime.context import RunContext
from ganzoo.runtime.files import FolderLock, check_folder_entries, remove_if_only_locked


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


class Trainer:
    """One model, its data and its context; ``critic_phase`` and ``generator_phase`` are one training step."""

    def __init__(self, model: Model, batches: ResidentBatches | StreamedBatches, context: RunContext):
        self.model, self.batches, self.context = model, batches, context
        self.plan = plan = model.plan
        self.config = plan.config
        self.generator = context.wrap(model.generator)
        self.critic = context.wrap(model.critic)
        model.generator, model.critic = run_context.unwrap(self.generator), run_context.unwrap(self.critic)
        if self.config.system.compile:
            self.generator = torch.compile(self.generator)
        self.critic_trainable = [p for p in model.critic.parameters() if p.requires_grad]  # frozen blocks stay so
        self.architecture = plan.networks.architecture_name
        self.uses_latent_step = {phase: plan.latent_optimiser is not None and phase in plan.latent_optimiser.applies_to
                                 for phase in ("critic", "generator")}
        self.checked: set[str] = set()
        self.term_owners: dict[str, str] = {}
        """``critic/NAME`` and ``generator/NAME`` -> the label of the component whose term it is."""

    # --- calls into plugins, each naming its plugin when it fails ------------------------------------------------

    def critic_view(self, critic) -> Callable[[torch.Tensor, torch.Tensor | None], CriticOutput]:
        """``critic`` behind the run's augmentations: what every phase, penalty and latent step calls."""
        def augmented(images: torch.Tensor, condition: torch.Tensor | None) -> CriticOutput:
            for name, augmentation in self.plan.augmentations.items():
                images = self.augment(name, augmentation, images)
            with blame(self.plan.networks.critic_label, "failed in its critic's forward pass"):
                return critic(images, condition)
        return augmented

    def augment(self, name: str, augmentation, images: torch.Tensor) -> torch.Tensor:
        """One augmentation of a batch, its promise (same shape, gradients flow) checked on first use."""
        with blame(self.plan.label(name), "failed to augment a batch"):
            augmented = augmentation.augment(images)
        if name not in self.checked:
            if not isinstance(augmented, torch.Tensor) or augmented.shape != images.shape:
                found = tuple(augmented.shape) if isinstance(augmented, torch.Tensor) else type(augmented).__name__
                raise GanzooError(f"{self.plan.label(name)} broke its promise: it returned {found} for a batch of "
                                  f"{tuple(images.shape)}; an augmentation keeps the shape")
            if images.requires_grad:
                if augmented.grad_fn is None:
                    raise GanzooError(f"{self.plan.label(name)} broke its promise: its output does not depend "
                                      "differentiably on its input (detached?); the generator learns through it")
                self.checked.add(name)
        return augmented

    def critic_for(self, owner: str, critic) -> Callable[[torch.Tensor, torch.Tensor | None], CriticOutput]:
        """The critic as component ``owner`` calls it: in a conditional run it must pass the conditions, and a
        critic that fails on what it passed is said to fail on ``owner``'s input."""
        conditional = bool(self.plan.conditions)

        def call(images: torch.Tensor, condition: torch.Tensor | None = None) -> CriticOutput:
            if conditional and condition is None:
                raise GanzooError(f"{self.plan.label(owner)} broke its promise: it called the critic without "
                                  "conditions in a conditional run (pass the batch's condition)")
            try:
                return critic(images, condition)
            except GanzooError:
                raise
            except Exception as error:
                raise GanzooError(f"{self.plan.networks.critic_label}'s critic failed on what "
                                  f"{self.plan.label(owner)} passed it: {type(error).__name__}: "
                                  f"{str(error).splitlines()[0][:200] if str(error) else ''}") from None
        return call

    def terms(self, batch: Batch) -> Terms:
        """The loss's and every auxiliary's terms for ``batch``, each checked (named scalar tensors) on its first
        appearance, and merged (a term name two components both use is refused)."""
        plan = self.plan
        method = "critic_terms" if batch.phase == "critic" else "generator_terms"
        owners: dict[str, str] = {}
        terms: Terms = {}
        for name, component in [(plan.recipe.loss.name, plan.loss), *plan.auxiliaries.items()]:
            with blame(plan.label(name), f"failed in the {batch.phase} phase"):
                found = getattr(component, method)(dataclasses.replace(batch, critic=self.critic_for(name, batch.critic)))
            self.check_terms(found, name, batch.phase)
            for term, value in found.items():
                if term in owners:
                    raise GanzooError(f"{plan.label(name)} and {plan.label(owners[term])} both return a term named "
                                      f"{term!r}")
                owners[term], terms[term] = name, value
                self.term_owners.setdefault(f"{batch.phase}/{term}", plan.label(name))
        return {name: value.float().reshape(()) for name, value in terms.items()}

    def check_terms(self, terms: Terms, owner: str, phase: str) -> None:
        key = f"{phase}:{owner}"
        if key in self.checked:
            return
        if not isinstance(terms, dict) or not all(
                isinstance(k, str) and isinstance(v, torch.Tensor) and v.numel() == 1 for k, v in terms.items()):
            raise GanzooError(f"{self.plan.label(owner)} broke its promise: its {phase} terms must be a dict of "
                              f"named scalar tensors, got {describe_terms(terms)}")
        self.checked.add(key)

    def latents(self, condition: torch.Tensor | None, phase: str) -> torch.Tensor:
        z = self.context.per_sample_randn(self.config.schedule.batch_size, self.config.model.latent_dim)
        if self.uses_latent_step[phase]:
            name = self.plan.recipe.latent_optimiser.name
            with blame(self.plan.label(name), f"failed in the {phase} phase"):
                z = self.plan.latent_optimiser.optimise(z, condition, self.model.generator,
                                                        self.critic_for(name, self.critic_view(self.model.critic)))
        return z

    def generate(self, z: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        with blame(self.plan.label(self.architecture), "failed in its generator's forward pass"):
            images = self.generator(z, condition)
        if "image range" not in self.checked:
            self.check_image_range(images)
        return images

    def check_image_range(self, images: torch.Tensor) -> None:
        """On the first step: a bounded architecture's images lie in [-1, 1] (within a tolerance)."""
        self.checked.add("image range")
        if not self.plan.networks.architecture.bounded_output:
            return
        low, high = float(images.min()), float(images.max())
        if not (low >= -1 - IMAGE_RANGE_TOLERANCE and high <= 1 + IMAGE_RANGE_TOLERANCE):
            raise GanzooError(f"{self.plan.label(self.architecture)} broke its promise: its generator's images "
                              f"range over [{low:.2f}, {high:.2f}] on the first step, not [-1, 1] (tolerance "
                              f"{IMAGE_RANGE_TOLERANCE}); end the generator in a tanh, or declare "
                              "bounded_output = False if its samples may be clamped")

    # --- the two phases of a step --------------------------------------------------------------------------------

    def follow_schedules(self, step: int) -> None:
        """The loss's and every augmentation's settings for this step, from the images generated so far."""
        images = step * self.config.schedule.batch_size * self.context.ranks.world_size
        for name, component in [(self.plan.recipe.loss.name, self.plan.loss), *self.plan.augmentations.items()]:
            with blame(self.plan.label(name), "failed to follow its schedule"):
                component.follow_schedule(images)

    def critic_phase(self, step: int) -> Terms:
        """The step's scheduled settings, then ``n_critic`` critic updates; returns the last update's terms."""
        self.follow_schedules(step)
        model = self.model
        critic = self.critic_view(self.critic)
        model.generator.train()
        for iteration in range(model.loss.n_critic):
            real, condition = self.batches.real_batch()
            z = self.latents(condition, "critic")
            with torch.no_grad(), self.context.autocast():
                fake = self.generate(z, condition).float()
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
            for name, augmentation in self.plan.augmentations.items():
                with blame(self.plan.label(name), "failed to observe a critic update"):
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
            condition = self.batches.random_conditions(self.config.schedule.batch_size)
            z = self.latents(condition, "generator")
            with self.context.autocast():
                fake = self.generate(z, condition)
                fake_out = critic(fake, condition)
            batch = Batch("generator", fake, fake_out.float(), condition, critic, self.context, step, 0, real,
                          real_out, model.generator)
            terms = self.terms(batch)
            model.optimiser_g.zero_grad(set_to_none=True)
            sum(terms.values()).backward()
            model.optimiser_g.step()
        finally:
            for parameter in self.critic_trainable:
                parameter.requires_grad_(True)
        return terms


def describe_terms(terms) -> str:
    if not isinstance(terms, dict):
        return f"a {type(terms).__name__}"
    return ", ".join(f"{k!r}: {tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__}"
                     for k, v in terms.items()) or "nothing"


@dataclass
class Run:
    """A run ready to train: its plan, context, data, model, batches and where it stands."""

    plan: RunPlan
    context: RunContext
    data: ImageData
    model: Model
    batches: ResidentBatches | StreamedBatches
    progress: Progress


def run_training(config: TrainConfig, run_dir: str | Path, resume: dict[str, Any] | None = None,
                 registry: Registry | None = None, progress: bool = True,
                 announce: Callable[[dict[str, Any]], None] | None = None,
                 calibrated: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train ``config`` into ``run_dir``, continuing from ``resume`` (a loaded checkpoint) if given.

    Stops after ``schedule.steps`` generator steps in total, after ``schedule.minutes`` (or ``cpu_minutes`` of
    CPU time), or on Ctrl-C / SIGTERM, and always leaves a checkpoint. Returns a summary (steps done, why it
    stopped, paths). Launched by torchrun, it trains data-parallel: ``batch_size`` per rank, rank 0 alone writing
    the run folder, which it locks against a second process for as long as it trains. ``announce`` is given
    ``start_record`` once the run is set up, before the first step, and ``calibrated`` the run's pace and where its
    budget will take it (``Budget.estimate``) after its first few steps (both on rank 0). A new run that fails
    before finishing a step (a broken promise found on first use) leaves no folder; one stopped by Ctrl-C keeps
    its step-0 checkpoint.
    """
    run_dir = Path(run_dir)
    registry = registry or get_registry()
    if run_context.rank_from_environment() != 0:
        return train_run(set_up(config, run_dir, resume, registry, progress), run_dir, progress, None)

    def started(run: Run) -> Run:
        if announce:
            announce(start_record(run, run_dir))
        return run
    new_folder, failed_at_step_0 = not run_dir.exists(), False
    try:
        with FolderLock(run_dir, "training"):
            check_folder_entries(run_dir, RUN_FILES, RUN_FOLDERS)
            if resume is None and (run_dir / "checkpoint.pt").exists():
                raise GanzooError(f"{run_dir} already holds a run; continue it with --resume {run_dir}")
            remove_partial_saves(run_dir / "checkpoint.pt")
            run = started(set_up(config, run_dir, resume, registry, progress))
            try:
                return train_run(run, run_dir, progress, calibrated)
            except Exception:
                failed_at_step_0 = new_folder and run.progress.step == 0
                raise
    finally:
        if failed_at_step_0:
            shutil.rmtree(run_dir, ignore_errors=True)  # only what this run wrote: its folder is new
        elif new_folder:
            remove_if_only_locked(run_dir)  # a run that failed to start leaves no empty folder behind


def set_up(config: TrainConfig, run_dir: Path, resume: dict[str, Any] | None, registry: Registry,
           progress: bool) -> Run:
    """1. set-up: everything checked before data is opened; rank 0 prepares (and caches) the dataset first."""
    plan = plan_run(config, registry)
    config = plan.config
    context = run_context.setup(config.system.device, config.system.amp)
    torch.manual_seed(config.system.seed)
    if not context.ranks.is_main:
        context.barrier()
    data = open_source(plan.data, config.data.image_size, ranks=context.ranks,
                       progress=progress and context.ranks.is_main)
    if context.ranks.is_main:
        context.barrier()
    init = load_checkpoint(config.model.init_from) if config.model.init_from and resume is None else None
    if init is not None:
        check_init_source(plan, init, config.model.init_from)
    model = build_model(plan, data, context, condition_states=condition_states(resume or init))
    if init is not None:
        initialise_from(model, init, config.model.init_from)
    batches = make_batches(model, data, context)
    where = restore(resume, model, batches.sampler, data) if resume else Progress()
    if where.planned is None:
        where.planned = {key: getattr(config.schedule, key) for key in BUDGET_KEYS}
    if config.schedule.steps is not None and where.step >= config.schedule.steps:
        raise GanzooError(f"{run_dir} is already at step {where.step}; pass --steps above {where.step} to train "
                          "further")
    return Run(plan, context, data, model, batches, where)


def start_record(run: Run, run_dir: Path) -> dict[str, Any]:
    """What a run is about to do, for the start banner: where, on what, with how many weights, for how long."""
    config, model = run.plan.config, run.model
    critic = list(model.critic.parameters())
    return {"run_dir": str(run_dir), "recipe": config.recipe, "device": str(run.context.device),
            "threads": torch.get_num_threads(), "world_size": run.context.ranks.world_size,
            "data": run.plan.data.name, "images": len(run.data.images), "image_size": config.data.image_size,
            "preparation": run.data.preparation,
            "batch_size": config.schedule.batch_size,
            "generator_parameters": sum(p.numel() for p in model.generator.parameters()),
            "critic_parameters": sum(p.numel() for p in critic if p.requires_grad),
            "frozen_parameters": sum(p.numel() for p in critic if not p.requires_grad),
            "step": run.progress.step, "steps": config.schedule.steps, "minutes": config.schedule.minutes,
            "cpu_minutes": config.schedule.cpu_minutes}


def make_batches(model: Model, data: ImageData, context: RunContext) -> ResidentBatches | StreamedBatches:
    """The run's batches: held on the device when the data fits there (``data.on_device``), else streamed."""
    config, ranks = model.plan.config, context.ranks
    resident = (fits_on_device(data.images, model.spec.condition_dim, context.device)
                if config.data.on_device == "auto" else config.data.on_device)
    device = context.device if resident else None
    rows = len(data.images) * (2 if config.data.mirror else 1)  # rows past the data's are its mirror images
    if data.population is None:  # every rank walks the global batches and keeps its slice
        sampler = BatchSampler(rows, config.schedule.batch_size * ranks.world_size, config.system.seed, context,
                               device)
    else:  # a rank's own shards: walked alone
        sampler = BatchSampler(rows, config.schedule.batch_size, config.system.seed + ranks.rank, device=device)
    memory_format = torch.channels_last if config.system.channels_last else torch.contiguous_format
    return (ResidentBatches if resident else StreamedBatches)(
        data.images, lambda rows: encode(model.conditions, data.rows(rows), "cpu"), sampler, context, memory_format)


def train_run(run: Run, run_dir: Path, progress: bool,
              calibrated: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
    """Steps until the budget, a stop request or an error; every exit but a crash leaves a checkpoint (a new
    run writes its step 0 before the first step)."""
    config, context, model = run.plan.config, run.context, run.model
    trainer = Trainer(model, run.batches, context)
    fixed_latent = torch.randn(SAMPLE_GRID, config.model.latent_dim,
                               generator=torch.Generator().manual_seed(config.system.seed)).to(context.device)
    fixed_condition = encode(model.conditions, run.data.rows(torch.arange(SAMPLE_GRID).numpy() % len(run.data.images)),
                             context.device)
    budget = Budget(config, context.device)
    threads = ThreadShare(context.device, budget)
    log = (Bookkeeping(run.plan, model, run.data, run_dir, run.progress, fixed_latent, fixed_condition, run.batches,
                       context, progress, budget, trainer.term_owners) if context.ranks.is_main else None)
    if log and not (run_dir / "checkpoint.pt").exists():
        log.save()  # step 0: a run stopped before its first checkpoint can still be resumed
    budget.start()  # after the evaluation's reference features: the budget is for training
    stopped_by = "steps"
    try:
        with StopRequest() as stop:
            while run.progress.step < (config.schedule.steps or math.inf):
                if not context.ranks.distributed or run.progress.step % config.schedule.log_every == 0:
                    out_of_time, interrupted = context.any_rank([budget.spent(), stop.requested])
                    if out_of_time or interrupted:
                        stopped_by = "minutes" if out_of_time else "interrupt"
                        break
                # 2. the critic phase, 3. the generator phase
                critic_terms = trainer.critic_phase(run.progress.step)
                generator_terms = trainer.generator_phase(run.progress.step)
                # 4. bookkeeping
                model.ema.update(model.generator)
                run.progress.step += 1
                budget.step_done()
                if log:
                    log.after_step(critic_terms, generator_terms)
                lowered = threads.after_step(run.progress.step)
                if lowered:
                    budget.recalibrate()  # the pace changes with the threads: estimated again after a few steps
                    if log and progress:
                        log.bar.write(lowered)
                if budget.calibrated():
                    budget.check_one_step_fits()
                    estimate = budget.estimate(run.progress.step)
                    if log:
                        log.expect(estimate["final_step"])
                    if calibrated:
                        calibrated(estimate)
    except BaseException:
        if log:
            log.bar.close()  # end the progress line before the error is printed
        raise
    finally:
        run.batches.close()
    if log:
        log.close()
    context.barrier()
    return {"run_dir": str(run_dir), "step": run.progress.step, "stopped_by": stopped_by,
            "checkpoint": str(run_dir / "checkpoint.pt"), "samples": str(run_dir / "samples.png"),
            "pace": budget.pace(), "elapsed_s": run.progress.elapsed_s, "cpu_s": run.progress.cpu_s,
            "threads_lowered": threads.lowered}


class ThreadShare:
    """On a CPU, a run computes with no more threads than the cores it gets. PyTorch's OpenMP threads spin while
    they wait for each other, so when another process takes cores, every thread beyond the cores received only
    slows the run (two runs of 2 threads on 2 cores: each 3.0x slower than with one thread each,
    benchmarks/RESULTS.md). After each ``WINDOW`` steps, a run that received under ``SHORT`` of a core per thread
    (its CPU time over its wall-clock time) drops to the cores it received; it does not climb back when the
    machine frees up (a resumed run starts with every thread again)."""

    WINDOW = 20
    SHORT = 0.75

    def __init__(self, device: torch.device, budget: "Budget"):
        self.budget, self.since = budget, 0
        self.active = device.type == "cpu" and torch.get_num_threads() > 1
        self.lowered: tuple[int, int, int] | None = None
        """(step, threads before, threads after) of the last drop."""

    def after_step(self, step: int) -> str | None:
        """A line to print when the run just dropped threads, else None."""
        self.since += 1
        if not self.active or self.since < self.WINDOW:
            return None
        self.since = 0
        threads, received = torch.get_num_threads(), self.budget.cores_received()
        fewer = max(1, int(received + 0.25))
        if received >= self.SHORT * threads or fewer >= threads:
            return None
        torch.set_num_threads(fewer)
        self.lowered, self.active = (step, threads, fewer), fewer > 1
        return (f"step {step}: the machine is busy (this run got {received:.1f} of its {threads} threads' cores); "
                f"training on with {fewer} thread{'s' * (fewer != 1)}")


CALIBRATION_STEPS = 3
"""Steps timed before the run's pace is estimated (the first one, which warms up, counts apart)."""


class Budget:
    """The run's time budgets from now (``schedule.minutes`` of wall-clock time, ``cpu_minutes`` of this process's
    CPU time) and its pace: the wall-clock and CPU seconds of a step, from the intervals between step ends. A step
    starts only when the budgets have room for one more at that pace, so a run ends within its budget, or over it
    by no more than the one step that ran slower than the steps before it."""

    def __init__(self, config: TrainConfig, device: torch.device = torch.device("cpu")):
        self.schedule = config.schedule
        self.synchronise = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        self.start()

    def start(self) -> None:
        """Count the budgets (and the pace) from now."""
        schedule = self.schedule
        self.deadline = time.perf_counter() + schedule.minutes * 60 if schedule.minutes else math.inf
        self.cpu_deadline = time.process_time() + schedule.cpu_minutes * 60 if schedule.cpu_minutes else math.inf
        self.budget_s = {"left": self.deadline - time.perf_counter(), "cpu_left": self.cpu_deadline - time.process_time()}
        self.last = (time.perf_counter(), time.process_time())
        self.steps: list[tuple[float, float]] = []

    def recalibrate(self) -> None:
        """Forget the steps timed so far: the pace, and the estimate, start again from the next steps."""
        self.steps = []
        self.last = (time.perf_counter(), time.process_time())

    def step_done(self) -> None:
        """Record the step that just ended (its device work finished, while the pace is calibrated)."""
        if len(self.steps) < CALIBRATION_STEPS:
            self.synchronise()
        now = (time.perf_counter(), time.process_time())
        self.steps.append((now[0] - self.last[0], now[1] - self.last[1]))
        del self.steps[1:-20]  # the first step and the latest 20 are what the pace is read from
        self.last = now

    def calibrated(self) -> bool:
        """True once, at the step after which the pace is first estimated."""
        return len(self.steps) == CALIBRATION_STEPS

    def pace(self) -> tuple[float, float] | None:
        """Seconds (wall-clock, CPU) of a step: the median of the steps after the first (which warms up), or the
        first alone; None before any step."""
        if not self.steps:
            return None
        later = self.steps[1:] or self.steps
        return statistics.median(w for w, _ in later), statistics.median(c for _, c in later)

    def cores_received(self) -> float:
        """CPU seconds this process used per wall-clock second over the latest steps (the first, which warms
        up, left out): the cores it got."""
        later = self.steps[1:] or self.steps
        wall = sum(w for w, _ in later)
        return sum(c for _, c in later) / wall if wall > 0 else 0.0

    def spent(self) -> bool:
        """Whether the budgets lack room for one more step at the run's pace."""
        wall, cpu = self.pace() or (0.0, 0.0)
        return time.perf_counter() + wall > self.deadline or time.process_time() + cpu > self.cpu_deadline

    def check_one_step_fits(self) -> None:
        """Refuse a configuration whose steps each take longer than its whole budget."""
        wall, cpu = self.pace()
        for label, step, budget in (("minutes", wall, self.budget_s["left"]), ("CPU minutes", cpu, self.budget_s["cpu_left"])):
            if step > budget:
                raise GanzooError(f"one training step takes {step:.0f} s here, more than the whole budget of "
                                  f"{budget / 60:.1f} {label}: give a budget of at least {3 * step / 60:.0f} "
                                  "minutes, or lower data.image_size, schedule.batch_size or model.width (the run "
                                  "folder keeps its checkpoint)")

    def estimate(self, step: int) -> dict[str, float]:
        """What the budgets buy at the run's pace: seconds a step (wall-clock, CPU) and the step the run will
        reach."""
        wall, cpu = self.pace()
        left = self.left()
        more = min([left[name] / max(per_step, 1e-9) for name, per_step in (("left", wall), ("cpu_left", cpu))
                    if name in left] or [math.inf])
        if self.schedule.steps is not None:
            more = min(more, self.schedule.steps - step)
        return {"seconds_per_step": wall, "cpu_seconds_per_step": cpu, "step": step,
                "final_step": step + int(more) if more != math.inf else None}

    def left(self) -> dict[str, float]:
        """Seconds left of each time budget the run has (``left``: wall-clock, ``cpu_left``: CPU time)."""
        left = {"left": self.deadline - time.perf_counter(), "cpu_left": self.cpu_deadline - time.process_time()}
        return {name: max(0.0, seconds) for name, seconds in left.items() if seconds != math.inf}
