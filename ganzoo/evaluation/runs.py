"""Ranking training runs by the scores their evaluations recorded in metrics.jsonl, refusing runs measured
under different protocols (``ganzoo bench compare``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ganzoo.api.errors import GanzooError
from ganzoo.api.interfaces import Metric
from ganzoo.registry.components import Registry

PROTOCOL_KEYS = ("real_images", "generated_images", "extractor", "image_size", "reference_fingerprint",
                 "quantisation")
"""Protocol fields whose difference makes two runs' scores incomparable."""


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
    return score_key(name, metric), metric.lower_is_better


def score_key(name: str, metric: Metric) -> str:
    """The metrics.jsonl key of metric ``name``'s primary score."""
    return f"eval/{metric.primary or name}"


def read_run_scores(run_dir: str | Path, metric: str, key: str) -> RunScores:
    """A run's recorded values of ``key`` (``primary_score``) over steps, with its evaluation protocol."""
    run_dir = Path(run_dir)
    try:
        config = json.loads((run_dir / "config.json").read_text())
        protocol = json.loads((run_dir / "eval_protocol.json").read_text())
        lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    except FileNotFoundError as error:
        raise GanzooError(f"{run_dir} has no {Path(error.filename).name}: pass --score to score its snapshots "
                          "now, or train with --set evaluation.every=N to record scores") from None
    except ValueError as error:
        raise GanzooError(f"{run_dir}: unreadable run files ({error})") from None
    points = [(line["step"], line[key]) for line in lines if key in line]
    if not points:
        raise GanzooError(f"{run_dir} recorded no {metric} scores: pass --score to score its snapshots now, or "
                          f"train with --set 'evaluation.metrics=[{metric}]'")
    return RunScores(run=str(run_dir), recipe=config.get("recipe", "?"), steps=[s for s, _ in points],
                     values=[v for _, v in points], protocol=protocol)


def read_bench_scores(path: str | Path, metric: str, key: str) -> RunScores:
    """One ``ganzoo bench`` result (its JSON file) as a run scored once, at the step its source was saved at."""
    try:
        result = json.loads(Path(path).read_text())
        protocol, scores = result["protocol"], result["scores"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise GanzooError(f"{path} is not a ganzoo bench result ({error})") from None
    name = key.split("/", 1)[1]
    if not isinstance(scores, dict) or not isinstance(scores.get(name), (int, float)):
        raise GanzooError(f"{path} holds no {metric} score (bench it with --metric {metric})")
    step = protocol.get("source_step", 0)
    return RunScores(run=str(path), recipe=protocol.get("recipe", "-"), steps=[step], values=[float(scores[name])],
                     protocol=protocol)


def protocol_differences(runs: list[RunScores]) -> list[str]:
    """Protocol fields (of PROTOCOL_KEYS) on which the runs disagree."""
    return [key for key in PROTOCOL_KEYS
            if len({json.dumps(r.protocol.get(key), sort_keys=True) for r in runs}) > 1]


def rank_runs(runs: list[RunScores], metric: str, allow_mixed_protocols: bool = False,
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
