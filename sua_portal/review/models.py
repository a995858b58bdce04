"""Pathologists' verdicts on a run's flagged regions, their history, the reviewers of a cohort,
slides marked complete and an admin's settlement of a disagreement.

A region has at most one verdict per reviewer (a constraint, so two saves at the same moment
cannot make two rows); every change of a verdict is kept as a :class:`VerdictChange` with the
state before it, which is what "undo" restores.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from sua_portal.runs.models import Region, Run, RunSlide
from sua_portal.slides.models import Cohort


class Kind(models.TextChoices):
    """A reviewer's verdict on a flagged region (the label is the class name of the exports)."""

    TUMOR = "tumor", "Tumor"
    NOT_TUMOR = "not_tumor", "Not tumor"
    UNSURE = "unsure", "Unsure"


class Slot(models.IntegerChoices):
    """First or second reviewer of a cohort; the second is blind to the first."""

    FIRST = 1, "first reviewer"
    SECOND = 2, "second reviewer"


class CohortReviewer(models.Model):
    """A reviewer of a cohort's slides in a slot. A cohort without any is open to every pathologist
    (and admin) of its project, each as a first reviewer."""

    cohort = models.ForeignKey(Cohort, on_delete=models.CASCADE, related_name="reviewers")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="cohort_reviews")
    slot = models.PositiveSmallIntegerField(choices=Slot.choices)
    added = models.DateTimeField(auto_now_add=True)
    added_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")

    class Meta:
        ordering = ["cohort_id", "slot"]
        constraints = [
            models.UniqueConstraint(fields=["cohort", "slot"], name="one_reviewer_per_cohort_slot"),
            models.UniqueConstraint(fields=["cohort", "reviewer"], name="one_slot_per_cohort_reviewer"),
        ]

    def __str__(self) -> str:
        return f"{self.reviewer} ({self.get_slot_display()}) of {self.cohort}"


class Verdict(models.Model):
    """One reviewer's verdict on one flagged region of a run."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="verdicts")
    region = models.ForeignKey(Region, on_delete=models.CASCADE, related_name="verdicts")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="verdicts")
    slot = models.PositiveSmallIntegerField(choices=Slot.choices, default=Slot.FIRST,
                                            help_text="the reviewer's slot in the slide's cohort when given")
    verdict = models.CharField(max_length=16, choices=Kind.choices)
    comment = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True, help_text="when the verdict was last given")

    class Meta:
        ordering = ["run_id", "region_id", "slot"]
        constraints = [
            models.UniqueConstraint(fields=["region", "reviewer"], name="one_verdict_per_reviewer_and_region"),
            models.CheckConstraint(condition=models.Q(verdict__in=Kind.values), name="verdict_is_a_kind"),
        ]
        indexes = [models.Index(fields=["run", "reviewer"])]

    def __str__(self) -> str:
        return f"{self.get_verdict_display()} on {self.region} by {self.reviewer}"


class VerdictChange(models.Model):
    """A verdict given, changed or taken back: the state before and after, for undo and the record."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="+")
    run_slide = models.ForeignKey(RunSlide, on_delete=models.CASCADE, related_name="+")
    region = models.ForeignKey(Region, on_delete=models.CASCADE, related_name="+")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    before_verdict = models.CharField(max_length=16, choices=Kind.choices, blank=True, help_text="'' = none")
    before_comment = models.TextField(blank=True)
    after_verdict = models.CharField(max_length=16, choices=Kind.choices)
    after_comment = models.TextField(blank=True)
    at = models.DateTimeField(auto_now_add=True)
    undone = models.DateTimeField(null=True, blank=True, help_text="when the reviewer undid this change")

    class Meta:
        ordering = ["-pk"]
        indexes = [models.Index(fields=["reviewer", "run_slide"])]

    def __str__(self) -> str:
        return f"{self.before_verdict or 'none'} -> {self.after_verdict} on {self.region} by {self.reviewer}"


class Settlement(models.Model):
    """An admin's verdict on a region the reviewers disagree on."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="settlements")
    region = models.OneToOneField(Region, on_delete=models.CASCADE, related_name="settlement")
    verdict = models.CharField(max_length=16, choices=Kind.choices)
    comment = models.TextField(blank=True)
    settled_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    settled = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["run_id", "region_id"]
        constraints = [models.CheckConstraint(condition=models.Q(verdict__in=Kind.values),
                                              name="settlement_is_a_kind")]

    def __str__(self) -> str:
        return f"{self.get_verdict_display()} on {self.region}, settled by {self.settled_by}"


class SlideCompletion(models.Model):
    """A reviewer marked a slide of a run review complete: their verdicts on it are final."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="+")
    run_slide = models.ForeignKey(RunSlide, on_delete=models.CASCADE, related_name="completions")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    completed = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run_id", "run_slide_id"]
        constraints = [models.UniqueConstraint(fields=["run_slide", "reviewer"], name="one_completion_per_reviewer")]

    def __str__(self) -> str:
        return f"{self.run_slide} complete for {self.reviewer}"
