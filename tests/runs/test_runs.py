"""Runs: what a run computes and stores, what the command line reproduces from its bundle, and what
a bad start is told (with nothing stored and nothing queued)."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.conf import settings
from django.utils import timezone
from shapely.geometry import shape

from analysis.annotations import rasterize
from analysis.cli import main as sua_main
from sua_portal.ensembles.models import Ensemble, SlideHeatmap
from sua_portal.runs import services
from sua_portal.runs.models import Region, Run, RunSlide
from sua_portal.slides.models import Cohort, Slide
from tests.runs.conftest import compute_heatmaps_here

pytestmark = pytest.mark.django_db


def _download(client: Any, run: Run, name: str) -> bytes:
    # The address the run itself gives for the download.
    response = client.get(client.get(f"/api/runs/{run.pk}/").json()["files"][name])
    assert response.status_code == 200, (name, response.status_code)
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_a_finished_run_stores_thresholds_polygons_flags_and_figures_that_agree(finished_run: Run) -> None:
    run = finished_run
    assert run.status == "done" and run.progress == 100 and run.aggregate == "mean"
    assert [tuple(r) for r in run.settings["ranges"]] == [tuple(r) for r in settings.SUA_RANGES]
    report_ranges = run.report["ranges"]  # type: ignore[index]
    ranges = list(run.range_set.all())
    # The thresholds on the run are the report's, range by range.
    assert [(r.lower, r.upper, r.sua_threshold, r.baseline_threshold) for r in ranges] == [
        (e["lower"], e["upper"], e["sua_threshold"], e["baseline_threshold"]) for e in report_ranges]
    assert any(r.sua_threshold is not None for r in ranges)
    assert set(report_ranges[0]["domains"]) == {"in-domain", "shifted"}
    for run_range in ranges:
        regions = Region.objects.filter(run_range=run_range)
        assert regions.exists()
        # Flagged exactly when the score reaches the run's threshold for its range.
        for region in regions:
            expected = run_range.sua_threshold is not None and region.score >= run_range.sua_threshold
            assert region.flagged == expected
        # Validation precision and recall as the validation regions give them.
        validation = regions.filter(run_slide__role="validation")
        tp = validation.filter(flagged=True, is_false_negative=True).count()
        fp = validation.filter(flagged=True, is_false_negative=False).count()
        assert run_range.sua_validation["flagged"] == tp + fp
        assert run_range.sua_validation["positives"] == validation.filter(is_false_negative=True).count()
        if tp + fp:
            assert run_range.sua_validation["precision"] == pytest.approx(tp / (tp + fp))
    # Every region is a valid outline in level-0 pixels that rasterises back to its heatmap pixels (not a box).
    for region in Region.objects.filter(run=run).select_related("run_slide", "run_slide__slide"):
        outline = shape(region.geometry)
        d, slide = region.run_slide.downsample, region.run_slide.slide
        assert slide is not None and slide.height and slide.width
        grid = (-(-slide.height // int(d)), -(-slide.width // int(d)))
        assert outline.is_valid
        assert np.count_nonzero(rasterize(outline, shape=grid, downsample=d)) == region.area_px
        x0, y0, x1, y1 = outline.bounds
        assert (region.x, region.y, region.width, region.height) == pytest.approx((x0, y0, x1 - x0, y1 - y0))
    # Per slide and range: the table's counts are the regions'.
    for row in RunSlide.objects.filter(run=run):
        for run_range in ranges:
            figure = row.figure(run_range.index)
            regions = Region.objects.filter(run_slide=row, run_range=run_range)
            assert figure["nprs"] == regions.count()
            assert figure["flagged"] == regions.filter(flagged=True).count()
            assert figure["true_fns"] == regions.filter(is_false_negative=True).count()
    assert RunSlide.objects.filter(run=run).count() == 6


def test_the_bundle_reproduces_the_runs_report_with_sua_evaluate(
    finished_run: Run, people: dict[str, Any], api_for: Callable[[Any], Any], tmp_path: Path,
) -> None:
    client = api_for(people["researcher"])
    (tmp_path / "bundle.zip").write_bytes(_download(client, finished_run, "bundle.zip"))
    with zipfile.ZipFile(tmp_path / "bundle.zip") as archive:
        archive.extractall(tmp_path / "bundle")
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    # The command the bundle records, run by the command-line tool.
    words = manifest["command"].split()
    assert words[:2] == ["sua", "evaluate"]
    args = [str(tmp_path / "bundle" / "manifest.json"), "--out", str(tmp_path / "out"), *words[5:], "--no-progress"]
    assert sua_main(["evaluate", *args]) == 0
    ours = json.loads(_download(client, finished_run, "report.json"))
    theirs = json.loads((tmp_path / "out" / "report.json").read_text())
    for report in (ours, theirs):
        report["settings"].pop("manifest")
    assert theirs == ours
    assert ours == {**finished_run.report, "settings": {  # type: ignore[dict-item]
        k: v for k, v in finished_run.report["settings"].items() if k != "manifest"}}  # type: ignore[index]


def test_a_runs_downloads_are_there_for_members_only(
    finished_run: Run, people: dict[str, Any], api_for: Callable[[Any], Any],
) -> None:
    pathologist = api_for(people["pathologist"])
    before = set(pathologist.get(f"/api/runs/{finished_run.pk}/").json()["files"])
    # Done at once with report.json and the bundle; the drawn report follows (task runs.write_report).
    assert before == {"report.json", "bundle.zip", "slides.csv"}
    assert "report.pdf" in services.write_report_files(finished_run.pk)
    assert services.write_report_files(finished_run.pk) == []  # once
    body = pathologist.get(f"/api/runs/{finished_run.pk}/").json()
    names = set(body["files"])
    assert {"report.json", "report.pdf", "report.html", "bundle.zip", "slides.csv", "table2_f_beta.csv",
            "npr_scores.png", "npr_scores.svg", "fncr_boxplots.svg", "baseline_pixels.png"} <= names
    assert _download(pathologist, finished_run, "report.pdf").startswith(b"%PDF")
    rows = _download(pathologist, finished_run, "slides.csv").decode().splitlines()
    assert len(rows) == 1 + 6 * len(settings.SUA_RANGES) and rows[0].startswith("slide,cohort,role,domain")
    # A refined mask: pyramidal TIFF to download, PNG for the viewer.
    row = RunSlide.objects.filter(run=finished_run, has_tumor=True).first()
    assert row is not None
    tiff = pathologist.get(f"/api/runs/{finished_run.pk}/mask/", {"slide": row.slide_id, "range": 0, "method": "sua"})
    assert tiff.status_code == 200 and tiff["Content-Type"] == "image/tiff"
    png = pathologist.get(f"/api/runs/{finished_run.pk}/mask/",
                          {"slide": row.slide_id, "range": 0, "method": "baseline", "type": "png"})
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    bad = pathologist.get(f"/api/runs/{finished_run.pk}/mask/", {"slide": row.slide_id, "range": 0, "method": "x"})
    assert bad.status_code == 400 and "method" in bad.json()
    assert api_for(people["outsider"]).get(body["files"]["report.json"]).status_code == 404
    assert pathologist.get(f"/api/runs/{finished_run.pk}/files/secret.txt/").status_code == 404
    # Regions of one slide, flagged only, as polygons.
    regions = pathologist.get(f"/api/runs/{finished_run.pk}/regions/",
                              {"slide": row.slide_id, "flagged": "true", "limit": 1000}).json()
    stored = Region.objects.filter(run_slide=row, flagged=True)
    assert regions["count"] == stored.count()
    assert all(r["geometry"]["type"] in ("Polygon", "MultiPolygon") for r in regions["results"])
    assert pathologist.get(f"/api/runs/{finished_run.pk}/regions/", {"flagged": "maybe"}).status_code == 400


def test_a_pathologist_reads_runs_but_does_not_start_one(
    people: dict[str, Any], api_for: Callable[[Any], Any], make_ensemble: Callable[..., Any],
    demo_cohorts: dict[str, Any],
) -> None:
    ensemble = make_ensemble()
    body = {"project": people["own"].pk, "ensemble": ensemble.pk,
            "validation_cohorts": [demo_cohorts["validation"].pk], "test_cohorts": [demo_cohorts["test_shifted"].pk]}
    assert api_for(people["pathologist"]).post("/api/runs/", body, format="json").status_code == 403
    # A researcher of another project does not find this project.
    assert api_for(people["outsider"]).post("/api/runs/", body, format="json").status_code == 404
    assert not Run.objects.exists()
    started = api_for(people["researcher"]).post("/api/runs/", {**body, "settings": {"bootstrap": 20}},
                                                 format="json")
    assert started.status_code == 202, started.content
    assert started.json()["status"] == "queued" and started.json()["settings"]["bootstrap"] == 20
    run = Run.objects.get()
    assert run.created_by == people["researcher"] and run.settings["beta"] == settings.SUA_BETA
    assert api_for(people["pathologist"]).get(f"/api/runs/{run.pk}/").status_code == 200


@pytest.mark.parametrize(("case", "message"), [
    ("validation without tumor", "has no slide with annotated tumor"),
    ("test is validation", "cannot be both the validation and a test cohort"),
    ("lower >= upper", "lower"),
    ("no bootstrap", "bootstrap resamples must be between 1 and"),
    ("too many resamples", "bootstrap resamples must be between 1 and"),
    ("no resolution", "no resolution"),
    ("ensemble not ready", "not ready"),
    ("unknown setting", "unknown setting"),
])
def test_a_bad_start_is_refused_by_name_and_changes_nothing(
    case: str, message: str, people: dict[str, Any], api_for: Callable[[Any], Any],
    make_ensemble: Callable[..., Any], demo_cohorts: dict[str, Any],
) -> None:
    from sua_portal.celery import app

    ensemble = make_ensemble()
    validation, test = demo_cohorts["validation"], demo_cohorts["test_shifted"]
    values: dict[str, Any] = {}
    if case == "validation without tumor":
        validation = Cohort.objects.create(project=people["own"], name="tumor-free", split="validation")
        Slide.objects.filter(cohort=demo_cohorts["validation"], has_tumor=False).update(cohort=validation)
    elif case == "test is validation":
        test = validation
    elif case == "lower >= upper":
        values = {"ranges": [[0.95, 0.55]]}
    elif case == "no bootstrap":
        values = {"bootstrap": 0}
    elif case == "too many resamples":
        values = {"bootstrap": settings.RUN_MAX_BOOTSTRAP + 1}
    elif case == "no resolution":
        Slide.objects.filter(pk=Slide.objects.filter(cohort=test).order_by("name")[0].pk).update(mpp=None)
    elif case == "ensemble not ready":
        Ensemble.objects.filter(pk=ensemble.pk).update(status="training")
    elif case == "unknown setting":
        values = {"betta": 2}
    app.control.purge()
    response = api_for(people["researcher"]).post("/api/runs/", {
        "project": people["own"].pk, "ensemble": ensemble.pk, "validation_cohorts": [validation.pk],
        "test_cohorts": [test.pk], "settings": values}, format="json")
    assert response.status_code == 400, response.content
    assert message in json.dumps(response.json())
    if case in ("validation without tumor", "test is validation", "no resolution"):
        # The message names the cohort or slide to fix.
        assert validation.name in json.dumps(response.json()) or test.name in json.dumps(response.json())
    assert not Run.objects.exists()
    assert not SlideHeatmap.objects.exists()
    with app.connection_for_write() as connection:
        assert connection.default_channel.client.llen("cpu") == 0  # nothing queued


def test_a_failed_heatmap_fails_the_run_with_its_reason_shown(
    start: Callable[..., Any], people: dict[str, Any],
) -> None:
    from django.test import Client

    run = start()
    assert services.execute(run.pk) == "waiting"
    heatmap = SlideHeatmap.objects.filter(ensemble=run.ensemble).order_by("slide__name")[0]
    SlideHeatmap.objects.filter(pk=heatmap.pk).update(status="failed", failure_reason="CUDA out of memory",
                                                      finished=timezone.now())
    assert services.execute(run.pk) == "failed"
    run.refresh_from_db()
    assert run.status == "failed"
    assert heatmap.slide.name in run.failure_reason and "CUDA out of memory" in run.failure_reason
    assert not run.range_set.exists() and not run.slide_set.exists() and run.report is None
    client = Client()
    client.force_login(people["researcher"])
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert "CUDA out of memory" in page
    # A failed run is never carried on by a late task.
    assert services.execute(run.pk) == "skipped"


def test_a_run_whose_worker_died_is_redone_by_the_redelivered_task(start: Callable[..., Any]) -> None:
    run = start()
    assert services.execute(run.pk) == "waiting"
    compute_heatmaps_here(run)
    # The task came back (acks_late) after its worker was killed mid-run: the run is still "running".
    Run.objects.filter(pk=run.pk).update(status="running", worker="dead-host:123:abcd", step="evaluation")
    assert services.execute(run.pk) == "done"
    run.refresh_from_db()
    assert run.status == "done" and run.worker != "dead-host:123:abcd"
    assert run.slide_set.count() == 6


def test_run_again_copies_the_settings_and_a_deleted_ensemble_leaves_results_readable(
    finished_run: Run, people: dict[str, Any], api_for: Callable[[Any], Any],
) -> None:
    client = api_for(people["researcher"])
    again = client.post(f"/api/runs/{finished_run.pk}/again/")
    assert again.status_code == 202, again.content
    copy = Run.objects.get(pk=again.json()["id"])
    assert copy.settings == finished_run.settings and copy.copied_from == finished_run
    assert sorted(copy.cohorts.values_list("cohort", "role")) == sorted(finished_run.cohorts.values_list(
        "cohort", "role"))
    # The heatmaps are reused: none is queued again.
    assert not SlideHeatmap.objects.filter(status="queued").exists()

    report = finished_run.report
    assert finished_run.ensemble is not None
    finished_run.ensemble.delete()
    body = client.get(f"/api/runs/{finished_run.pk}/").json()
    assert body["ensemble"] is None and body["ensemble_name"] and body["report"] == report
    assert client.get(f"/api/runs/{finished_run.pk}/slides/").json()["count"] == 6
    refused = client.post(f"/api/runs/{finished_run.pk}/again/")
    assert refused.status_code == 400 and "was deleted" in json.dumps(refused.json())


def test_the_review_run_is_the_newest_finished_one_until_one_is_chosen(
    finished_run: Run, people: dict[str, Any], api_for: Callable[[Any], Any],
) -> None:
    assert services.review_run(people["own"]) == finished_run
    queued = services.run_again(finished_run)
    assert services.review_run(people["own"]) == finished_run  # a queued run is not reviewed
    refused = api_for(people["researcher"]).post(f"/api/runs/{queued.pk}/review/")
    assert refused.status_code == 409 and "only a finished run" in refused.json()["detail"]
    assert api_for(people["pathologist"]).post(f"/api/runs/{finished_run.pk}/review/").status_code == 403
    chosen = api_for(people["researcher"]).post(f"/api/runs/{finished_run.pk}/review/")
    assert chosen.status_code == 200 and chosen.json()["is_review_run"] is True
    listed = api_for(people["pathologist"]).get("/api/runs/", {"review": "true"}).json()["results"]
    assert [r["id"] for r in listed] == [finished_run.pk]


def test_a_slide_added_to_a_review_runs_cohort_is_flagged_under_its_thresholds(
    finished_run: Run, demo_cohorts: dict[str, Any],
) -> None:
    cohort = demo_cohorts["test_shifted"]
    source = RunSlide.objects.filter(run=finished_run, domain="shifted", has_tumor=True).first()
    assert source is not None and source.slide is not None
    # The same slide file once more in the cohort, as a new slide checked after the run.
    new = Slide.objects.create(cohort=cohort, name="late-arrival.tiff", file=source.slide.file.name,
                               sha256="0" * 64, size_bytes=source.slide.size_bytes, status="uploaded",
                               mpp=source.slide.mpp)
    assert services.runs_to_join(new) == []  # not ready yet
    Slide.objects.filter(pk=new.pk).update(status="ready", width=source.slide.width, height=source.slide.height,
                                           levels=source.slide.levels)
    new.refresh_from_db()
    assert services.runs_to_join(new) == [finished_run]
    with pytest.raises(services.Waiting):
        services.add_slide(finished_run.pk, new.pk)
    compute_heatmaps_here(finished_run)
    assert services.add_slide(finished_run.pk, new.pk) == "done"
    row = RunSlide.objects.get(run=finished_run, slide=new)
    assert row.added_after_run
    # Same pixels, same thresholds: the same regions and flags as the slide it copies (no truth here).
    for run_range in finished_run.range_set.all():
        ours = sorted(Region.objects.filter(run_slide=row, run_range=run_range).values_list("score", "flagged"))
        theirs = sorted(Region.objects.filter(run_slide=source, run_range=run_range).values_list("score", "flagged"))
        assert ours == theirs
    assert services.add_slide(finished_run.pk, new.pk) == "skipped"
    assert np.isclose(finished_run.report["settings"]["beta"], settings.SUA_BETA)  # type: ignore[index]
