"""Reproducibility bundles: one zip that reruns a ``sua evaluate`` by itself.

The zip holds ``manifest.json`` in ``sua evaluate``'s manifest format (see
:mod:`analysis.cli`) and every heatmap, ensemble-member and truth file it
names, under ``data/``, with paths relative to the manifest; so that::

    unzip cohort.zip -d bundle
    sua evaluate bundle/manifest.json --out report   # plus the options it records

gives the same ``report.json`` as the original run (but for the manifest
path it records).  The manifest also records the run's settings and the
command line that repeats them (``sua evaluate`` reads neither; they are
there for people).
"""

from __future__ import annotations

import json
import os
import shlex
import zipfile
from pathlib import Path
from typing import Any

from analysis.evaluation import EvaluationSettings
from analysis.io import InputError
from analysis.manifest import ManifestSlide, read_manifest

__all__ = ["evaluate_command", "write_bundle"]


def evaluate_command(settings: EvaluationSettings, *, manifest: str = "manifest.json", out: str = "report") -> str:
    """The ``sua evaluate`` command line that runs with ``settings``.

    Examples
    --------
    >>> evaluate_command(EvaluationSettings(ranges=((0.55, 0.95),), bootstrap=50))
    'sua evaluate manifest.json --out report --range 0.55:0.95 --aggregate mean --uncertainty entropy --fn-fraction 0.9 --beta 0.5 --bootstrap 50 --seed 0'
    """
    settings.check()
    words = ["sua", "evaluate", manifest, "--out", out]
    for lower, upper in settings.ranges:
        words += ["--range", f"{lower!r}:{upper!r}"]
    words += ["--aggregate", settings.aggregate, "--uncertainty", settings.uncertainty]
    words += ["--fn-fraction", repr(float(settings.fn_fraction)), "--beta", repr(float(settings.beta))]
    words += ["--bootstrap", str(settings.bootstrap), "--seed", str(settings.seed)]
    return shlex.join(words)


def write_bundle(
    manifest: str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    settings: EvaluationSettings | None = None,
) -> Path:
    """Write a reproducibility bundle of a cohort manifest.

    Parameters
    ----------
    manifest : path-like
        A ``sua evaluate`` manifest; it is checked first (every file it names
        must exist) and nothing is written when it is bad.
    path : path-like
        The zip to write (replaced if it exists).
    settings : EvaluationSettings, optional
        The run's settings, recorded in the bundle's manifest with the
        command line that repeats them (default: ``sua evaluate``'s defaults).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    analysis.io.InputError
        A bad manifest, a missing file or bad settings (named in the message).
    """
    run = settings if settings is not None else EvaluationSettings()
    run.check()
    manifest_path = Path(manifest)
    slides = read_manifest(manifest_path, uncertainty=run.uncertainty)
    names: dict[Path, str] = {}  # file -> its name in the zip, each file stored once

    def stored(file: Path, slide: ManifestSlide, role: str) -> str:
        resolved = file.resolve()
        if resolved not in names:
            if not resolved.is_file():
                raise InputError(f"slide {slide.id}: {role} file {file} not found")
            names[resolved] = f"data/{len(names):04d}-{resolved.name}"
        return names[resolved]

    entries: list[dict[str, Any]] = []
    for slide in slides:
        entry: dict[str, Any] = {
            "id": slide.id,
            "split": slide.split,
            "domain": slide.domain,
            "mpp": slide.mpp,
            "downsample": slide.downsample,
            "truth": None if slide.truth is None else stored(slide.truth, slide, "truth"),
        }
        for role in ("segmentation", "uncertainty"):
            source = getattr(slide, role)
            if source is not None:
                name = stored(source.path, slide, role)
                entry[role] = name if source.key is None else {"path": name, "key": source.key}
        if slide.members is not None:
            entry["members"] = stored(slide.members, slide, "members")
        entries.append(entry)
    document = {
        "slides": entries,
        "settings": run.to_dict(),
        "command": evaluate_command(run),
    }
    out = Path(path)
    if out.is_dir():
        raise InputError(f"{out}: is a folder, not a zip file to write")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("manifest.json", json.dumps(document, indent=1) + "\n")
            for file, name in names.items():
                archive.write(file, name)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return out
