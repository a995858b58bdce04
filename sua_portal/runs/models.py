"""A run: one calibrated experiment (paper §5) and everything it owns.

A run is immutable once started: its settings are a snapshot, its cohorts are recorded
by name as well as by reference (so a deleted cohort or ensemble leaves its results
readable), and "run again" makes a new run from a copy of the settings.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.db import models
from django.db.models.signals import post_save
from django.dispatch import receiver

from sua_portal.accounts.models import Project
from sua_portal.celery import enqueue
from sua_portal.ensembles.models import Ensemble, SlideHeatmap
from sua_portal.slides.models import Cohort, Slide


class Run(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="runs")
    name = models.CharField(max_length=200)
    ensemble = models.ForeignKey(Ensemble, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    ensemble_name = models.CharField(max_length=200, help_text="kept when the ensemble is deleted")
    settings = models.JSONField(help_text="the snapshot of every setting the run was started with")
    aggregate = models.CharField(max_length=16, blank=True, help_text="the NPR aggregate used ('auto' resolved)")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    step = models.CharField(max_length=200, blank=True, help_text="what the run is doing now")
    progress = models.FloatField(default=0.0, help_text="percent done")
    failure_reason = models.TextField(blank=True)
    worker = models.CharField(max_length=255, blank=True)
    report = models.JSONField(null=True, blank=True, help_text="report.json, exactly as sua evaluate writes it")
    # What the dashboard's charts and Table 4 need beyond report.json: slide counts per domain and,
    # per range and cohort part, NPR-score and pixel histograms (FN vs TN) and bootstrap FNCR samples.
    figures = models.JSONField(default=dict, blank=True)
    files = models.JSONField(default=dict, blank=True, help_text="download name -> stored file name")
    is_review_run = models.BooleanField(default=False, help_text="the run whose flags pathologists review")
    copied_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["project", "-created"]
        constraints = [
            models.UniqueConstraint(fields=["project"], condition=models.Q(is_review_run=True),
                                    name="one_review_run_per_project"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def ranges(self) -> list[tuple[float, float]]:
        return [(float(lo), float(up)) for lo, up in self.settings["ranges"]]


class RunCohort(models.Model):
    """A cohort a run calibrates on (validation) or is evaluated on (test, with its domain)."""

    class Role(models.TextChoices):
        VALIDATION = "validation", "validation"
        TEST = "test", "test"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="cohorts")
    cohort = models.ForeignKey(Cohort, null=True, blank=True, on_delete=models.SET_NULL, related_name="run_cohorts")
    name = models.CharField(max_length=200)
    role = models.CharField(max_length=16, choices=Role.choices)
    domain = models.CharField(max_length=100)

    class Meta:
        ordering = ["run", "role", "name"]
        constraints = [models.UniqueConstraint(fields=["run", "cohort"], name="run_cohort_once")]

    def __str__(self) -> str:
        return f"{self.name} ({self.role}, {self.domain})"


class RunRange(models.Model):
    """One SUA range of a run with the thresholds calibrated on its validation cohorts."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="range_set")
    index = models.PositiveSmallIntegerField()
    lower = models.FloatField()
    upper = models.FloatField()
    sua_threshold = models.FloatField(null=True, blank=True, help_text="tau: an NPR scoring this or more is flagged")
    baseline_threshold = models.FloatField(null=True, blank=True, help_text="tau_b of the pixel baseline")
    # On the validation cohorts, at the threshold: {"f_beta", "precision", "recall", "flagged", "positives"}.
    sua_validation = models.JSONField(default=dict)
    baseline_validation = models.JSONField(default=dict)

    class Meta:
        ordering = ["run", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="run_range_once")]

    def __str__(self) -> str:
        return f"{self.lower:g} < s < {self.upper:g}"

    @property
    def label(self) -> str:
        return f"{self.lower:g} to {self.upper:g}"


class RunSlide(models.Model):
    """A slide as a run saw it, with its per-range figures and refined masks."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="slide_set")
    slide = models.ForeignKey(Slide, null=True, blank=True, on_delete=models.SET_NULL, related_name="run_slides")
    heatmap = models.ForeignKey(SlideHeatmap, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    name = models.CharField(max_length=255)
    cohort_name = models.CharField(max_length=200)
    role = models.CharField(max_length=16, choices=RunCohort.Role.choices)
    domain = models.CharField(max_length=100)
    has_tumor = models.BooleanField()
    downsample = models.FloatField()
    # Per range index, in range order: {"nprs", "true_fns", "flagged", "dice_before", "dice_sua",
    # "dice_baseline", "changed_sua", "changed_baseline"} (Dice None where undefined).
    figures = models.JSONField(default=list)
    # Per range index: {"sua": stored name, "baseline": stored name} of the refined masks (pyramidal TIFF).
    masks = models.JSONField(default=list)
    added_after_run = models.BooleanField(default=False, help_text="joined the run after it finished")

    class Meta:
        ordering = ["run", "role", "domain", "name"]
        constraints = [models.UniqueConstraint(fields=["run", "slide"], name="run_slide_once")]

    def __str__(self) -> str:
        return f"{self.name} in {self.run}"

    def figure(self, index: int) -> dict[str, Any]:
        return self.figures[index] if index < len(self.figures) else {}


class Region(models.Model):
    """A negative prediction region of one slide in one range of a run (SPEC §5), with its flag."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="regions")
    run_slide = models.ForeignKey(RunSlide, on_delete=models.CASCADE, related_name="regions")
    run_range = models.ForeignKey(RunRange, on_delete=models.CASCADE, related_name="regions")
    label = models.PositiveIntegerField(help_text="1..N on the heatmap grid")
    area_px = models.PositiveIntegerField(help_text="heatmap pixels")
    area_um2 = models.FloatField(null=True, blank=True)
    score = models.FloatField(help_text="aggregated uncertainty")
    truth_fraction = models.FloatField(null=True, blank=True)
    is_false_negative = models.BooleanField(null=True, blank=True, help_text="ground truth, when annotated")
    flagged = models.BooleanField(help_text="score >= the run's threshold for this range")
    # The outline in level-0 slide pixels, holes kept: a GeoJSON Polygon or MultiPolygon.
    geometry = models.JSONField()
    x = models.FloatField()
    y = models.FloatField()
    width = models.FloatField()
    height = models.FloatField()

    class Meta:
        ordering = ["run_slide", "run_range", "-score"]
        constraints = [models.UniqueConstraint(fields=["run_slide", "run_range", "label"], name="region_once")]
        indexes = [models.Index(fields=["run", "flagged"]), models.Index(fields=["run_slide", "run_range"])]

    def __str__(self) -> str:
        return f"region {self.label} of {self.run_slide} ({self.run_range})"


@receiver(post_save, sender=Slide, dispatch_uid="runs.slide_checked")
def slide_checked(sender: type[Slide], instance: Slide, *, update_fields: Any = None, **kwargs: Any) -> None:
    """A slide that became ready may join its project's review run (``runs.join_review_run`` decides):
    the slides app cannot call up into runs, so runs listen."""
    if instance.status == Slide.Status.READY and (update_fields is None or "status" in update_fields):
        enqueue("runs.join_review_run", instance.pk, queue="cpu", robust=True)
