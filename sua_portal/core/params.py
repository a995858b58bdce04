"""Query parameters read the same way by every view: a bad value is a 400 naming the parameter."""

from __future__ import annotations

import math
from collections.abc import Iterable

from rest_framework.exceptions import ValidationError
from rest_framework.request import Request


def query_int(request: Request, name: str, default: int | None = None, *, low: int = 0, high: int = 2**31) -> int:
    """``?name=`` as a whole number in ``low..high``; ``default`` when absent (required when None)."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        if default is None:
            raise ValidationError({name: ["This parameter is required."]})
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError({name: [f"{raw[:40]!r} is not a whole number."]}) from None
    if not low <= value <= high:
        raise ValidationError({name: [f"{name} must be between {low} and {high}, not {value}."]})
    return value


#: The largest id a filter may name (PostgreSQL's bigint), so a huge number is a 400, not a database error.
MAX_ID = 2**63 - 1
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
#: Query parameters every API view answers besides its own: DRF's ?format=json (or api).
COMMON_PARAMS = frozenset({"format"})


def _raw(request: Request, name: str) -> str | None:
    """The value of ``?name=``; None when absent or empty (a form's blank field filters nothing)."""
    raw = request.query_params.get(name)
    return None if raw is None or raw.strip() == "" else raw


def query_id(request: Request, name: str) -> int | None:
    """``?name=`` as the id of an object (a whole number from 1), or None when absent."""
    if _raw(request, name) is None:
        return None
    return query_int(request, name, low=1, high=MAX_ID)


def query_bool(request: Request, name: str) -> bool | None:
    """``?name=`` as yes or no (1, true, yes, on / 0, false, no, off; any case), or None when absent."""
    raw = _raw(request, name)
    if raw is None:
        return None
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValidationError({name: [f"{raw[:40]!r} is neither true nor false: use 1, true or yes, 0, false or no."]})


def query_float(request: Request, name: str) -> float | None:
    """``?name=`` as a finite number, or None when absent."""
    raw = _raw(request, name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValidationError({name: [f"{raw[:40]!r} is not a number."]}) from None
    if not math.isfinite(value):
        raise ValidationError({name: [f"{raw[:40]!r} is not a finite number."]})
    return value


def query_choice(request: Request, name: str, choices: Iterable[str]) -> str | None:
    """``?name=`` as one of ``choices``, or None when absent."""
    raw = _raw(request, name)
    options = list(choices)
    if raw is None:
        return None
    if raw not in options:
        raise ValidationError({name: [f"{raw[:40]!r} is not one of {', '.join(options)}."]})
    return raw


def check_query_names(request: Request, allowed: Iterable[str]) -> None:
    """A 400 naming the first query parameter this view does not take (a misspelt filter filters nothing)."""
    known = set(allowed) | COMMON_PARAMS
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        takes = ", ".join(sorted(set(allowed))) or "no query parameters"
        raise ValidationError({unknown[0][:40]: [f"Unknown query parameter; this takes {takes}."]})
