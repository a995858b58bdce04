"""The viewer's layers API (sua_portal/runs/layers.py): a slide's regions in one answer, heatmaps and refined
masks as coloured tile pyramids; the measurement fixture that makes a run of many regions; blind review."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from PIL import Image

from analysis.io import HEATMAP_RANGES, heatmap_rgba
from analysis.refine import read_mask_tiff
from sua_portal.ensembles.services import read_heatmap
from sua_portal.runs import services
from sua_portal.runs.models import Region, Run, RunSlide
from sua_portal.slides.models import Annotation, Slide


def _png(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)))


@pytest.mark.django_db
def test_a_slides_regions_come_in_one_answer_of_flat_arrays_highest_score_first(
    checked_slide: Slide, people: dict[str, Any], api_for: Callable[[Any], Any],
) -> None:
    call_command("make_region_run", slide=checked_slide.pk, regions=3000, stdout=io.StringIO())
    run = Run.objects.get(project=people["own"])
    assert run.name == "Synthetic 3,000 regions" and run.status == Run.Status.DONE
    client = api_for(people["pathologist"])
    answer = client.get(f"/api/runs/{run.pk}/layers/{checked_slide.pk}/")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    regions = body["regions"]
    rows = list(Region.objects.filter(run=run).order_by("-score", "label"))
    assert regions["count"] == len(rows) == 3000
    assert regions["id"] == [r.pk for r in rows]
    assert regions["score"] == [r.score for r in rows]
    assert sum(regions["flagged"]) == sum(r.flagged for r in rows) > 0
    threshold = run.range_set.get(index=0).sua_threshold
    assert body["range"]["threshold"] == threshold
    assert all((s >= threshold) == bool(f) for s, f in zip(regions["score"], regions["flagged"], strict=True))
    assert body["scale"]["min"] <= min(regions["score"]) and body["scale"]["max"] >= max(regions["score"])
    # Each region's outline is its stored polygon (the closing point left out), rings and points by offset.
    for k in (0, 1234, 2999):
        ring = rows[k].geometry["coordinates"][0][:-1]
        first = regions["points"][regions["rings"][k]]
        end = regions["points"][regions["rings"][k + 1]]
        flat = regions["coords"][2 * first:2 * end]
        assert flat == [round(v) for point in ring for v in point]
    assert body["positives"] is None and body["masks"] == {}  # a made-up run has no heatmap behind it
    # A run never changes: the client's copy is current.
    again = client.get(f"/api/runs/{run.pk}/layers/{checked_slide.pk}/", HTTP_IF_NONE_MATCH=answer["ETag"])
    assert again.status_code == 304


@pytest.mark.django_db
def test_the_region_layer_refuses_what_it_cannot_answer(
    checked_slide: Slide, people: dict[str, Any], api_for: Callable[[Any], Any],
) -> None:
    call_command("make_region_run", slide=checked_slide.pk, regions=5, stdout=io.StringIO())
    run = Run.objects.get(project=people["own"])
    own = api_for(people["researcher"])
    assert own.get(f"/api/runs/{run.pk}/layers/{checked_slide.pk}/?range=3").json() == {
        "range": ["range must be between 0 and 0, not 3."]}
    assert own.get(f"/api/runs/{run.pk}/layers/{checked_slide.pk + 999}/").status_code == 404
    assert own.get(f"/api/runs/{run.pk}/layers/{checked_slide.pk}/masks/0/sua/").status_code == 404
    assert own.get(f"/api/runs/{run.pk}/layers/{checked_slide.pk}/masks/0/other/").status_code == 404
    # Another project's run is not there for the caller; nobody signed in gets nothing.
    assert api_for(people["outsider"]).get(f"/api/runs/{run.pk}/layers/{checked_slide.pk}/").status_code == 404
    assert api_for(None).get(f"/api/runs/{run.pk}/layers/{checked_slide.pk}/").status_code in (401, 403)


@pytest.mark.django_db
def test_the_measurement_fixture_says_what_it_is_and_refuses_bad_input(checked_slide: Slide) -> None:
    from sua_portal.runs.management.commands.make_region_run import Command

    assert "MEASUREMENT FIXTURE" in Command.help
    with pytest.raises(CommandError, match="No slide"):
        call_command("make_region_run", slide=checked_slide.pk + 999, stdout=io.StringIO())
    with pytest.raises(CommandError, match="--regions"):
        call_command("make_region_run", slide=checked_slide.pk, regions=-1, stdout=io.StringIO())
    out = io.StringIO()
    call_command("make_region_run", slide=checked_slide.pk, regions=200, review=True, stdout=out)
    run = Run.objects.get(is_review_run=True)
    assert f"run {run.pk}: 200 regions" in out.getvalue()
    regions = Region.objects.filter(run=run)
    assert regions.count() == 200 and regions.filter(flagged=True).count() == 40
    # Plausible outlines: inside the slide, a few heatmap cells across, valid rings.
    assert checked_slide.width is not None
    assert all(r.x >= 0 and r.x + r.width <= checked_slide.width and 0 < r.width <= 6 * 16 for r in regions)
    assert services.review_run(checked_slide.cohort.project) == run


@pytest.mark.django_db
def test_heatmaps_and_refined_masks_are_coloured_tile_pyramids(
    finished_run: Run, people: dict[str, Any], api_for: Callable[[Any], Any],
) -> None:
    row = RunSlide.objects.filter(run=finished_run, heatmap__isnull=False).order_by("name").first()
    assert row is not None and row.heatmap is not None
    client = api_for(people["pathologist"])
    info = client.get(f"/api/heatmaps/{row.heatmap.pk}/layers/entropy/")
    assert info.status_code == 200, info.content
    pyramid = info.json()
    values = read_heatmap(row.heatmap, "entropy")
    assert (pyramid["height"], pyramid["width"]) == values.shape
    assert pyramid["max_level"] == math.ceil(math.log2(max(values.shape)))
    assert pyramid["downsample"] == row.heatmap.downsample
    legend = pyramid["legend"]
    assert legend["max"] == pytest.approx(HEATMAP_RANGES["entropy"]) and len(legend["ticks"]) == 5
    assert "entropy" in legend["method"] and legend["unit"] == "nats"
    assert legend["stops"][0][1][3] == 0  # no uncertainty: clear
    # The finest level's first tile is the heatmap coloured as analysis.io colours it, transparent off tissue.
    top = pyramid["tiles"].format(level=pyramid["max_level"], col=0, row=0)
    tile = client.get(top)
    assert tile.status_code == 200 and tile["Content-Type"] == "image/png"
    pixels = _png(tile.content)
    expected = heatmap_rgba(values[:256, :256], "entropy")
    assert pixels.shape == expected.shape and np.array_equal(pixels, expected)
    assert (pixels[..., 3][values[:256, :256] == 0] == 0).all()
    # Level 0 is one pixel; outside the pyramid is a 404; a tile is cached by its ETag.
    assert _png(client.get(pyramid["tiles"].format(level=0, col=0, row=0)).content).shape[:2] == (1, 1)
    assert client.get(pyramid["tiles"].format(level=pyramid["max_level"], col=99, row=0)).status_code == 404
    assert client.get(pyramid["tiles"].format(level=pyramid["max_level"] + 1, col=0, row=0)).status_code == 404
    assert client.get(top, HTTP_IF_NONE_MATCH=tile["ETag"]).status_code == 304
    assert client.get(f"/api/heatmaps/{row.heatmap.pk}/layers/nonsense/").status_code == 404
    assert api_for(people["outsider"]).get(top).status_code == 404

    # The region layer names the refined masks of its range; each is a tile pyramid too.
    layer = client.get(f"/api/runs/{finished_run.pk}/layers/{row.slide_id}/?range=0").json()
    assert set(layer["masks"]) == {"sua", "baseline"}
    mask_info = client.get(layer["masks"]["sua"]).json()
    mask, _ = read_mask_tiff(default_storage.path(row.masks[0]["sua"]))
    assert (mask_info["height"], mask_info["width"]) == mask.shape
    mask_tile = _png(client.get(mask_info["tiles"].format(level=mask_info["max_level"], col=0, row=0)).content)
    assert np.array_equal(mask_tile[..., 3] > 0, mask[:256, :256])
    # The positive prediction's outline: segmentation at or above each range's upper bound (one shape, or none).
    segmentation = read_heatmap(row.heatmap, "segmentation")
    for run_range in finished_run.range_set.all():
        outline = client.get(f"/api/runs/{finished_run.pk}/layers/{row.slide_id}/?range={run_range.index}").json()
        positives = outline["positives"]
        if (segmentation >= run_range.upper).any():
            coords = np.asarray(positives["coords"]).reshape(-1, 2)
            assert positives["count"] == 1 and len(coords) >= 3
            assert (coords >= 0).all() and (coords <= np.array(segmentation.shape[::-1]) * row.downsample).all()
        else:
            assert positives["count"] == 0 and positives["coords"] == []


def test_outlines_flatten_to_offsets_with_holes_kept() -> None:
    from shapely.geometry import MultiPolygon, Polygon, mapping

    from sua_portal.runs.layers import _Flat

    ring = Polygon([(0, 0), (40, 0), (40, 40), (0, 40)], holes=[[(10, 10), (20, 10), (20, 20)]])
    flat = _Flat()
    flat.add(mapping(MultiPolygon([ring, Polygon([(50, 50), (60, 50), (60, 60)])])))
    flat.add(mapping(Polygon([(1, 1), (2, 1), (2, 2)])))
    encoded = flat.to_json()
    assert encoded["count"] == 2
    assert encoded["rings"] == [0, 3, 4]  # shape 0: outer ring, its hole, the second polygon; shape 1: one ring
    assert encoded["points"] == [0, 4, 7, 10, 13]
    assert encoded["coords"][8:14] == [10, 10, 20, 10, 20, 20]


@pytest.mark.django_db
def test_blind_review_hides_the_ground_truth_from_pathologists_only(
    checked_slide: Slide, people: dict[str, Any], api_for: Callable[[Any], Any],
) -> None:
    from django.test import Client

    Annotation.objects.create(slide=checked_slide, source=Annotation.Source.GROUND_TRUTH,
                              geometry={"type": "MultiPolygon", "coordinates": [[[[0, 0], [9, 0], [9, 9], [0, 0]]]]})
    Annotation.objects.create(slide=checked_slide, source=Annotation.Source.REVIEWER, author=people["pathologist"],
                              geometry={"type": "MultiPolygon", "coordinates": [[[[5, 5], [9, 5], [9, 9], [5, 5]]]]})
    Slide.objects.filter(pk=checked_slide.pk).update(has_tumor=True)
    project = checked_slide.cohort.project
    assert project.blind_review  # the default
    url = f"/api/slides/{checked_slide.pk}/annotations/"

    def sources(role: str) -> list[str]:
        return sorted(a["source"] for a in api_for(people[role]).get(url).json())

    def page(role: str) -> str:
        client = Client()
        client.force_login(people[role])
        return client.get(f"/slides/{checked_slide.pk}/").content.decode()

    assert sources("pathologist") == ["reviewer"]
    assert sources("researcher") == sources("admin") == ["ground_truth", "reviewer"]
    assert 'id="show-truth"' not in page("pathologist") and "badge-tumor" not in page("pathologist")
    assert "Blind review" in page("pathologist")
    assert 'id="show-truth"' in page("researcher") and "badge-tumor" in page("researcher")
    # An admin opens the review: pathologists see the ground truth too.
    answer = api_for(people["admin"]).patch(f"/api/projects/{project.pk}/", {"blind_review": False}, format="json")
    assert answer.status_code == 200 and answer.json()["blind_review"] is False
    assert sources("pathologist") == ["ground_truth", "reviewer"]
    assert 'id="show-truth"' in page("pathologist")
