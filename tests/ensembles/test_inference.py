"""Whole-slide inference on a real Celery worker: heatmaps, progress, idempotency, cancel, a killed
worker process, a slide that fails, and the SUA step that follows."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from analysis.io import read_heatmap_tiff
from sua_portal.core.tasks import ping
from sua_portal.ensembles import services
from sua_portal.ensembles.models import SlideHeatmap
from sua_portal.slides.models import Slide
from tests.conftest import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

FINISHED = (SlideHeatmap.Status.DONE, SlideHeatmap.Status.FAILED, SlideHeatmap.Status.CANCELLED)


def run(client: Any, ensemble: Any, **body: Any) -> list[dict[str, Any]]:
    response = client.post(f"/api/ensembles/{ensemble.pk}/run/", body, format="json")
    assert response.status_code == 202, response.content
    return list(response.json())


def finished(ids: list[int], timeout: float = 120) -> list[SlideHeatmap]:
    def check() -> list[SlideHeatmap] | None:
        rows = list(SlideHeatmap.objects.filter(pk__in=ids).order_by("pk"))
        return rows if all(r.status in FINISHED for r in rows) else None

    return wait_for(check, timeout=timeout, what="the heatmaps")


def heatmap_files(heatmap: SlideHeatmap) -> dict[str, str]:
    return {kind: getattr(heatmap, kind).name for kind in services.HEATMAP_KINDS}


def test_a_researcher_runs_an_ensemble_over_cohorts_and_gets_four_heatmaps_per_slide(
    celery_worker_process: Any, people: dict[str, Any], api_for: Callable[[Any], Any],
    make_ensemble: Callable[..., Any], demo_cohorts: dict[str, Any],
) -> None:
    ensemble = make_ensemble()
    client = api_for(people["researcher"])
    queued = run(client, ensemble, cohorts=[demo_cohorts["validation"].pk, demo_cohorts["test_shifted"].pk])
    assert len(queued) == 4 and {q["status"] for q in queued} == {"queued"}
    rows = finished([q["id"] for q in queued])
    assert [r.status for r in rows] == ["done"] * 4, [r.failure_reason for r in rows]
    for row in rows:
        assert row.progress == 100 and row.downsample == 16 and row.worker
        slide = row.slide
        arrays = {}
        for kind in services.HEATMAP_KINDS:
            arrays[kind], downsample = read_heatmap_tiff(getattr(row, kind).path)
            assert downsample == 16
            # One heatmap pixel per 16 x 16 level-0 pixels, covering the slide.
            assert slide.height and slide.width
            assert arrays[kind].shape == (-(-slide.height // 16), -(-slide.width // 16))
        assert arrays["segmentation"].min() >= 0 and arrays["segmentation"].max() <= 1
        assert arrays["entropy"].max() <= np.log(2) + 1e-5
        assert (arrays["mutual_information"] <= arrays["entropy"] + 1e-5).all()
        # Two different members disagree somewhere on tissue.
        assert arrays["variance"].max() > 0

    # Pathologists review what the researchers ran; people of other projects never see it.
    assert api_for(people["pathologist"]).get(f"/api/heatmaps/{rows[0].pk}/").status_code == 200
    assert api_for(people["outsider"]).get(f"/api/heatmaps/{rows[0].pk}/").status_code == 404

    # Running again is idempotent: nothing is queued, nothing rewritten.
    before = {r.pk: (heatmap_files(r), r.finished) for r in rows}
    assert run(client, ensemble, cohorts=[demo_cohorts["validation"].pk, demo_cohorts["test_shifted"].pk]) == []
    assert services.infer(rows[0].pk) == "skipped"
    after = {r.pk: (heatmap_files(r), r.finished) for r in SlideHeatmap.objects.filter(pk__in=before)}
    assert after == before and SlideHeatmap.objects.count() == 4


def test_a_slide_that_fails_mid_inference_shows_its_reason_and_the_others_go_on(
    celery_worker_process: Any, people: dict[str, Any], api_for: Callable[[Any], Any],
    make_ensemble: Callable[..., Any], demo_cohorts: dict[str, Any],
) -> None:
    ensemble = make_ensemble()
    broken, good = Slide.objects.filter(cohort=demo_cohorts["test_in_domain"]).order_by("name")
    # The file went bad in storage after the slide was checked (a disk error, a bad copy).
    with open(broken.file.path, "r+b") as fh:
        fh.truncate(4096)
    queued = run(api_for(people["researcher"]), ensemble, cohorts=[demo_cohorts["test_in_domain"].pk])
    rows = {r.slide_id: r for r in finished([q["id"] for q in queued])}
    assert rows[good.pk].status == "done"
    assert rows[broken.pk].status == "failed"
    assert "damaged in storage" in rows[broken.pk].failure_reason
    assert heatmap_files(rows[broken.pk])["segmentation"] == ""
    shown = api_for(people["researcher"]).get(f"/api/heatmaps/{rows[broken.pk].pk}/").json()
    assert shown["status"] == "failed" and shown["failure_reason"] == rows[broken.pk].failure_reason


@pytest.fixture
def slow_ensemble(make_ensemble: Callable[..., Any]) -> Any:
    """Small tiles: many forward passes, tens of seconds of work per slide."""
    return make_ensemble("Slow", tile_size=96, level_downsample=2.0)


def test_a_slide_that_opens_but_cannot_be_decoded_fails_with_the_decoder_s_reason(
    celery_worker_process: Any, people: dict[str, Any], api_for: Callable[[Any], Any],
    make_ensemble: Callable[..., Any], demo_cohorts: dict[str, Any], testdata: Any,
) -> None:
    ensemble = make_ensemble()
    slide = Slide.objects.filter(cohort=demo_cohorts["test_shifted"]).order_by("name")[0]
    data = (testdata / "unreadable.svs").read_bytes()
    with open(slide.file.path, "wb") as fh:
        fh.write(data)
    Slide.objects.filter(pk=slide.pk).update(size_bytes=len(data))  # same size: only decoding can tell
    (queued,) = run(api_for(people["researcher"]), ensemble, slides=[slide.pk])
    (row,) = finished([queued["id"]])
    assert row.status == "failed" and "cannot identify image file" in row.failure_reason


def test_cancel_stops_a_running_slide_and_stores_nothing(
    celery_worker_process: Any, people: dict[str, Any], api_for: Callable[[Any], Any],
    slow_ensemble: Any, demo_cohorts: dict[str, Any],
) -> None:
    slide = Slide.objects.filter(cohort=demo_cohorts["validation"]).order_by("name")[0]
    client = api_for(people["researcher"])
    (queued,) = run(client, slow_ensemble, slides=[slide.pk])
    wait_for(lambda: client.get(f"/api/heatmaps/{queued['id']}/").json()["progress"] > 0, what="progress")
    response = client.post(f"/api/heatmaps/{queued['id']}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    # The worker notices and is free again long before the slide would have been done.
    token = "after-cancel"
    assert ping.delay(token).get(timeout=30) == token
    row = SlideHeatmap.objects.get(pk=queued["id"])
    assert row.status == "cancelled" and row.progress < 100
    assert set(heatmap_files(row).values()) == {""}
    # Nothing left to cancel now; a cancelled slide can be queued again.
    again = client.post(f"/api/heatmaps/{queued['id']}/cancel/")
    assert again.status_code == 400 and "cancelled" in again.json()["status"][0]


def test_a_worker_process_killed_mid_slide_means_the_slide_is_redone_never_half_stored(
    celery_worker_process: Any, people: dict[str, Any], api_for: Callable[[Any], Any],
    slow_ensemble: Any, demo_cohorts: dict[str, Any],
) -> None:
    # The slow ensemble: seconds of work, so the kill lands mid-slide and not after it.
    slide = Slide.objects.filter(cohort=demo_cohorts["validation"]).order_by("name")[0]
    client = api_for(people["researcher"])
    (queued,) = run(client, slow_ensemble, slides=[slide.pk])
    # Progress in percent is visible while the slide runs.
    wait_for(lambda: 0 < client.get(f"/api/heatmaps/{queued['id']}/").json()["progress"] < 100,
             what="progress under way")
    first = SlideHeatmap.objects.get(pk=queued["id"])
    victim = int(first.worker.split(":")[1])
    os.kill(victim, signal.SIGKILL)  # as the kernel's OOM killer would
    row = finished([queued["id"]], timeout=180)[0]
    assert row.status == "done", row.failure_reason
    assert row.worker != first.worker and int(row.worker.split(":")[1]) != victim
    assert "WorkerLostError" in celery_worker_process.log_path.read_text()
    # One complete set of heatmaps: every file reads, and no stray file sits beside them.
    folder = os.path.dirname(row.segmentation.path)
    assert sorted(os.listdir(folder)) == sorted(f"{kind}.tiff" for kind in services.HEATMAP_KINDS)
    for kind in services.HEATMAP_KINDS:
        array, _ = read_heatmap_tiff(getattr(row, kind).path)
        assert np.isfinite(array).all()
