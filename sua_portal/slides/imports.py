"""Cohort imports from the browser: the preview, the import session, its files in chunks, each slide made.

The flow (docs/cohort-import.md):

1. :func:`preview` plans the import (:func:`analysis.cohort_import.plan_import` on the dropped paths and
   the manifest) and checks it against what the project holds; nothing is stored.
2. :func:`start_import` plans again and, only when the plan has no error, creates the cohorts, the
   import (:class:`CohortImport`), one item per slide and one resumable upload per file
   (:class:`ImportPart`; a dropped zip is one upload, unpacked here).  All in one transaction: a bad
   manifest changes nothing.
3. The client sends each file's chunks (:func:`receive_part_chunk`, the slides' own chunk receiver).
4. :func:`complete_item` makes one slide from its files once they are all here: the files laid out
   in a folder (a MIRAX data folder beside its .mrxs, a DICOM series together; zips unpacked with
   their sizes and paths checked), the annotation read against the slide, then the slide stored with
   its annotation, split and domain (its cohort), tumor-free flag and resolution override, and its
   check queued.  A file that is refused leaves the item "rejected" with the reason; the rest go on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import shutil
import tempfile
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from analysis import cohort_import
from sua_portal.accounts.models import Project
from sua_portal.core.bodies import human_bytes
from sua_portal.slides import services, tiles
from sua_portal.slides.models import (
    Annotation,
    Cohort,
    CohortImport,
    ImportItem,
    ImportPart,
    Slide,
    staging_dir,
    staging_path,
)
from sua_portal.slides.services import SlideConflict, SlideRejected

log = logging.getLogger(__name__)

_COPY = 8 * 1024 * 1024
# DICOM's Series Instance UID, tag (0020,000E), VR "UI", as explicit little-endian files write it.
_SERIES_UID = re.compile(rb"\x20\x00\x0e\x00UI(..)", re.DOTALL)
_DICOM_HEAD_BYTES = 256 * 1024


class ImportRejected(SlideRejected):
    """A plan with errors: nothing is stored; ``errors`` and ``plan`` go with the message."""


@dataclasses.dataclass(frozen=True)
class ImportRequest:
    """What the browser sends to preview or start an import (checked by the view's serializer)."""

    files: tuple[cohort_import.FileEntry, ...]
    manifest: str = ""
    manifest_path: str | None = None
    cohort: str = "Imported"
    split: str = "test"
    domain: str = "in-domain"
    archive: str | None = None
    archive_size: int | None = None


def _max_files() -> int:
    return int(settings.IMPORT_MAX_FILES)


# --------------------------------------------------------------------------- the plan


def _planned(project: Project, request: ImportRequest) -> tuple[cohort_import.ImportPlan, dict[str, Any]]:
    """The pure plan, and as plain JSON with what this project adds: cohorts that exist, slides already there,
    slides larger than a slide may be; errors about the project join the plan's."""
    count = len(request.files) + sum(len(f.entries or ()) for f in request.files)
    if count > _max_files():
        raise SlideRejected(f"{count} files are more than the {_max_files()} one import may have; import the "
                            "cohort in parts.")
    plan = cohort_import.plan_import(
        request.files, request.manifest, cohort=request.cohort, split=request.split, domain=request.domain,
        manifest_path=request.manifest_path, mpp_range=(float(settings.SLIDE_MPP_MIN), float(settings.SLIDE_MPP_MAX)),
    )
    errors = [dataclasses.asdict(e) for e in plan.errors]
    existing = {c.name: c for c in Cohort.objects.filter(project=project, name__in=[c.name for c in plan.cohorts])}
    cohorts = []
    for planned in plan.cohorts:
        cohort = existing.get(planned.name)
        if cohort is not None and (cohort.split, cohort.domain) != (planned.split, planned.domain):
            errors.append({"where": f"cohort {planned.name!r}", "reason": (
                f"a cohort of this name exists as {cohort.split} / {cohort.domain}, not {planned.split} / "
                f"{planned.domain}; choose another name")})
        cohorts.append({**dataclasses.asdict(planned), "exists": cohort is not None})
    there = {
        (cohort_name, name)
        for cohort_name, name in Slide.objects.filter(cohort__in=existing.values()).values_list("cohort__name", "name")
    }
    limit = services.max_upload_bytes()
    slides = []
    for slide in plan.slides:
        if slide.size > limit:
            errors.append({"where": slide.files[0], "reason": f"slide {slide.name!r} has {human_bytes(slide.size)}, "
                           f"more than the {human_bytes(limit)} a slide may have on this server"})
        slides.append({**dataclasses.asdict(slide), "exists": (slide.cohort, slide.name) in there})
    answer = {
        "slides": slides,
        "cohorts": cohorts,
        "unmatched_annotations": list(plan.unmatched_annotations),
        "missing_from_manifest": list(plan.missing_from_manifest),
        "rows_without_files": [dataclasses.asdict(e) for e in plan.rows_without_files],
        "left_out": [dataclasses.asdict(e) for e in plan.left_out],
        "errors": errors,
        "manifest_columns": list(plan.manifest_columns),
        "archive": request.archive,
    }
    return plan, answer


def _refuse(answer: dict[str, Any]) -> ImportRejected:
    errors = answer["errors"]
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ImportRejected(f"{first['where']}: {first['reason']}{more}. Nothing was stored.", errors=errors,
                          plan=answer)


def preview(project: Project, request: ImportRequest) -> dict[str, Any]:
    """The plan of an import, as JSON; :class:`ImportRejected` (with the plan) when it has errors. Stores nothing."""
    _, answer = _planned(project, request)
    if answer["errors"]:
        raise _refuse(answer)
    return answer


# --------------------------------------------------------------------------- the session


def start_import(project: Project, request: ImportRequest, *, user: Any = None) -> CohortImport:
    """Create the cohorts, the import, its items and its uploads in one transaction (see the module)."""
    plan, answer = _planned(project, request)
    if answer["errors"]:
        raise _refuse(answer)
    if request.archive and not (request.archive_size and request.archive_size > 0):
        raise SlideRejected("The dropped zip's size is missing.")
    sizes: dict[str, int] = {}
    entry_sizes: dict[str, dict[str, int]] = {}
    for f in request.files:
        sizes[f.path] = f.size
        if f.entries is not None:
            entry_sizes[f.path] = {e.path: e.size for e in f.entries}
    with transaction.atomic():
        cohorts = {
            c.name: services.get_or_create_cohort(project, name=c.name, split=c.split, domain=c.domain,
                                                  description=f"Imported from the browser ({request.cohort}).")
            for c in plan.cohorts
        }
        session = CohortImport.objects.create(
            project=project, name=request.cohort[:200], plan=answer, archive=(request.archive or "")[:500],
            created_by=user if getattr(user, "is_authenticated", False) else None,
        )
        parts: dict[str, int] = {}
        for position, (slide, shown) in enumerate(zip(plan.slides, answer["slides"], strict=True)):
            spec = dataclasses.asdict(slide)
            spec["sizes"] = ([entry_sizes[slide.files[0]][e] for e in slide.entries] if slide.container == "zip"
                             else [sizes[f] for f in slide.files])
            spec["annotation_size"] = sizes.get(slide.annotation) if slide.annotation else None
            skipped = bool(shown["exists"])
            ImportItem.objects.create(
                cohort_import=session, position=position, name=slide.name, cohort=cohorts[slide.cohort], spec=spec,
                state=ImportItem.State.SKIPPED if skipped else ImportItem.State.PENDING,
                reason=f"a slide called {slide.name!r} is in cohort {slide.cohort!r} already" if skipped else "",
            )
            if skipped or request.archive:
                continue
            for path in (*slide.files, *([slide.annotation] if slide.annotation else [])):
                parts[path] = sizes[path]
        if request.archive:
            parts = {request.archive: int(request.archive_size or 0)}
        ImportPart.objects.bulk_create(
            [ImportPart(cohort_import=session, path=path, size_bytes=size) for path, size in parts.items()]
        )
    services.remove_stale_staging_files()
    for part in session.parts.all():
        staging_path(part).touch()
    return session


def receive_part_chunk(part: ImportPart, *, offset: int, length: int, stream: IO[bytes] | None) -> ImportPart:
    """Append a chunk to one file of an import (the slides' own resumable receiver)."""
    return services.receive_chunk(part, offset=offset, length=length, stream=stream)


def cancel_import(session: CohortImport) -> None:
    """Forget an import's uploads (slides already made stay); the import's row goes with them."""
    for part in session.parts.all():
        staging_path(part).unlink(missing_ok=True)
    session.delete()


def purge_stale_imports(*, older_than: timedelta = services.STALE_UPLOAD_AGE) -> int:
    """Give up the imports left unfinished that nobody touched for ``older_than`` (the same age as a slide's
    resumable upload): their uploaded files and rows go, the slides they made stay. A finished import (no
    slide pending) stays as the record of what came of each slide. Returns how many were given up."""
    cutoff = timezone.now() - older_than
    stale = (CohortImport.objects.filter(updated__lt=cutoff, items__state=ImportItem.State.PENDING)
             .exclude(parts__updated__gte=cutoff).distinct())
    given_up = 0
    for session in stale:
        cancel_import(session)
        given_up += 1
    return given_up


# --------------------------------------------------------------------------- one slide


def _parts_of(item: ImportItem) -> dict[str, ImportPart]:
    session = item.cohort_import
    spec = item.spec
    wanted = [session.archive] if session.archive else [*spec["files"], *([spec["annotation"]] if spec["annotation"]
                                                                         else [])]
    parts = {p.path: p for p in session.parts.filter(path__in=wanted)}
    for path in wanted:
        part = parts.get(path)
        if part is None:
            raise services.UploadLost(f"{path}: the uploaded bytes are gone from the server; start the import again.")
        if part.received_bytes != part.size_bytes:
            raise SlideConflict(
                f"{path}: only {part.received_bytes} of {part.size_bytes} bytes have arrived; send the rest first.",
                part=str(part.pk), offset=part.received_bytes,
            )
        staged = staging_path(part)
        if not staged.is_file() or staged.stat().st_size != part.size_bytes:
            raise services.UploadLost(f"{path}: the uploaded bytes are gone from the server; start the import again.")
    return parts


def _inside(folder: Path, relative: str) -> Path:
    target = (folder / relative).resolve()
    if folder.resolve() not in target.parents:
        raise SlideRejected(f"{relative}: a path that leaves the slide's folder.")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _place(source: Path, target: Path) -> None:
    """``source`` at ``target`` without copying when the file system allows (the staged part stays)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _zip_names(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The zip's entries by the name a browser reads (UTF-8, also where the zip did not flag it), normalised."""
    names: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        candidates = [info.filename]
        if not info.flag_bits & 0x800:
            with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
                candidates.append(info.filename.encode("cp437").decode("utf-8"))
        for name in candidates:
            names.setdefault(cohort_import.normalized_name(name.replace("\\", "/")).casefold(), info)
    return names


def _extract(archive: zipfile.ZipFile, names: dict[str, zipfile.ZipInfo], entry: str, target: Path,
             size: int, *, zip_name: str) -> None:
    """One entry of a zip to ``target``: it must be there, a plain file, of the size the plan was made with."""
    info = names.get(cohort_import.normalized_name(entry).casefold())
    if info is None:
        raise SlideRejected(f"{zip_name}: {entry} is not in the zip that arrived.")
    if info.is_dir() or (info.external_attr >> 16) & 0o170000 == 0o120000:
        raise SlideRejected(f"{zip_name}: {entry} is a folder or a link, not a file.")
    if info.file_size != size:
        raise SlideRejected(f"{zip_name}: {entry} has {info.file_size} bytes in the zip, not the {size} the "
                            "preview was made with.")
    written = 0
    try:
        with archive.open(info) as src, target.open("wb") as out:
            # Never more than the size announced, whatever the compressed stream holds.
            while block := src.read(min(_COPY, size + 1 - written)):
                written += len(block)
                if written > size:
                    raise SlideRejected(f"{zip_name}: {entry} unpacks to more than its {size} bytes.")
                out.write(block)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
        raise SlideRejected(f"{zip_name}: {entry} cannot be unpacked ({tiles._short(exc)}).") from None
    except RuntimeError as exc:  # encrypted entries
        raise SlideRejected(f"{zip_name}: {entry} cannot be unpacked ({exc}).") from None


def _open_zip(path: Path, name: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise SlideRejected(f"{name} is not a zip that can be read ({tiles._short(exc)}).") from None


def _lay_out(item: ImportItem, parts: dict[str, ImportPart], folder: Path) -> Path | None:
    """The slide's files in ``folder`` as its reader expects them; returns the annotation's path (or None)."""
    session = item.cohort_import
    spec = item.spec
    members: list[str] = spec["members"]
    annotation: str | None = spec["annotation"]
    annotation_path = None
    if annotation:
        annotation_path = folder.parent / "annotation" / Path(annotation).name
        annotation_path.parent.mkdir(parents=True, exist_ok=True)
    if session.archive:
        with _open_zip(staging_path(parts[session.archive]), session.archive) as archive:
            names = _zip_names(archive)
            if spec["container"] == "zip":
                raise SlideRejected(f"{spec['files'][0]}: a zip inside the dropped zip; unpack it first.")
            for path, member, size in zip(spec["files"], members, spec["sizes"], strict=True):
                _extract(archive, names, path, _inside(folder, member), int(size), zip_name=session.archive)
            if annotation and annotation_path is not None:
                _extract(archive, names, annotation, annotation_path, int(spec["annotation_size"] or 0),
                         zip_name=session.archive)
        return annotation_path
    if spec["container"] == "zip":
        zip_name = spec["files"][0]
        with _open_zip(staging_path(parts[zip_name]), zip_name) as archive:
            names = _zip_names(archive)
            for entry, member, size in zip(spec["entries"], members, spec["sizes"], strict=True):
                _extract(archive, names, entry, _inside(folder, member), int(size), zip_name=zip_name)
    else:
        for path, member in zip(spec["files"], members, strict=True):
            _place(staging_path(parts[path]), _inside(folder, member))
    if annotation and annotation_path is not None:
        _place(staging_path(parts[annotation]), annotation_path)
    return annotation_path


def _one_dicom_series(folder: Path, members: list[str]) -> None:
    """All .dcm files of a DICOM slide are of one series (a reader opens one series and ignores the others)."""
    series: dict[bytes, list[str]] = {}
    for member in members:
        with (folder / member).open("rb") as fh:
            head = fh.read(_DICOM_HEAD_BYTES)
        match = _SERIES_UID.search(head)
        if match is None:
            continue
        length = int.from_bytes(match[1], "little")
        uid = head[match.end():match.end() + length].rstrip(b"\0 ")
        series.setdefault(uid, []).append(member)
    if len(series) > 1:
        listing = "; ".join(f"{uid.decode(errors='replace')}: {', '.join(files)}" for uid, files in series.items())
        raise SlideRejected(f"the folder holds {len(series)} DICOM series ({listing}); a slide is one series: "
                            "put each in a folder of its own.")


def _store(item: ImportItem, folder: Path, annotation_path: Path | None, *, user: Any) -> tuple[Slide, bool]:
    """Store the laid-out slide with its annotation and labels; the check is queued once committed."""
    spec = item.spec
    main = folder / spec["main"]
    if spec["kind"] == "dicom":
        _one_dicom_series(folder, spec["members"])
    geometry = None
    if annotation_path is not None:
        try:
            size = tiles.slide_size(main)
        except tiles.SlideReadError as exc:
            raise SlideRejected(f"{spec['main']} is not a readable slide: {exc}.") from None
        geometry = services.annotation_geometry(
            annotation_path, filename=annotation_path.name, slide_size=size,
        )
    stored: Slide | None = None
    try:
        with transaction.atomic():
            if spec["kind"] == "file":
                slide = stored = services.store_slide(item.cohort, main, filename=spec["main"], user=user, move=True)
            else:
                slide = stored = services.store_slide_files(item.cohort, folder, main=spec["main"], name=spec["name"],
                                                            user=user)
            if geometry is not None and annotation_path is not None:
                Annotation.objects.create(
                    slide=slide, geometry=services._geojson(geometry), source=Annotation.Source.GROUND_TRUTH,
                    author=user if getattr(user, "is_authenticated", False) else None,
                    original_filename=annotation_path.name[:255],
                )
                slide.has_tumor = not geometry.is_empty
            else:
                # Tumor-free as the plan says (no annotation file, or marked so); marked "not tumor-free" without
                # an outline is a slide with tumor whose area nobody drew.
                slide.has_tumor = not spec["tumor_free"]
            slide.mpp_override = spec["mpp"]
            slide.save(update_fields=["has_tumor", "mpp_override"])
    except BaseException:
        if stored is not None:
            services.delete_stored_files(stored)
        raise
    return slide, geometry is not None


def complete_item(item: ImportItem, *, user: Any = None) -> ImportItem:
    """Make the item's slide from its uploaded files (see the module); the item says what came of it.

    Idempotent: an item already done is answered as it is.  Missing bytes are a :class:`SlideConflict`
    naming the file and its offset (nothing changes); a file that is refused makes the item
    "rejected" with the reason, a slide already in the cohort (same SHA-256) "skipped".
    """
    with transaction.atomic():
        item = ImportItem.objects.select_for_update().select_related("cohort_import", "cohort").get(pk=item.pk)
        if item.state != ImportItem.State.PENDING:
            return item
        parts = _parts_of(item)
        work = Path(tempfile.mkdtemp(prefix=f"import-{item.cohort_import_id}-{item.position}-", dir=staging_dir()))
        try:
            folder = work / "slide"
            folder.mkdir()
            try:
                annotation_path = _lay_out(item, parts, folder)
                slide, annotated = _store(item, folder, annotation_path, user=user or item.cohort_import.created_by)
            except SlideConflict as exc:
                item.state, item.reason = ImportItem.State.SKIPPED, str(exc)
                item.slide_id = exc.details.get("slide")
            except SlideRejected as exc:
                item.state, item.reason = ImportItem.State.REJECTED, str(exc)
            else:
                item.state, item.slide, item.annotated, item.reason = ImportItem.State.CREATED, slide, annotated, ""
            item.save(update_fields=["state", "reason", "slide", "annotated"])
        finally:
            shutil.rmtree(work, ignore_errors=True)
        _release_parts(item)
    return item


def _release_parts(item: ImportItem) -> None:
    """Drop the uploads no pending item needs any more (their staging files go once committed)."""
    session = item.cohort_import
    pending = list(session.items.filter(state=ImportItem.State.PENDING).values_list("spec", flat=True))
    if session.archive:
        if not pending:
            session.parts.all().delete()
        return
    needed = {p for spec in pending for p in (*spec["files"], *([spec["annotation"]] if spec["annotation"] else []))}
    done = {*item.spec["files"], *([item.spec["annotation"]] if item.spec["annotation"] else [])}
    session.parts.filter(path__in=done - needed).delete()


def progress(session: CohortImport) -> dict[str, Any]:
    """The import's state for the browser: its files' offsets and its slides' outcomes."""
    items = list(session.items.select_related("cohort", "slide"))
    parts = list(session.parts.all())
    return {
        "id": session.pk,
        "project": session.project_id,
        "name": session.name,
        "archive": session.archive or None,
        "created": session.created.isoformat(),
        "plan": session.plan,
        "parts": [{"id": str(p.pk), "path": p.path, "size": p.size_bytes, "offset": p.received_bytes} for p in parts],
        "items": [{
            "position": i.position, "name": i.name, "cohort": i.cohort.name, "cohort_id": i.cohort_id,
            "state": i.state, "reason": i.reason, "slide": i.slide_id, "annotated": i.annotated,
            "slide_status": i.slide.status if i.slide else None,
            "files": i.spec["files"], "annotation": i.spec["annotation"],
        } for i in items],
        "done": all(i.state != ImportItem.State.PENDING for i in items),
    }
