"""The pages in a real browser: OpenSeadragon shows real tile pixels, outlines, the cohort table and uploads."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from sua_portal.slides import services
from sua_portal.slides.models import Cohort, Slide
from tests.conftest import shot
from tests.slides.conftest import Storage

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def demo_cohort(people: dict[str, Any], storage: Storage, synthetic_cohort: Path, testdata: Path) -> Cohort:
    """Two synthetic lymph-node slides (one with metastases and its outlines), boxes.tiff and a failed slide."""
    cohort = Cohort.objects.create(project=people["own"], name="Sentinel nodes", split="test", domain="shifted",
                                   description="Synthetic lymph nodes under a scanner shift.")
    services.import_folder(synthetic_cohort / "test_shifted", cohort, check="sync")
    boxes = services.store_slide(cohort, testdata / "boxes.tiff", filename="boxes.tiff", queue_check=False)
    services.check_slide(boxes.pk)
    broken = services.store_slide(cohort, testdata / "unreadable.svs", filename="unreadable.svs", probe=False,
                                  queue_check=False)
    services.check_slide(broken.pk)
    return cohort


@pytest.mark.webgl  # the drawer real browsers with a GPU use
def test_the_viewer_shows_real_tile_pixels_and_the_tumor_outlines(
    demo_cohort: Cohort, signed_in_page: Any, live_server: Any,
) -> None:
    slide = Slide.objects.get(cohort=demo_cohort, has_tumor=True)
    page = signed_in_page("researcher")  # the project's review is blind: pathologists do not see the ground truth
    tiles: list[tuple[str, int]] = []
    page.on("response", lambda r: tiles.append((r.url, r.status)) if "/dzi_files/" in r.url else None)
    page.goto(f"{live_server.url}/slides/{slide.pk}/")
    page.wait_for_function("document.body.dataset.tiles === 'loaded'", timeout=30_000)
    page.wait_for_function("window.suaViewerState && window.suaViewerState.annotations > 0", timeout=10_000)
    page.wait_for_timeout(700)  # let the zoom animation settle before the picture
    assert tiles and all(status == 200 for _, status in tiles), tiles
    assert page.evaluate("window.suaViewerState.tileErrors") == 0
    rgb = np.asarray(Image.open(io.BytesIO(page.locator("#osd").screenshot())).convert("RGB"))
    pixels = rgb.astype(float)
    # Real tissue: many distinct colours and a spread of intensities, not a blank or uniform canvas.
    # (Colours counted as one 24-bit number each: np.unique over rows of three took seconds.)
    colours = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    assert pixels.std() > 10 and len(np.unique(colours)) > 500
    # The tumor outlines are on the viewer's canvas: the layer says so, and hiding them changes pixels.
    assert page.evaluate("window.suaViewerLayers.sets.get('outlines').n") >= 1
    page.uncheck("#show-truth")
    page.wait_for_timeout(200)
    hidden = np.asarray(Image.open(io.BytesIO(page.locator("#osd").screenshot())).convert("RGB")).astype(float)
    page.check("#show-truth")
    page.wait_for_timeout(200)
    shown = np.asarray(Image.open(io.BytesIO(page.locator("#osd").screenshot())).convert("RGB")).astype(float)
    outline_green = (shown[..., 1] > shown[..., 0] + 60) & (shown[..., 1] > shown[..., 2] + 20)
    assert np.abs(shown - hidden).sum(axis=2).astype(bool).sum() > 200
    assert outline_green.sum() > 100 and outline_green.sum() > 5 * ((hidden[..., 1] > hidden[..., 0] + 60)
                                                                   & (hidden[..., 1] > hidden[..., 2] + 20)).sum()
    assert page.locator("h1.slide-title").inner_text() == slide.name
    assert "2.0000 µm/px" in (page.locator("#slide-meta").text_content() or "")  # in the folded "Slide" details
    assert page.locator("#scalebar .label").inner_text().endswith(("µm", "mm"))
    shot(page, "viewer", full_page=False)
    # Zoomed in on the first metastasis, the outline follows the tissue.
    page.evaluate("""() => {
        const [x, y, width, height] = window.suaViewerLayers.bounds('outlines', 0);
        const vp = window.suaViewer.viewport;
        const rect = vp.imageToViewportRectangle(x - width, y - height, width * 3, height * 3);
        vp.fitBounds(rect, true);
    }""")
    page.wait_for_timeout(300)
    page.wait_for_function("document.body.dataset.tiles === 'loaded' && window.suaViewerState.fullyLoaded",
                           timeout=30_000)
    page.wait_for_timeout(500)
    shot(page, "viewer-zoomed", full_page=False)
    assert all(status == 200 for _, status in tiles)


def test_the_cohort_page_lists_slides_with_thumbnails_status_and_tumor(
    demo_cohort: Cohort, signed_in_page: Any, live_server: Any,
) -> None:
    page = signed_in_page("researcher")
    page.click("nav >> text=Projects")  # a researcher starts on the runs
    link = page.locator(f"a.cohort-link[href='/cohorts/{demo_cohort.pk}/']")
    assert link.inner_text() == "Sentinel nodes"
    shot(page, "home-researcher", full_page=False)
    link.click()
    page.wait_for_url(f"{live_server.url}/cohorts/{demo_cohort.pk}/")
    rows = page.locator("#slides tbody tr")
    assert rows.count() == 4
    page.wait_for_function(
        "Array.from(document.querySelectorAll('#slides img')).every(i => i.complete && i.naturalWidth > 0)",
        timeout=20_000,
    )
    assert page.locator("#slides img").count() == 3  # the failed slide has no thumbnail
    text = page.locator("#slides").inner_text()
    assert "failed" in text and "cannot be decoded" in text and "yes" in text and "no" in text
    assert page.locator("#uploader").count() == 0  # researchers do not upload
    shot(page, "cohort")
    page.locator("#slides tbody tr", has_text="boxes").locator("a").first.click()
    page.wait_for_function("document.body.dataset.tiles === 'loaded'", timeout=30_000)


def test_an_admin_uploads_a_slide_from_the_cohort_page_in_chunks(
    demo_cohort: Cohort, signed_in_page: Any, live_server: Any, testdata: Path,
) -> None:
    page = signed_in_page("admin")
    page.goto(f"{live_server.url}/cohorts/{demo_cohort.pk}/")
    page.set_input_files("#upload-input", [str(testdata / "small.svs"), str(testdata / "boxes.png")])
    page.wait_for_selector("#upload-list li.done", timeout=20_000)
    page.wait_for_selector("#upload-list li.failed", timeout=20_000)
    assert "not accepted as slides" in page.locator("#upload-list li.failed").inner_text()
    shot(page, "upload", full_page=False)
    assert Slide.objects.filter(cohort=demo_cohort, name="small").exists()
    page.wait_for_selector("#slides tbody tr >> text=small", timeout=10_000)  # the page reloads with it
