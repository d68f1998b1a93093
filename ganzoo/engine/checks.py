"""What a plugin's own tests call to run ganzoo's checks of its components (``ganzoo.check_recipe``): the promises
the engine checks at build time and on first use, through the same code a training run takes."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from ganzoo.engine.sampling import load_sampler
from ganzoo.engine.training import run_training
from ganzoo.registry.loading import get_registry
from ganzoo.runtime.checkpoint import load_checkpoint
from ganzoo.runtime.config import build_config, set_value

TINY = {"data.image_size": 16, "model.width": 8, "model.latent_dim": 16, "schedule.batch_size": 4,
        "schedule.log_every": 1, "schedule.checkpoint_every": 1, "options.synthcovers.count": 16}
"""A run small enough for a unit test: 16 px, 16 covers of the default dataset, batches of 4."""


def check_recipe(recipe: str, settings: dict[str, Any] | None = None, steps: int = 2) -> dict[str, Any]:
    """Train ``recipe`` for ``steps`` steps of tiny networks (``TINY``, with ``settings``: dotted keys) in a
    temporary folder, resume it for one step more, and sample four covers from it. Every promise the engine
    checks is checked on the way (options, sizes, network shapes, the image range, terms, augmentations,
    metrics, state that resumes); a broken one raises the GanzooError a user would see, naming the plugin.
    Returns the checkpoint's step, its component states and the sampled covers (uint8 (4, 3, S, S))."""
    values: dict[str, Any] = {"recipe": recipe}
    for key, value in {**TINY, **(settings or {})}.items():
        set_value(values, key, value)
    if values.get("data", {}).get("name") not in (None, "synthcovers"):
        values.get("options", {}).pop("synthcovers", None)
    with tempfile.TemporaryDirectory() as scratch:
        run = Path(scratch) / "run"
        config = build_config(values | {"schedule": {**values.get("schedule", {}), "steps": steps}})
        run_training(config, run, progress=False)
        resumed = config.model_copy(update={"schedule": config.schedule.model_copy(update={"steps": steps + 1})})
        run_training(resumed, run, resume=load_checkpoint(run), progress=False)
        state = load_checkpoint(run)
        covers = torch.cat(list(load_sampler(run, torch.device("cpu"), get_registry()).generate(4, 0)))
        return {"step": state["step"], "components": state["components"], "covers": covers}
