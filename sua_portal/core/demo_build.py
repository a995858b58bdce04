"""A demo build (``manage.py load_demo``) in its :class:`~sua_portal.core.models.DemoBuild` row: written by
the loader (:class:`BuildRecorder`), read by the pages (:func:`demo_build_of`)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from sua_portal.accounts.models import Project
from sua_portal.core.models import DemoBuild


class BuildRecorder:
    """The loader's side of a :class:`DemoBuild`: one writer (the loader), many readers (the pages)."""

    def __init__(self, project: Project) -> None:
        self.row, _ = DemoBuild.objects.update_or_create(
            project=project,
            defaults={"step": DemoBuild.Step.COHORTS, "counts": {}, "links": [], "failure_reason": "",
                      "failed_step": "", "started": timezone.now(), "finished": None},
        )

    def _save(self, *fields: str) -> None:
        self.row.save(update_fields=[*fields, "updated"])

    def step(self, step: str, **counts: Any) -> None:
        """The build moved on to ``step``; ``counts`` are its first numbers (kept with the earlier ones)."""
        self.row.step = step
        self.row.counts = {**self.row.counts, **counts}
        self._save("step", "counts")

    def count(self, **counts: Any) -> None:
        self.row.counts = {**self.row.counts, **counts}
        self._save("counts")

    def epoch(self, member: int, epoch: int) -> None:
        """Member ``member`` (0-based) finished ``epoch`` (1-based)."""
        epochs = list(self.row.counts.get("member_epochs") or [0] * int(self.row.counts.get("members", 0)))
        epochs += [0] * (member + 1 - len(epochs))
        epochs[member] = max(epochs[member], epoch)
        self.count(member_epochs=epochs)

    def link(self, label: str, url: str) -> None:
        """A result is ready: listed (once, by its label) in the order the results came."""
        links = [entry for entry in self.row.links if entry["label"] != label]
        self.row.links = [*links, {"label": label, "url": url}]
        self._save("links")

    def done(self) -> None:
        self.row.step = DemoBuild.Step.DONE
        self.row.finished = timezone.now()
        self._save("step", "finished")

    def failed(self, reason: str) -> None:
        self.row.failed_step = self.row.step if self.row.step != DemoBuild.Step.FAILED else self.row.failed_step
        self.row.step = DemoBuild.Step.FAILED
        self.row.failure_reason = reason
        self.row.finished = timezone.now()
        self._save("step", "failed_step", "failure_reason", "finished")


def demo_build_of(user: Any) -> DemoBuild | None:
    """The demo build of a project ``user`` is a member of (the newest started), if any."""
    return (DemoBuild.objects.filter(project__in=Project.objects.visible_to(user))
            .select_related("project").order_by("-started").first())
