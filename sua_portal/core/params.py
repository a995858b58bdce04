"""Query parameters read the same way by every view: a bad value is a 400 naming the parameter."""

from __future__ import annotations

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


_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")


def query_flag(request: Request, name: str) -> bool | None:
    """``?name=`` as true/false (1/0, yes/no); None when absent."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ValidationError({name: [f"{raw[:40]!r} is not true or false."]})
