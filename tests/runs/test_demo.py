"""The demo loader: the demo ensemble trained, its heatmaps computed and the demo run finished, once."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from django.core.management import call_command

from sua_portal.core.models import DemoBuild
from sua_portal.ensembles.models import Ensemble, SlideHeatmap
from sua_portal.ensembles.services import DEMO_ENSEMBLE
from sua_portal.runs.models import Region, Run
from sua_portal.runs.services import DEMO_RUN, review_run
from sua_portal.slides.services import DEMO_COHORTS


def test_the_demo_loader_trains_and_finishes_the_demo_run_once(
    people: dict[str, Any], synthetic_cohort: Path, settings: Any, tmp_path: Path,
) -> None:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    out = io.StringIO()
    call_command("load_demo", project="Own", data_dir=synthetic_cohort, preset="test", threads=2,
                 training='{"max_epochs": 2}', stdout=out)
    ensemble = Ensemble.objects.get(project=people["own"], name=DEMO_ENSEMBLE)
    assert ensemble.status == "ready" and ensemble.members.count() == 2
    # Validation and both test cohorts: 6 slides, each with its heatmaps.
    heatmaps = SlideHeatmap.objects.filter(ensemble=ensemble)
    assert sorted(heatmaps.values_list("status", flat=True)) == ["done"] * 6
    run = Run.objects.get(project=people["own"], name=DEMO_RUN)
    assert run.status == "done" and run.report is not None, run.failure_reason
    # The run is what pathologists review; its regions carry the truth and some are flagged.
    assert review_run(people["own"]) == run
    regions = Region.objects.filter(run=run)
    assert regions.filter(is_false_negative=True).exists()
    assert regions.filter(flagged=True).exists(), out.getvalue()
    assert f"/runs/{run.pk}/" in out.getvalue()
    # What the pages show of the build: done, each step's numbers, the results linked in the order they came.
    build = DemoBuild.objects.get(project=people["own"])
    assert build.step == "done" and build.finished is not None and build.failure_reason == ""
    assert build.counts["slides_done"] == build.counts["slides_total"] == 8
    assert build.counts["member_epochs"] == [2, 2] and build.counts["heatmaps_done"] == 6
    assert [link["label"] for link in build.links][:4] == [name for _, name, _ in DEMO_COHORTS]
    assert {"url": f"/runs/{run.pk}/", "label": f"{DEMO_RUN}: the dashboard"} in build.links
    assert {"url": f"/api/ensembles/{ensemble.pk}/", "label": f"{DEMO_ENSEMBLE} (2 members)"} in build.links
    flags = sorted(regions.values_list("pk", "flagged"))
    files = sorted(heatmaps.values_list("segmentation", flat=True))

    # Again: nothing retrained, recomputed or rerun.
    again = io.StringIO()
    call_command("load_demo", project="Own", data_dir=synthetic_cohort, preset="test", stdout=again)
    assert "trained already" in again.getvalue() and "finished already" in again.getvalue()
    assert Ensemble.objects.get(pk=ensemble.pk).members.count() == 2
    assert sorted(SlideHeatmap.objects.filter(ensemble=ensemble).values_list("segmentation", flat=True)) == files
    assert sorted(Region.objects.filter(run=run).values_list("pk", "flagged")) == flags
    assert Run.objects.filter(project=people["own"]).count() == 1
