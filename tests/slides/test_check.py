"""The slide check: large-image reads metadata and decodes every level, once per slide, on a real worker too."""

from __future__ import annotations

from contextlib import suppress
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from sua_portal.slides import services
from sua_portal.slides.models import Slide
from tests.conftest import wait_for
from tests.slides.conftest import Storage, checks_sent


@pytest.mark.django_db
def test_a_good_slide_becomes_ready_with_what_large_image_reads(cohort: Any, add_slide: Any) -> None:
    slide = add_slide(cohort, "small.svs", probe=False)
    assert slide.status == "ready" and slide.failure_reason == ""
    assert (slide.width, slide.height, slide.levels) == (16, 16, 1)
    assert slide.mpp == pytest.approx(0.499) and slide.magnification == 20.0
    assert slide.format == "Aperio SVS (openslide)"
    assert 0.0 <= slide.tissue_fraction <= 1.0 and slide.checked is not None


@pytest.mark.django_db
def test_a_pyramidal_tiff_without_resolution_is_ready_with_unknown_mpp(cohort: Any, add_slide: Any) -> None:
    slide = add_slide(cohort, "boxes.tiff", probe=False)
    assert slide.status == "ready" and (slide.width, slide.height, slide.levels) == (300, 250, 4)
    assert slide.mpp is None and slide.format == "TIFF (tiff)"
    # boxes.tiff is coloured boxes on white: about half of it is "tissue".
    assert 0.3 < slide.tissue_fraction < 0.7


@pytest.mark.django_db
def test_the_tissue_fraction_the_cohort_page_shows_is_the_tissue_inference_runs_on(
    cohort: Any, add_slide: Any, settings: Any,
) -> None:
    from analysis.inference import InferenceOptions, run_ensemble
    from analysis.models import build_network

    slide = add_slide(cohort, "boxes.tiff", probe=False)
    result = run_ensemble(
        services.local_path(slide),
        [build_network("tiny", seed=0)],
        InferenceOptions(level_downsample=1, heatmap_downsample=settings.HEATMAP_DOWNSAMPLE, tile_size=64, overlap=8),
    )
    assert result.tissue_fraction == slide.tissue_fraction
    assert 0.3 < slide.tissue_fraction < 0.7


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "reason"),
    [("unreadable.svs", "cannot be decoded"), ("unopenable.tiff", "cannot be decoded")],
)
def test_a_slide_that_opens_but_does_not_decode_fails_with_its_reason(
    name: str, reason: str, cohort: Any, add_slide: Any,
) -> None:
    slide = add_slide(cohort, name, probe=False)
    assert slide.status == "failed" and reason in slide.failure_reason


@pytest.mark.django_db
def test_a_truncated_slide_fails_as_truncated(cohort: Any, add_slide: Any, testdata: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "cut.tiff"
    truncated.write_bytes((testdata / "boxes.tiff").read_bytes()[:4000])
    slide = add_slide(cohort, path=truncated, probe=False)
    assert slide.status == "failed" and "truncated" in slide.failure_reason


@pytest.mark.django_db
def test_a_slide_whose_file_vanished_fails_saying_so(cohort: Any, add_slide: Any) -> None:
    slide = add_slide(cohort, "small.svs", check=False)
    default_storage.delete(slide.file.name)
    checked = services.check_slide(slide.pk)
    assert checked is not None and checked.status == "failed" and "missing" in checked.failure_reason


@pytest.mark.django_db
def test_a_slide_claimed_by_another_worker_is_left_alone_until_the_claim_is_stale(
    cohort: Any, add_slide: Any, settings: Any,
) -> None:
    slide = add_slide(cohort, "small.svs", check=False)
    Slide.objects.filter(pk=slide.pk).update(check_started=timezone.now())
    assert services.check_slide(slide.pk) is None
    assert Slide.objects.get(pk=slide.pk).status == "uploaded"
    # That worker died long ago (past the hard time limit): the claim is taken over.
    Slide.objects.filter(pk=slide.pk).update(
        check_started=timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)
    )
    checked = services.check_slide(slide.pk)
    assert checked is not None and checked.status == "ready"


@pytest.mark.django_db
def test_a_checked_slide_is_not_checked_twice(cohort: Any, add_slide: Any) -> None:
    slide = add_slide(cohort, "small.svs")
    assert slide.status == "ready"
    assert services.check_slide(slide.pk) is None
    assert services.check_slide(999_999) is None


@pytest.mark.django_db
def test_an_admin_asks_for_a_check_again(people: dict[str, Any], cohort: Any, add_slide: Any, api_for: Any,
                                         django_capture_on_commit_callbacks: Any, monkeypatch: Any) -> None:
    slide = add_slide(cohort, "small.svs")
    sent = checks_sent(monkeypatch)
    with django_capture_on_commit_callbacks(execute=True):
        response = api_for(people["admin"]).post(f"/api/slides/{slide.pk}/check/")
    assert response.status_code == 202 and response.json()["status"] == "uploaded"
    assert sent == [slide.pk]
    checked = services.check_slide(slide.pk)
    assert checked is not None and checked.status == "ready"


@pytest.mark.django_db
def test_workers_read_remote_slides_from_a_local_cache_downloaded_once(
    cohort: Any, add_slide: Any, storage: Storage, settings: Any, tmp_path: Path, monkeypatch: Any,
) -> None:
    slide = add_slide(cohort, "small.svs", check=False)
    settings.SLIDE_CACHE_DIR = str(tmp_path / "cache")
    opened: list[str] = []
    stored = Path(default_storage.path(slide.file.name))

    def remote_path(name: str) -> str:
        raise NotImplementedError("S3 has no local path")

    def counting_open(name: str, mode: str = "rb") -> Any:
        opened.append(name)
        return stored.open(mode)

    monkeypatch.setattr(default_storage, "path", remote_path)
    monkeypatch.setattr(default_storage, "open", counting_open)
    first = services.local_path(slide)
    second = services.local_path(slide)
    assert first == second and first.is_relative_to(tmp_path / "cache")
    assert first.read_bytes() == stored.read_bytes() and opened == [slide.file.name]
    checked = services.check_slide(slide.pk)
    assert checked is not None and checked.status == "ready"


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_worker_process_checks_a_good_and_a_broken_slide(
    celery_worker_process: Any, people: dict[str, Any], testdata: Path,
) -> None:
    from sua_portal.slides.models import Cohort

    cohort = Cohort.objects.create(project=people["own"], name="Worker cohort", split="train")
    good = services.store_slide(cohort, testdata / "boxes.tiff", filename="boxes.tiff")
    # A broken slide that got past the upload probe (imported, or damaged in storage later).
    broken = services.store_slide(cohort, testdata / "unreadable.svs", filename="unreadable.svs", probe=False)
    try:
        wait_for(lambda: not Slide.objects.filter(cohort=cohort, status="uploaded").exists(), timeout=90,
                 what="the worker's slide checks")
        good.refresh_from_db()
        broken.refresh_from_db()
        assert good.status == "ready" and good.tissue_fraction is not None and good.checked is not None
        assert broken.status == "failed" and "cannot be decoded" in broken.failure_reason
        assert "slides.check_slide[" in celery_worker_process.log_path.read_text()
    finally:
        for slide in (good, broken):
            path = Path(default_storage.path(str(slide.file.name)))
            default_storage.delete(str(slide.file.name))
            with suppress(OSError):
                path.parent.rmdir()  # slides/<cohort>/<sha[:2]>/<sha>/, empty now
                path.parent.parent.rmdir()
                path.parent.parent.parent.rmdir()
