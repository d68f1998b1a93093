"""What scripts, notebooks and ganzoo's own benchmarks call: configs, training, checkpoints, samplers, datasets,
stores, features and the pieces of a training step, behind names that stay put when the package's modules move.
Benchmarks import this module and ``ganzoo`` only (a test holds them to it), so a refactor that breaks them breaks
here, where it is seen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from PIL import Image

from ganzoo.api.interfaces import Critic, FeatureExtractor, ImageData
from ganzoo.apps.covers import finished_cover
from ganzoo.apps.projection import project
from ganzoo.apps.source_scoring import run_bench
from ganzoo.data.dedup import NearDuplicateIndex, cover_signature
from ganzoo.data.loader import BatchSampler, ResidentBatches, StreamedBatches, read_ahead
from ganzoo.data.prepare import BadImage, clean_image, list_files, prepare
from ganzoo.data.sources import open_dataset
from ganzoo.data.store import derived_store, load_store, write_metadata_csv, write_rows, write_store
from ganzoo.engine.conditioning import requested_rows
from ganzoo.engine.model import refresh_spectral_norms
from ganzoo.engine.plan import RunPlan, plan_networks, plan_run, stored_config
from ganzoo.engine.run_state import checkpoint_networks
from ganzoo.engine.sampling import Sampler, load_sampler
from ganzoo.engine.training import Run, Trainer, run_training, set_up
from ganzoo.evaluation.scoring import Reference, batches_of, extract
from ganzoo.registry.components import Registry
from ganzoo.registry.loading import get_registry, load_plugins
from ganzoo.runtime.checkpoint import checkpoint_config, load_checkpoint, load_weights, save_checkpoint, snapshot_steps
from ganzoo.runtime.config import TrainConfig, build_config
from ganzoo.runtime.context import RunContext, resolve_device
from ganzoo.runtime.pixels import to_float, to_uint8

__all__ = [
    "BadImage", "BatchSampler", "NearDuplicateIndex", "Reference", "Registry", "ResidentBatches", "Run", "RunContext", "RunPlan",
    "Sampler", "StreamedBatches", "TrainConfig", "Trainer", "batches_of", "build_config", "checkpoint_config",
    "checkpoint_parameters", "clean_image", "config", "cover_signature", "derived_store", "export_store", "extract", "extractor",
    "features", "finished_cover", "get_registry", "list_files", "load_checkpoint", "load_plugins", "load_sampler", "load_store",
    "open_dataset", "plan_run", "prepare", "project", "read_ahead", "refresh_spectral_norms", "requested_rows", "resolve_device", "run_bench",
    "run_training", "save_checkpoint", "set_up", "snapshot_steps", "store_subset", "studio_app", "to_float", "to_uint8", "trained_critic", "training_data",
    "write_cover_folder", "write_metadata_csv", "write_rows", "write_store",
]


def config(settings: dict[str, Any] | None = None, **groups) -> TrainConfig:
    """A validated training config from grouped settings: ``config(recipe="wgan", schedule={"steps": 10})``."""
    return build_config({**(settings or {}), **groups})


def checkpoint_parameters(path: str | Path) -> int:
    """How many parameters a checkpoint's generator and critic have together."""
    state = load_checkpoint(path)
    networks = checkpoint_networks(state, plan_networks(stored_config(state, get_registry()), get_registry()))
    return sum(p.numel() for network in networks for p in network.parameters())


def studio_app(path: str | Path, device: str | torch.device = "cpu"):
    """The cover studio's Flask app for a checkpoint (serve it with werkzeug, or call it with its test client)."""
    from ganzoo.apps.studio import Studio, create_app

    return create_app(Studio(load_sampler(path, torch.device(device))))


def trained_critic(path: str | Path, device: str | torch.device = "cpu") -> Critic:
    """A checkpoint's critic, weights loaded, in eval mode."""
    state = load_checkpoint(path)
    _, critic = checkpoint_networks(state, plan_networks(stored_config(state, get_registry()), get_registry()))
    load_weights(critic, state["critic"], "critic")
    return critic.to(device).eval()


def training_data(path: str | Path, wanted: int | None = None) -> ImageData:
    """The data a checkpoint was trained on, opened as its config names it (a script may; sampling never does)."""
    config = stored_config(load_checkpoint(path), get_registry())
    return open_dataset(config.data.name, config.data.image_size, get_registry(), config.options, wanted=wanted,
                        progress=False)


def extractor(name: str | None = None, options: dict | None = None, device: str | torch.device = "cpu",
              ) -> FeatureExtractor:
    """A feature extractor plugin (the default one when None), in eval mode on ``device``."""
    registry = get_registry()
    name = name or registry.default("feature_extractor").name
    return registry.create("feature_extractor", name, options).to(device).eval()


def features(network: FeatureExtractor, images: np.ndarray | Iterable[torch.Tensor], device="cpu",
             total: int | None = None) -> torch.Tensor:
    """Features (N, F) in float64 of uint8 images: an (N, S, S, 3) array, or batches of (B, 3, S, S) tensors."""
    if isinstance(images, np.ndarray):
        total, images = len(images), batches_of(images, np.arange(len(images)))
    found, _ = extract(network, images, total or 0, torch.device(device), with_logits=False, desc="features",
                       progress=False)
    return found


def store_subset(source: str | Path, count: int, seed: int, out: str | Path) -> Path:
    """A new store of ``count`` rows of ``source`` drawn at random with ``seed`` (row order kept)."""
    data = load_store(source)
    rows = np.sort(np.random.default_rng(seed).permutation(len(data.images))[:count])
    return derived_store(out, lambda staging: write_rows(data, rows, staging, f"{data.name}-{count}",
                                                         f"{data.fingerprint}-subset-{count}-{seed}"))


def write_cover_folder(folder: str | Path, count: int, size: int) -> Path:
    """A folder of ``count`` PNG covers of the default dataset at ``size`` px: input for smoke runs of scripts
    that read a folder of real covers."""
    data: ImageData = open_dataset(None, size, get_registry(), {}, wanted=count, progress=False)
    return write_images(data.images[:count], folder)


def export_store(store: str | Path, folder: str | Path, suffix: str = ".png") -> Path:
    """Every image of a prepared store as its own file (``.png``, or ``.jpg`` at quality 95 to travel small),
    for tools that read folders (a peer's CLI)."""
    return write_images(load_store(store).images, folder, suffix)


def write_images(images: np.ndarray, folder: str | Path, suffix: str = ".png") -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        Image.fromarray(np.asarray(image)).save(folder / f"cover{index:05d}{suffix}", quality=95)
    return folder
