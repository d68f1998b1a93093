"""What rank 0 writes while a run trains: metrics.jsonl (and TensorBoard), sample grids, evaluations and
checkpoints, each at its interval and once more at the end."""

from __future__ import annotations

import io
import json
import os
import math
import time
from pathlib import Path

import torch
from torchvision.utils import make_grid, save_image
from tqdm import tqdm

from ganzoo.api.errors import GanzooError
from ganzoo.api.interfaces import ImageData, Terms
from ganzoo.engine.conditioning import condition_record
from ganzoo.engine.model import Model
from ganzoo.engine.plan import RunPlan
from ganzoo.data.sources import open_source
from ganzoo.engine.run_state import Progress, checkpoint_state, snapshot_state
from ganzoo.engine.sampling import Sampler
from ganzoo.evaluation.runs import score_key
from ganzoo.evaluation.scoring import TrainingEvaluator
from ganzoo.runtime.checkpoint import (BEST, SNAPSHOTS, load_checkpoint, save_checkpoint, snapshot_name,
                                       snapshot_steps)
from ganzoo.runtime.context import RunContext
from ganzoo.runtime.files import make_subfolder, open_regular, write_atomically
from ganzoo.runtime.untrusted import strict_json

RUN_FILES = ("checkpoint.pt", BEST, "config.json", "metrics.jsonl", "samples.png", "eval_protocol.json")
RUN_FOLDERS = ("samples", SNAPSHOTS, "tensorboard")
"""What a training process writes in its run folder (besides the lock): none of it may be a symbolic link."""


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
            f.write(strict_json({"step": step, **values}) + "\n")
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


class Bookkeeping:
    """What rank 0 does after each step: metrics.jsonl and the progress bar every ``log_every`` steps, sample
    grids, evaluations and checkpoints at theirs, and all of it once more at the end."""

    def __init__(self, plan: RunPlan, model: Model, data: ImageData, run_dir: Path, progress_state: Progress,
                 fixed_latent, fixed_condition, batches, context: RunContext, progress: bool, budget=None,
                 term_owners: dict[str, str] | None = None):
        self.config = config = plan.config
        self.plan, self.model, self.data, self.run_dir = plan, model, data, run_dir
        self.state, self.fixed_latent, self.fixed_condition, self.batches = (progress_state, fixed_latent,
                                                                             fixed_condition, batches)
        self.context, self.budget = context, budget
        self.term_owners = term_owners if term_owners is not None else {}
        write_atomically(run_dir / "config.json", config.model_dump_json(indent=1))
        keep_metrics_until(run_dir / "metrics.jsonl", progress_state.step)
        self.log = RunLog(run_dir)
        self.evaluate = self.evaluator(progress) if plan.scoring else None
        self.best_key, self.lower_is_better, self.best = best_so_far(plan, run_dir)
        self.condition_state = (condition_record(model.conditions, data.fit_metadata, config.system.seed)
                                if model.conditions else None)
        self.started = time.perf_counter() - progress_state.elapsed_s
        self.cpu_started = time.process_time() - progress_state.cpu_s
        self.interval_start, self.interval_steps = time.perf_counter(), 0
        self.bar = tqdm(total=config.schedule.steps, initial=progress_state.step, desc=config.recipe, unit="step",
                        disable=not progress, dynamic_ncols=True)
        self.shown = False

    def after_step(self, critic_terms: Terms, generator_terms: Terms) -> None:
        config, step = self.config, self.state.step
        self.interval_steps += 1
        self.bar.update(1)
        if step % config.schedule.log_every == 0:
            self.log_metrics(critic_terms, generator_terms)
        elif not self.shown:  # the bar shows losses from the run's first step on
            values = term_values(critic_terms, generator_terms)
            self.check_finite(values)
            self.show(values, None)
        if step % config.schedule.sample_every == 0:
            self.write_samples()
        snapshot = bool(config.schedule.snapshot_every) and step % config.schedule.snapshot_every == 0
        scores = None
        if self.evaluate and (step % config.evaluation.every == 0 or snapshot):
            scores = self.evaluate_now()
        if step % config.schedule.checkpoint_every == 0 or snapshot:
            state = self.save()
            if snapshot:
                self.keep_snapshot(state, scores)

    def evaluate_now(self) -> dict[str, float]:
        """The evaluation of the generator's average now, logged as ``eval/*`` and returned."""
        sampler = Sampler(self.model.ema.module.eval(), self.config, self.model.conditions, self.data.fit_metadata,
                          self.context.device, self.state.step)
        with torch.random.fork_rng():
            scores = self.evaluate(sampler)
        self.log.scalars(self.state.step, scores)
        return scores

    def keep_snapshot(self, state: dict, scores: dict[str, float] | None) -> None:
        """``snapshots/step_N.pt`` (weights only) beside the checkpoint, the oldest beyond ``keep_snapshots``
        removed; a copy as ``best.pt`` when its score is the best so far."""
        folder = make_subfolder(self.run_dir / SNAPSHOTS)
        path = folder / snapshot_name(self.state.step)
        save_checkpoint(snapshot_state(state, scores), path)
        for step in snapshot_steps(self.run_dir)[:-self.config.schedule.keep_snapshots]:
            (folder / snapshot_name(step)).unlink(missing_ok=True)
        if scores is None or self.best_key not in scores:
            return
        score = scores[self.best_key]
        if self.best is None or (score < self.best if self.lower_is_better else score > self.best):
            write_atomically(self.run_dir / BEST, path.read_bytes())
            self.best = score

    def evaluator(self, progress: bool) -> TrainingEvaluator:
        """The evaluation every ``evaluation.every`` steps, against the training data or ``evaluation.reference``
        (its reference features cached before the first step)."""
        config, plan = self.config, self.plan
        reference = (open_source(plan.reference, config.data.image_size, config.evaluation.images, progress=progress)
                     if plan.reference else self.data)
        with torch.random.fork_rng():  # building an extractor may draw random numbers: keep training's own
            return TrainingEvaluator(plan.scoring, config.evaluation.images, config.system.seed, reference,
                                     config.evaluation.reference or plan.data.name, config.data.image_size,
                                     self.context.device, self.run_dir, progress)

    def log_metrics(self, critic_terms: Terms, generator_terms: Terms) -> None:
        """One metrics.jsonl row: each term by name (this rank's), augmentation statistics, throughput."""
        elapsed = time.perf_counter() - self.interval_start
        values = term_values(critic_terms, generator_terms)
        self.check_finite(values)
        for name, augmentation in self.plan.augmentations.items():
            values |= {f"{name}/{k}": float(v) for k, v in augmentation.statistics().items()}
        values["critic_images_per_s"] = (self.interval_steps * self.model.loss.n_critic * self.config.schedule.batch_size
                                         * self.context.ranks.world_size / elapsed)
        values["elapsed_s"] = time.perf_counter() - self.started
        self.log.scalars(self.state.step, values)
        self.show(values, values["critic_images_per_s"])
        self.interval_start, self.interval_steps = time.perf_counter(), 0

    def check_finite(self, values: dict[str, float]) -> None:
        """Stop a run whose loss terms turned NaN or infinite, naming the first such term and its component."""
        for name, value in values.items():
            if not math.isfinite(value):
                kept = self.run_dir / "checkpoint.pt"
                keeps = (f"; {kept} keeps the last finite state" if kept.exists() else "")
                raise GanzooError(f"training diverged at step {self.state.step}: the term {name} of "
                                  f"{self.term_owners.get(name, 'an unknown component')} is {value}{keeps}; lower the "
                                  "learning rates, or mend the term")

    def show(self, values: dict[str, float], images_per_s: float | None) -> None:
        """The latest losses (summed per phase), throughput and time left, beside the progress bar."""
        time_left = {name: tqdm.format_interval(seconds) for name, seconds in self.budget.left().items()} if self.budget else {}
        speed = {"img_s": f"{images_per_s:.0f}"} if images_per_s is not None else {}
        self.bar.set_postfix(D=f"{sum(v for k, v in values.items() if k.startswith('critic/')):.3f}",
                             G=f"{sum(v for k, v in values.items() if k.startswith('generator/')):.3f}",
                             **speed, **time_left)
        self.shown = True

    def expect(self, final_step: int | None) -> None:
        """Give the bar the step a time budget will reach, once the pace is known, so it shows progress and time
        left."""
        if final_step is not None and self.bar.total is None:
            self.bar.total = final_step
            self.bar.refresh()

    def write_samples(self) -> None:
        """The fixed-noise grid of the generator's average; its own random numbers (a generator that draws noise
        in its forward pass, as FastGAN's does) never change training's."""
        ema = self.model.ema.module
        ema.eval()
        with torch.no_grad(), torch.random.fork_rng():
            images = ema(self.fixed_latent, self.fixed_condition).float().cpu()
        png = io.BytesIO()
        save_image(images, png, format="png", nrow=int(math.sqrt(len(images))), normalize=True, value_range=(-1, 1))
        folder = make_subfolder(self.run_dir / "samples")
        write_atomically(folder / f"step_{self.state.step:07d}.png", png.getvalue())
        write_atomically(self.run_dir / "samples.png", png.getvalue())
        self.log.image(self.state.step, (images[:16] + 1) / 2)

    def save(self) -> dict:
        """A checkpoint of everything resume needs (returned); never one of weights that diverged."""
        model = self.model
        if not all(bool(torch.isfinite(p).all()) for p in model.generator.parameters()):
            kept = self.run_dir / "checkpoint.pt"
            keeps = f" {kept} keeps the last finite state;" if kept.exists() else ""
            raise GanzooError(f"training diverged at step {self.state.step}: the generator's weights hold NaN or "
                              f"infinity.{keeps} lower the learning rates")
        self.state.elapsed_s = time.perf_counter() - self.started
        self.state.cpu_s = time.process_time() - self.cpu_started
        state = checkpoint_state(self.config, model, self.state, self.batches.position, self.data,
                                 self.condition_state)
        save_checkpoint(state, self.run_dir / "checkpoint.pt")
        return state

    def close(self) -> None:
        self.bar.close()
        self.write_samples()
        self.save()
        self.log.close()


def term_values(critic_terms: Terms, generator_terms: Terms) -> dict[str, float]:
    """Each loss term as a number, named ``critic/NAME`` or ``generator/NAME`` (reads them back from the device)."""
    values = {f"critic/{k}": v.item() for k, v in critic_terms.items()}
    return values | {f"generator/{k}": v.item() for k, v in generator_terms.items()}


def best_so_far(plan: RunPlan, run_dir: Path) -> tuple[str | None, bool, float | None]:
    """The score ``best.pt`` follows (the first evaluation metric's primary score, ``eval/fid``), whether lower is
    better, and the score of the run's ``best.pt`` so far (None before there is one)."""
    if plan.scoring is None:
        return None, True, None
    name, metric = next(iter(plan.scoring.metrics.items()))
    key = score_key(name, metric)
    if not (run_dir / BEST).exists():
        return key, metric.lower_is_better, None
    scores = load_checkpoint(run_dir / BEST).get("scores")
    score = scores.get(key) if isinstance(scores, dict) else None
    return key, metric.lower_is_better, float(score) if isinstance(score, (int, float)) else None


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
