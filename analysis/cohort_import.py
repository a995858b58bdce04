"""Planning a cohort import: which slides a dropped folder or zip holds, and what each becomes.

Pure: the input is the list of relative paths (with sizes, and for a ``.zip`` the list of its
entries when the client could read it) and the text of an optional CSV manifest; nothing is read
from disk.  :func:`plan_import` answers an :class:`ImportPlan`: the slides to create (name, split,
domain, cohort, matched annotation, tumor-free, resolution override, and the files each is made
of), annotations that match no slide, slides the manifest does not name, manifest rows without
files, files left out (with the reason) and errors that stop the import (bad manifest columns or
values, an unknown split, two slides whose names are the same after Unicode NFKC normalisation,
a manifest row naming a file of an unsupported kind, unsafe paths).

What makes a slide:

- a single file with a slide extension (``.svs``, ``.tif`` ... but ``*_mask.tif``, a mask);
- MIRAX: ``NAME.mrxs`` and, beside it, its data folder ``NAME/`` (``Slidedat.ini``, ``Index.dat``,
  ``Data*.dat``); every file under that folder belongs to the slide;
- DICOM-WSI: all ``.dcm`` files of one folder (one series), named after the folder;
- a ``.zip`` holding exactly one slide of any of these kinds (a DICOM series, an MRXS with its
  folder, or one file), named after what it holds (the zip's stem for DICOM).

An annotation (``.geojson``, ``.json``, ``.xml``, or a mask ``NAME_mask.png`` / ``.tif``) goes
with the slide of the same name (compared after NFKC normalisation, without regard to case), or
with the slide whose manifest row names it.

>>> plan = plan_import([FileEntry("c/a.svs", 10), FileEntry("c/a.xml", 2)], "")
>>> [(s.name, s.annotation, s.tumor_free) for s in plan.slides]
[('a', 'c/a.xml', False)]
"""

from __future__ import annotations

import csv
import io
import math
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import PurePosixPath

__all__ = [
    "ANNOTATION_EXTENSIONS",
    "MANIFEST_COLUMNS",
    "MASK_EXTENSIONS",
    "SINGLE_FILE_SLIDE_EXTENSIONS",
    "SLIDE_EXTENSIONS",
    "SPLITS",
    "FileEntry",
    "ImportPlan",
    "PlanError",
    "PlannedCohort",
    "PlannedSlide",
    "normalized_name",
    "plan_import",
]

#: Slides kept in one file.
SINGLE_FILE_SLIDE_EXTENSIONS: tuple[str, ...] = (
    ".svs", ".tif", ".tiff", ".ndpi", ".scn", ".bif", ".vms", ".svslide", ".qptiff",
)
#: Every slide extension (MIRAX and DICOM are made of several files).
SLIDE_EXTENSIONS: tuple[str, ...] = (
    ".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".dcm", ".bif", ".vms", ".svslide", ".qptiff",
)
ANNOTATION_EXTENSIONS: tuple[str, ...] = (".geojson", ".json", ".xml")
#: A binary mask is an annotation when its stem ends with ``_mask``.
MASK_EXTENSIONS: tuple[str, ...] = (".png", ".tif", ".tiff")
SPLITS: tuple[str, ...] = ("train", "validation", "test")
#: Manifest columns and the other spellings accepted for them.
MANIFEST_COLUMNS: dict[str, tuple[str, ...]] = {
    "slide": ("slide", "name", "file", "filename"),
    "split": ("split",),
    "domain": ("domain",),
    "cohort": ("cohort",),
    "annotation": ("annotation", "annotation_file", "annotations"),
    "tumor_free": ("tumor_free", "tumour_free", "tumor-free", "tumour-free", "negative"),
    "mpp": ("mpp", "mpp_override", "resolution"),
}
_TRUE = {"true", "yes", "y", "1", "x"}
_FALSE = {"false", "no", "n", "0", ""}
# Files a system puts beside the data: left out without a word of warning.
_SYSTEM_NAMES = {"thumbs.db", "desktop.ini", ".ds_store"}
#: Unicode categories a name loses before it is compared or stored: control characters (Cc), zero-width and
#: other invisible formatting (Cf: U+200B..U+200F, U+2060, U+FEFF, the bidirectional overrides), line and
#: paragraph separators (Zl, Zp).
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
# Annotation kinds in order of preference when one slide has several (GeoJSON keeps holes).
_ANNOTATION_RANK = {".geojson": 0, ".json": 1, ".xml": 2, ".png": 3, ".tif": 3, ".tiff": 3}


@dataclass(frozen=True)
class FileEntry:
    """One dropped file: its path relative to what was dropped ("/"-separated) and its size in bytes.

    ``entries``: for a ``.zip`` whose directory the client read, the files inside it (None: not read).
    """

    path: str
    size: int
    entries: tuple[FileEntry, ...] | None = None


@dataclass(frozen=True)
class PlanError:
    """A problem with a reason; ``where`` names the file, the manifest line or the slide."""

    where: str
    reason: str


@dataclass(frozen=True)
class PlannedSlide:
    """A slide the import creates.

    ``kind``: "file", "mrxs" or "dicom"; ``files``: the dropped paths that make it (a zip of one
    slide is one path, with ``container`` "zip"); ``main``: the file a reader opens, relative to the
    slide's own folder once its files are laid out (``members`` are the paths inside that folder, in
    the order of ``files``; for a zip, in the order of ``entries``, the paths inside the zip).
    """

    name: str
    kind: str
    files: tuple[str, ...]
    members: tuple[str, ...]
    main: str
    size: int
    split: str
    domain: str
    cohort: str
    annotation: str | None = None
    tumor_free: bool = True
    mpp: float | None = None
    manifest_line: int | None = None
    container: str | None = None
    entries: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlannedCohort:
    name: str
    split: str
    domain: str
    slides: int


@dataclass(frozen=True)
class ImportPlan:
    """What an import would do; nothing is stored while it is made.

    ``errors`` stop the import as a whole; ``left_out`` are files that are not imported (each with
    its reason) while the rest is.  ``missing_from_manifest``: slides among the files that a given
    manifest does not name (not imported); ``rows_without_files``: manifest rows naming a slide that
    is not among the files.
    """

    slides: tuple[PlannedSlide, ...]
    cohorts: tuple[PlannedCohort, ...]
    unmatched_annotations: tuple[str, ...]
    missing_from_manifest: tuple[str, ...]
    rows_without_files: tuple[PlanError, ...]
    left_out: tuple[PlanError, ...]
    errors: tuple[PlanError, ...]
    manifest_columns: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors and bool(self.slides)


def normalized_name(text: str) -> str:
    """``text`` without invisible or control characters, in Unicode NFKC, stripped (as file names are stored)."""
    visible = "".join(ch for ch in text or "" if unicodedata.category(ch) not in _INVISIBLE_CATEGORIES)
    return unicodedata.normalize("NFKC", visible).strip()


def _key(name: str) -> str:
    """What two names are compared by: NFKC, then without regard to case."""
    return normalized_name(name).casefold()


@dataclass
class _File:
    original: str  # as sent: the client uploads it under this path
    path: PurePosixPath  # normalised
    size: int
    entries: tuple[FileEntry, ...] | None = None

    @property
    def suffix(self) -> str:
        return self.path.suffix.lower()

    @property
    def stem(self) -> str:
        name = self.path.name
        return name[: -len(self.path.suffix)] if self.path.suffix else name


@dataclass
class _Row:
    line: int
    slide: str
    split: str | None = None
    domain: str | None = None
    cohort: str | None = None
    annotation: str | None = None
    tumor_free: bool | None = None
    mpp: float | None = None
    used: bool = False


@dataclass
class _Found:
    """A slide found among the files, before the manifest and annotations are applied."""

    name: str
    kind: str
    files: list[str]
    members: list[str]
    main: str
    size: int
    container: str | None = None
    where: str = ""
    entries: list[str] = field(default_factory=list)


@dataclass
class _State:
    errors: list[PlanError] = field(default_factory=list)
    left_out: list[PlanError] = field(default_factory=list)


def _check_path(raw: str, state: _State) -> PurePosixPath | None:
    text = normalized_name(raw.replace("\\", "/"))
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if not parts or text.startswith("/") or any(p == ".." for p in parts) or (parts and parts[0].endswith(":")):
        state.errors.append(PlanError(raw, "an unsafe path (absolute, or reaching out with '..'); send paths "
                                           "relative to the dropped folder"))
        return None
    return PurePosixPath(*parts)


def _is_system(path: PurePosixPath) -> bool:
    return path.parts[0] == "__MACOSX" or any(p.startswith(".") for p in path.parts) or \
        path.name.lower() in _SYSTEM_NAMES


def _is_mask(file: _File) -> bool:
    return file.suffix in MASK_EXTENSIONS and file.stem.lower().endswith("_mask")


def _annotation_base(file: _File) -> str:
    return file.stem[: -len("_mask")] if _is_mask(file) else file.stem


def _files(entries: list[FileEntry] | tuple[FileEntry, ...], state: _State, *, where: str = "") -> list[_File]:
    files: list[_File] = []
    seen: dict[str, str] = {}
    for entry in entries:
        label = f"{where}{entry.path}"
        if not isinstance(entry.size, int) or entry.size < 0:
            state.errors.append(PlanError(label, "the size must be a whole number of bytes, 0 or more"))
            continue
        path = _check_path(entry.path, state)
        if path is None:
            continue
        key = _key(str(path))
        if key in seen:
            state.errors.append(PlanError(label, f"the same path as {seen[key]!r} once names are compared in "
                                                 "Unicode NFKC and without regard to case"))
            continue
        seen[key] = label
        if _is_system(path):
            continue
        files.append(_File(entry.path, path, entry.size, entry.entries))
    return files


def _group_slides(files: list[_File], state: _State, *, where: str = "") -> tuple[list[_Found], list[_File]]:
    """Slides among ``files`` and the files that are left (annotations, manifests, others)."""
    found: list[_Found] = []
    taken: set[int] = set()
    by_dir: dict[PurePosixPath, list[int]] = defaultdict(list)
    for i, f in enumerate(files):
        by_dir[f.path.parent].append(i)
    # MIRAX: NAME.mrxs and every file under its folder NAME/.
    for i, f in enumerate(files):
        if f.suffix != ".mrxs":
            continue
        folder = f.path.parent / f.stem
        inside = [j for j, g in enumerate(files) if j != i and folder in g.path.parents]
        taken.add(i)
        taken.update(inside)
        names = {files[j].path.relative_to(folder).as_posix().lower() for j in inside}
        if "slidedat.ini" not in names:
            state.left_out.append(PlanError(f"{where}{f.original}", f"a MIRAX slide needs its data folder "
                                            f"'{f.stem}/' with Slidedat.ini beside it; it is not among the files"))
            continue
        base = f.path.parent
        members = [f.path.relative_to(base).as_posix()] + [files[j].path.relative_to(base).as_posix() for j in inside]
        found.append(_Found(f.stem, "mrxs", [f.original] + [files[j].original for j in inside], members,
                            members[0], f.size + sum(files[j].size for j in inside), where=f"{where}{f.original}"))
    # DICOM: the .dcm files of one folder are one series, one slide named after the folder.
    for directory, indices in by_dir.items():
        dicom = [i for i in indices if i not in taken and files[i].suffix == ".dcm"]
        if not dicom:
            continue
        taken.update(dicom)
        name = directory.name or files[dicom[0]].stem
        biggest = max(dicom, key=lambda i: (files[i].size, files[i].path.name))
        found.append(_Found(
            name, "dicom", [files[i].original for i in dicom], [files[i].path.name for i in dicom],
            files[biggest].path.name, sum(files[i].size for i in dicom),
            where=f"{where}{directory.as_posix() + '/' if directory.parts else files[dicom[0]].original}",
        ))
    # Single files.
    for i, f in enumerate(files):
        if i in taken or f.suffix not in SINGLE_FILE_SLIDE_EXTENSIONS or _is_mask(f):
            continue
        taken.add(i)
        found.append(_Found(f.stem, "file", [f.original], [f.path.name], f.path.name, f.size,
                            where=f"{where}{f.original}"))
    return found, [f for i, f in enumerate(files) if i not in taken]


def _zip_slide(file: _File, state: _State) -> _Found | None:
    """The one slide a dropped .zip holds, or None (the reason is left in ``state.left_out``)."""
    if file.entries is None:
        state.left_out.append(PlanError(file.original, "the zip's list of files could not be read"))
        return None
    inner = _State()
    found, _rest = _group_slides(_files(file.entries, inner, where=f"{file.original}: "), inner,
                                where=f"{file.original}: ")
    if inner.errors:
        state.left_out.extend(inner.errors)
        return None
    if len(found) != 1:
        what = "no slide" if not found else f"{len(found)} slides ({', '.join(s.name for s in found)})"
        state.left_out.append(PlanError(file.original, f"a zip in the folder must hold one slide; it holds {what}. "
                                                       "Unpack it, or zip each slide on its own"))
        return None
    slide = found[0]
    name = file.stem if slide.kind == "dicom" else slide.name
    return _Found(name, slide.kind, [file.original], slide.members, slide.main, slide.size, container="zip",
                  where=file.original, entries=slide.files)


def _parse_bool(value: str) -> bool | None:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False if text else None
    raise ValueError(value)


def _read_manifest(text: str, state: _State, *, mpp_range: tuple[float, float]) -> tuple[list[_Row], tuple[str, ...]]:
    """The manifest's rows; problems go to ``state.errors`` (a bad manifest stops the whole import)."""
    text = text.lstrip("\ufeff")
    if not text.strip():
        return [], ()
    first = text.splitlines()[0]
    delimiter = max((",", ";", "\t"), key=first.count)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = next(reader)
    except (StopIteration, csv.Error) as exc:
        state.errors.append(PlanError("manifest", f"the CSV cannot be read ({exc})"))
        return [], ()
    aliases = {alias: column for column, names in MANIFEST_COLUMNS.items() for alias in names}
    columns: list[str | None] = []
    unknown = []
    for raw in header:
        name = normalized_name(raw).lower().replace(" ", "_")
        column = aliases.get(name)
        if column is None and name:
            unknown.append(raw.strip())
        if column is not None and column in columns:
            state.errors.append(PlanError("manifest line 1", f"the column {raw.strip()!r} is there twice"))
        columns.append(column)
    if unknown:
        state.errors.append(PlanError("manifest line 1", f"unknown column{'s' if len(unknown) > 1 else ''} "
                                      f"{', '.join(map(repr, unknown))}; the columns are "
                                      f"{', '.join(MANIFEST_COLUMNS)} (only slide is required)"))
    if "slide" not in columns:
        state.errors.append(PlanError("manifest line 1", "there is no 'slide' column (the slide's file or name); "
                                      "the first line must name the columns"))
        return [], tuple(c for c in columns if c)
    rows: list[_Row] = []
    seen: dict[str, int] = {}
    low, high = mpp_range
    try:
        records = list(reader)
    except csv.Error as exc:
        state.errors.append(PlanError("manifest", f"the CSV cannot be read ({exc})"))
        return [], tuple(c for c in columns if c)
    for offset, record in enumerate(records, start=2):
        if not any(cell.strip() for cell in record):
            continue
        where = f"manifest line {offset}"
        if len(record) > len(columns):
            state.errors.append(PlanError(where, f"{len(record)} values for {len(columns)} columns"))
            continue
        values = {c: normalized_name(v) for c, v in zip(columns, record, strict=False) if c}
        row = _Row(offset, values.get("slide", ""))
        if not row.slide:
            state.errors.append(PlanError(where, "the slide is empty"))
            continue
        slide_key = _key(_slide_stem(row.slide))
        if slide_key in seen:
            state.errors.append(PlanError(where, f"slide {row.slide!r} is named again (first on line "
                                                 f"{seen[slide_key]})"))
            continue
        seen[slide_key] = offset
        split = values.get("split", "").lower()
        if split and split not in SPLITS:
            state.errors.append(PlanError(where, f"unknown split {values['split']!r}; a split is one of "
                                                 f"{', '.join(SPLITS)}"))
        row.split = split or None
        row.domain = values.get("domain") or None
        row.cohort = values.get("cohort") or None
        row.annotation = values.get("annotation") or None
        try:
            row.tumor_free = _parse_bool(values.get("tumor_free", ""))
        except ValueError:
            state.errors.append(PlanError(where, f"tumor_free must be true or false (yes/no, 1/0), not "
                                                 f"{values.get('tumor_free')!r}"))
        if values.get("mpp"):
            try:
                mpp = float(values["mpp"].replace(",", "."))
            except ValueError:
                mpp = math.nan
            if not (math.isfinite(mpp) and low <= mpp <= high):
                state.errors.append(PlanError(where, f"mpp must be a resolution between {low:g} and {high:g} µm "
                                                     f"per pixel, not {values['mpp']!r}"))
            else:
                row.mpp = mpp
        if row.tumor_free and row.annotation:
            state.errors.append(PlanError(where, f"slide {row.slide!r} is marked tumor-free but names the "
                                                 f"annotation {row.annotation!r}; one or the other"))
        rows.append(row)
    if not rows and not state.errors:
        state.errors.append(PlanError("manifest", "the manifest names no slide"))
    return rows, tuple(c for c in columns if c)


def _slide_stem(name: str) -> str:
    """A manifest's slide as a name: a path's last part without a slide or zip extension."""
    last = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    suffix = PurePosixPath(last).suffix.lower()
    return last[: -len(suffix)] if suffix in (*SLIDE_EXTENSIONS, ".zip") else last


def _cohort_name(base: str, split: str, domain: str, *, several: bool) -> str:
    return f"{base} {split} ({domain})" if several else base


def plan_import(
    files: list[FileEntry] | tuple[FileEntry, ...],
    manifest: str = "",
    *,
    cohort: str = "Imported",
    split: str = "test",
    domain: str = "in-domain",
    manifest_path: str | None = None,
    mpp_range: tuple[float, float] = (0.05, 100.0),
) -> ImportPlan:
    """The plan of importing ``files`` with the CSV ``manifest`` (may be empty).

    ``cohort``, ``split``, ``domain``: the cohort name and what slides without a manifest value get;
    when the slides fall into several (split, domain) pairs, each pair is a cohort named
    "COHORT SPLIT (DOMAIN)" unless the manifest's ``cohort`` column names one.  ``manifest_path``:
    the dropped file the manifest was read from (not a file to import).  ``mpp_range``: the
    resolutions (µm per pixel) a manifest may set.

    Raises :class:`ValueError` only for arguments a program got wrong (an unknown default split);
    everything about the files and the manifest is in the plan.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    state = _State()
    base = normalized_name(cohort)
    if not base:
        state.errors.append(PlanError("cohort", "the cohort needs a name"))
    domain = normalized_name(domain) or "in-domain"
    manifest_key = _key(manifest_path) if manifest_path else None
    dropped = [f for f in _files(files, state) if _key(str(f.path)) != manifest_key]
    found, rest = _group_slides(dropped, state)
    annotations: list[_File] = []
    for f in rest:
        if f.suffix == ".zip":
            slide = _zip_slide(f, state)
            if slide is not None:
                found.append(slide)
        elif f.suffix in ANNOTATION_EXTENSIONS or _is_mask(f):
            annotations.append(f)
        elif f.suffix == ".csv":
            state.left_out.append(PlanError(f.original, "a CSV that is not the manifest (choose it as the manifest "
                                                        "to use it)"))
        else:
            kind = f"'{f.suffix}'" if f.suffix else "without an extension"
            state.left_out.append(PlanError(f.original, f"files {kind} are neither slides nor annotations"))
    # Names must differ once normalised.
    by_key: dict[str, _Found] = {}
    for slide in found:
        key = _key(slide.name)
        other = by_key.get(key)
        if other is not None:
            state.errors.append(PlanError(slide.where, f"the slide name {slide.name!r} is the same as {other.name!r} "
                                          f"({other.where}) after Unicode NFKC normalisation and without regard "
                                          "to case; rename one"))
            continue
        by_key[key] = slide
    rows, columns = _read_manifest(manifest, state, mpp_range=mpp_range)
    row_by_key = {_key(_slide_stem(r.slide)): r for r in rows}
    ann_by_path = {_key(str(a.path)): a for a in annotations}
    ann_by_name = {_key(a.path.name): a for a in annotations}
    ann_by_base: dict[str, list[_File]] = defaultdict(list)
    for a in annotations:
        ann_by_base[_key(_annotation_base(a))].append(a)
    used_annotations: dict[str, str] = {}
    planned: list[tuple[_Found, _Row | None, _File | None]] = []
    missing: list[str] = []
    for key, slide in sorted(by_key.items(), key=lambda kv: kv[1].name):
        row = row_by_key.get(key)
        if rows and row is None:
            missing.append(slide.name)
            continue
        if row is not None:
            row.used = True
        annotation: _File | None = None
        if row is not None and row.annotation:
            wanted = _key(row.annotation.replace("\\", "/"))
            annotation = ann_by_path.get(wanted) or ann_by_name.get(wanted)
            if annotation is None:
                suffix = PurePosixPath(row.annotation).suffix.lower()
                reason = (f"the annotation {row.annotation!r} is not among the files" if suffix in
                          (*ANNOTATION_EXTENSIONS, *MASK_EXTENSIONS) else
                          f"the annotation {row.annotation!r} is of an unsupported kind: annotations are "
                          f"{', '.join(ANNOTATION_EXTENSIONS)} or a mask NAME_mask.png / NAME_mask.tif")
                state.errors.append(PlanError(f"manifest line {row.line}", reason))
                continue
        elif row is None or not row.tumor_free:
            candidates = sorted(ann_by_base.get(key, []), key=lambda a: (_ANNOTATION_RANK.get(a.suffix, 9),
                                                                         str(a.path)))
            annotation = candidates[0] if candidates else None
        if annotation is not None:
            owner = used_annotations.get(annotation.original)
            if owner is not None:
                state.errors.append(PlanError(annotation.original, f"matched to two slides, {owner!r} and "
                                                                   f"{slide.name!r}"))
                continue
            used_annotations[annotation.original] = slide.name
        planned.append((slide, row, annotation))
    dropped_by_name = {_key(f.path.name): f for f in rest}
    for row in rows:
        stray = dropped_by_name.get(_key(row.slide.replace("\\", "/").rsplit("/", 1)[-1]))
        if not row.used and stray is not None and _key(_slide_stem(row.slide)) not in by_key:
            row.used = True
            state.errors.append(PlanError(f"manifest line {row.line}", f"{row.slide!r}: files "
                                          f"'{stray.suffix or 'without an extension'}' are not slides; a slide is "
                                          f"one of {', '.join(SLIDE_EXTENSIONS)} (or a zip of one)"))
    rows_without_files = tuple(
        PlanError(f"manifest line {r.line}", f"slide {r.slide!r} is not among the files")
        for r in rows if not r.used and _key(_slide_stem(r.slide)) not in by_key
    )
    pairs = {(r.split if r and r.split else split, r.domain if r and r.domain else domain)
             for _, r, _ in planned if not (r and r.cohort)}
    several = len(pairs) > 1
    slides: list[PlannedSlide] = []
    cohorts: dict[str, list[str | int]] = {}
    for found_slide, row, annotation in planned:
        s_split = row.split if row and row.split else split
        s_domain = row.domain if row and row.domain else domain
        s_cohort = row.cohort if row and row.cohort else _cohort_name(base, s_split, s_domain, several=several)
        known = cohorts.get(_key(s_cohort))
        if known is not None and (known[1], known[2]) != (s_split, s_domain):
            state.errors.append(PlanError(found_slide.where, f"cohort {s_cohort!r} would hold slides of "
                                          f"{known[1]} / {known[2]} and of {s_split} / {s_domain}; a cohort is "
                                          "one split of one domain"))
            continue
        if known is None:
            cohorts[_key(s_cohort)] = [s_cohort, s_split, s_domain, 0]
        cohorts[_key(s_cohort)][3] = int(cohorts[_key(s_cohort)][3]) + 1
        tumor_free = row.tumor_free if row and row.tumor_free is not None else annotation is None
        slides.append(PlannedSlide(
            name=found_slide.name, kind=found_slide.kind, files=tuple(found_slide.files),
            members=tuple(found_slide.members), main=found_slide.main, size=found_slide.size, split=s_split,
            domain=s_domain, cohort=str(cohorts[_key(s_cohort)][0]),
            annotation=annotation.original if annotation else None, tumor_free=bool(tumor_free),
            mpp=row.mpp if row else None, manifest_line=row.line if row else None, container=found_slide.container,
            entries=tuple(found_slide.entries),
        ))
    if not found and not state.errors:
        state.errors.append(PlanError("files", "there is no slide among the files (slides are "
                                               f"{', '.join(SLIDE_EXTENSIONS)}, or a zip of one)"))
    unmatched = tuple(a.original for a in annotations if a.original not in used_annotations)
    return ImportPlan(
        slides=tuple(slides),
        cohorts=tuple(PlannedCohort(str(n), str(s), str(d), int(c)) for n, s, d, c in cohorts.values()),
        unmatched_annotations=unmatched,
        missing_from_manifest=tuple(missing),
        rows_without_files=rows_without_files,
        left_out=tuple(state.left_out),
        errors=tuple(state.errors),
        manifest_columns=columns,
    )
