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
from ganzoo.evaluation.scoring import (Reference, base_protocol, evaluate, load_reference_statistics, plan_scoring,
                                       save_reference_statistics)
from ganzoo.registry.components import Registry
from ganzoo.registry.loading import get_registry
from ganzoo.runtime.checkpoint import checkpoint_file


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
    statistics, statistics_size = load_reference_statistics(ref) if is_statistics(ref) else (None, None)
    size = sampler.image_size if sampler else (image_size or stored_size(source) or statistics_size
                                               or (ref and stored_size(ref)))
    if size is None:
        raise GanzooError("say the image size to score at with --size (neither the source nor the reference is a "
                          "checkpoint or a prepared store)")
    if statistics is not None and size != statistics_size:
        raise GanzooError(f"the reference statistics {ref} were taken at {statistics_size} px and the source is "
                          f"scored at {size} px")
    if statistics is not None and plan.extractor is not None:  # before any image is generated
        width = statistics.features(plan.extractor, device).shape[1]
        if width != plan.extractor.num_features:
            raise GanzooError(f"the reference statistics {ref} hold features of width {width}; the extractor makes "
                              f"{plan.extractor.num_features}")
    needing_sampler = [name for name, metric in plan.metrics.items() if metric.needs_sampler]
    if needing_sampler and sampler is None:
        raise GanzooError(f"{needing_sampler[0]} needs a checkpoint: it generates covers itself")
    reference = None
    if any(metric.needs_reference for metric in plan.metrics.values()):
        if statistics is not None:
            needing_pixels = [name for name, m in plan.metrics.items() if m.needs_reference and (m.needs_images or not
                                                                                                   m.needs_features)]
            if needing_pixels:
                raise GanzooError(f"{needing_pixels[0]} needs the reference's images; reference statistics hold "
                                  "features only")
        reference = statistics or Reference(open_dataset(ref, size, registry, options, wanted=real), real, seed)
    source_data = None if sampler else open_dataset(source, size, registry, options, wanted=generated)
    generated = generated if sampler else min(generated, len(source_data.images))
    plan.check_counts(generated, reference.size if reference else None)
    if plan.needs_logits:  # fail before any extraction if there is no classifier
        plan.extractor.logits(torch.zeros(1, 3, size, size, dtype=torch.uint8, device=device))
    warnings = plan.warnings(generated, reference.size if reference else None)
    scores, protocol = evaluate(plan, generated, seed, device, sampler=sampler, source=source_data,
                                reference=reference, progress=progress)
    protocol = base_protocol(seed, size, device) | {"source": str(source), "metrics": list(plan.metrics)} | protocol
    if sampler is not None:
        protocol["recipe"] = sampler.config.recipe
    if reference is not None:
        protocol |= {"reference": ref or registry.default("dataset").name,
                     "reference_fingerprint": reference.data.fingerprint, "real_images": reference.size}
    return {"scores": scores, "protocol": protocol | {"warnings": warnings}}


def is_statistics(ref: str | None) -> bool:
    """Whether ``ref`` names a reference statistics file (``ganzoo bench stats``)."""
    return ref is not None and ref.endswith(".npz") and Path(ref).is_file()


def export_statistics(ref: str | None, real: int, seed: int, image_size: int, extractor_name: str | None,
                      options: dict[str, dict], device: torch.device, out: str | Path,
                      registry: Registry | None = None, progress: bool = True) -> dict[str, Any]:
    """Extract ``real`` reference images' features (the default dataset's when ``ref`` is None) and write them,
    with their protocol, to ``out`` for ``--ref FILE.npz``; returns what was written about."""
    registry = registry or get_registry()
    name = extractor_name or registry.default("feature_extractor").name
    extractor = registry.create("feature_extractor", name, options.get(name)).to(device).eval()
    reference = Reference(open_dataset(ref, image_size, registry, options, wanted=real), real, seed)
    save_reference_statistics(reference, extractor, image_size, device, out, progress)
    return {"reference": reference.data.name, "real_images": reference.size, "image_size": image_size,
            "extractor": extractor.protocol}


def score_snapshots(run_dir: str | Path, metric: str, ref: str | None, generated: int, real: int, seed: int,
                    options: dict[str, dict], device: torch.device, extractor: str | None = None,
                    registry: Registry | None = None, progress: bool = True,
                    ) -> tuple[list[int], list[float], dict[str, Any]]:
    """Score every snapshot a run kept, and its last checkpoint, with ``metric`` (its primary score), against
    ``ref`` (the run's own training data when None): the steps, the scores and the protocol."""
    from ganzoo.evaluation.runs import primary_score
    from ganzoo.engine.plan import stored_config
    from ganzoo.runtime.checkpoint import load_checkpoint, snapshot_steps

    registry = registry or get_registry()
    key, _ = primary_score(metric, registry)
    run_dir = Path(run_dir)
    state = load_checkpoint(run_dir)
    config = stored_config(state, registry)
    ref, options = (ref, options) if ref is not None else (config.data.name, config.options | options)
    sources = {step: f"{run_dir}@{step}" for step in snapshot_steps(run_dir)} | {state["step"]: str(run_dir)}
    steps, values, protocol = [], [], {}
    for step, source in sorted(sources.items()):
        result = run_bench(source, (metric,), ref, generated, real, seed, extractor, options, device,
                           registry=registry, progress=progress)
        steps.append(step)
        values.append(float(result["scores"][key.split("/", 1)[1]]))
        protocol = result["protocol"]
    return steps, values, protocol


def is_checkpoint(source: str) -> bool:
    """Whether ``source`` names a checkpoint: a file, a run folder (one holding checkpoint.pt), ``RUN@best`` or
    ``RUN@STEP``."""
    return checkpoint_file(source).is_file()
