"""The ``sua evaluate`` manifest: which heatmaps, truth and resolution each slide has.

Read by the command-line tool and by :mod:`analysis.bundle`; see :mod:`analysis.cli`
for the format. Reading checks every entry and names the slide in its error; no heatmap
is read here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analysis import defaults
from analysis.errors import InputError
from analysis.evaluation import (
    Evaluation,
    EvaluationSettings,
    Progress,
    SlideArrays,
    SlideInput,
    check_slides,
    load_slide,
    run_evaluation,
)
from analysis.io import read_heatmap, read_members, read_truth_mask
from analysis.uncertainty import binary_entropy, uncertainty_map


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


# --------------------------------------------------------------------------- evaluating a manifest


def _loader(slide: ManifestSlide, method: str) -> Callable[[], SlideArrays]:
    """Read one slide's maps on its analysis grid; called once to check and once to evaluate."""

    def load() -> SlideArrays:
        d = slide.downsample
        segmentation = None
        if slide.segmentation is not None:
            segmentation = read_heatmap(slide.segmentation.path, downsample=d, key=slide.segmentation.key)
        if slide.uncertainty is not None:
            assert segmentation is not None  # read_manifest demands one or members
            uncertainty = read_heatmap(slide.uncertainty.path, downsample=d, key=slide.uncertainty.key)
        elif slide.members is not None:
            members = read_members(slide.members)
            if segmentation is not None and members.shape[1:] != segmentation.shape:
                raise InputError(
                    f"{slide.members}: members shape {tuple(members.shape[1:])} != "
                    f"segmentation shape {segmentation.shape}"
                )
            mean, uncertainty = uncertainty_map(members, method=method)
            segmentation = mean if segmentation is None else segmentation
        else:
            assert segmentation is not None
            uncertainty = binary_entropy(segmentation)
        if uncertainty.shape != segmentation.shape:
            raise InputError(f"uncertainty shape {uncertainty.shape} != segmentation shape {segmentation.shape}")
        if slide.truth is None:
            truth = np.zeros(segmentation.shape, dtype=bool)
        else:
            truth = read_truth_mask(slide.truth, shape=segmentation.shape, downsample=d)
        return SlideArrays(segmentation, uncertainty, truth)

    return load


def slide_inputs(manifest: list[ManifestSlide], *, uncertainty: str) -> list[SlideInput]:
    """The manifest's slides as evaluation inputs that read their maps when their turn comes."""
    return [
        SlideInput(id=s.id, split=s.split, domain=s.domain, mpp=s.mpp, downsample=s.downsample,
                   loader=_loader(s, uncertainty))
        for s in manifest
    ]


def evaluate_manifest(path: Path, settings: EvaluationSettings, *, progress: Progress | None = None) -> Evaluation:
    """What ``sua evaluate MANIFEST`` computes: every slide read and checked first, then the evaluation.

    The portal's runs call this too, on a manifest of their stored heatmaps, so the web
    and the command line give the same numbers.  The report's settings record the
    manifest path and where each slide's uncertainty came from.

    Raises
    ------
    analysis.errors.InputError
        A bad manifest, setting or slide (named in the message).
    """
    settings.check()
    manifest = read_manifest(path, uncertainty=settings.uncertainty)
    slides = slide_inputs(manifest, uncertainty=settings.uncertainty)
    check_slides(slides)
    notify: Progress = progress or (lambda stage, done, total: None)
    for done, slide in enumerate(slides, start=1):
        load_slide(slide)
        notify("check", done, len(slides))
    evaluation = run_evaluation(slides, settings, progress=notify)
    sources: dict[str, int] = {}
    for s in manifest:
        sources[s.uncertainty_source] = sources.get(s.uncertainty_source, 0) + 1
    evaluation.report["settings"]["manifest"] = str(path)
    evaluation.report["settings"]["uncertainty_sources"] = sources
    return evaluation
