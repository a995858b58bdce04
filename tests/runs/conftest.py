"""Runs on the session's synthetic cohort with a tiny two-member ensemble."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

# The ensembles tests' fixtures: a tiny imported ensemble and the synthetic cohort imported into project 'Own'.
from tests.ensembles.conftest import demo_cohorts, make_ensemble, members  # noqa: F401


def compute_heatmaps_here(run: Any) -> None:
    """Every heatmap a run queued, computed in this process (tests that are not about the worker).

    The queued tasks also went to this test process's broker: where an earlier test started the
    session's Celery worker, it may claim a heatmap too; the later claim wins and the other stands
    down, so a heatmap this process did not finish is waited for until the worker has.
    """
    from sua_portal.ensembles import services as ensembles
    from sua_portal.ensembles.models import SlideHeatmap
    from tests.conftest import wait_for

    pending = [SlideHeatmap.Status.QUEUED, SlideHeatmap.Status.RUNNING]
    for heatmap in SlideHeatmap.objects.filter(ensemble=run.ensemble, status__in=pending):
        if ensembles.infer(heatmap.pk) != "done":
            settled = SlideHeatmap.objects.filter(pk=heatmap.pk).exclude(status__in=pending)
            wait_for(settled.exists, timeout=120, what=f"the worker to finish heatmap {heatmap.pk}")
        heatmap.refresh_from_db()
        assert heatmap.status == SlideHeatmap.Status.DONE, heatmap.failure_reason


@pytest.fixture
def start(people: dict[str, Any], make_ensemble: Callable[..., Any],  # noqa: F811
          demo_cohorts: dict[str, Any]) -> Callable[..., Any]:  # noqa: F811
    """Start a run over validation + both test cohorts (B small) with a fresh tiny ensemble; returns the Run."""
    from sua_portal.runs import services

    def go(**values: Any) -> Any:
        ensemble = make_ensemble()
        return services.start_run(
            project=people["own"], ensemble=ensemble, validation=[demo_cohorts["validation"]],
            test=[demo_cohorts["test_in_domain"], demo_cohorts["test_shifted"]],
            values={"bootstrap": 50, **values}, user=people["researcher"],
            queue=False)  # carried through in the test's process, not by a session worker

    return go


def carry_through(run: Any) -> Any:
    """A run carried through in this process: heatmaps computed here, then the pipeline."""
    from sua_portal.runs import services

    assert services.execute(run.pk) == "waiting"
    compute_heatmaps_here(run)
    assert services.execute(run.pk) == "done", run.__class__.objects.get(pk=run.pk).failure_reason
    run.refresh_from_db()
    return run


@pytest.fixture
def finished_run(start: Callable[..., Any]) -> Any:
    """A run with the paper's settings (B = 50), carried through in this process."""
    return carry_through(start())
