"""Checkpoints: written atomically (temporary file, then rename), read with ``weights_only=True`` so a crafted
file cannot run code on load."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from ganzoo.errors import GanzooError

CHECKPOINT_FORMAT = "ganzoo-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` so that ``path`` holds either the old or the new checkpoint, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as f:
            torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load tensors and plain containers only; anything else (pickled code) is refused with a GanzooError."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise GanzooError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "unsupported content"
        raise GanzooError(f"refusing to load {path}: it holds more than weights ({reason[:200]})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise GanzooError(f"{path} is not a readable checkpoint: {str(error).splitlines()[0][:200]}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise GanzooError(f"{path} is not a ganzoo checkpoint")
    if state.get("version") != CHECKPOINT_VERSION:
        raise GanzooError(f"{path} is checkpoint version {state.get('version')}; this ganzoo reads "
                          f"version {CHECKPOINT_VERSION}")
    return state


def load_weights(module: torch.nn.Module, weights: dict[str, torch.Tensor], what: str) -> None:
    """``module.load_state_dict(weights)``; weights that do not fit (another version of the architecture
    plugin, different options) raise a GanzooError naming the first differences."""
    try:
        module.load_state_dict(weights)
    except RuntimeError as error:
        detail = " ".join(str(error).split())
        raise GanzooError(f"the checkpoint's {what} weights do not fit the network its config builds (saved "
                          f"by another version of the architecture plugin?): {detail[:300]}") from None
