"""Typed readers for settings that come from the environment.

Each reader also accepts ``NAME_FILE`` pointing at a file that holds the value
(container secrets); a ``NAME_FILE`` that names a missing file is an error, not
a silent fallback to the default.
"""

from __future__ import annotations

import os
from pathlib import Path


class ImproperlyConfiguredEnv(RuntimeError):
    """An environment variable is present but unusable."""


def envstr(name: str, default: str | None = None) -> str | None:
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        path = Path(file_name)
        if not path.is_file():
            raise ImproperlyConfiguredEnv(f"{name}_FILE points at {file_name}, which does not exist")
        return path.read_text().strip()
    return os.environ.get(name, default)


def envbool(name: str, default: bool) -> bool:
    value = envstr(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfiguredEnv(f"{name}={value!r} is not a boolean (use true or false)")


def envint(name: str, default: int) -> int:
    value = envstr(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfiguredEnv(f"{name}={value!r} is not an integer") from None


def envfloat(name: str, default: float) -> float:
    value = envstr(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfiguredEnv(f"{name}={value!r} is not a number") from None


def envlist(name: str, default: list[str]) -> list[str]:
    value = envstr(name)
    if value is None or value == "":
        return default
    return [item.strip() for item in value.split(",") if item.strip()]
