"""Ranking training runs by the scores their evaluations recorded in metrics.jsonl, refusing runs measured
under different protocols (``ganzoo bench compare``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ganzoo.api.errors import GanzooError
from ganzoo.api.interfaces import Metric
from ganzoo.registry.components import Registry
from ganzoo.runtime.untrusted import finite, read_json, read_json_lines

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


class RunConfigRecord(BaseModel):
    """What ``bench compare`` reads of a run's config.json."""

    model_config = ConfigDict(extra="allow")
    recipe: str | None = None


class MetricsRow(BaseModel):
    """A metrics.jsonl row: its step, and scores by name."""

    model_config = ConfigDict(extra="allow")
    step: int = Field(ge=0)


class BenchProtocol(BaseModel):
    model_config = ConfigDict(extra="allow")
    source_step: int = Field(0, ge=0)
    recipe: str = "-"


class BenchResult(BaseModel):
    """What ``bench compare`` reads of a ``ganzoo bench --out`` file."""

    model_config = ConfigDict(extra="allow")
    protocol: BenchProtocol
    scores: dict[str, Any]


class Protocol(BaseModel):
    """A run's eval_protocol.json: a JSON object, whatever its fields."""

    model_config = ConfigDict(extra="allow")


def score_value(value: Any, where: str, key: str) -> float:
    """A recorded score: a finite number, else one line saying where it is not."""
    if not finite(value):
        raise GanzooError(f"{where} {key} is {value!r}, not a finite number")
    return float(value)


def read_run_scores(run_dir: str | Path, metric: str, key: str) -> RunScores:
    """A run's recorded values of ``key`` (``primary_score``) over steps, with its evaluation protocol; its files
    read through the untrusted-file door (no link followed, sizes and nesting bounded, fields validated)."""
    run_dir = Path(run_dir)
    for name in ("config.json", "eval_protocol.json", "metrics.jsonl"):
        if not os.path.lexists(run_dir / name):
            raise GanzooError(f"{run_dir} has no {name}: pass --score to score its snapshots now, or train with "
                              "--set evaluation.every=N to record scores")
    config = read_json(run_dir / "config.json", "run config", RunConfigRecord)
    protocol = read_json(run_dir / "eval_protocol.json", "evaluation protocol", Protocol).model_dump()
    points = [(row.step, score_value(row.model_extra[key], f"{run_dir / 'metrics.jsonl'}, line {number}:", key))
              for number, row in read_json_lines(run_dir / "metrics.jsonl", "metrics log", MetricsRow)
              if key in (row.model_extra or {})]
    if not points:
        raise GanzooError(f"{run_dir} recorded no {metric} scores: pass --score to score its snapshots now, or "
                          f"train with --set 'evaluation.metrics=[{metric}]'")
    return RunScores(run=str(run_dir), recipe=config.recipe or "?", steps=[s for s, _ in points],
                     values=[v for _, v in points], protocol=protocol)


def read_bench_scores(path: str | Path, metric: str, key: str) -> RunScores:
    """One ``ganzoo bench`` result (its JSON file) as a run scored once, at the step its source was saved at."""
    result = read_json(path, "ganzoo bench result", BenchResult)
    name = key.split("/", 1)[1]
    if name not in result.scores:
        raise GanzooError(f"{path} holds no {metric} score (bench it with --metric {metric})")
    value = score_value(result.scores[name], f"{path}:", name)
    return RunScores(run=str(path), recipe=result.protocol.recipe, steps=[result.protocol.source_step],
                     values=[value], protocol=result.protocol.model_dump())


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
