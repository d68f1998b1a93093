"""``ganzoo bench``: scoring a checkpoint, store, image folder or dataset with metric plugins against a
reference, each score stored with its full protocol; and ranking training runs by their evaluated scores."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganzoo.data.sources import open_dataset
from ganzoo.data.store import is_store, read_manifest
from ganzoo.errors import GanzooError
from ganzoo.evaluation import Reference, base_protocol, build_extractor, build_metrics, check_counts, evaluate
from ganzoo.interfaces import Metric
from ganzoo.plugins import Registry, get_registry
from ganzoo.sampling import load_sampler

PROTOCOL_KEYS = ("real_images", "generated_images", "extractor", "image_size", "reference_fingerprint",
                 "quantisation")
"""Protocol fields whose difference makes two runs' scores incomparable."""


def stored_size(name: str) -> int | None:
    """The image size of a prepared store, or None for anything else."""
    path = Path(name)
    return read_manifest(path)["image_size"] if path.is_dir() and is_store(path) else None


def run_bench(source: str, metrics: tuple[str, ...], ref: str | None, generated: int, real: int, seed: int,
              extractor_name: str | None, options: dict[str, dict], device: torch.device,
              image_size: int | None = None, registry: Registry | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Score ``source`` (a checkpoint, run folder, store, image folder or dataset name) against ``ref`` (the
    default dataset when None) with the named metric plugins, built from ``options[name]``.

    Everything that can be checked is checked before images are generated or features extracted: metric
    names, the reference, image counts against each metric's minimum. Scores from too few images to mean
    anything come with warnings in ``protocol["warnings"]``.
    """
    registry = registry or get_registry()
    chosen = build_metrics(metrics, options, registry)
    source_path = Path(source)
    is_checkpoint = source_path.is_file() or (source_path / "checkpoint.pt").is_file()
    sampler = load_sampler(source, device, registry) if is_checkpoint else None
    size = sampler.image_size if sampler else (image_size or stored_size(source) or (ref and stored_size(ref)))
    if size is None:
        raise GanzooError("say the image size to score at with --size (neither the source nor the reference is a "
                          "checkpoint or a prepared store)")
    needing_sampler = [name for name, metric in chosen.items() if metric.needs_sampler]
    if needing_sampler and sampler is None:
        raise GanzooError(f"{needing_sampler[0]} needs a checkpoint: it generates covers itself")
    reference = None
    if any(metric.needs_reference for metric in chosen.values()):
        reference = Reference(open_dataset(ref, size, registry, options, wanted=real), real, seed)
    source_data = None
    if sampler is None:
        source_data = open_dataset(source, size, registry, options, wanted=generated)
        generated = min(generated, len(source_data.images))
    check_counts(chosen, registry, generated, reference.size if reference else None)
    needs_extractor = any(m.needs_features or m.needs_logits for m in chosen.values())
    extractor = None
    if needs_extractor:
        extractor_name = extractor_name or registry.default("feature_extractor").name
        extractor = build_extractor(extractor_name, options.get(extractor_name), registry, device)
        if any(m.needs_logits for m in chosen.values()):  # fail before any extraction if there is no classifier
            extractor.logits(torch.zeros(1, 3, size, size, dtype=torch.uint8, device=device))
    warnings = [warning for metric in chosen.values() for warning in metric.warnings(
        generated, reference.size if reference else None, extractor.num_features if extractor else None)]
    scores, protocol = evaluate(chosen, registry, generated, seed, device, sampler=sampler, source=source_data,
                                reference=reference, extractor=extractor, progress=progress)
    protocol = base_protocol(seed, size, device) | {"source": str(source), "metrics": list(chosen)} | protocol
    if reference is not None:
        protocol |= {"reference": ref or registry.default("dataset").name,
                     "reference_fingerprint": reference.data.fingerprint, "real_images": reference.size}
    return {"scores": scores, "protocol": protocol | {"warnings": warnings}}


@dataclass
class RunScores:
    """One training run's evaluated metric over steps, with the protocol it was measured under."""

    run: str
    recipe: str
    steps: list[int]
    values: list[float]
    protocol: dict[str, Any]


def primary_score(name: str, registry: Registry) -> tuple[str, bool]:
    """The metrics.jsonl key a metric is ranked by (``eval/fid``, ``eval/kid_mean``) and whether lower is better."""
    metric: Metric = registry.create("metric", name)
    return f"eval/{metric.primary or name}", metric.lower_is_better


def read_run_scores(run_dir: str | Path, metric: str, registry: Registry | None = None) -> RunScores:
    registry = registry or get_registry()
    run_dir = Path(run_dir)
    key, _ = primary_score(metric, registry)
    try:
        config = json.loads((run_dir / "config.json").read_text())
        protocol = json.loads((run_dir / "eval_protocol.json").read_text())
        lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    except FileNotFoundError as error:
        raise GanzooError(f"{run_dir} has no {Path(error.filename).name}: train it with --set eval_every=N "
                          "to record scores") from None
    except ValueError as error:
        raise GanzooError(f"{run_dir}: unreadable run files ({error})") from None
    points = [(line["step"], line[key]) for line in lines if key in line]
    if not points:
        raise GanzooError(f"{run_dir} recorded no {metric} scores (train it with --set 'eval_metrics=[{metric}]')")
    return RunScores(run=str(run_dir), recipe=config.get("recipe", "?"), steps=[s for s, _ in points],
                     values=[v for _, v in points], protocol=protocol)


def protocol_differences(runs: list[RunScores]) -> list[str]:
    """Protocol fields (of PROTOCOL_KEYS) on which the runs disagree."""
    return [key for key in PROTOCOL_KEYS
            if len({json.dumps(r.protocol.get(key), sort_keys=True) for r in runs}) > 1]


def leaderboard(runs: list[RunScores], metric: str, allow_mixed_protocols: bool = False,
                lower_is_better: bool = True) -> str:
    """A markdown table ranking runs by their best score."""
    differing = protocol_differences(runs)
    if differing and not allow_mixed_protocols:
        raise GanzooError(f"the runs' {metric} scores were measured under different protocols "
                          f"({', '.join(differing)} differ); they are not comparable. Pass "
                          "--allow-mixed-protocols to list them anyway")
    best_of = np.argmin if lower_is_better else np.argmax
    ranked = sorted(runs, key=lambda r: r.values[best_of(r.values)] * (1 if lower_is_better else -1))
    lines = [f"| rank | run | recipe | best {metric} | at step | last {metric} | last step |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for rank, r in enumerate(ranked, 1):
        best = int(best_of(r.values))
        lines.append(f"| {rank} | {r.run} | {r.recipe} | {r.values[best]:.2f} | {r.steps[best]} | "
                     f"{r.values[-1]:.2f} | {r.steps[-1]} |")
    if differing:
        lines.append(f"\nWarning: protocols differ in {', '.join(differing)}; scores are not comparable.")
    return "\n".join(lines)
