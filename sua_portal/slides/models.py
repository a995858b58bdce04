from __future__ import annotations

import math
import uuid
from contextlib import suppress
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import models, transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from sua_portal.accounts.models import Project
from sua_portal.slides import tiles


def validate_mpp(value: float) -> None:
    """A resolution a person may set: finite, within ``SLIDE_MPP_MIN`` .. ``SLIDE_MPP_MAX`` µm per pixel."""
    low, high = float(settings.SLIDE_MPP_MIN), float(settings.SLIDE_MPP_MAX)
    if not (math.isfinite(value) and low <= value <= high):
        raise ValidationError(
            f"A resolution must be between {low:g} and {high:g} µm per pixel (level 0), not {value:g}; "
            "a 40x scan is about 0.25, a 20x scan about 0.5.",
            code="mpp_range",
        )


class CohortQuerySet(models.QuerySet["Cohort"]):
    def active(self) -> CohortQuerySet:
        """The cohorts lists show: not archived (an archived cohort's page and its runs still open)."""
        return self.filter(archived=False)


class Cohort(models.Model):
    """A set of slides of one split (train / validation / test) from one domain."""

    class Split(models.TextChoices):
        TRAIN = "train", "train"
        VALIDATION = "validation", "validation"
        TEST = "test", "test"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="cohorts")
    name = models.CharField(max_length=200)
    split = models.CharField(max_length=16, choices=Split.choices)
    domain = models.CharField(max_length=100, default="in-domain", help_text='e.g. "in-domain" or "shifted"')
    description = models.TextField(blank=True)
    mpp_override = models.FloatField(
        null=True, blank=True, verbose_name="resolution override (µm/px)", validators=[validate_mpp],
        help_text="level-0 micrometres per pixel of the cohort's slides whose files do not say (a slide's own "
                  "override and its file's resolution come first)",
    )
    archived = models.BooleanField(
        default=False, help_text="deleted softly: hidden from lists, its slides and the runs that used it kept",
    )
    created = models.DateTimeField(auto_now_add=True)

    objects = CohortQuerySet.as_manager()

    class Meta:
        ordering = ["project", "split", "name"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="cohort_name_unique_in_project")]

    def __str__(self) -> str:
        return f"{self.name} ({self.split}, {self.domain})"


def slide_upload_path(instance: Slide, filename: str) -> str:
    return f"slides/{instance.cohort_id}/{instance.sha256[:2]}/{instance.sha256}/{filename}"


class Slide(models.Model):
    """A whole-slide image: the stored file, what large-image reads from it, and its status."""

    class Status(models.TextChoices):
        UPLOADED = "uploaded", "uploaded"
        READY = "ready", "ready"
        FAILED = "failed", "failed"

    cohort = models.ForeignKey(Cohort, on_delete=models.CASCADE, related_name="slides")
    name = models.CharField(max_length=255)
    file = models.FileField(upload_to=slide_upload_path, max_length=500)
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField(default=0)
    format = models.CharField(max_length=64, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    levels = models.PositiveSmallIntegerField(null=True, blank=True)
    mpp = models.FloatField(null=True, blank=True, help_text="level-0 micrometres per pixel, as the file says")
    mpp_override = models.FloatField(
        null=True, blank=True, verbose_name="resolution override (µm/px)", validators=[validate_mpp],
        help_text="level-0 micrometres per pixel to use instead of the file's (which may have none)",
    )
    magnification = models.FloatField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.UPLOADED)
    failure_reason = models.TextField(blank=True)
    has_tumor = models.BooleanField(null=True, blank=True, help_text="from the ground-truth annotation")
    tissue_fraction = models.FloatField(
        null=True, blank=True, help_text="fraction of the slide that is tissue (Otsu on saturation, low level)"
    )
    # The slide check claims a slide by setting check_started while status is still "uploaded"
    # (a conditional update), so two workers never check the same slide at once.
    check_started = models.DateTimeField(null=True, blank=True)
    checked = models.DateTimeField(null=True, blank=True)
    # A slide of several files (MIRAX, DICOM-WSI): the others, beside ``file`` in its storage folder.
    companion_files = models.JSONField(
        default=list, blank=True,
        help_text="the slide's other files (MIRAX data folder, the rest of a DICOM series): "
                  "[{'path': relative to the file's folder, 'size': bytes}]",
    )
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["cohort", "name"]
        constraints = [models.UniqueConstraint(fields=["cohort", "sha256"], name="slide_once_per_cohort")]

    def __str__(self) -> str:
        return self.name

    @property
    def project(self) -> Project:
        return self.cohort.project

    @property
    def effective_mpp(self) -> float | None:
        """The resolution (level-0 µm/px) the portal works with: the slide's override, else what its file
        says, else its cohort's override; None when nobody knows (no scale bar, no inference, no µm)."""
        for value in (self.mpp_override, self.mpp, self.cohort.mpp_override):
            if value is not None:
                return float(value)
        return None

    @property
    def mpp_source(self) -> str:
        """Where :attr:`effective_mpp` comes from: "slide override", "file", "cohort override" or "unknown"."""
        if self.mpp_override is not None:
            return "slide override"
        if self.mpp is not None:
            return "file"
        return "cohort override" if self.cohort.mpp_override is not None else "unknown"


class Annotation(models.Model):
    """Tumor polygons in level-0 pixel coordinates, as a GeoJSON geometry shapely accepts."""

    class Source(models.TextChoices):
        GROUND_TRUTH = "ground_truth", "ground truth"
        REVIEWER = "reviewer", "reviewer"
        IMPORTED = "imported", "imported"

    slide = models.ForeignKey(Slide, on_delete=models.CASCADE, related_name="annotations")
    geometry = models.JSONField(help_text="GeoJSON MultiPolygon, level-0 pixels")
    label = models.CharField(max_length=100, default="Tumor")
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.GROUND_TRUTH)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    original_filename = models.CharField(max_length=255, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slide", "created"]

    def __str__(self) -> str:
        return f"{self.label} on {self.slide} ({self.source})"


def companion_name(main: str, relative: str) -> str:
    """The storage name of a multi-file slide's other file ``relative`` to its main file ``main``."""
    return f"{main.rsplit('/', 1)[0]}/{relative}" if "/" in main else relative


def staging_dir() -> Path:
    """Where resumable uploads collect their bytes (a volume shared by the web processes)."""
    configured = getattr(settings, "SLIDE_UPLOAD_STAGING_DIR", None)
    path = Path(configured) if configured else Path(settings.SLIDE_CACHE_DIR).parent / "upload-staging"
    path.mkdir(parents=True, exist_ok=True)
    return path


def staging_path(upload: SlideUpload | ImportPart) -> Path:
    """The staging file of a resumable upload (a slide's, or a file's of an import): its bytes so far."""
    return staging_dir() / f"{upload.pk}.part"


def _new_upload_id() -> uuid.UUID:
    return uuid.uuid4()


class Started(models.Model):
    """What an upload or import in progress records of its start: who, when, and when it last moved
    (the periodic purge gives up on ones left untouched); newest first."""

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
        ordering = ["-created"]


class SlideUpload(Started):
    """A resumable, chunked upload of one slide file in progress (the bytes wait in a staging file)."""

    id = models.UUIDField(primary_key=True, default=_new_upload_id, editable=False)
    cohort = models.ForeignKey(Cohort, on_delete=models.CASCADE, related_name="uploads")
    filename = models.CharField(max_length=255)
    size_bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64, blank=True, help_text="as announced by the client (checked at the end)")
    received_bytes = models.BigIntegerField(default=0)
    def __str__(self) -> str:
        return f"{self.filename} ({self.received_bytes}/{self.size_bytes} bytes)"


# Stored files follow their rows, however a row goes (API, admin, a deleted cohort or project):
# removed once the deletion is committed, so a rolled-back delete keeps its file.
@receiver(post_delete, sender=Slide)
def _delete_slide_file(sender: type[Slide], instance: Slide, **kwargs: Any) -> None:
    name = instance.file.name
    if not name:
        return
    companions = [companion_name(name, c["path"]) for c in instance.companion_files or []]

    def remove() -> None:
        if Slide.objects.filter(file=name).exists():
            return
        with suppress(NotImplementedError):
            tiles.forget_source(default_storage.path(name))
        default_storage.delete(name)
        for other in companions:
            default_storage.delete(other)

    transaction.on_commit(remove)


@receiver(post_delete, sender=SlideUpload)
def _delete_staged_bytes(sender: type[SlideUpload], instance: SlideUpload, **kwargs: Any) -> None:
    path = staging_path(instance)  # now: Django clears the primary key of deleted rows afterwards
    transaction.on_commit(lambda: path.unlink(missing_ok=True))


class CohortImport(Started):
    """A cohort import from the browser: the plan it was started with, its files' uploads, its slides' outcomes.

    The files arrive as resumable uploads (:class:`ImportPart`); each slide is then made from its parts
    (:class:`ImportItem`), so an import interrupted anywhere goes on from where it stood.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="imports")
    name = models.CharField(max_length=200, help_text="the cohort name the import was started with")
    plan = models.JSONField(help_text="the plan (analysis.cohort_import.ImportPlan) as the preview answered it")
    archive = models.CharField(max_length=500, blank=True, help_text="a dropped zip, uploaded whole")
    def __str__(self) -> str:
        return f"import {self.pk} of {self.name}"


class ImportPart(models.Model):
    """One dropped file (or the dropped zip) on its way to the server, in chunks (bytes in a staging file)."""

    id = models.UUIDField(primary_key=True, default=_new_upload_id, editable=False)
    cohort_import = models.ForeignKey(CohortImport, on_delete=models.CASCADE, related_name="parts")
    path = models.CharField(max_length=1000)
    size_bytes = models.BigIntegerField()
    received_bytes = models.BigIntegerField(default=0)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["cohort_import", "path"]
        constraints = [models.UniqueConstraint(fields=["cohort_import", "path"], name="import_part_once")]

    def __str__(self) -> str:
        return f"{self.path} ({self.received_bytes}/{self.size_bytes} bytes)"


class ImportItem(models.Model):
    """One slide of an import: what the plan says of it, and what came of it."""

    class State(models.TextChoices):
        PENDING = "pending", "pending"
        CREATED = "created", "created"
        REJECTED = "rejected", "rejected"
        SKIPPED = "skipped", "skipped"

    cohort_import = models.ForeignKey(CohortImport, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveIntegerField()
    name = models.CharField(max_length=255)
    cohort = models.ForeignKey(Cohort, on_delete=models.CASCADE, related_name="+")
    spec = models.JSONField(help_text="the plan's slide (analysis.cohort_import.PlannedSlide)")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    reason = models.TextField(blank=True)
    slide = models.ForeignKey(Slide, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    annotated = models.BooleanField(default=False)

    class Meta:
        ordering = ["cohort_import", "position"]
        constraints = [models.UniqueConstraint(fields=["cohort_import", "position"], name="import_item_once")]

    def __str__(self) -> str:
        return f"{self.name}: {self.state}"


@receiver(post_delete, sender=ImportPart)
def _delete_staged_part(sender: type[ImportPart], instance: ImportPart, **kwargs: Any) -> None:
    path = staging_path(instance)
    transaction.on_commit(lambda: path.unlink(missing_ok=True))
