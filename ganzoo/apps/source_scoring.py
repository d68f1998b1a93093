"""Scoring a source (a checkpoint or run folder, a store, an image folder or a dataset) against a reference with
metric plugins, each score stored with its full protocol (``ganzoo bench``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ganzoo.api.errors import GanzooError
from ganzoo.data.sources import open_dataset
from ganzoo.data.store import is_store, read_manifest
from ganzoo.engine.sampling import load_sampler
from ganzoo.evaluation.scoring import Reference, base_protocol, evaluate, plan_scoring
from ganzoo.registry.components import Registry
from ganzoo.registry.loading import get_registry


def stored_size(name: str) -> int | None:
    """The image size of a prepared store, or None for anything else."""
    path = Path(name)
    return read_manifest(path)["image_size"] if path.is_dir() and is_store(path) else None


def run_bench(source: str, metrics: tuple[str, ...], ref: str | None, generated: int, real: int, seed: int,
              extractor_name: str | None, options: dict[str, dict], device: torch.device,
              image_size: int | None = None, registry: Registry | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Score ``source`` (a checkpoint, run folder, store, image folder or dataset name) against ``ref`` (the
    default dataset when None) with the named metric plugins (the default metric when none), built from
    ``options[name]``.

    Everything that can be checked is checked before images are generated or features extracted: metric
    names, the reference, image counts against each metric's minimum, the extractor's classifier. Scores from
    too few images to mean anything come with warnings in ``protocol["warnings"]``.
    """
    registry = registry or get_registry()
    plan = plan_scoring(metrics, extractor_name, options, registry).on(device)
    sampler = load_sampler(source, device, registry) if is_checkpoint(source) else None
    size = sampler.image_size if sampler else (image_size or stored_size(source) or (ref and stored_size(ref)))
    if size is None:
        raise GanzooError("say the image size to score at with --size (neither the source nor the reference is a "
                          "checkpoint or a prepared store)")
    needing_sampler = [name for name, metric in plan.metrics.items() if metric.needs_sampler]
    if needing_sampler and sampler is None:
        raise GanzooError(f"{needing_sampler[0]} needs a checkpoint: it generates covers itself")
    reference = None
    if any(metric.needs_reference for metric in plan.metrics.values()):
        reference = Reference(open_dataset(ref, size, registry, options, wanted=real), real, seed)
    source_data = None if sampler else open_dataset(source, size, registry, options, wanted=generated)
    generated = generated if sampler else min(generated, len(source_data.images))
    plan.check_counts(generated, reference.size if reference else None)
    if plan.needs_logits:  # fail before any extraction if there is no classifier
        plan.extractor.logits(torch.zeros(1, 3, size, size, dtype=torch.uint8, device=device))
    warnings = plan.warnings(generated, reference.size if reference else None)
    scores, protocol = evaluate(plan, generated, seed, device, sampler=sampler, source=source_data,
                                reference=reference, progress=progress)
    protocol = base_protocol(seed, size, device) | {"source": str(source), "metrics": list(plan.metrics)} | protocol
    if reference is not None:
        protocol |= {"reference": ref or registry.default("dataset").name,
                     "reference_fingerprint": reference.data.fingerprint, "real_images": reference.size}
    return {"scores": scores, "protocol": protocol | {"warnings": warnings}}


def is_checkpoint(source: str) -> bool:
    """Whether ``source`` names a checkpoint file or a run folder (one holding checkpoint.pt)."""
    path = Path(source)
    return path.is_file() or (path / "checkpoint.pt").is_file()
