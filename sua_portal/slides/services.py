"""Slides and cohorts: storing uploads, resumable uploads, annotations, the slide check, imports.

Views and tasks stay thin and call these functions.  Problems a person can fix
are raised as :class:`SlideRejected` (its subclasses say what kind: a conflict, too large, gone);
nothing half-made is left behind when one is raised: no stored file, no row.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np
import shapely
import tifffile
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from PIL import Image, UnidentifiedImageError
from shapely.geometry import MultiPolygon, mapping
from shapely.geometry.base import BaseGeometry

from analysis import annotations as ann
from analysis import cohort_import
from analysis.errors import InputError, NoTumorAreaError
from analysis.synthetic import generate_cohort
from sua_portal.accounts.models import Project
from sua_portal.celery import enqueue
from sua_portal.core.bodies import human_bytes
from sua_portal.errors import Conflict, DomainError, Gone, TooLarge
from sua_portal.slides import tiles
from sua_portal.slides.local_cache import SlideCache
from sua_portal.slides.models import (
    Annotation,
    Cohort,
    ImportPart,
    Slide,
    SlideUpload,
    companion_name,
    staging_dir,
    staging_path,
)

log = logging.getLogger(__name__)

#: File name endings accepted as slides (what OpenSlide and large-image's sources read).
SLIDE_EXTENSIONS: tuple[str, ...] = cohort_import.SLIDE_EXTENSIONS
_FORMAT_NAMES = {
    ".svs": "Aperio SVS", ".tif": "TIFF", ".tiff": "TIFF", ".ndpi": "Hamamatsu NDPI", ".mrxs": "MIRAX",
    ".scn": "Leica SCN", ".dcm": "DICOM WSI", ".bif": "Ventana BIF", ".vms": "Hamamatsu VMS",
    ".svslide": "Sakura SVSlide", ".qptiff": "Akoya QPTIFF",
}
ANNOTATION_VECTOR_EXTENSIONS = (".xml", ".geojson", ".json")
ANNOTATION_MASK_EXTENSIONS = (".png", ".tif", ".tiff")
#: Masks are outlined in memory: bigger ones must be saved at a coarser downsample.
MAX_MASK_PIXELS = 64 * 1024 * 1024
MAX_ANNOTATION_BYTES = 256 * 1024 * 1024
#: An annotation vertex may sit this many level-0 pixels past the slide's edge (drawing tools round).
EDGE_TOLERANCE_PX = 1.0
_CHUNK = 8 * 1024 * 1024
#: A chunk's body is read in blocks this big: a read that runs into the body deadline loses its block
#: (the server holds it unfinished), so what a stalled chunk keeps is all but its last block.
_RECEIVE_BLOCK = 256 * 1024
#: A resumable upload nobody touched for this long is given up.
STALE_UPLOAD_AGE = timedelta(days=2)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class SlideRejected(DomainError):
    """A slide, upload or annotation a person has to fix; keyword details (``offset=``) go with the message."""


class SlideConflict(SlideRejected, Conflict):
    """The same file is in the cohort already, or a chunk does not start where the upload stands."""


class SlideTooLarge(SlideRejected, TooLarge):
    """A slide or annotation file larger than this server accepts."""


class UploadLost(SlideRejected, Gone):
    """The bytes of a resumable upload are no longer on the server."""


# --------------------------------------------------------------------------- files and storage


def max_upload_bytes() -> int:
    return int(settings.SLIDE_MAX_UPLOAD_BYTES)


MAX_FILE_NAME_CHARS = 200


def normalized_file_name(filename: str) -> str:
    """``filename`` as it is checked and stored: invisible and control characters removed, then Unicode
    NFKC (so full-width letters are plain ones and a full-width solidus U+FF0F is a "/"), then stripped."""
    return cohort_import.normalized_name(filename)


def check_file_name(filename: str, *, what: str = "file") -> str:
    """The bare, normalised name of an uploaded file (:func:`normalized_file_name`), or
    :class:`SlideRejected` saying what is wrong with it as sent.

    Checked after normalisation, so that the message is about what would be stored: a name made of
    zero-width characters and ".svs" is an empty name, not a file without an extension.
    """
    raw = filename or ""
    name = normalized_file_name(raw)
    removed = " once invisible and control characters are removed" if name != raw.strip() else ""
    if not name:
        raise SlideRejected(f"The {what} has no name{f' ({raw!r}{removed})' if raw else ''}; "
                            "name it (like slide.svs).")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise SlideRejected(f"The file name {raw!r} contains a path; send the bare file name (like slide.svs).")
    if len(name) > MAX_FILE_NAME_CHARS:
        raise SlideRejected(f"The file name is longer than {MAX_FILE_NAME_CHARS} characters.")
    if not name.isprintable():
        raise SlideRejected(f"The file name {raw!r} contains characters that cannot be shown; rename the file.")
    stem, dot, extension = name.rpartition(".")
    if dot and not stem.strip(" ."):
        raise SlideRejected(
            f"The file name {raw!r} is an empty name before its extension '.{extension}'{removed}; "
            f"name the {what} (like slide.{extension})."
        )
    return name


def check_slide_filename(filename: str) -> str:
    """The bare file name of a slide (:func:`check_file_name`) with a slide's extension, or
    :class:`SlideRejected` saying what is wrong with it."""
    name = check_file_name(filename, what="slide file")
    suffix = Path(name).suffix.lower()
    if suffix not in SLIDE_EXTENSIONS:
        shown = f"'{suffix}'" if suffix else "without an extension"
        raise SlideRejected(
            f"{name}: files {shown} are not accepted as slides; upload one of {', '.join(SLIDE_EXTENSIONS)}."
        )
    return name


def check_slide_size(size: int, filename: str) -> None:
    if size <= 0:
        raise SlideRejected(f"{filename}: the file is empty.")
    limit = max_upload_bytes()
    if size > limit:
        raise SlideTooLarge(
            f"{filename}: {human_bytes(size)} is more than the {human_bytes(limit)} a slide may have on this server."
        )


def sha256_of_file(path: Path, *, chunk: int = _CHUNK) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class _MovableFile(File):  # type: ignore[type-arg]
    """A file that FileSystemStorage may move into place instead of copying (staging, temp files)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path.open("rb"), name=path.name)
        self._path = path

    def temporary_file_path(self) -> str:
        return str(self._path)


def stored_name(slide: Slide) -> str:
    """The slide's name in storage ("" before the file is saved)."""
    return slide.file.name or ""


def slide_cache() -> SlideCache:
    """This machine's cache of slides kept in object storage (``SLIDE_CACHE_DIR``, ``SLIDE_CACHE_MAX_BYTES``)."""
    return SlideCache(Path(settings.SLIDE_CACHE_DIR), int(settings.SLIDE_CACHE_MAX_BYTES))


@contextmanager
def slide_file(slide: Slide) -> Iterator[Path]:
    """A filesystem path of the slide for large-image, kept on this machine while the block runs.

    Local storage: the stored file itself.  Remote storage (S3): a copy in this machine's
    :func:`slide_cache`, downloaded when missing; no process evicts it during the block.
    """
    try:
        stored = Path(default_storage.path(stored_name(slide)))
    except NotImplementedError:
        pass
    else:
        yield stored
        return

    def download(out: IO[bytes]) -> None:
        with default_storage.open(stored_name(slide), "rb") as src:
            shutil.copyfileobj(src, out, _CHUNK)

    companions = slide.companion_files or []
    main_size = slide.size_bytes - sum(int(c["size"]) for c in companions)
    with slide_cache().open(slide.sha256, Path(stored_name(slide)).name, main_size, download) as path:
        # A MIRAX data folder or the rest of a DICOM series: beside the file, as in storage.
        for companion in companions:
            _fetch_companion(path.parent, companion_name(stored_name(slide), companion["path"]), companion)
        yield path


def _fetch_companion(folder: Path, name: str, companion: dict[str, Any]) -> None:
    target = folder / companion["path"]
    if target.is_file() and target.stat().st_size == int(companion["size"]):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".part", delete=False) as out:
        try:
            with default_storage.open(name, "rb") as src:
                shutil.copyfileobj(src, out, _CHUNK)
        except BaseException:
            out.close()
            Path(out.name).unlink(missing_ok=True)
            raise
    os.replace(out.name, target)


def local_path(slide: Slide) -> Path:
    """A filesystem path of the slide for the web's image endpoints (see :func:`slide_file`).

    With remote storage the copy is protected only while it is fetched: another process may evict
    it later.  A tile source opened on it keeps reading (an open file outlives its name) and the next
    call fetches it again.  Tasks that read a slide for long use :func:`slide_file`.
    """
    with slide_file(slide) as path:
        return path


def _format_name(filename: str, source: str | None) -> str:
    name = _FORMAT_NAMES.get(Path(filename).suffix.lower(), Path(filename).suffix.lstrip(".").upper())
    return f"{name} ({source})" if source else name


# --------------------------------------------------------------------------- storing a slide


def store_slide(
    cohort: Cohort,
    path: Path,
    *,
    filename: str,
    user: Any = None,
    sha256: str | None = None,
    move: bool = False,
    probe: bool = True,
    queue_check: bool = True,
) -> Slide:
    """Store the slide file at ``path`` in ``cohort`` and create its row (status "uploaded").

    ``probe`` runs the decode checks on the local file first, so a file that
    is not a readable slide is refused before anything is stored.  ``move``
    lets local storage move the file into place (uploads, staging files);
    otherwise it is copied.  The full check (with the tissue mask) is queued
    once the row is committed.
    """
    filename = check_slide_filename(filename)
    size = path.stat().st_size
    check_slide_size(size, filename)
    digest = sha256 or sha256_of_file(path)
    existing = Slide.objects.filter(cohort=cohort, sha256=digest).first()
    if existing is not None:
        raise _duplicate(existing, filename)
    info: tiles.SlideInfo | None = None
    if probe:
        try:
            info = tiles.inspect_slide(path)
        except tiles.SlideReadError as exc:
            raise SlideRejected(f"{filename} is not a readable slide: {exc}.") from None
    slide = Slide(
        cohort=cohort,
        name=Path(filename).stem,
        sha256=digest,
        size_bytes=size,
        uploaded_by=user if getattr(user, "is_authenticated", False) else None,
        format=_format_name(filename, info.source if info else None)[:64],
    )
    if info is not None:
        _apply_info(slide, info)
    content: File[Any] = _MovableFile(path) if move else File(path.open("rb"), name=filename)
    try:
        slide.file.save(filename, content, save=False)
    finally:
        content.close()
    try:
        with transaction.atomic():
            slide.save()
    except IntegrityError:
        # Another upload of the same file won the race: keep theirs, drop ours.
        default_storage.delete(stored_name(slide))
        other = Slide.objects.filter(cohort=cohort, sha256=digest).first()
        if other is None:
            raise
        raise _duplicate(other, filename) from None
    except BaseException:
        default_storage.delete(stored_name(slide))
        raise
    if queue_check:
        queue_slide_check(slide)
    return slide


def _duplicate(existing: Slide, filename: str) -> SlideRejected:
    return SlideConflict(f"{filename} is already in this cohort as slide {existing.name!r} (same SHA-256).",
                         slide=existing.pk)


def store_slide_files(
    cohort: Cohort, folder: Path, *, main: str, name: str, user: Any = None, queue_check: bool = True,
) -> Slide:
    """Store a slide of several files (MIRAX: the .mrxs and its data folder; DICOM-WSI: one series) laid out
    in ``folder`` as its reader expects them; ``main`` is the file the reader opens, relative to ``folder``.

    The files are moved into one storage folder, ``main`` as the slide's file and the others beside it
    (``companion_files``); the SHA-256 is that of the list of the files' paths, sizes and SHA-256s.  Checked
    like :func:`store_slide` before anything is stored.
    """
    main_path = folder / main
    filename = check_slide_filename(main_path.name)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if main_path not in files:
        raise SlideRejected(f"{name}: {main} is not among the slide's files.")
    total = sum(p.stat().st_size for p in files)
    check_slide_size(total, name)
    listing = "".join(f"{p.relative_to(folder).as_posix()}\t{p.stat().st_size}\t{sha256_of_file(p)}\n" for p in files)
    digest = hashlib.sha256(listing.encode()).hexdigest()
    existing = Slide.objects.filter(cohort=cohort, sha256=digest).first()
    if existing is not None:
        raise _duplicate(existing, name)
    try:
        info = tiles.inspect_slide(main_path)
    except tiles.SlideReadError as exc:
        raise SlideRejected(f"{name} is not a readable slide: {exc}.") from None
    base = main_path.parent
    companions = [p for p in files if p != main_path]
    slide = Slide(
        cohort=cohort, name=normalized_file_name(name)[:255], sha256=digest, size_bytes=total,
        uploaded_by=user if getattr(user, "is_authenticated", False) else None,
        format=_format_name(filename, info.source)[:64],
        companion_files=[{"path": p.relative_to(base).as_posix(), "size": p.stat().st_size} for p in companions],
    )
    _apply_info(slide, info)
    if any(not p.is_relative_to(base) for p in companions):
        raise SlideRejected(f"{name}: the slide's files must lie in the folder of {main} or below it.")
    content = _MovableFile(main_path)
    try:
        slide.file.save(filename, content, save=False)
    finally:
        content.close()
    try:
        for path, companion in zip(companions, slide.companion_files, strict=True):
            wanted = companion_name(stored_name(slide), companion["path"])
            part = _MovableFile(path)
            try:
                saved = default_storage.save(wanted, part)
            finally:
                part.close()
            if saved != wanted:
                default_storage.delete(saved)
                raise SlideConflict(f"{name}: {companion['path']} is in storage already; send the slide again.")
        with transaction.atomic():
            slide.save()
    except IntegrityError:
        delete_stored_files(slide)
        other = Slide.objects.filter(cohort=cohort, sha256=digest).first()
        if other is None:
            raise
        raise _duplicate(other, name) from None
    except BaseException:
        delete_stored_files(slide)
        raise
    if queue_check:
        queue_slide_check(slide)
    return slide


def delete_stored_files(slide: Slide) -> None:
    """Remove a slide's files from storage (its file and, for MIRAX and DICOM, the others); the row stays."""
    main = stored_name(slide)
    if not main:
        return
    for companion in slide.companion_files or []:
        default_storage.delete(companion_name(main, companion["path"]))
    default_storage.delete(main)


def _apply_info(slide: Slide, info: tiles.SlideInfo) -> None:
    slide.width, slide.height, slide.levels = info.width, info.height, info.levels
    slide.mpp, slide.magnification = info.mpp, info.magnification
    if info.tissue_fraction is not None:
        slide.tissue_fraction = info.tissue_fraction


def store_uploaded_slide(cohort: Cohort, upload: Any, *, user: Any) -> Slide:
    """A slide sent as one multipart request (``upload`` from ``request.FILES``)."""
    filename = check_slide_filename(getattr(upload, "name", "") or "")
    check_slide_size(int(upload.size or 0), filename)
    if hasattr(upload, "temporary_file_path"):
        return store_slide(cohort, Path(upload.temporary_file_path()), filename=filename, user=user, move=True)
    # Small uploads may sit in memory: give large-image a file to open.
    with _spooled_to_disk(upload, suffix=Path(filename).suffix) as path:
        return store_slide(cohort, path, filename=filename, user=user, move=True)


@contextmanager
def _spooled_to_disk(upload: Any, *, suffix: str) -> Iterator[Path]:
    fd, name = tempfile.mkstemp(suffix=suffix, dir=staging_dir())
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in upload.chunks(_CHUNK):
                out.write(chunk)
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def delete_slide(slide: Slide) -> None:
    """Delete the row; the stored file goes once that is committed (see the models' post_delete)."""
    slide.delete()


# --------------------------------------------------------------------------- resumable uploads


def start_upload(cohort: Cohort, *, filename: str, size: int, sha256: str = "", user: Any = None) -> SlideUpload:
    """Begin a chunked upload: checks what can be checked before any byte arrives."""
    filename = check_slide_filename(filename)
    check_slide_size(int(size), filename)
    sha256 = (sha256 or "").strip().lower()
    if sha256 and not _SHA256.match(sha256):
        raise SlideRejected("sha256 must be 64 hexadecimal digits.")
    if sha256:
        existing = Slide.objects.filter(cohort=cohort, sha256=sha256).first()
        if existing is not None:
            raise _duplicate(existing, filename)
    remove_stale_staging_files()
    upload = SlideUpload.objects.create(
        cohort=cohort, filename=filename, size_bytes=int(size), sha256=sha256,
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )
    staging_path(upload).touch()
    return upload


#: A resumable upload of a slide, or of one file of a cohort import (:mod:`sua_portal.slides.imports`).
_Upload = TypeVar("_Upload", SlideUpload, ImportPart)


def parse_content_range(header: str, *, size: int) -> tuple[int, int]:
    """``bytes START-END/TOTAL`` -> (offset, length); TOTAL must be the announced size."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", header or "")
    if not match:
        raise SlideRejected("Content-Range must look like 'bytes 0-1048575/5368709120'.")
    start, end = int(match[1]), int(match[2])
    if end < start:
        raise SlideRejected("Content-Range ends before it starts.")
    if match[3] != "*" and int(match[3]) != size:
        raise SlideRejected(f"Content-Range says the file has {match[3]} bytes, the upload was started with {size}.")
    return start, end - start + 1


def receive_chunk(upload: _Upload, *, offset: int, length: int, stream: IO[bytes] | None) -> _Upload:
    """Append ``length`` bytes read from ``stream`` at ``offset`` (which must be where the upload stands).

    The row is locked while writing so two requests never write the same
    upload at once.  What arrived before a broken connection is kept: the
    client asks for the offset and goes on from there.
    """
    with transaction.atomic():
        locked = type(upload).objects.select_for_update().get(pk=upload.pk)
        if offset != locked.received_bytes:
            raise SlideConflict(
                f"This chunk starts at byte {offset} but the upload has {locked.received_bytes} bytes; "
                f"send from byte {locked.received_bytes}.",
                offset=locked.received_bytes,
            )
        if length < 0 or offset + length > locked.size_bytes:
            raise SlideRejected(
                f"This chunk would end at byte {offset + length}, past the {locked.size_bytes} bytes announced.",
                offset=locked.received_bytes,
            )
        path = staging_path(locked)
        written = 0
        with path.open("r+b" if path.exists() else "wb") as out:
            out.seek(offset)
            out.truncate()
            try:
                while written < length and stream is not None:
                    block = stream.read(min(_RECEIVE_BLOCK, length - written))
                    if not block:
                        break
                    out.write(block)
                    written += len(block)
            except OSError:
                log.info("upload %s: connection broke after %d bytes of a chunk", locked.pk, written)
            out.flush()
            os.fsync(out.fileno())
        locked.received_bytes = offset + written
        locked.save(update_fields=["received_bytes", "updated"])
    if written < length:
        raise SlideRejected(
            f"Only {written} of the {length} bytes of this chunk arrived; send from byte {locked.received_bytes}.",
            offset=locked.received_bytes,
        )
    return locked


def complete_upload(upload: SlideUpload, *, user: Any = None) -> Slide:
    """Check size and checksum of a finished upload and store it as a slide.

    Whatever the outcome, the staging file and the upload row are gone after a
    refusal for bad content (checksum, not a slide, duplicate): the client starts again.
    """
    if upload.received_bytes != upload.size_bytes:
        raise SlideConflict(
            f"Only {upload.received_bytes} of {upload.size_bytes} bytes have arrived; send the rest first.",
            offset=upload.received_bytes,
        )
    path = staging_path(upload)
    try:
        if not path.is_file() or path.stat().st_size != upload.size_bytes:
            raise UploadLost("The uploaded bytes are missing on the server; start the upload again.")
        digest = sha256_of_file(path)
        if upload.sha256 and digest != upload.sha256:
            raise SlideRejected(
                f"{upload.filename}: the SHA-256 of the received file ({digest}) is not the one announced "
                f"({upload.sha256}); the file was damaged on the way. Start the upload again."
            )
        slide = store_slide(
            upload.cohort, path, filename=upload.filename, user=user or upload.created_by, sha256=digest, move=True
        )
    except BaseException:
        cancel_upload(upload)
        raise
    cancel_upload(upload)
    return slide


def cancel_upload(upload: SlideUpload) -> None:
    staging_path(upload).unlink(missing_ok=True)
    SlideUpload.objects.filter(pk=upload.pk).delete()


def purge_stale_uploads(*, older_than: timedelta = STALE_UPLOAD_AGE) -> int:
    """Forget uploads nobody touched for a while (their staging files too, when this machine has them:
    on a worker machine of its own the web's files go at the web's next upload, see below)."""
    stale = list(SlideUpload.objects.filter(updated__lt=timezone.now() - older_than))
    for upload in stale:
        cancel_upload(upload)
    return len(stale)


def remove_stale_staging_files(*, older_than: timedelta = STALE_UPLOAD_AGE) -> int:
    """Delete this machine's staging files nobody wrote to for ``older_than``; returns how many.

    The purge task may run on a worker machine that does not have the web's staging folder: the
    web clears its own when an upload starts.  A file that old belongs to an upload the purge gives up.
    """
    cutoff = (timezone.now() - older_than).timestamp()
    removed = 0
    for path in staging_dir().glob("*.part"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue  # removed by another web process meanwhile
    return removed


# --------------------------------------------------------------------------- the slide check


def queue_slide_check(slide: Slide) -> None:
    """Send the slide check (the slides.check_slide task) to a worker once the row is committed.

    A broker outage leaves the slide "uploaded".
    """
    enqueue("slides.check_slide", slide.pk, queue="cpu", robust=True)


def _stale_claim_age() -> timedelta:
    # A check still running after the hard time limit was killed: its claim may be taken over.
    return timedelta(seconds=int(getattr(settings, "CELERY_TASK_TIME_LIMIT", 3600)))


def check_slide(slide_id: int) -> Slide | None:
    """Check one slide with large-image and mark it ready or failed with the reason.

    Claimed with a conditional update (status still "uploaded", no live claim),
    so two workers never check the same slide; returns None when the slide is
    gone or someone else has it.
    """
    now = timezone.now()
    claimed = (
        Slide.objects.filter(pk=slide_id, status=Slide.Status.UPLOADED)
        .filter(Q(check_started__isnull=True) | Q(check_started__lt=now - _stale_claim_age()))
        .update(check_started=now)
    )
    if claimed != 1:
        return None
    slide = Slide.objects.select_related("cohort").get(pk=slide_id)
    try:
        with slide_file(slide) as path:
            info = tiles.inspect_slide(path, heatmap_downsample=settings.HEATMAP_DOWNSAMPLE)
    except tiles.SlideReadError as exc:
        reason = str(exc)
        slide.status, slide.failure_reason = Slide.Status.FAILED, f"{reason[:1].upper()}{reason[1:]}."
    except FileNotFoundError:
        slide.status, slide.failure_reason = Slide.Status.FAILED, "The slide file is missing from storage."
    else:
        _apply_info(slide, info)
        if not slide.format or "(" not in slide.format:
            slide.format = _format_name(stored_name(slide), info.source)[:64]
        slide.status, slide.failure_reason = Slide.Status.READY, ""
    slide.checked = timezone.now()
    slide.save(
        update_fields=[
            "status", "failure_reason", "width", "height", "levels", "mpp", "magnification", "tissue_fraction",
            "format", "checked",
        ]
    )
    return slide


def recheck_slide(slide: Slide) -> Slide:
    """Put a slide back to "uploaded" and queue its check again."""
    Slide.objects.filter(pk=slide.pk).update(
        status=Slide.Status.UPLOADED, failure_reason="", check_started=None, checked=None
    )
    slide.refresh_from_db()
    queue_slide_check(slide)
    return slide


# --------------------------------------------------------------------------- annotations


def _geojson(geometry: BaseGeometry) -> dict[str, Any]:
    """A plain-JSON GeoJSON geometry (lists, floats) from shapely."""
    return json.loads(json.dumps(mapping(geometry)))


def _slide_size(slide: Slide) -> tuple[int, int]:
    if slide.width and slide.height:
        return int(slide.width), int(slide.height)
    try:
        with slide_file(slide) as path:
            source = tiles.open_source(path)
    except tiles.SlideReadError as exc:
        raise SlideRejected(f"The slide cannot be read, so its annotations cannot be checked: {exc}") from None
    return int(source.sizeX), int(source.sizeY)


def _check_inside(
    geometry: BaseGeometry, *, width: int, height: int, filename: str, tolerance: float = EDGE_TOLERANCE_PX
) -> None:
    if geometry.is_empty:
        return
    left, top, right, bottom = geometry.bounds
    t = tolerance
    if left < -t or top < -t or right > width + t or bottom > height + t:
        raise SlideRejected(
            f"{filename}: the polygons reach from ({left:g}, {top:g}) to ({right:g}, {bottom:g}), outside the "
            f"slide's {width} x {height} pixels. Annotations must be in level-0 pixel coordinates of this slide."
        )


def _read_mask(path: Path, filename: str) -> np.ndarray:
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            with tifffile.TiffFile(path) as tif:
                page = tif.pages[0]
                if int(np.prod(page.shape[:2])) > MAX_MASK_PIXELS:
                    raise SlideRejected(_mask_too_big(filename, page.shape[:2]))
                array = page.asarray()
        else:
            with Image.open(path) as image:
                if image.width * image.height > MAX_MASK_PIXELS:
                    raise SlideRejected(_mask_too_big(filename, (image.height, image.width)))
                array = np.asarray(image)
    except SlideRejected:
        raise
    except (OSError, ValueError, UnidentifiedImageError, KeyError) as exc:
        raise SlideRejected(f"{filename}: the mask cannot be read as an image ({tiles._short(exc)}).") from None
    if array.ndim == 3:
        # Non-zero in any colour channel is tumor; an alpha channel is not a colour.
        channels = array.shape[2]
        array = np.asarray(array[:, :, : 3 if channels == 4 else 1 if channels == 2 else channels].any(axis=2))
    if array.ndim != 2:
        raise SlideRejected(f"{filename}: a mask must be a single image, not {array.ndim}-dimensional.")
    return array != 0


def _mask_too_big(filename: str, shape: Sequence[int]) -> str:
    return (
        f"{filename}: the mask has {shape[1]} x {shape[0]} pixels, more than {MAX_MASK_PIXELS:,}; "
        "save it at a larger downsample."
    )


_TUMOR_FREE_HINT = ("A tumor-free slide needs no annotation file: mark it so with has_tumor false "
                    "(PATCH /api/slides/{id}/).")


def _annotation_refusal(error: InputError, *, path: Path, filename: str) -> str:
    """The analysis core's message about an annotation file, for the person who sent it.

    The file is named as they named it (never the server's path); a file that means no tumor says
    what to do instead.
    """
    message = str(error).replace(str(path), filename)
    if isinstance(error, NoTumorAreaError) and error.reason == "no tumor class":
        message += ". Send tumor_classes (comma-separated names) to say which of them mean tumor"
    elif isinstance(error, NoTumorAreaError) and error.reason == "empty":
        return message.split(". A tumor-free")[0] + ". " + _TUMOR_FREE_HINT
    return f"{message}."


def annotation_geometry(
    path: Path,
    *,
    filename: str,
    slide_size: tuple[int, int],
    downsample: float | None = None,
    tumor_classes: Sequence[str] | None = None,
) -> MultiPolygon:
    """The tumor area of an annotation file (ASAP XML, GeoJSON, or a binary mask) in level-0 pixels.

    Raises :class:`SlideRejected` when the file does not parse, outlines no tumor (empty, points or
    polygons of fewer than 3 distinct vertices only, no tumor group or class: SPEC, never a silently
    empty truth; an all-zero mask likewise), or reaches outside the slide.
    """

    suffix = Path(filename).suffix.lower()
    width, height = slide_size
    if suffix in ANNOTATION_VECTOR_EXTENSIONS:
        try:
            # The reader picks the format by the path's suffix, which callers keep equal to the file name's.
            geometry = ann.load_tumor_geometry(path, tumor_classes=tuple(tumor_classes) if tumor_classes else None)
        except InputError as exc:
            raise SlideRejected(_annotation_refusal(exc, path=path, filename=filename)) from None
    elif suffix in ANNOTATION_MASK_EXTENSIONS:
        mask = _read_mask(path, filename)
        if downsample is None:
            downsample = width / mask.shape[1]
            if abs(height / downsample - mask.shape[0]) > 1:
                raise SlideRejected(
                    f"{filename}: the mask's {mask.shape[1]} x {mask.shape[0]} pixels do not scale to the slide's "
                    f"{width} x {height}; say at which downsample it was saved."
                )
        if not downsample > 0:
            raise SlideRejected("downsample must be a positive number.")
        if mask.shape[1] * downsample > width + downsample or mask.shape[0] * downsample > height + downsample:
            raise SlideRejected(
                f"{filename}: a {mask.shape[1]} x {mask.shape[0]} mask at downsample {downsample:g} covers "
                f"{mask.shape[1] * downsample:g} x {mask.shape[0] * downsample:g} pixels, more than the slide's "
                f"{width} x {height}."
            )
        polygons = ann.mask_to_polygons(mask, downsample=float(downsample))
        if not polygons:
            raise SlideRejected(
                f"{filename}: the mask has no non-zero pixel, so it marks no tumor. {_TUMOR_FREE_HINT}"
            )
        geometry = ann.valid_multipolygon(shapely.union_all(polygons))
    else:
        raise SlideRejected(
            f"{filename}: annotations are read from ASAP XML (.xml), GeoJSON (.geojson, .json) or a binary "
            f"mask (.png, .tif); '{suffix or 'no extension'}' is none of these."
        )
    geometry = ann.valid_multipolygon(geometry)
    # A mask's last row and column may reach past the slide by less than one mask pixel.
    tolerance = max(EDGE_TOLERANCE_PX, float(downsample or 0)) if suffix in ANNOTATION_MASK_EXTENSIONS else None
    _check_inside(geometry, width=width, height=height, filename=filename,
                  tolerance=tolerance if tolerance is not None else EDGE_TOLERANCE_PX)
    return geometry


def add_annotation(
    slide: Slide,
    path: Path,
    *,
    filename: str,
    source: str = Annotation.Source.GROUND_TRUTH,
    author: Any = None,
    downsample: float | None = None,
    tumor_classes: Sequence[str] | None = None,
    label: str = "Tumor",
    replace: bool = False,
) -> Annotation:
    """Read an annotation file and store its tumor area on ``slide`` (ground truth updates has_tumor).

    A slide has one ground truth: a second one is a :class:`SlideConflict` unless ``replace``,
    which puts it in place of the first in one transaction.
    """
    filename = check_file_name(filename or path.name, what="annotation file")
    if path.stat().st_size > MAX_ANNOTATION_BYTES:
        raise SlideTooLarge(f"{filename}: annotation files may have at most {human_bytes(MAX_ANNOTATION_BYTES)}.")
    geometry = annotation_geometry(
        path, filename=filename, slide_size=_slide_size(slide), downsample=downsample, tumor_classes=tumor_classes
    )
    with transaction.atomic():
        if source == Annotation.Source.GROUND_TRUTH:
            # The slide's row is the lock: two uploads of a truth for one slide take turns.
            Slide.objects.select_for_update().filter(pk=slide.pk).exists()
            truth = list(Annotation.objects.filter(slide=slide, source=Annotation.Source.GROUND_TRUTH)
                         .select_related("author"))
            if truth and not replace:
                raise _second_truth(slide, truth[0], filename)
            Annotation.objects.filter(pk__in=[a.pk for a in truth]).delete()
        annotation = Annotation.objects.create(
            slide=slide,
            geometry=_geojson(geometry),
            label=label,
            source=source,
            author=author if getattr(author, "is_authenticated", False) else None,
            original_filename=filename[:255],
        )
        if source == Annotation.Source.GROUND_TRUTH:
            _update_has_tumor(slide)
    return annotation


def _second_truth(slide: Slide, truth: Annotation, filename: str) -> SlideConflict:
    came = truth.original_filename or f"annotation {truth.pk}"
    who = f" by {truth.author.get_username()}" if truth.author else ""
    return SlideConflict(
        f"{filename}: slide {slide.name!r} already has its ground truth ({came}, added "
        f"{truth.created:%Y-%m-%d %H:%M}{who}); nothing was changed. To put this file in its place, send it "
        "again with replace=true; to keep both outlines, send it as source=reviewer.",
        annotation=truth.pk,
    )


def add_uploaded_annotation(slide: Slide, upload: Any, **kwargs: Any) -> Annotation:
    filename = check_file_name(getattr(upload, "name", "") or "", what="annotation file")
    if int(upload.size or 0) > MAX_ANNOTATION_BYTES:
        raise SlideTooLarge(f"{filename}: annotation files may have at most {human_bytes(MAX_ANNOTATION_BYTES)}.")
    if hasattr(upload, "temporary_file_path") and Path(upload.temporary_file_path()).suffix.lower() == Path(
        filename
    ).suffix.lower():
        return add_annotation(slide, Path(upload.temporary_file_path()), filename=filename, **kwargs)
    with _spooled_to_disk(upload, suffix=Path(filename).suffix.lower()) as path:
        return add_annotation(slide, path, filename=filename, **kwargs)


def delete_annotation(annotation: Annotation) -> None:
    slide = annotation.slide
    with transaction.atomic():
        annotation.delete()
        if annotation.source == Annotation.Source.GROUND_TRUTH:
            _update_has_tumor(slide, truth_removed=True)


def _update_has_tumor(slide: Slide, *, truth_removed: bool = False) -> None:
    truth = Annotation.objects.filter(slide=slide, source=Annotation.Source.GROUND_TRUTH)
    if not truth.exists():
        # Without ground truth nobody has said yet: unknown, unless set by hand or by an import
        # (and unknown again once the truth that said so is deleted).
        if truth_removed:
            Slide.objects.filter(pk=slide.pk).update(has_tumor=None)
            slide.has_tumor = None
        return
    has_tumor = any(not shapely.geometry.shape(a.geometry).is_empty for a in truth)
    Slide.objects.filter(pk=slide.pk).update(has_tumor=has_tumor)
    slide.has_tumor = has_tumor


# --------------------------------------------------------------------------- importing a folder


@dataclass
class ImportReport:
    created: list[Slide] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    annotations: int = 0


def _annotation_for(slide_path: Path) -> Path | None:
    """The annotation that goes with a slide: same stem, GeoJSON first (it keeps holes), then ASAP, then a mask."""
    for candidate in (
        slide_path.with_suffix(".geojson"),
        slide_path.with_suffix(".json"),
        slide_path.with_suffix(".xml"),
        slide_path.with_name(slide_path.stem + "_mask.png"),
        slide_path.with_name(slide_path.stem + "_mask.tif"),
        slide_path.with_name(slide_path.stem + "_mask.tiff"),
    ):
        if candidate.is_file():
            return candidate
    return None


def slide_files(directory: Path) -> list[Path]:
    """Slides in ``directory`` (not recursive); masks named *_mask.tif are annotations, not slides."""
    return sorted(
        p for p in directory.iterdir()
        if p.is_file() and p.suffix.lower() in SLIDE_EXTENSIONS and not p.stem.endswith("_mask")
    )


def get_or_create_cohort(project: Project, *, name: str, split: str, domain: str, description: str = "") -> Cohort:
    cohort, created = Cohort.objects.get_or_create(
        project=project, name=name, defaults={"split": split, "domain": domain, "description": description}
    )
    if not created and (cohort.split, cohort.domain) != (split, domain):
        raise SlideConflict(f"Cohort {name!r} exists as {cohort.split} / {cohort.domain}, not {split} / {domain}.")
    return cohort


def import_folder(
    directory: Path,
    cohort: Cohort,
    *,
    user: Any = None,
    check: str = "queue",
    mask_downsample: float | None = None,
    unannotated_is_negative: bool = True,
    progress: Callable[[Iterable[Path]], Iterable[Path]] | None = None,
) -> ImportReport:
    """Import the slides of a folder with their annotations, skipping slides already there (by SHA-256).

    ``check``: "queue" sends each slide check to a worker, "sync" runs it here,
    "none" leaves the slides "uploaded".  A slide without an annotation file
    is tumor-free when ``unannotated_is_negative`` (the Camelyon convention).
    A slide whose annotation is refused is not imported (the report says why).
    """
    if check not in ("queue", "sync", "none"):
        raise ValueError(f"check must be 'queue', 'sync' or 'none', not {check!r}")
    report = ImportReport()
    files = slide_files(directory)
    for path in progress(files) if progress else files:
        digest = sha256_of_file(path)
        if Slide.objects.filter(cohort=cohort, sha256=digest).exists():
            report.skipped.append(path.name)
            continue
        annotation_path = _annotation_for(path)
        geometry: MultiPolygon | None = None
        try:
            if annotation_path is not None:
                try:
                    size = tiles.slide_size(path)
                except tiles.SlideReadError as exc:
                    raise SlideRejected(f"{path.name} is not a readable slide: {exc}.") from None
                geometry = annotation_geometry(
                    annotation_path, filename=annotation_path.name, slide_size=size,
                    downsample=mask_downsample if annotation_path.stem.endswith("_mask") else None,
                )
            stored: Slide | None = None
            try:
                with transaction.atomic():
                    slide = stored = store_slide(
                        cohort, path, filename=path.name, user=user, sha256=digest, move=False, probe=False,
                        queue_check=check == "queue",
                    )
                    if geometry is not None and annotation_path is not None:
                        Annotation.objects.create(
                            slide=slide, geometry=_geojson(geometry), source=Annotation.Source.GROUND_TRUTH,
                            author=user if getattr(user, "is_authenticated", False) else None,
                            original_filename=annotation_path.name,
                        )
                        slide.has_tumor = not geometry.is_empty
                    elif unannotated_is_negative:
                        slide.has_tumor = False
                    slide.save(update_fields=["has_tumor"])
            except BaseException:
                # The row was rolled back: the stored copy must go too.
                if stored is not None:
                    default_storage.delete(stored_name(stored))
                raise
            if geometry is not None:
                report.annotations += 1
        except SlideRejected as exc:
            report.refused.append((path.name, str(exc)))
            continue
        if check == "sync":
            slide = check_slide(slide.pk) or slide
        report.created.append(slide)
    return report


# --------------------------------------------------------------------------- the demo


#: Cohorts of the demo, from the synthetic generator's split folders: (folder, cohort name, split).
DEMO_COHORTS: tuple[tuple[str, str, str], ...] = (
    ("train", "Demo train", Cohort.Split.TRAIN),
    ("validation", "Demo validation", Cohort.Split.VALIDATION),
    ("test_in_domain", "Demo test (in-domain)", Cohort.Split.TEST),
    ("test_shifted", "Demo test (shifted)", Cohort.Split.TEST),
)


def load_demo_cohorts(
    project: Project,
    out_dir: Path,
    *,
    preset: str = "demo",
    seed: int = 0,
    progress: Callable[[Iterable[Path]], Iterable[Path]] | None = None,
    log_line: Callable[[str], None] = log.info,
    generated: Callable[[int, int], None] | None = None,
) -> list[Cohort]:
    """Generate the synthetic cohort into ``out_dir`` (once) and import its four splits into ``project``.

    Idempotent: an existing ``manifest.json`` of the same preset and seed skips
    the generation, slides already imported are skipped by SHA-256.  Slides
    are checked in this process, so they are ready when this returns.
    ``generated(done, total)`` is called as each slide is written.
    """

    out_dir = Path(out_dir)
    manifest_path = out_dir / "manifest.json"
    manifest: dict[str, Any] = {}
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
    if manifest.get("preset") != preset or manifest.get("seed") != seed:
        log_line(f"Generating the synthetic {preset!r} cohort into {out_dir} (once) ...")
        generate_cohort(out_dir, preset=preset, seed=seed,  # type: ignore[arg-type]
                        progress=None if generated is None else lambda done, total, _: generated(done, total))
        manifest = json.loads(manifest_path.read_text())
    domains = {entry["name"]: entry["domain"] for entry in manifest.get("splits", [])}
    cohorts = []
    for folder, name, split in DEMO_COHORTS:
        cohort = get_or_create_cohort(
            project, name=name, split=split, domain=domains.get(folder, "in-domain"),
            description=f"Synthetic H&E lymph-node slides ({folder.replace('_', ' ')}), seed {seed}.",
        )
        report = import_folder(out_dir / folder, cohort, check="sync", progress=progress)
        log_line(
            f"{name}: {len(report.created)} imported, {len(report.skipped)} already there"
            + (f", refused: {report.refused}" if report.refused else "")
        )
        cohorts.append(cohort)
    return cohorts
