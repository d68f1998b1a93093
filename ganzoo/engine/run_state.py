"""What a checkpoint holds of a run: the state written every ``checkpoint_every`` steps (``checkpoint_state``)
and read back for an exact resume (``restore``), the fitted conditions a resumed or initialised run keeps
(``condition_states``), and a stored run's networks (``checkpoint_spec``, ``checkpoint_networks``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

import ganzoo
from ganzoo.api.errors import GanzooError
from ganzoo.api.interfaces import ArchitectureSpec, Critic, Generator, ImageData
from ganzoo.data.loader import BatchSampler
from ganzoo.engine.model import Model
from ganzoo.engine.plan import NetworkPlan
from ganzoo.runtime.checkpoint import checkpoint_config, field, load_optimiser_state, load_weights
from ganzoo.runtime.config import TrainConfig
from ganzoo.runtime.memory import check_fits, network_footprint


BUDGET_KEYS = ("steps", "minutes", "cpu_minutes")


@dataclass
class Progress:
    """Where the run stands: generator steps done, training seconds and CPU seconds spent (across resumes), and
    the budget it was started with (``steps``, ``minutes``, ``cpu_minutes``), which a resume without a budget
    continues to."""

    step: int = 0
    elapsed_s: float = 0.0
    cpu_s: float = 0.0
    planned: dict[str, float | None] | None = None


def checkpoint_state(config: TrainConfig, model: Model, progress_state: Progress, position: int,
                     data: ImageData, conditions: dict | None) -> dict[str, Any]:
    return {
        "ganzoo_version": ganzoo.__version__,
        "config": config.model_dump_json(),
        "step": progress_state.step,
        "elapsed_s": progress_state.elapsed_s,
        "cpu_s": progress_state.cpu_s,
        "planned": progress_state.planned,
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


TRAINING_ONLY = ("optimiser_g", "optimiser_d", "components", "sampler_position", "rng_cpu", "rng_cuda")
"""What a snapshot leaves out of a checkpoint: it samples, scores and starts fine-tuning, but does not resume."""


def snapshot_state(state: dict[str, Any], scores: dict[str, float] | None) -> dict[str, Any]:
    """A checkpoint's weights and what sampling needs (no optimiser or random state), with the scores the
    snapshot was evaluated at."""
    return {key: value for key, value in state.items() if key not in TRAINING_ONLY} | {"scores": scores}


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
    return Progress(field(state, "step", int), float(field(state, "elapsed_s", (int, float))),
                    float(field(state, "cpu_s", (int, float))) if "cpu_s" in state else 0.0, planned_budget(state))


def planned_budget(state: dict[str, Any]) -> dict[str, float | None] | None:
    """The budget a checkpoint's run was started with (None for checkpoints written before it was kept)."""
    planned = state.get("planned")
    if planned is None:
        return None
    if not (isinstance(planned, dict) and set(planned) == set(BUDGET_KEYS) and all(
            value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0)
            for value in planned.values())):
        raise GanzooError("the checkpoint's 'planned' budget is malformed")
    return planned


def remaining_budget(state: dict[str, Any], config: TrainConfig, path) -> dict[str, float | None]:
    """What is left of the budget a checkpoint's run was started with (its steps; its minutes less the time
    spent), for a resume that gives none; a run that has used it is an error saying how to train further."""
    planned = planned_budget(state) or {key: getattr(config.schedule, key) for key in BUDGET_KEYS}
    step = field(state, "step", int)
    spent = {"minutes": float(field(state, "elapsed_s", (int, float))) / 60,
             "cpu_minutes": float(field(state, "cpu_s", (int, float))) / 60 if "cpu_s" in state else 0.0}
    left = {"steps": planned["steps"]} | {key: planned[key] - spent[key] if planned[key] else None
                                          for key in ("minutes", "cpu_minutes")}
    used = ([f"{planned['steps']} steps"] if planned["steps"] and step >= planned["steps"] else []) + [
        f"{planned[key]:g} {key.replace('_', ' ')}" for key in ("minutes", "cpu_minutes")
        if left[key] is not None and left[key] <= 0]
    if used:
        raise GanzooError(f"{path} is at step {step} and has used the budget it was started with ({used[0]}); "
                          f"give --steps above {step}, --minutes or --cpu-minutes to train further")
    return left


def condition_states(state: dict[str, Any] | None) -> dict | None:
    """The fitted condition states a checkpoint kept, if any: a resumed or initialised run encodes its
    conditions as the checkpoint's run did, whatever its own data's statistics."""
    if state is None:
        return None
    record = state.get("conditions")
    return record.get("states") if isinstance(record, dict) else None


def checkpoint_spec(state: dict[str, Any], config: TrainConfig) -> ArchitectureSpec:
    """The ArchitectureSpec a checkpoint's networks were built from, checked against its config."""
    try:
        spec = ArchitectureSpec(**field(state, "spec", dict))
    except (TypeError, ValueError) as error:
        raise GanzooError(f"checkpoint is not usable: its 'spec' is malformed ({error})") from None
    if (spec.image_size, spec.latent_dim, spec.width) != (config.data.image_size, config.model.latent_dim,
                                                          config.model.width):
        raise GanzooError("checkpoint is not usable: its spec and config disagree on the image size or latent size")
    return spec


def checkpoint_networks(state: dict[str, Any], plan: NetworkPlan, batch_size: int = 256,
                        ) -> tuple[Generator, Critic]:
    """A fresh generator and critic of the architecture (planned from the checkpoint's config), options and
    spec a checkpoint was trained with. The spec is untrusted: what the architecture cannot build, or what
    cannot fit in memory with a batch of ``batch_size``, is refused before anything is allocated."""
    spec = checkpoint_spec(state, checkpoint_config(state))
    plan.check(spec.image_size, spec.condition_dim > 0, list(spec.aux_outputs), prefix="checkpoint is not usable: ")
    footprint = network_footprint(lambda: plan.build(spec), batch_size, spec.latent_dim,
                                  spec.condition_dim, spec.image_size, spec.channels)
    if footprint is not None:
        check_fits(footprint.sampling(), torch.device("cpu"),
                   f"the checkpoint's networks ({plan.architecture_name} at {spec.image_size} px, model.width "
                   f"{spec.width}, latent size {spec.latent_dim})", "this checkpoint cannot be used on this machine")
    return plan.build(spec)


