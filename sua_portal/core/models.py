from __future__ import annotations

from django.db import models

from sua_portal.accounts.models import Project


class WorkerPing(models.Model):
    """A row written by a Celery worker: proves the web app and workers share a database."""

    token = models.CharField(max_length=64, unique=True)
    hostname = models.CharField(max_length=255)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"ping {self.token} from {self.hostname}"


class DemoBuild(models.Model):
    """How far ``manage.py load_demo`` is with a project's demo: written by the loader, read by the pages.

    ``make demo`` serves the portal while the loader builds in the background, so the web process
    learns the build's step, its numbers (slides done, each member's epoch, heatmaps done) and the
    results ready so far (links) from this row alone.
    """

    class Step(models.TextChoices):
        COHORTS = "cohorts", "generating and importing the slides"
        TRAINING = "training", "training the ensemble"
        HEATMAPS = "heatmaps", "computing the heatmaps"
        RUN = "run", "carrying the demo run through"
        DONE = "done", "ready"
        FAILED = "failed", "failed"

    #: The steps of a build in order (the page lists them, marking the current one).
    ORDER: tuple[str, ...] = (Step.COHORTS, Step.TRAINING, Step.HEATMAPS, Step.RUN)

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="demo_build")
    step = models.CharField(max_length=16, choices=Step.choices, default=Step.COHORTS)
    # {"slides_done", "slides_total", "members", "epochs", "member_epochs": [epoch of each member],
    #  "members_done", "heatmaps_done", "heatmaps_total"}: what the step has done so far.
    counts = models.JSONField(default=dict, blank=True)
    # [{"label": ..., "url": ...}] in the order the results became ready.
    links = models.JSONField(default=list, blank=True)
    failure_reason = models.TextField(blank=True)
    failed_step = models.CharField(max_length=16, blank=True, help_text="the step a failed build stopped in")
    started = models.DateTimeField()
    updated = models.DateTimeField(auto_now=True)
    finished = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"demo build of {self.project}: {self.step}"

    @property
    def building(self) -> bool:
        return self.step not in (self.Step.DONE, self.Step.FAILED)

    @property
    def detail(self) -> str:
        """What the current step has done, in words: slides, each member's epoch, heatmaps."""
        c = self.counts
        step = self.failed_step if self.step == self.Step.FAILED else self.step
        if step == self.Step.COHORTS and c.get("slides_total"):
            return f"{c.get('slides_done', 0)} of {c['slides_total']} slides ready"
        if step == self.Step.TRAINING and c.get("members"):
            epochs = c.get("member_epochs") or []
            of = c.get("epochs")
            parts = [f"member {i + 1}: epoch {e}{f' of {of}' if of else ''}" for i, e in enumerate(epochs) if e]
            return f"{c['members']} members; " + ("; ".join(parts) if parts else "their first epoch under way")
        if step == self.Step.HEATMAPS and c.get("heatmaps_total"):
            return f"{c.get('heatmaps_done', 0)} of {c['heatmaps_total']} slides"
        if step == self.Step.RUN:
            return str(c.get("run_step") or "thresholds, regions, metrics and reports")
        return ""

    @property
    def percent(self) -> float | None:
        """How far the current step is, in percent (None where it does not count)."""
        c = self.counts
        if self.step == self.Step.COHORTS and c.get("slides_total"):
            return 100.0 * c.get("slides_done", 0) / c["slides_total"]
        if self.step == self.Step.TRAINING and c.get("members") and c.get("epochs"):
            return 100.0 * sum(c.get("member_epochs") or []) / (c["members"] * c["epochs"])
        if self.step == self.Step.HEATMAPS and c.get("heatmaps_total"):
            return 100.0 * c.get("heatmaps_done", 0) / c["heatmaps_total"]
        return None

    def steps(self) -> list[tuple[str, str]]:
        """(label, state) of every step: state "done", "current", "failed" or "todo"."""
        at = self.failed_step if self.step == self.Step.FAILED else self.step
        reached = self.ORDER.index(at) if at in self.ORDER else len(self.ORDER)
        out = []
        for i, step in enumerate(self.ORDER):
            state = "done" if i < reached else "todo"
            if i == reached:
                state = "failed" if self.step == self.Step.FAILED else "current"
            out.append((self.Step(step).label, state))
        return out
