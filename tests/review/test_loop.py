"""The loop closed on a real run: the reviewed segmentation, the summary with the flags' precision, and
the exports read back by analysis.annotations."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from django.conf import settings
from shapely.geometry import shape

from analysis.annotations import load_tumor_geometry, rasterize, read_annotations, read_asap_xml
from analysis.refine import read_mask_tiff
from sua_portal.ensembles.services import read_heatmap
from sua_portal.runs.models import Region, Run, RunSlide
from tests.review.conftest import REVIEW_RANGE, flagged, give, slides_with_flags

pytestmark = pytest.mark.django_db


def tiff_mask(content: bytes, tmp_path: Path, name: str) -> tuple[np.ndarray, float]:
    path = tmp_path / name
    path.write_bytes(content)
    return read_mask_tiff(path)


def test_the_reviewed_segmentation_is_the_original_positives_plus_the_regions_confirmed_as_tumor(
    review_run: Run, people: dict[str, Any], api_for: Callable[[Any], Any], second_pathologist: Any, tmp_path: Path,
) -> None:
    run, pathologist = review_run, api_for(people["pathologist"])
    row = slides_with_flags(run)[0]
    regions = flagged(run, slide=row)
    confirmed, rejected = regions[::2], regions[1::2]
    for region in confirmed:
        give(pathologist, region.pk, "tumor")
    for region in rejected:
        give(pathologist, region.pk, "not_tumor")
    url = f"/api/review/runs/{run.pk}/reviewed/"
    answer = pathologist.get(url, {"slide": row.slide_id})
    assert answer.status_code == 200 and answer["Content-Type"] == "image/tiff"
    assert answer["Content-Disposition"] == f'attachment; filename="{row.name}-reviewed.tiff"'
    mask, downsample = tiff_mask(answer.content, tmp_path, "reviewed.tiff")
    # The original positives of the review range on the slide's heatmap, plus the confirmed regions' pixels.
    assert row.heatmap is not None
    s = read_heatmap(row.heatmap, "segmentation")
    upper = run.range_set.get(index=REVIEW_RANGE).upper
    original = s >= upper
    added = rasterize(shapely.union_all([shape(r.geometry) for r in confirmed]), shape=s.shape, downsample=downsample)
    left_out = rasterize(shapely.union_all([shape(r.geometry) for r in rejected]), shape=s.shape,
                         downsample=downsample)
    assert downsample == row.downsample and mask.shape == s.shape
    assert np.array_equal(mask, original | added)
    assert added.any() and not (mask & left_out).any()
    # As polygons (level-0 pixels) they give the same mask back.
    polygons = pathologist.get(url, {"slide": row.slide_id, "type": "geojson"})
    assert polygons.status_code == 200 and polygons["Content-Type"] == "application/geo+json"
    (tmp_path / "reviewed.geojson").write_bytes(polygons.content)
    outline = load_tumor_geometry(tmp_path / "reviewed.geojson")
    assert np.array_equal(rasterize(outline, shape=s.shape, downsample=downsample), mask)
    # The viewer's layer: one pixel per heatmap cell, opaque where the mask is.
    png = pathologist.get(url, {"slide": row.slide_id, "type": "png"})
    assert png.status_code == 200 and png["Content-Type"] == "image/png"
    from PIL import Image

    layer = np.asarray(Image.open(io.BytesIO(png.content)))
    assert layer.shape == (*s.shape, 4) and np.array_equal(layer[..., 3] > 0, mask)
    # Unchanged verdicts: 304; a verdict changed: a new mask.
    again = pathologist.get(url, {"slide": row.slide_id}, HTTP_IF_NONE_MATCH=answer["ETag"])
    assert again.status_code == 304
    for region in rejected:
        give(pathologist, region.pk, "tumor")
    changed = pathologist.get(url, {"slide": row.slide_id}, HTTP_IF_NONE_MATCH=answer["ETag"])
    assert changed.status_code == 200 and changed["ETag"] != answer["ETag"]
    # Every flag confirmed: the run's own SUA-refined mask of the range, exactly.
    everything, _ = tiff_mask(changed.content, tmp_path, "all.tiff")
    refined = pathologist.get(f"/api/runs/{run.pk}/mask/", {"slide": row.slide_id, "range": REVIEW_RANGE,
                                                            "method": "sua"})
    sua, _ = tiff_mask(b"".join(refined.streaming_content), tmp_path, "sua.tiff")
    assert np.array_equal(everything, sua)
    # Blind: another reviewer's segmentation holds only their own confirmations (none: the original).
    theirs, _ = tiff_mask(api_for(second_pathologist).get(url, {"slide": row.slide_id}).content, tmp_path, "b.tiff")
    assert np.array_equal(theirs, original)
    # Bad input.
    assert pathologist.get(url, {"slide": row.slide_id, "type": "svg"}).status_code == 400
    assert pathologist.get(url, {"slide": 10**9}).status_code == 404
    # Heatmaps deleted since the run: 410 saying so, rather than a wrong mask.
    RunSlide.objects.filter(pk=row.pk).update(heatmap=None)
    gone = pathologist.get(url, {"slide": row.slide_id, "type": "png"})
    assert gone.status_code == 410 and "were deleted" in gone.json()["detail"]


def test_the_summary_counts_verdicts_per_cohort_and_sets_the_flags_precision_beside_the_calibrations(
    review_run: Run, people: dict[str, Any], api_for: Callable[[Any], Any], second_pathologist: Any,
) -> None:
    run, pathologist = review_run, api_for(people["pathologist"])
    regions = flagged(run)
    # A reviewer who calls a region tumor exactly when its ground truth says it is a false negative,
    # unsure on the last region, and leaves a few without a verdict.
    judged, unreviewed = regions[:-3], regions[-3:]
    for region in judged[:-1]:
        give(pathologist, region.pk, "tumor" if region.is_false_negative else "not_tumor")
    give(pathologist, judged[-1].pk, "unsure")
    summary = api_for(people["researcher"]).get(f"/api/review/runs/{run.pk}/summary/").json()
    total = summary["total"]
    confirmed = sum(bool(r.is_false_negative) for r in judged[:-1])
    rejected = len(judged) - 1 - confirmed
    assert confirmed and rejected, "the synthetic run's flags should hold true and false positives"
    assert total == {"flagged": len(regions), "reviewed": len(judged), "confirmed": confirmed, "rejected": rejected,
                     "unsure": 1, "disputed": 0, "settled": 0, "precision": pytest.approx(confirmed / len(judged[:-1]))}
    review_range = run.range_set.get(index=REVIEW_RANGE)
    assert summary["expected_precision"] == pytest.approx(review_range.sua_validation["precision"])
    assert summary["range"] == {"index": REVIEW_RANGE, "lower": review_range.lower, "upper": review_range.upper,
                                "sua_threshold": review_range.sua_threshold}
    # Per cohort: every cohort of the run, and together the total.
    cohorts = {c["cohort"]: c for c in summary["cohorts"]}
    assert set(cohorts) == set(run.slide_set.values_list("cohort_name", flat=True))
    for key in ("flagged", "reviewed", "confirmed", "rejected", "unsure"):
        assert sum(c[key] for c in cohorts.values()) == total[key]
    for name, entry in cohorts.items():
        mine = [r for r in judged[:-1] if r.run_slide.cohort_name == name]
        assert entry["flagged"] == sum(r.run_slide.cohort_name == name for r in regions)
        assert entry["confirmed"] == sum(bool(r.is_false_negative) for r in mine)
        assert len(unreviewed) == total["flagged"] - total["reviewed"]
    # A second reviewer who says the opposite: researchers see the disagreements, each reviewer their own.
    for region in judged[:-1]:
        give(api_for(second_pathologist), region.pk, "not_tumor" if region.is_false_negative else "tumor")
    both = api_for(people["researcher"]).get(f"/api/review/runs/{run.pk}/summary/").json()["total"]
    assert (both["disputed"], both["confirmed"], both["rejected"], both["precision"]) == (len(judged) - 1, 0, 0, None)
    own = pathologist.get(f"/api/review/runs/{run.pk}/summary/").json()
    assert own["view"] == "own" and own["total"] == total


def test_exports_with_verdicts_read_back_by_analysis_annotations(
    review_run: Run, people: dict[str, Any], api_for: Callable[[Any], Any], tmp_path: Path,
) -> None:
    run, pathologist = review_run, api_for(people["pathologist"])
    row = slides_with_flags(run)[0]
    regions = flagged(run, slide=row)
    verdicts = {regions[0].pk: "tumor", regions[1].pk: "not_tumor", regions[2].pk: "unsure"}
    for region in regions[3:-1]:
        verdicts[region.pk] = "tumor"
    for region_id, verdict in verdicts.items():
        give(pathologist, region_id, verdict, f"note {region_id}")
    names = {"tumor": "Tumor", "not_tumor": "Not tumor", "unsure": "Unsure"}
    expected = {f"Region {r.label}": names.get(verdicts.get(r.pk, ""), "Unreviewed") for r in regions}
    assert "Unreviewed" in expected.values()
    geometry = {f"Region {r.label}": shape(r.geometry) for r in regions}
    tumor = shapely.union_all([shape(r.geometry) for r in regions if verdicts.get(r.pk) == "tumor"])
    url = f"/api/review/runs/{run.pk}/export/"

    def download(kind: str, suffix: str, **params: Any) -> Path:
        answer = pathologist.get(url, {"type": kind, **params})
        assert answer.status_code == 200, answer.content
        assert answer["Content-Disposition"].endswith(f'.{suffix}"')
        path = tmp_path / f"export.{suffix}"
        path.write_bytes(answer.content)
        return path

    # GeoJSON as QuPath imports it: a FeatureCollection, level-0 pixels, a class with name and colour.
    path = download("geojson", "geojson", slide=row.slide_id)
    document = json.loads(path.read_text())
    assert document["type"] == "FeatureCollection" and len(document["features"]) == len(regions)
    colors = {names.get(k, k.capitalize()): list(v) for k, v in settings.REVIEW_VERDICT_COLORS.items()}
    for feature in document["features"]:
        properties = feature["properties"]
        assert properties["objectType"] == "annotation"
        assert properties["classification"] == {"name": expected[properties["name"]],
                                                "color": colors[expected[properties["name"]]]}
        assert set(properties["measurements"]) >= {"score"}
    back = read_annotations(path)
    assert {a.name: a.label for a in back} == expected
    assert all(a.geometry.equals_exact(geometry[a.name], 0) for a in back)
    assert load_tumor_geometry(path).equals(tumor)
    # ASAP XML: a group per verdict; holes as the exclusion group, named after their region.
    path = download("xml", "xml", slide=row.slide_id)
    annotations = read_asap_xml(path)
    assert {a.name: a.label for a in annotations if a.label != "_2"} == expected
    for name, outline in geometry.items():
        shell = next(a.geometry for a in annotations if a.name == name)
        holes = [a.geometry for a in annotations if a.name.startswith(f"{name} hole ")]
        assert shell.difference(shapely.union_all(holes)).equals(outline) if holes else shell.equals(outline)
    assert load_tumor_geometry(path).equals(tumor)
    # CSV: the run's flagged regions on every slide, WKT outlines read back exactly.
    path = download("csv", "csv")
    every = flagged(run)
    back = read_annotations(path)
    assert len(back) == len(every)
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    by_id = {r.pk: r for r in every}
    for line, annotation in zip(rows, back, strict=True):
        region = by_id[int(line["region"])]
        assert line["slide"] == region.run_slide.name and float(line["score"]) == region.score
        assert annotation.geometry.equals_exact(shape(region.geometry), 0)
        assert line["verdict"] == verdicts.get(region.pk, "unreviewed")
        assert line["comment"] == (f"note {region.pk}" if region.pk in verdicts else "")
    # Bad input: an unknown type, or a per-image format without the image.
    assert pathologist.get(url, {"type": "pdf"}).json() == {"type": ["'pdf' is not one of geojson, xml, csv."]}
    assert list(pathologist.get(url, {"type": "csv", "slides": 1}).json()) == ["slides"]  # a misspelt filter
    assert "slide" in pathologist.get(url, {"type": "xml"}).json()
    assert Region.objects.filter(run=run).count() > len(every)  # only the flagged ones were exported
