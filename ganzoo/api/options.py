"""Validating a component's options, and the one-line message every invalid setting becomes."""

from __future__ import annotations

from typing import Any, TypeVar

import pydantic
from pydantic import BaseModel

from ganzoo.api.errors import GanzooError

MAX_SHOWN_INPUT = 60
"""Characters of a bad value an error message shows."""

def format_validation_error(error: pydantic.ValidationError, prefix: str = "", heading: str = "invalid config") -> str:
    """One line, after ``heading``, naming each bad field and why (the first few, each value shown shortened)."""
    parts = []
    items = error.errors(include_url=False)
    for item in items[:5]:
        field = ".".join(str(p) for p in (prefix, *item["loc"]) if p != "")
        given = f" (got {shorten(repr(item['input']))})" if item["type"] != "missing" and "input" in item else ""
        parts.append(f"{field or 'config'}: {item['msg']}{given}")
    more = f"; and {len(items) - 5} more" if len(items) > 5 else ""
    return f"{heading}: " + "; ".join(parts) + more


def shorten(text: str, limit: int = MAX_SHOWN_INPUT) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


Model = TypeVar("Model", bound=BaseModel)


def parse_options(model: type[Model], options: dict[str, Any], where: str) -> Model:
    """Validate a component's options; errors name the field as ``where.field``."""
    try:
        return model.model_validate(options)
    except pydantic.ValidationError as error:
        raise GanzooError(format_validation_error(error, where)) from None


