"""The demo loader: the demo ensemble trained, its heatmaps computed and the demo run finished, once."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from django.core.management import call_command

from sua_portal.ensembles.models import Ensemble, SlideHeatmap
from sua_portal.ensembles.services import DEMO_ENSEMBLE
from sua_portal.runs.models import Region, Run
from sua_portal.runs.services import DEMO_RUN, review_run


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
