"""Runs on the session's synthetic cohort with a tiny two-member ensemble."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# The ensembles tests' fixtures: a tiny imported ensemble and the synthetic cohort imported into project 'Own'.
from tests.ensembles.conftest import demo_cohorts, make_ensemble, members  # noqa: F401

#: Heatmaps computed in this pytest run, by what decides their pixels (see ``_heatmap_key``): the run
#: tests each import a fresh ensemble of the same two member files, and inferring the cohort's six
#: slides again for each of them (and again in each pytest-xdist process) took most of the suite's time.
#: Kept as files in the run's shared folder (set by the ``start`` fixture). Inference itself is tested
#: in tests/ensembles (and through a real worker in tests/runs/test_worker.py).
_STORE: list[Path] = []
_KINDS = ("segmentation", "entropy", "mutual_information", "variance")


def _heatmap_key(heatmap: Any) -> str:
    """A digest of the inputs of ``ensembles.services.infer``: member files, tiling, slide file and settings."""
    from django.conf import settings

    ensemble = heatmap.ensemble
    checkpoints = []
    for member in ensemble.members.order_by("index"):
        with member.checkpoint.open("rb") as fh:
            checkpoints.append(hashlib.sha256(fh.read()).hexdigest())
    inputs = (tuple(checkpoints), ensemble.tile_size, ensemble.level_downsample, heatmap.slide.sha256,
              heatmap.slide.effective_mpp, settings.HEATMAP_DOWNSAMPLE, settings.INFERENCE_OVERLAP)
    return hashlib.sha256(repr(inputs).encode()).hexdigest()[:24]


def _store_computed(heatmap: Any, folder: Path) -> None:
    """What ``infer`` stores when it is done, from the files it stored for the same inputs before."""
    from django.core.files.base import ContentFile
    from django.utils import timezone

    from sua_portal.ensembles.services import record_heatmap

    heatmap.started = timezone.now()
    files = {kind: ContentFile((folder / f"{kind}.tiff").read_bytes()) for kind in _KINDS}
    record_heatmap(heatmap, files, float((folder / "downsample").read_text()))


def _compute(heatmap: Any, folder: Path) -> None:
    """``heatmap`` inferred here (or by the session's worker, if it claimed it first), its files kept in ``folder``."""
    from sua_portal.ensembles import services as ensembles
    from sua_portal.ensembles.models import SlideHeatmap
    from tests.conftest import wait_for

    pending = [SlideHeatmap.Status.QUEUED, SlideHeatmap.Status.RUNNING]
    if ensembles.infer(heatmap.pk) != "done":
        settled = SlideHeatmap.objects.filter(pk=heatmap.pk).exclude(status__in=pending)
        wait_for(settled.exists, timeout=120, what=f"the worker to finish heatmap {heatmap.pk}")
    heatmap.refresh_from_db()
    assert heatmap.status == SlideHeatmap.Status.DONE, heatmap.failure_reason
    assert heatmap.downsample is not None
    made = folder.with_name(folder.name + ".part")
    made.mkdir(parents=True, exist_ok=True)
    for kind in _KINDS:
        with getattr(heatmap, kind).open("rb") as fh:
            (made / f"{kind}.tiff").write_bytes(fh.read())
    (made / "downsample").write_text(repr(heatmap.downsample))
    made.rename(folder)  # whole or not at all


def compute_heatmaps_here(run: Any) -> None:
    """Every heatmap a run queued, computed in this process (tests that are not about the worker).

    The first time in this pytest run that a slide meets these member files it is inferred by
    ``ensembles.services.infer``; later (in any of the run's processes) the files it stored then are
    stored again (same inputs, same pixels).
    The queued tasks also went to this test process's broker: where an earlier test started the
    session's Celery worker, it may claim a heatmap too; the later claim wins and the other stands
    down, so a heatmap this process did not finish is waited for until the worker has.
    """
    from sua_portal.ensembles.models import SlideHeatmap
    from tests.conftest import exclusive

    assert _STORE, "runs are started through the start fixture, which names the heatmaps' folder"
    pending = [SlideHeatmap.Status.QUEUED, SlideHeatmap.Status.RUNNING]
    queued = SlideHeatmap.objects.filter(ensemble=run.ensemble, status__in=pending).select_related("ensemble", "slide")
    for heatmap in queued:
        folder = _STORE[0] / _heatmap_key(heatmap)
        with exclusive(_STORE[0] / "lock"):
            if not folder.is_dir():
                _compute(heatmap, folder)
                continue
        _store_computed(heatmap, folder)


@pytest.fixture(scope="session")
def heatmaps_computed(tmp_path_factory: Any) -> Path:
    """The folder of the heatmaps computed in this pytest run (shared by its processes)."""
    from tests.conftest import run_folder

    folder = run_folder(tmp_path_factory) / "heatmaps"
    folder.mkdir(exist_ok=True)
    _STORE[:] = [folder]
    return folder


@pytest.fixture
def start(people: dict[str, Any], make_ensemble: Callable[..., Any],  # noqa: F811
          demo_cohorts: dict[str, Any], heatmaps_computed: Path) -> Callable[..., Any]:  # noqa: F811
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
def checked_slide(people: dict[str, Any], testdata: Any) -> Any:
    """testdata's boxes.tiff stored and checked in a test cohort 'Nodes' of project 'Own' (for runs made directly)."""
    from sua_portal.slides import services as slides
    from sua_portal.slides.models import Cohort

    cohort = Cohort.objects.create(project=people["own"], name="Nodes", split="test")
    slide = slides.store_slide(cohort, testdata / "boxes.tiff", filename="boxes.tiff", queue_check=False)
    checked = slides.check_slide(slide.pk) or slide
    checked.refresh_from_db()
    return checked


@pytest.fixture
def finished_run(start: Callable[..., Any]) -> Any:
    """A run with the paper's settings (B = 50), carried through in this process."""
    return carry_through(start())
