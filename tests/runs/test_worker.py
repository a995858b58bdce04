"""A run carried through by a real Celery worker: heatmaps on the gpu queue, the run and its report on
cpu; then a slide uploaded into one of its cohorts joins it with no manual step."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sua_portal.runs.models import Region, Run, RunSlide
from sua_portal.slides.models import Slide
from tests.conftest import wait_for
from tests.slides.conftest import multipart

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_researcher_runs_an_experiment_on_a_worker_and_a_later_slide_is_flagged_under_it(
    celery_worker_process: Any, people: dict[str, Any], api_for: Callable[[Any], Any],
    make_ensemble: Callable[..., Any], demo_cohorts: dict[str, Any], synthetic_cohort: Path,
) -> None:
    ensemble = make_ensemble()
    researcher = api_for(people["researcher"])
    started = researcher.post("/api/runs/", {
        "project": people["own"].pk, "ensemble": ensemble.pk, "name": "First light",
        "validation_cohorts": [demo_cohorts["validation"].pk],
        "test_cohorts": [demo_cohorts["test_in_domain"].pk, demo_cohorts["test_shifted"].pk],
        "settings": {"bootstrap": 100, "aggregate": "auto"}}, format="json")
    assert started.status_code == 202, started.content
    run_id = started.json()["id"]

    def finished() -> Run | None:
        return Run.objects.filter(pk=run_id, status__in=["done", "failed"]).first()

    run = wait_for(finished, timeout=240, what="the run on the worker")
    assert run.status == "done", run.failure_reason
    # "auto" resolved by validation F-beta, and said so.
    assert run.aggregate in ("mean", "p90") and run.report["settings"]["aggregate"] == run.aggregate
    assert run.report["settings"]["aggregate_choice"]["aggregate"] == run.aggregate
    body = researcher.get(f"/api/runs/{run_id}/").json()
    assert body["report"] == run.report and body["status"] == "done" and body["progress"] == 100
    # The drawn report follows on the cpu queue.
    wait_for(lambda: "report.pdf" in Run.objects.get(pk=run_id).files, timeout=120, what="the report files")
    pdf = researcher.get(researcher.get(f"/api/runs/{run_id}/").json()["files"]["report.pdf"])
    assert pdf.status_code == 200 and b"".join(pdf.streaming_content).startswith(b"%PDF")
    report = json.loads(b"".join(researcher.get(body["files"]["report.json"]).streaming_content))
    assert report == run.report

    # An admin uploads one more slide into the in-domain test cohort (a copy of a shifted one): it is
    # checked, gets heatmaps and joins the project's review run (this one, the newest finished).
    source = sorted((synthetic_cohort / "test_shifted").glob("*.tif*"))[0]
    payload, content_type = multipart("file", "late-" + source.name, source.read_bytes())
    uploaded = api_for(people["admin"]).generic("POST", f"/api/cohorts/{demo_cohorts['test_in_domain'].pk}/slides/",
                                                 payload, content_type=content_type)
    assert uploaded.status_code == 201, uploaded.content
    slide = Slide.objects.get(pk=uploaded.json()["id"])
    row = wait_for(lambda: RunSlide.objects.filter(run=run_id, slide=slide).first(), timeout=180,
                   what="the late slide joining the run")
    assert row.added_after_run and row.domain == "in-domain"
    twin = RunSlide.objects.get(run=run_id, slide__sha256=slide.sha256, added_after_run=False)
    for index in range(len(run.ranges)):
        assert row.figure(index)["nprs"] == twin.figure(index)["nprs"]
        assert row.figure(index)["flagged"] == twin.figure(index)["flagged"]
    flagged = Region.objects.filter(run_slide=row, flagged=True).count()
    assert flagged == Region.objects.filter(run_slide=twin, flagged=True).count()
    # The report is a record of what was evaluated: unchanged.
    assert Run.objects.get(pk=run_id).report == run.report
