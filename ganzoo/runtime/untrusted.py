"""The one door for the files a stranger can hand ganzoo, besides checkpoints (``runtime.checkpoint``) and images
(``data.prepare``'s decoder): JSON and JSON lines, read with size and depth limits and validated by pydantic
models, and .npz arrays whose declared type, shape and size are checked before any is loaded (never a pickle).

Files are opened without following symbolic links and only when regular (no FIFO, device or folder); every
problem is one GanzooError naming the file and the reason. JSON here is strict: NaN and Infinity are refused on
reading, and ``strict_json`` writes none.
"""

from __future__ import annotations

import json
import math
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, TypeVar

import numpy as np
import pydantic

from ganzoo.api.errors import GanzooError
from ganzoo.api.options import format_validation_error
from ganzoo.runtime.files import open_regular

MAX_JSON_BYTES = 16 << 20
"""The largest JSON file read (a bench result, a run's config or protocol is a few KiB)."""
MAX_JSON_LINES_BYTES = 512 << 20
"""The largest JSON lines file read, line by line (a run logging every 10 steps for a million steps: ~30 MiB)."""
MAX_LINE_BYTES = 1 << 20
MAX_DEPTH = 32
"""How deeply JSON may nest: ganzoo's own files nest four levels."""
MAX_NPZ_BYTES = 4 << 30

Model = TypeVar("Model")


def read_bytes(path: str | Path, what: str, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, never through a link."""
    with open_regular(path, "rb", encoding=None) as file:
        size = os.fstat(file.fileno()).st_size
        if size > limit:
            raise GanzooError(f"{path} is {size:,} bytes, larger than any {what} ({limit >> 20} MiB at most)")
        data = file.read(limit + 1)
    if len(data) > limit:
        raise GanzooError(f"{path} is larger than any {what} ({limit >> 20} MiB at most)")
    return data


def refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: str | bytes, where: str) -> Any:
    """Strict JSON (no NaN or Infinity) nested at most ``MAX_DEPTH`` deep."""
    try:
        value = json.loads(text, parse_constant=refuse_constant)
    except RecursionError:
        raise GanzooError(f"{where} is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise GanzooError(f"{where} is not JSON: {str(error).splitlines()[0][:200]}") from None
    if depth(value) > MAX_DEPTH:
        raise GanzooError(f"{where} is nested more than {MAX_DEPTH} deep")
    return value


def depth(value: Any) -> int:
    """How deeply a parsed JSON value nests (1 for a number or string), counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, level + 1) for child in children)
    return deepest


JSON_TYPES = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number", bool: "true or false",
              type(None): "null"}


def validated(value: Any, model: type[Model] | pydantic.TypeAdapter, where: str) -> Model:
    """``value`` validated by a pydantic model (or type adapter); a mismatch is one line naming the field."""
    if isinstance(model, type) and issubclass(model, pydantic.BaseModel) and not isinstance(value, dict):
        raise GanzooError(f"{where} is not usable: it holds {JSON_TYPES.get(type(value), 'a value')}, not a JSON "
                          "object")
    adapter = model if isinstance(model, pydantic.TypeAdapter) else pydantic.TypeAdapter(model)
    try:
        return adapter.validate_python(value)
    except pydantic.ValidationError as error:
        raise GanzooError(format_validation_error(error, heading=f"{where} is not usable")) from None


def read_json(path: str | Path, what: str, model: type[Model] | pydantic.TypeAdapter,
              limit: int = MAX_JSON_BYTES) -> Model:
    """A JSON file that must be ``what`` (said in errors), validated by ``model``."""
    return validated(parse_json(read_bytes(path, what, limit), f"{path}"), model, str(path))


def read_json_lines(path: str | Path, what: str, model: type[Model] | pydantic.TypeAdapter,
                    limit: int = MAX_JSON_LINES_BYTES) -> Iterator[tuple[int, Model]]:
    """(line number, row) for every non-empty line of a JSON lines file, each validated by ``model``."""
    with open_regular(path, "rb", encoding=None) as file:
        size = os.fstat(file.fileno()).st_size
        if size > limit:
            raise GanzooError(f"{path} is {size:,} bytes, larger than any {what} ({limit >> 20} MiB at most)")
        for number, line in enumerate(iter(lambda: file.readline(MAX_LINE_BYTES + 1), b""), 1):
            if len(line) > MAX_LINE_BYTES:
                raise GanzooError(f"{path}, line {number}: longer than {MAX_LINE_BYTES >> 20} MiB; not a {what}")
            if line.strip():
                where = f"{path}, line {number},"
                yield number, validated(parse_json(line, where), model, where)


def strict_json(value: Any, **dump) -> str:
    """``json.dumps`` that refuses NaN and infinity (said as a GanzooError) instead of writing bare ``NaN``."""
    try:
        return json.dumps(value, allow_nan=False, **dump)
    except ValueError as error:
        raise GanzooError(f"refusing to write a non-finite number as JSON: {error}") from None


def finite(value: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class ArraySpec:
    """What an .npz member must be: its dtype, number of dimensions and at most how many elements."""

    dtype: str
    ndim: int
    max_elements: int


HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
"""Readers of an .npy header (shape, order, dtype) without its data, by format version."""


def read_npz(path: str | Path, what: str, arrays: dict[str, ArraySpec]) -> dict[str, np.ndarray]:
    """The named arrays of an .npz file (a zip of .npy files), each header read and checked against its spec
    before the array is loaded: a file that declares a 3.8 GiB array in 4 MB is refused unread."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        raise GanzooError(f"cannot read {path}: {error.strerror}") from None
    if not stat.S_ISREG(mode):
        raise GanzooError(f"{path} is not a regular file; a {what} is an .npz file")
    try:
        with open_regular(path, "rb", encoding=None) as file, zipfile.ZipFile(file) as archive:
            found = {}
            for name, spec in arrays.items():
                try:
                    info = archive.getinfo(f"{name}.npy")
                except KeyError:
                    raise GanzooError(f"{path} holds no array {name!r}; not a {what}") from None
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    read_header = HEADER_READERS.get(version)
                    if read_header is None:
                        raise GanzooError(f"{path}: array {name!r} is stored as .npy version {version}, which ganzoo "
                                          f"does not read; not a {what}")
                    shape, _, dtype = read_header(member)
                check_array(path, name, shape, dtype, spec, what)
                with archive.open(info) as member:
                    found[name] = np.lib.format.read_array(member, allow_pickle=False)
            return found
    except GanzooError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise GanzooError(f"{path} is not a {what} ({str(error).splitlines()[0][:200]})") from None


def check_array(path: Path, name: str, shape: tuple, dtype: np.dtype, spec: ArraySpec, what: str) -> None:
    if dtype.hasobject or dtype != np.dtype(spec.dtype) and not (spec.dtype == "str" and dtype.kind == "U"):
        raise GanzooError(f"{path}: array {name!r} is {dtype}, not {spec.dtype}; not a {what}")
    if len(shape) != spec.ndim:
        raise GanzooError(f"{path}: array {name!r} has {len(shape)} dimensions, not {spec.ndim}; not a {what}")
    elements = math.prod(shape)
    if elements > spec.max_elements or elements * dtype.itemsize > MAX_NPZ_BYTES:
        raise GanzooError(f"{path}: array {name!r} declares {elements:,} values of {dtype} "
                          f"({elements * dtype.itemsize / 2 ** 30:.1f} GiB), more than a {what} holds")
