"""import_cohort and the demo loader on a small synthetic cohort (analysis.synthetic, preset "test")."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from PIL import Image
from shapely.geometry import box, shape

from analysis.annotations import load_tumor_geometry, rasterize
from sua_portal.slides import services
from sua_portal.slides.models import Annotation, Cohort, Slide
from tests.slides.conftest import Storage, checks_sent

pytestmark = pytest.mark.django_db


def _import(*args: str, **options: Any) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_cohort", *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def test_a_folder_is_imported_with_its_annotations_and_checked(
    people: dict[str, Any], storage: Storage, synthetic_cohort: Path,
) -> None:
    out, err = _import(str(synthetic_cohort / "train"), project="Own", cohort="Train", split="train",
                       domain="in-domain", check="sync")
    assert "2 slides imported (1 with annotations), 0 already there, 0 refused" in out
    cohort = Cohort.objects.get(project=people["own"], name="Train")
    assert (cohort.split, cohort.domain) == ("train", "in-domain")
    tumor, free = Slide.objects.get(name="train_01"), Slide.objects.get(name="train_02")
    assert tumor.status == free.status == "ready"
    assert (tumor.width, tumor.height, tumor.mpp) == (1024, 768, 2.0)
    assert tumor.has_tumor is True and free.has_tumor is False
    # The GeoJSON beside the slide, polygon for polygon.
    stored = shape(Annotation.objects.get(slide=tumor).geometry)
    expected = load_tumor_geometry(synthetic_cohort / "train" / "train_01.geojson")
    assert stored.normalize().equals_exact(expected.normalize(), 0.0)
    assert err == ""


def test_importing_again_changes_nothing(people: dict[str, Any], storage: Storage, synthetic_cohort: Path) -> None:
    args = (str(synthetic_cohort / "validation"),)
    options = {"project": "Own", "cohort": "Validation", "split": "validation", "check": "none"}
    _import(*args, **options)
    files = storage.files()
    out, _ = _import(*args, **options)
    assert "0 slides imported (0 with annotations), 2 already there" in out
    assert Slide.objects.count() == 2 and Annotation.objects.count() == 1 and storage.files() == files


def test_a_mask_a_broken_slide_and_a_bad_annotation_are_each_handled(
    people: dict[str, Any], storage: Storage, testdata: Path, tmp_path: Path,
) -> None:
    folder = tmp_path / "cases"
    folder.mkdir()
    shutil.copy(testdata / "boxes.tiff", folder / "case1.tiff")
    mask = np.zeros((125, 150), np.uint8)
    mask[10:40, 20:60] = 255
    Image.fromarray(mask).save(folder / "case1_mask.png")
    shutil.copy(testdata / "unreadable.svs", folder / "case2.svs")
    shutil.copy(testdata / "small.svs", folder / "case3.svs")
    (folder / "case3.geojson").write_text(json.dumps([{
        "type": "Feature", "properties": {"classification": {"name": "Tumor"}},
        "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [500, 0], [500, 500], [0, 0]]]}}]))
    (folder / "notes.txt").write_text("not a slide")
    out, err = _import(str(folder), project="Own", cohort="Cases", split="test", domain="shifted", check="sync")
    assert "2 slides imported (1 with annotations), 0 already there, 1 refused, 1 failed their check" in out
    assert "refused case3.svs" in err and "outside the slide" in err
    assert "failed case2: " in err and "cannot be decoded" in err
    case1 = Slide.objects.get(name="case1")
    geometry = shape(Annotation.objects.get(slide=case1).geometry)
    assert geometry.equals(box(40, 20, 120, 80))  # the mask at downsample 2 (inferred)
    assert np.array_equal(rasterize(geometry, shape=mask.shape, downsample=2), mask > 0)
    assert Slide.objects.get(name="case2").status == "failed"
    assert not Slide.objects.filter(name="case3").exists()
    # The refused slide left no file in storage: one file per imported slide.
    assert len(storage.files()) == 2


def test_imported_slides_are_queued_for_the_worker_by_default(
    people: dict[str, Any], storage: Storage, synthetic_cohort: Path, monkeypatch: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    sent = checks_sent(monkeypatch)
    with django_capture_on_commit_callbacks(execute=True):
        _import(str(synthetic_cohort / "test_shifted"), project="Own", cohort="Shifted", split="test",
                domain="shifted")
    assert sorted(sent) == sorted(Slide.objects.values_list("pk", flat=True)) and len(sent) == 2
    assert set(Slide.objects.values_list("status", flat=True)) == {"uploaded"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"project": "Nowhere", "cohort": "C", "split": "train"}, "no project called 'Nowhere'"),
        ({"project": "Own", "cohort": "Existing", "split": "train"}, "exists as test / in-domain"),
    ],
)
def test_import_mistakes_are_explained(options: dict[str, str], message: str, people: dict[str, Any],
                                       storage: Storage, synthetic_cohort: Path) -> None:
    Cohort.objects.create(project=people["own"], name="Existing", split="test")
    with pytest.raises(CommandError, match=message):
        _import(str(synthetic_cohort / "train"), **options)


def test_an_empty_folder_is_an_error(people: dict[str, Any], storage: Storage, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="has no slides"):
        _import(str(tmp_path), project="Own", cohort="C", split="train")


def test_the_demo_loader_imports_four_ready_cohorts_once(
    people: dict[str, Any], storage: Storage, synthetic_cohort: Path,
) -> None:
    manifest = synthetic_cohort / "manifest.json"
    made = manifest.stat().st_mtime_ns
    cohorts = services.load_demo_cohorts(people["own"], synthetic_cohort, preset="test", seed=0)
    assert [(c.name, c.split, c.domain) for c in cohorts] == [
        ("Demo train", "train", "in-domain"),
        ("Demo validation", "validation", "in-domain"),
        ("Demo test (in-domain)", "test", "in-domain"),
        ("Demo test (shifted)", "test", "shifted"),
    ]
    assert [c.slides.count() for c in cohorts] == [2, 2, 2, 2]
    assert set(Slide.objects.values_list("status", flat=True)) == {"ready"}
    assert Slide.objects.filter(has_tumor=True).count() == Annotation.objects.count() == 4
    # Again: nothing generated, nothing imported twice.
    out = io.StringIO()
    call_command("load_demo", project="Own", data_dir=synthetic_cohort, preset="test", cohorts_only=True, stdout=out)
    assert manifest.stat().st_mtime_ns == made
    assert Slide.objects.count() == 8 and "8 slides" in out.getvalue()


def test_the_demo_command_needs_the_demo_project(db: Any, storage: Storage, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="create_demo_users"):
        call_command("load_demo", data_dir=tmp_path, preset="test")
