"""Conditions at run time: fitting them to the training table, encoding rows, and turning a user's request
("danceability=0.8, genre=rock") into condition rows drawn from the training data."""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch

from ganzoo.api.errors import GanzooError
from ganzoo.api.interfaces import Condition, Metadata
from ganzoo.registry.components import blame

CONDITION_ROWS = 4096
"""Training rows of the conditioned columns a checkpoint keeps: generate, the studio and bench take unrequested
features from them, so that sampling never opens the training data."""

NEAREST_ROWS = 32
"""Rows a request draws its unspecified features from: the training rows nearest to the requested values."""

SWEEP_PERCENTILES = (1, 99)
"""A continuous sweep runs between these percentiles of the training data."""


def fit_conditions(conditions: Mapping[str, Condition], labels: Mapping[str, str], metadata: Metadata) -> None:
    """Fit each condition (built, in config order) to the training table; ``labels`` name them in errors."""
    for name, condition in conditions.items():
        with blame(labels[name], "failed to fit the training table"):
            condition.fit(metadata)


def condition_record(conditions: Mapping[str, Condition], metadata: Metadata, seed: int = 0) -> dict[str, Any]:
    """What a checkpoint keeps so that sampling never opens the training data: each condition's fitted state
    (None if one cannot keep it), each column's summary (``column_summary``) and up to ``CONDITION_ROWS``
    training rows of the conditioned columns (drawn with ``seed``), which unrequested features are taken from."""
    states = {name: condition.state() for name, condition in conditions.items()}
    columns = [column for condition in conditions.values() for column in condition.columns]
    total = len(metadata[columns[0]]) if columns else 0
    chosen = np.sort(np.random.default_rng(seed).permutation(total)[:CONDITION_ROWS])
    rows = {column: [value if isinstance(value, str) else float(value) for value in metadata[column][chosen].tolist()]
            for column in columns}
    return {"states": states if all(s is not None for s in states.values()) else None,
            "columns": column_summary(conditions, metadata), "rows": rows}


def restore_conditions(conditions: Mapping[str, Condition], labels: Mapping[str, str], states: Any,
                       probe: Metadata, probe_name: str) -> None:
    """Give each condition (built, in config order) the fitted state a checkpoint kept. The states are untrusted
    input: a condition that cannot read its state, whose columns ``probe`` (rows of ``probe_name``) lacks, or
    whose encoding of the probe holds NaN or infinity (a zero or NaN spread), is one line naming it."""
    if not isinstance(states, dict) or set(states) != set(conditions):
        raise GanzooError(f"checkpoint is not usable: it keeps no fitted state for conditions "
                          f"{', '.join(conditions)} (written by an older ganzoo?)")
    for name, condition in conditions.items():
        with blame(labels[name], "cannot read the fitted state the checkpoint keeps"):
            condition.load_state(states[name])
        missing = [column for column in condition.columns if column not in probe]
        if missing:
            raise GanzooError(f"{probe_name} has no {', '.join(missing)} column, which condition {name!r} needs")
        with blame(labels[name], "cannot encode with the checkpoint's fitted state"):
            encoded = condition.encode(probe)
        if not isinstance(encoded, torch.Tensor) or not bool(torch.isfinite(encoded).all()):
            raise GanzooError(f"checkpoint is not usable: condition {name!r} encodes to NaN or infinity with its "
                              "fitted state (a zero or NaN spread?)")


def read_record(record: Any, conditions_names: list[str]) -> tuple[dict[str, dict], Metadata | None]:
    """The column summary and the training rows of a checkpoint's condition record, checked: every summary
    finite with low <= high, rows of equal length with numbers or text. Rows are None for a checkpoint that
    keeps none."""
    if not isinstance(record, dict) or not isinstance(record.get("columns"), dict):
        raise GanzooError(f"checkpoint is not usable: its record of conditions {', '.join(conditions_names)} is "
                          "missing or malformed")
    summary = {}
    for column, entry in record["columns"].items():
        if not isinstance(column, str) or not isinstance(entry, dict):
            raise GanzooError("checkpoint is not usable: its conditions' column summary is malformed")
        if "choices" in entry:
            if not isinstance(entry["choices"], list) or not all(isinstance(c, str) for c in entry["choices"]):
                raise GanzooError(f"checkpoint is not usable: the categories of {column!r} are malformed")
            summary[column] = {"choices": list(entry["choices"])}
            continue
        values = [entry.get(key) for key in ("low", "high", "median")]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values) \
                or not values[0] <= values[2] <= values[1]:
            raise GanzooError(f"checkpoint is not usable: the range of {column!r} is {values}, not finite numbers "
                              "low <= median <= high")
        summary[column] = dict(zip(("low", "high", "median"), map(float, values)))
    rows = record.get("rows")
    if rows is None:
        return summary, None
    lengths = {len(v) for v in rows.values() if isinstance(v, list)} if isinstance(rows, dict) else set()
    if not isinstance(rows, dict) or set(rows) != set(summary) or len(lengths) != 1 or \
            not 0 < lengths.pop() <= CONDITION_ROWS:
        raise GanzooError("checkpoint is not usable: its training rows of the conditions are malformed")
    table = {}
    for column, values in rows.items():
        text = "choices" in summary[column]
        if not all(isinstance(v, (str, float)) if text else isinstance(v, float) for v in values):
            raise GanzooError(f"checkpoint is not usable: its training rows of {column!r} hold values of the wrong "
                              "kind")
        table[column] = np.array(values, dtype=object if text else np.float64)
    return summary, table


def probe_rows(summary: Mapping[str, dict], rows: Metadata | None) -> Metadata:
    """Rows to check fitted states on: the kept training rows, or one row of medians and first categories."""
    if rows is not None:
        return rows
    return {column: np.array([entry["choices"][0] if entry.get("choices") else ""], dtype=object)
            if "choices" in entry else np.array([entry["median"]]) for column, entry in summary.items()}


def column_summary(conditions: Mapping[str, Condition], metadata: Metadata) -> dict[str, dict]:
    """Per condition column: the 1st and 99th percentiles and the median of a continuous one, every category
    of a categorical one. Sweeps and the studio's sliders run over these."""
    summary = {}
    for condition in conditions.values():
        for column in condition.columns:
            values = metadata[column]
            if condition.kind == "categorical":
                summary[column] = {"choices": sorted({v for v in values if isinstance(v, str) and v})}
            else:
                numbers = values.astype(np.float64)
                low, high = np.nanpercentile(numbers, SWEEP_PERCENTILES)
                summary[column] = {"low": float(low), "high": float(high), "median": float(np.nanmedian(numbers))}
    return summary


def encode(conditions: Mapping[str, Condition], rows: Metadata, device) -> torch.Tensor | None:
    """The concatenated condition vectors of ``rows``, or None for an unconditional model."""
    if not conditions:
        return None
    return torch.cat([c.encode(rows) for c in conditions.values()], dim=1).to(device)


UNCONDITIONAL = ("this checkpoint is unconditional: --features, --genre and --sweep need a model trained with "
                 "conditions")


def condition_for(conditions: Mapping[str, Condition], column: str) -> Condition:
    """The condition that reads metadata ``column``; an unknown name raises GanzooError listing valid ones."""
    if not conditions:
        raise GanzooError(UNCONDITIONAL)
    columns = {name: condition for condition in conditions.values() for name in condition.columns}
    if column not in columns:
        raise GanzooError(f"unknown feature {column!r}; this checkpoint is conditioned on: "
                          f"{', '.join(sorted(columns))}")
    return columns[column]


def parse_request(conditions: Mapping[str, Condition], features: str | None = None, category: str | None = None,
                  ) -> dict[str, Any]:
    """Requested column values from ``--features name=value,...`` and ``--genre VALUE`` (the value of the
    checkpoint's categorical condition). Unknown names and bad values raise GanzooError listing valid ones."""
    if (features or category is not None) and not conditions:
        raise GanzooError(UNCONDITIONAL)
    request: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in (features or "").split(","))):
        name, equals, text = item.partition("=")
        name = name.strip()
        if not equals:
            raise GanzooError(f"--features: expected name=value, got {item!r}")
        request[name] = condition_for(conditions, name).parse(name, text.strip())
    if category is not None:
        categorical = [c for c in conditions.values() if c.kind == "categorical"]
        if len(categorical) != 1:
            raise GanzooError("--genre needs a checkpoint with exactly one categorical condition; this one has "
                              f"{len(categorical)} (use --features column=value)")
        column = categorical[0].columns[0]
        request[column] = categorical[0].parse(column, category)
    return request


def requested_rows(metadata: Metadata, request: Mapping[str, Any], count: int, seed: int) -> Metadata:
    """``count`` condition rows with the requested values; every other column comes from training rows that
    match the requested categories and lie nearest to the requested numbers (the ``NEAREST_ROWS`` nearest, in
    units of each column's standard deviation), so unspecified features follow the data's joint distribution."""
    total = len(next(iter(metadata.values())))
    candidates = np.arange(total)
    numeric = {}
    for column, value in request.items():
        if isinstance(value, str):
            candidates = candidates[metadata[column][candidates] == value]
        else:
            numeric[column] = value
    if len(candidates) == 0:
        raise GanzooError("no training rows match " + ", ".join(f"{k}={v}" for k, v in request.items()
                                                                 if isinstance(v, str)))
    if numeric:
        distance = np.zeros(len(candidates))
        for column, value in numeric.items():
            values = metadata[column].astype(np.float64)
            spread = np.nanstd(values) or 1.0
            distance += np.nan_to_num((values[candidates] - value) / spread, nan=1e6) ** 2
        candidates = candidates[np.argsort(distance, kind="stable")[:NEAREST_ROWS]]
    generator = torch.Generator().manual_seed(seed)
    chosen = candidates[torch.randint(len(candidates), (count,), generator=generator).numpy()]
    rows = {column: values[chosen].copy() for column, values in metadata.items()}
    for column, value in request.items():
        rows[column][:] = value
    return rows


def sweep_values(summary: Mapping[str, dict], condition: Condition, column: str, steps: int) -> list:
    """The values a ``--sweep`` of ``column`` steps through (``summary`` from ``column_summary``): evenly from
    the 1st to the 99th percentile of the training data for a continuous column, every category for a
    categorical one."""
    if condition.kind == "categorical":
        return list(summary[column]["choices"])
    return list(np.linspace(summary[column]["low"], summary[column]["high"], steps))


def given_rows(conditions: Mapping[str, Condition], request: Mapping[str, Any], count: int) -> Metadata:
    """``count`` condition rows made of the request alone, for a checkpoint that keeps no training rows (written
    by an older ganzoo): every conditioned column must be given."""
    missing = [column for condition in conditions.values() for column in condition.columns if column not in request]
    if missing:
        raise GanzooError("this checkpoint keeps no training rows to draw unrequested features from, so every "
                          f"conditioned feature must be given (missing: {', '.join(missing)})")
    return {column: np.array([value] * count, dtype=object if isinstance(value, str) else np.float64)
            for column, value in request.items()}
