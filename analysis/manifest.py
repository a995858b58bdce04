"""The ``sua evaluate`` manifest: which heatmaps, truth and resolution each slide has.

Read by the command-line tool and by :mod:`analysis.bundle`; see :mod:`analysis.cli`
for the format. Reading checks every entry and names the slide in its error; no heatmap
is read here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis import defaults
from analysis.errors import InputError


@dataclass(frozen=True)
class _Source:
    """A heatmap file and, for a multi-array .npz, which array."""

    path: Path
    key: str | None = None


@dataclass(frozen=True)
class ManifestSlide:
    """One manifest entry with its paths resolved against the manifest's folder."""

    id: str
    split: str
    domain: str
    mpp: float
    downsample: float
    truth: Path | None  # None: no tumor on the slide
    segmentation: _Source | None
    uncertainty: _Source | None
    members: Path | None

    @property
    def uncertainty_source(self) -> str:
        """Where the uncertainty comes from: "file", "members" or "segmentation entropy"."""
        if self.uncertainty is not None:
            return "file"
        return "members" if self.members is not None else "segmentation entropy"


def _source(entry: dict[str, Any], name: str, base: Path, where: str) -> _Source | None:
    value = entry.get(name)
    if value is None:
        return None
    if isinstance(value, str) and value:
        return _Source(base / value)
    if isinstance(value, dict) and isinstance(value.get("path"), str) and value["path"]:
        key = value.get("key")
        if key is not None and not isinstance(key, str):
            raise InputError(f"{where}: '{name}.key' must be a string")
        return _Source(base / value["path"], key)
    raise InputError(f"{where}: '{name}' must be a path or {{'path': ..., 'key': ...}}")


def _number_field(entry: dict[str, Any], name: str, where: str) -> float:
    value = entry.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not (value > 0 and math.isfinite(value)):
        raise InputError(f"{where}: '{name}' must be a positive number, got {value!r}")
    return float(value)


def read_manifest(path: Path, *, uncertainty: str = defaults.UNCERTAINTY) -> list[ManifestSlide]:
    """Parse and check a manifest (no heatmap is read); errors name the slide.

    ``uncertainty`` is the method for members: a slide with neither an
    uncertainty file nor members can only give the entropy of its
    segmentation, so another method is an error there.
    """
    if not path.is_file():
        raise InputError(f"{path}: manifest not found")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read the manifest ({' '.join(str(exc).split())})") from exc
    entries = document.get("slides") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise InputError(f"{path}: 'slides' must be a non-empty list")
    base = path.parent
    slides: list[ManifestSlide] = []
    for number, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise InputError(f"{path}: slide {number} is not an object")
        slide_id = entry.get("id")
        if not isinstance(slide_id, str | int) or isinstance(slide_id, bool) or str(slide_id) == "":
            raise InputError(f"{path}: slide {number} has no 'id'")
        where = f"slide {slide_id}"
        split = entry.get("split")
        if split not in ("validation", "test"):
            raise InputError(f"{where}: 'split' must be 'validation' or 'test', got {split!r}")
        domain = entry.get("domain", "validation" if split == "validation" else None)
        if not isinstance(domain, str) or not domain:
            raise InputError(f"{where}: 'domain' must be a non-empty name")
        if "truth" not in entry:
            raise InputError(f"{where}: 'truth' is missing (a path, or null for a slide without tumor)")
        truth = entry["truth"]
        if truth is not None and (not isinstance(truth, str) or not truth):
            raise InputError(f"{where}: 'truth' must be a path, or null for a slide without tumor")
        members = entry.get("members")
        if members is not None and (not isinstance(members, str) or not members):
            raise InputError(f"{where}: 'members' must be a path")
        segmentation = _source(entry, "segmentation", base, where)
        if segmentation is None and members is None:
            raise InputError(f"{where}: needs 'segmentation' (or ensemble 'members')")
        slide = ManifestSlide(
            id=str(slide_id),
            split=split,
            domain=domain,
            mpp=_number_field(entry, "mpp", where),
            downsample=_number_field(entry, "downsample", where),
            truth=base / truth if truth is not None else None,
            segmentation=segmentation,
            uncertainty=_source(entry, "uncertainty", base, where),
            members=base / members if members is not None else None,
        )
        if slide.uncertainty_source == "segmentation entropy" and uncertainty != "entropy":
            raise InputError(f"{where}: --uncertainty {uncertainty} needs ensemble 'members' or an 'uncertainty' file")
        slides.append(slide)
    return slides
