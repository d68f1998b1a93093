"""Checkpoints: written atomically (temporary file, then rename) with a digest of their contents, read with
``weights_only=True`` so a crafted file cannot run code on load, then checked: digest, structure, finite
weights. Whatever is wrong with a file is one GanzooError line."""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import pydantic
import torch

from ganzoo.api.options import format_validation_error
from ganzoo.runtime.config import TrainConfig, regrouped
from ganzoo.api.errors import GanzooError
from ganzoo.runtime.files import atomic_file, check_no_link

CHECKPOINT_FORMAT = "ganzoo-checkpoint"
CHECKPOINT_VERSION = 2
NETWORKS = ("generator", "critic", "ema")
"""The weight tables of a training checkpoint, checked for non-finite values on load."""
TORCH_MAGIC = (b"PK\x03\x04", b"\x80")
"""How files written by torch.save begin: a zip archive (the default) or a bare pickle (legacy format)."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` so that ``path`` holds either the old or the new checkpoint, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    contents = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
    contents["digest"] = contents_digest(contents)
    with atomic_file(path, sync=True) as f:
        torch.save(contents, f)


def remove_partial_saves(path: str | Path) -> None:
    """Delete temporary files a killed ``save_checkpoint`` left beside ``path`` (call while holding the folder's
    lock: only then is no save in flight)."""
    path = Path(path)
    for leftover in path.parent.glob(f"{path.name}.*.tmp"):
        leftover.unlink(missing_ok=True)


def contents_digest(state: dict[str, Any]) -> str:
    """BLAKE2b over every key, value and tensor byte of a checkpoint (but its own ``digest``), in a fixed order."""
    digest = hashlib.blake2b(digest_size=20)

    def feed(value) -> None:
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"tensor {tensor.dtype} {tuple(tensor.shape)}:".encode())
            if tensor.numel():
                digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
        elif isinstance(value, dict):
            keys = sorted((key for key in value if not (value is state and key == "digest")), key=repr)
            digest.update(f"dict {len(keys)}:".encode())
            for key in keys:
                digest.update(f"{key!r}=".encode())
                feed(value[key])
        elif isinstance(value, (list, tuple)):
            digest.update(f"{type(value).__name__} {len(value)}:".encode())
            for item in value:
                feed(item)
        else:
            digest.update(f"{type(value).__name__} {value!r};".encode())

    feed(state)
    return digest.hexdigest()


SNAPSHOTS = "snapshots"
BEST = "best.pt"
"""A run folder's snapshots (``snapshots/step_0001500.pt``, weights only) and its best-scored one."""
NAMED_SNAPSHOT = re.compile(r"^(?P<run>.+)@(?P<which>best|[0-9]+)$")


def snapshot_name(step: int) -> str:
    return f"step_{step:07d}.pt"


def snapshot_steps(run_dir: Path) -> list[int]:
    """The steps of a run folder's snapshots, in order: files named as ganzoo names them (``snapshot_name``) in a
    ``snapshots`` folder that is not a link."""
    folder = check_no_link(run_dir / SNAPSHOTS, "folder")
    found = (re.fullmatch(r"step_([0-9]{7,})\.pt", entry.name) for entry in folder.iterdir()) if folder.is_dir() else ()
    return sorted(int(match.group(1)) for match in found if match and match.group(0) == snapshot_name(int(match.group(1))))


def checkpoint_file(source: str | Path) -> Path:
    """The file a checkpoint source names: a checkpoint file, a run folder (its ``checkpoint.pt``),
    ``RUN@best`` (its ``best.pt``) or ``RUN@STEP`` (its snapshot of that step)."""
    path = Path(source)
    if path.is_dir():
        return check_no_link(path / "checkpoint.pt")
    named = NAMED_SNAPSHOT.match(str(source))
    if path.exists() or not named or not Path(named["run"]).is_dir():
        return path
    run_dir = Path(named["run"])
    if named["which"] == "best":
        if not (run_dir / BEST).is_file():
            raise GanzooError(f"{run_dir} has no {BEST}: a run keeps one when it trains with "
                              "schedule.snapshot_every and evaluation.metrics")
        return check_no_link(run_dir / BEST)
    step, steps = int(named["which"]), snapshot_steps(Path(named["run"]))
    if step not in steps:
        kept = ", ".join(map(str, steps)) or "none (train with schedule.snapshot_every=N)"
        raise GanzooError(f"{run_dir} has no snapshot of step {step}; its snapshots: {kept}")
    return check_no_link(run_dir / SNAPSHOTS / snapshot_name(step))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint (a file, a run folder's ``checkpoint.pt``, ``RUN@best`` or ``RUN@STEP``):
    tensors and plain containers only (anything else, such as pickled code, is refused), a matching digest, the
    fields training and sampling read, and finite weights. Every problem is a GanzooError."""
    path = checkpoint_file(path)
    if not path.is_file():
        raise GanzooError(f"no checkpoint at {path}")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as error:
        raise GanzooError(f"cannot read {path}: {error.strerror}") from None
    if not head.startswith(TORCH_MAGIC):
        what = "an empty file" if not head else "not a file torch.save wrote"
        raise GanzooError(f"{path} is not a ganzoo checkpoint ({what})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # damaged files make torch warn about odd pickle protocols
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if "GLOBAL" in str(error):
            raise GanzooError(f"refusing to load {path}: it holds objects other than weights (pickled code or "
                              "classes), which could run code") from None
        raise GanzooError(f"{path} is not a readable checkpoint: {first_line(error)}") from None
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as error:  # torch's readers fail on damaged files with many exception types
        raise GanzooError(f"{path} is not a readable checkpoint: {first_line(error)}") from None
    check_contents(state, path)
    return state


def check_contents(state: Any, path: Path) -> None:
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise GanzooError(f"{path} is not a ganzoo checkpoint")
    if state.get("version") != CHECKPOINT_VERSION:
        raise GanzooError(f"{path} is checkpoint version {state.get('version')!r}; this ganzoo reads version "
                          f"{CHECKPOINT_VERSION}")
    if state.get("digest") != contents_digest(state):
        raise GanzooError(f"{path} is damaged: its contents do not match the digest written with them")
    for name in NETWORKS:
        weights = state.get(name)
        if weights is None:
            continue
        if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
            raise GanzooError(f"{path} is not a ganzoo checkpoint: {name!r} is not a table of tensors")
        for key, tensor in weights.items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise GanzooError(f"{path} holds non-finite {name} weights ({key} has NaN or infinity): training "
                                  "diverged before it was written; use an earlier checkpoint or train again")


def field(state: dict[str, Any], name: str, kind: type | tuple[type, ...], path: str | Path = "checkpoint"):
    """``state[name]`` if present and of ``kind``; a GanzooError naming the field otherwise."""
    value = state.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        found = "missing" if name not in state else f"a {type(value).__name__}"
        raise GanzooError(f"{path} is not a usable ganzoo checkpoint: {name!r} should be a {expected}, is {found}")
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        raise GanzooError(f"{path} is not a usable ganzoo checkpoint: {name!r} is negative ({value})")
    if isinstance(value, float) and not math.isfinite(value):
        raise GanzooError(f"{path} is not a usable ganzoo checkpoint: {name!r} is {value}")
    return value


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0][:200] if text else type(error).__name__)


def load_weights(module: torch.nn.Module, weights: dict[str, torch.Tensor], what: str) -> None:
    """``module.load_state_dict(weights)``; weights that do not fit (another version of the architecture
    plugin, different options) raise a GanzooError naming the first differences."""
    try:
        module.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as error:
        detail = " ".join(str(error).split())
        raise GanzooError(f"the checkpoint's {what} weights do not fit the network its config builds (saved "
                          f"by another version of the architecture plugin?): {detail[:300]}") from None


def load_optimiser_state(optimiser: torch.optim.Optimizer, state: Any, what: str) -> None:
    """``optimiser.load_state_dict(state)`` after checking the state against the optimiser's parameters: the
    same groups and hyperparameters, each parameter's state holding the entries this optimiser keeps (found by
    stepping a throwaway copy of it on one parameter) with the parameter's shape, finite. A crafted or damaged
    state would otherwise fail inside the optimiser's first step."""
    def refuse(reason: str) -> GanzooError:
        return GanzooError(f"the checkpoint's {what} optimiser state does not fit this run: {reason}")

    if not isinstance(state, dict) or set(state) != {"state", "param_groups"}:
        raise refuse("it is not a table of 'state' and 'param_groups'")
    groups, entries = state["param_groups"], state["state"]
    ours = optimiser.param_groups
    if not isinstance(groups, list) or len(groups) != len(ours) or not isinstance(entries, dict):
        raise refuse(f"it has {len(groups) if isinstance(groups, list) else 'no'} parameter groups, this run "
                     f"{len(ours)}")
    parameters = [p for group in ours for p in group["params"]]
    indices = []
    for theirs, mine in zip(groups, ours):
        if not isinstance(theirs, dict) or set(theirs) != set(mine) or not isinstance(theirs["params"], list) \
                or len(theirs["params"]) != len(mine["params"]):
            raise refuse("its parameter groups differ from this run's")
        indices += theirs["params"]
        for key, value in theirs.items():
            if key != "params" and not (plain_setting(value) and same_kind(value, mine[key])):
                raise refuse(f"its setting {key!r} is {str(value)[:40]}, where this run's is {str(mine[key])[:40]}")
    if not all(type(i) is int for i in indices) or sorted(indices) != list(range(len(parameters))):
        raise refuse("its parameter numbering differs from this run's")
    reference = optimiser_entries(optimiser)
    for index, entry in entries.items():
        if not isinstance(index, int) or not 0 <= index < len(parameters) or not isinstance(entry, dict):
            raise refuse(f"it holds state for a parameter {str(index)[:20]} this run does not have")
        if reference is not None and set(entry) != set(reference):
            raise refuse(f"parameter {index} keeps {sorted(entry)}, this optimiser {sorted(reference)}")
        for key, value in entry.items():
            shaped = reference.get(key) if reference is not None else None
            expected = tuple(parameters[index].shape) if shaped else None
            if not isinstance(value, torch.Tensor) or (expected is not None and tuple(value.shape) != expected) \
                    or (shaped is False and value.numel() != 1) \
                    or (value.is_floating_point() and not bool(torch.isfinite(value).all())):
                raise refuse(f"entry {key!r} of parameter {index} is not a finite tensor of the parameter's shape")
    try:
        optimiser.load_state_dict(state)
    except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as error:
        raise refuse(first_line(error)) from None


def plain_setting(value) -> bool:
    """A hyperparameter an optimiser's group may hold: a finite number, a flag, text, None or a tuple of them."""
    if isinstance(value, (list, tuple)):
        return all(plain_setting(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, torch.Tensor):
        return value.numel() == 1 and bool(torch.isfinite(value).all())
    return value is None or isinstance(value, (bool, int, str))


def same_kind(value, reference) -> bool:
    """Whether an optimiser setting from a checkpoint has the kind of this run's: numbers for numbers, flags for
    flags, tuples of the same length, None for None."""
    if isinstance(reference, (list, tuple)):
        return isinstance(value, (list, tuple)) and len(value) == len(reference) and all(
            same_kind(v, r) for v, r in zip(value, reference))
    if isinstance(reference, bool) or reference is None or isinstance(reference, str):
        return type(value) is type(reference)
    if isinstance(reference, (int, float, torch.Tensor)):
        return isinstance(value, (int, float, torch.Tensor)) and not isinstance(value, bool)
    return True


def optimiser_entries(optimiser: torch.optim.Optimizer) -> dict[str, bool] | None:
    """The entries this optimiser keeps per parameter, each marked True when it has the parameter's shape: what a
    copy of it with the first group's settings keeps after one step on a small parameter. None when the optimiser
    cannot be copied that way."""
    settings = {k: v for k, v in optimiser.param_groups[0].items() if k != "params"}
    probe = torch.zeros(3, requires_grad=True, device=optimiser.param_groups[0]["params"][0].device
                        if optimiser.param_groups[0]["params"] else "cpu")
    try:
        copy = type(optimiser)([probe], **settings)
        probe.grad = torch.zeros_like(probe)
        copy.step()
    except Exception:  # an optimiser whose settings are not its constructor's arguments: structure checks only
        return None
    return {key: isinstance(value, torch.Tensor) and tuple(value.shape) == (3,)
            for key, value in copy.state[probe].items()}


def checkpoint_config(state: dict[str, Any], path: str | Path = "checkpoint") -> TrainConfig:
    """The training config a checkpoint was written with, validated (one written before configs were grouped is
    regrouped first)."""
    text = field(state, "config", str, path)
    try:
        data = json.loads(text)
        return TrainConfig.model_validate(regrouped(data) if isinstance(data, dict) else data)
    except ValueError as error:
        detail = format_validation_error(error) if isinstance(error, pydantic.ValidationError) else first_line(error)
        raise GanzooError(f"{path} holds an unusable config: {detail}") from None
    except RecursionError:
        raise GanzooError(f"{path} holds an unusable config: it is nested too deeply") from None
