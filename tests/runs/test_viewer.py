"""The viewer and the cohort page show the review run's flags, naming the run and the range."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from PIL import Image

from sua_portal.runs import services
from sua_portal.runs.models import Region, Run, RunSlide
from tests.conftest import shot
from tests.runs.conftest import carry_through


@pytest.fixture
def flagging_run(start: Callable[..., Any]) -> Run:
    """A run whose review range is the one where the tests' tiny ensemble flags regions (0.75 to 0.95)."""
    run: Run = carry_through(start(review_range=2))
    return run


def _busiest(run: Run) -> RunSlide:
    """The slide with the most flagged regions in the run's review range."""
    counts = services.flagged_per_slide(run, run.slide_set.values_list("slide", flat=True))
    assert counts, "the run flagged nothing"
    return RunSlide.objects.get(run=run, slide=max(counts, key=lambda pk: counts[pk]))


def _osd_pixels(page: Any) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.locator("#osd").screenshot())).convert("RGB")).astype(float)


def _changed_beyond_a_pixel(before: np.ndarray, after: np.ndarray) -> int:
    """Pixels of ``after`` (H, W, 3) unlike every pixel of ``before`` within one pixel of the same place.

    A view panned away and back comes to rest within a fraction of a pixel of where it was, so edges
    land one pixel over; a layer drawn in the wrong place, stretched or not at all changes far more.
    """
    h, w = before.shape[:2]
    core = after[1:-1, 1:-1]
    nearest = np.full(core.shape[:2], np.inf)
    for dy in range(3):
        for dx in range(3):
            nearest = np.minimum(nearest, np.abs(before[dy:dy + h - 2, dx:dx + w - 2] - core).sum(axis=2))
    return int((nearest > 24).sum())


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_pathologist_sees_the_review_runs_regions_and_flags_and_goes_to_each(
    flagging_run: Run, signed_in_page: Any, live_server: Any,
) -> None:
    row = _busiest(flagging_run)
    review = services.review_range(flagging_run)
    in_range = Region.objects.filter(run_slide=row, run_range=review)
    flagged = sorted(in_range.filter(flagged=True).values_list("score", flat=True), reverse=True)
    page = signed_in_page("pathologist")
    page.goto(f"{live_server.url}/slides/{row.slide_id}/")
    page.wait_for_function("window.suaViewerState && window.suaViewerState.overlay === 'entropy'", timeout=30_000)
    page.wait_for_function(f"window.suaViewerState.flaggedShown === {len(flagged)}", timeout=10_000)
    assert page.locator("#npr-run").text_content() == flagging_run.name
    assert review is not None and review.label.split()[0] in page.locator("#npr-range option:checked").inner_text()
    # Every region of the range is on the canvas, coloured by score; the list holds the flagged ones.
    assert page.evaluate("window.suaViewerState.regionsLoaded") == in_range.count()
    assert page.evaluate("window.suaViewerLayers.sets.get('regions').n") == in_range.count()
    # On the review run the review panel (queue.js) lists them, in place of the plain list.
    page.wait_for_function("window.suaReview && window.suaReview.loaded", timeout=10_000)
    assert page.locator("#npr-list").is_hidden()
    scores = [float(t.split()[1]) for t in page.locator("#queue-list li .score").all_inner_texts()]
    assert scores == pytest.approx(flagged, abs=1e-3)
    # The legend has numbers: the scale's ends and the threshold, marked.
    assert review.sua_threshold is not None
    assert f"{review.sua_threshold:.3f}".rstrip("0") in page.locator("#score-legend .tau").inner_text()
    assert page.locator("#heatmap-legend .ticks span").count() == 5
    assert "entropy" in page.locator("#heatmap-legend").inner_text()
    # Heatmap tiles came from the layer's tile pyramid, coloured on the server.
    page.wait_for_function("window.suaViewer.world.getItemAt(1) && window.suaViewer.world.getItemAt(1).getFullyLoaded()",
                           timeout=20_000)
    page.wait_for_timeout(300)
    shot(page, "viewer-pathologist", full_page=False)
    # Toggling the regions changes pixels.
    with_regions = _osd_pixels(page)
    page.uncheck("#show-regions")
    page.wait_for_timeout(200)
    assert np.abs(_osd_pixels(page) - with_regions).sum(axis=2).astype(bool).sum() > 50
    page.check("#show-regions")

    before = page.evaluate("window.suaViewer.viewport.getHomeZoom()")
    page.locator("#queue-list li").first.click()
    page.wait_for_timeout(1500)
    assert page.evaluate("window.suaViewer.viewport.getZoom()") > before * 1.5
    top = in_range.filter(flagged=True).order_by("-score", "label").first()
    assert top is not None and page.evaluate("window.suaViewerState.activeRegion") == top.pk
    assert page.locator("#queue-list li.current").count() == 1

    # The run's SUA-refined mask of this range over the heatmap, as a tile layer, then none.
    page.select_option("#refined-mask", "sua")
    page.wait_for_function("window.suaViewerState.mask === 'sua'", timeout=10_000)
    assert page.evaluate("window.suaViewer.world.getItemCount()") == 3
    page.select_option("#refined-mask", "")
    page.wait_for_function("window.suaViewer.world.getItemCount() === 2", timeout=10_000)

    # Another overlay, then none.
    page.select_option("#heatmap-kind", "segmentation")
    page.wait_for_function("window.suaViewerState.overlay === 'segmentation'", timeout=10_000)
    assert "Tumor probability" in page.locator("#heatmap-legend .legend-title").inner_text()
    assert page.evaluate("window.suaViewer.world.getItemCount()") == 2
    page.select_option("#heatmap-kind", "")
    page.wait_for_function("window.suaViewer.world.getItemCount() === 1", timeout=10_000)
    # Blind review (the default): no ground truth for a pathologist.
    assert page.locator("#show-truth").count() == 0 and page.locator("#blind-note").count() == 1
    assert page.evaluate("window.suaViewerState.annotations") == 0


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_researcher_sees_the_ground_truth_beside_the_regions(
    flagging_run: Run, signed_in_page: Any, live_server: Any,
) -> None:
    row = _busiest(flagging_run)
    page = signed_in_page("researcher")
    page.goto(f"{live_server.url}/slides/{row.slide_id}/?run={flagging_run.pk}")
    page.wait_for_function("window.suaViewerState && window.suaViewerState.regionsLoaded > 0", timeout=30_000)
    page.wait_for_function("window.suaViewer.world.getItemAt(1) && window.suaViewer.world.getItemAt(1).getFullyLoaded()",
                           timeout=20_000)
    assert page.locator("#show-truth").is_checked()
    page.wait_for_function("window.suaViewerState.annotations > 0", timeout=10_000)
    page.wait_for_timeout(300)
    shot(page, "viewer-researcher", full_page=False)
    # Zoom presets in objective magnification, as the slide allows (2 µm/px: a 5x scan, so 2x and 5x).
    times = "\u00d7"  # the buttons' multiplication sign
    assert page.locator("#zoom-presets button").all_inner_texts() == [f"2{times}", f"5{times}"]
    page.locator("#zoom-presets button", has_text=f"2{times}").click()
    page.wait_for_timeout(1200)
    assert page.locator("#magnification").inner_text() == f"2.0{times}"
    page.locator("#zoom-fit").click()
    page.wait_for_timeout(1200)
    shown = _osd_pixels(page)
    page.uncheck("#show-truth")
    page.wait_for_timeout(200)
    assert np.abs(_osd_pixels(page) - shown).sum(axis=2).astype(bool).sum() > 50


@pytest.mark.django_db
def test_the_cohort_page_counts_the_review_runs_flags_and_names_run_and_range(
    flagging_run: Run, people: dict[str, Any], demo_cohorts: dict[str, Any],
) -> None:
    from django.test import Client

    row = _busiest(flagging_run)
    review = services.review_range(flagging_run)
    count = Region.objects.filter(run_slide=row, run_range=review, flagged=True).count()
    client = Client()
    client.force_login(people["pathologist"])
    assert row.slide is not None
    page = client.get(f"/cohorts/{row.slide.cohort_id}/").content.decode()
    head = page[page.index("<th>Review"):]
    assert flagging_run.name in head[: head.index("</th>")] and review is not None
    assert review.label in head[: head.index("</th>")]
    line = page[page.index(f'data-slide="{row.slide_id}"'):]
    assert f"{count} flagged" in line[: line.index("</tr>")]
    assert f"?run={flagging_run.pk}" in line[: line.index("</tr>")]
    # The training cohort is in no run: its slides say so.
    train = client.get(f"/cohorts/{demo_cohorts['train'].pk}/").content.decode()
    assert "no heatmaps" in train


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_while_the_view_moves_the_regions_move_with_it_and_at_rest_they_are_drawn_afresh(
    checked_slide: Any, people: dict[str, Any], signed_in_page: Any, live_server: Any,
) -> None:
    from django.core.management import call_command

    call_command("make_region_run", slide=checked_slide.pk, regions=3000, review=True, stdout=io.StringIO())
    run = Run.objects.get(project=people["own"], is_review_run=True)
    page = signed_in_page("pathologist")
    page.goto(f"{live_server.url}/slides/{checked_slide.pk}/?run={run.pk}")
    page.wait_for_function("window.suaViewerLayers && window.suaViewerLayers.sets.has('regions')"
                           " && window.suaViewer.world.getItemAt(0).getFullyLoaded()", timeout=30_000)
    # Closer in, where the regions are drawn one by one (not from the set's raster).
    page.evaluate("window.suaViewer.viewport.zoomBy(3, undefined, true)")
    page.wait_for_function("window.suaViewer.world.getItemAt(0).getFullyLoaded()", timeout=20_000)
    page.wait_for_timeout(300)
    assert page.evaluate("window.suaViewerLayers.drawn.regions.mode") == "vector"
    before = _osd_pixels(page)
    # A pan, animated: frames drawn while it moves put the snapshot on screen; no shape is drawn one by one.
    moved = page.evaluate("""() => new Promise((done) => {
      const layers = window.suaViewerLayers, viewer = window.suaViewer;
      let drawnWhileMoving = 0, frames = 0;
      const original = layers.drawSets.bind(layers);
      layers.drawSets = (...args) => {
        if (!viewer.viewport.getBounds(true).equals(viewer.viewport.getBounds())) drawnWhileMoving += 1;
        return original(...args);
      };
      const count = () => { frames += 1; };
      viewer.addHandler("update-viewport", count);
      viewer.addOnceHandler("animation-finish", () => {
        viewer.removeHandler("update-viewport", count);
        layers.drawSets = original;
        done({ drawnWhileMoving, frames });
      });
      viewer.viewport.panBy(new OpenSeadragon.Point(0.03, 0.02));
    })""")
    assert moved["frames"] >= 3 and moved["drawnWhileMoving"] == 0, moved
    # Back where it was, at rest: drawn afresh, the same picture as before the pan.
    page.evaluate("window.suaViewer.viewport.panBy(new OpenSeadragon.Point(-0.03, -0.02), true)")
    page.wait_for_function("window.suaViewer.world.getItemAt(0).getFullyLoaded()", timeout=20_000)
    page.wait_for_timeout(300)
    after = _osd_pixels(page)
    assert _changed_beyond_a_pixel(before, after) < 0.001 * before.shape[0] * before.shape[1]
