from __future__ import annotations

from django.conf import settings
from django.db import models

from sua_portal.accounts.models import Project
from sua_portal.slides.models import Cohort, Slide


class Ensemble(models.Model):
    """K segmentation networks whose mean is the segmentation heatmap (paper §4.2)."""

    class Status(models.TextChoices):
        TRAINING = "training", "training"
        READY = "ready", "ready"
        FAILED = "failed", "failed"

    class Origin(models.TextChoices):
        TRAINED = "trained", "trained here"
        IMPORTED = "imported", "imported"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="ensembles")
    name = models.CharField(max_length=200)
    origin = models.CharField(max_length=16, choices=Origin.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.READY)
    failure_reason = models.TextField(blank=True)
    network_config = models.JSONField(default=dict, blank=True)
    training_config = models.JSONField(default=dict, blank=True)
    training_cohorts = models.ManyToManyField(Cohort, blank=True, related_name="+")  # type: ignore[var-annotated]
    tile_size = models.PositiveIntegerField(default=256)
    level_downsample = models.FloatField(default=1.0, help_text="level the members were trained at")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "-created"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="ensemble_name_unique_in_project")]

    def __str__(self) -> str:
        return self.name


def member_upload_path(instance: EnsembleMember, filename: str) -> str:
    return f"ensembles/{instance.ensemble_id}/member-{instance.index}-{filename}"


class EnsembleMember(models.Model):
    class Format(models.TextChoices):
        STATE_DICT = "state_dict", "state_dict with configuration"
        TORCHSCRIPT = "torchscript", "TorchScript"

    ensemble = models.ForeignKey(Ensemble, on_delete=models.CASCADE, related_name="members")
    index = models.PositiveSmallIntegerField()
    seed = models.BigIntegerField(null=True, blank=True)
    checkpoint = models.FileField(upload_to=member_upload_path, max_length=500, blank=True)
    format = models.CharField(max_length=16, choices=Format.choices, default=Format.STATE_DICT)
    config = models.JSONField(default=dict, blank=True, help_text="network and training settings of this member")
    history = models.JSONField(default=list, blank=True, help_text="per epoch: loss, validation score, lr")
    status = models.CharField(max_length=16, choices=Ensemble.Status.choices, default=Ensemble.Status.READY)

    class Meta:
        ordering = ["ensemble", "index"]
        constraints = [models.UniqueConstraint(fields=["ensemble", "index"], name="member_index_unique")]

    def __str__(self) -> str:
        return f"{self.ensemble} member {self.index}"


def heatmap_path(instance: SlideHeatmap, filename: str) -> str:
    return f"heatmaps/{instance.ensemble_id}/{instance.slide_id}/{filename}"


class SlideHeatmap(models.Model):
    """One slide run through one ensemble: progress, then the stored heatmaps."""

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    ensemble = models.ForeignKey(Ensemble, on_delete=models.CASCADE, related_name="heatmaps")
    slide = models.ForeignKey(Slide, on_delete=models.CASCADE, related_name="heatmaps")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0, help_text="percent done")
    failure_reason = models.TextField(blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=255, blank=True)
    downsample = models.FloatField(null=True, blank=True, help_text="heatmap pixel = this many level-0 pixels")
    segmentation = models.FileField(upload_to=heatmap_path, max_length=500, blank=True)
    entropy = models.FileField(upload_to=heatmap_path, max_length=500, blank=True)
    mutual_information = models.FileField(upload_to=heatmap_path, max_length=500, blank=True)
    variance = models.FileField(upload_to=heatmap_path, max_length=500, blank=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slide", "-created"]
        constraints = [models.UniqueConstraint(fields=["ensemble", "slide"], name="one_heatmap_per_slide")]

    def __str__(self) -> str:
        return f"{self.slide} by {self.ensemble} ({self.status})"
