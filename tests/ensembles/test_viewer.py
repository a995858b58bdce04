"""Heatmaps and flagged regions over the slide: the image endpoint, and the viewer in a real browser."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from PIL import Image

from analysis.io import HEATMAP_RANGES
from sua_portal.ensembles import services
from sua_portal.ensembles.models import NegativePredictionRegion, SlideHeatmap
from sua_portal.slides.models import Slide


@pytest.mark.django_db
def test_the_heatmap_image_is_a_transparent_png_of_the_heatmap_grid(
    computed: SlideHeatmap, people: dict[str, Any], api_for: Callable[[Any], Any],
) -> None:
    client = api_for(people["pathologist"])
    url = f"/api/heatmaps/{computed.pk}/image/"
    for kind in services.HEATMAP_KINDS:
        response = client.get(url, {"kind": kind})
        assert response.status_code == 200 and response["Content-Type"] == "image/png"
        assert "private" in response["Cache-Control"]
        image = np.asarray(Image.open(io.BytesIO(response.content)))
        values = services.read_heatmap(computed, kind)
        assert image.shape == (*values.shape, 4)
        # Clear where the heatmap is 0 (glass, certain healthy tissue), coloured where it is not.
        alpha, top = image[..., 3], HEATMAP_RANGES[kind]
        assert (values > 0.01 * top).any() and (values == 0).any()
        assert (alpha[values == 0] == 0).all() and (alpha[values > 0.01 * top] > 0).all()
    etag = client.get(url, {"kind": "entropy"})["ETag"]
    for wanted in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        assert client.get(url, {"kind": "entropy"}, HTTP_IF_NONE_MATCH=wanted).status_code == 304, wanted
    assert client.get(url, {"kind": "variance"}, HTTP_IF_NONE_MATCH=etag).status_code == 200
    assert client.get(url, {"kind": "ink"}).status_code == 400
    assert api_for(people["outsider"]).get(url).status_code == 404
    SlideHeatmap.objects.filter(pk=computed.pk).update(status="running")
    missing = client.get(url)
    assert missing.status_code == 404 and "not computed yet" in missing.json()["detail"]


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_pathologist_sees_the_uncertainty_and_goes_to_each_flagged_region(
    computed: SlideHeatmap, signed_in_page: Any, live_server: Any,
) -> None:
    page = signed_in_page("pathologist")
    page.goto(f"{live_server.url}/slides/{computed.slide_id}/")
    page.wait_for_function("window.suaViewerState && window.suaViewerState.overlay === 'entropy'", timeout=30_000)
    page.wait_for_function("window.suaViewerState.flaggedShown === 3", timeout=10_000)
    assert page.locator("#heatmap-ensemble option").all_inner_texts() == [computed.ensemble.name]
    assert page.locator("svg.annotation-layer rect.npr").count() == 3
    # Highest score first, as the reviewer works through them.
    scores = [float(t.split()[1]) for t in page.locator("#npr-list li .score").all_inner_texts()]
    flagged = sorted(NegativePredictionRegion.objects.filter(heatmap=computed, flagged=True)
                     .values_list("score", flat=True), reverse=True)
    assert scores == pytest.approx(flagged, abs=1e-3)

    before = page.evaluate("window.suaViewer.viewport.getZoom()")
    page.locator("#npr-list li").first.click()
    page.wait_for_timeout(1500)
    assert page.evaluate("window.suaViewer.viewport.getZoom()") > before * 1.5
    assert page.locator("svg.annotation-layer rect.npr.active").count() == 1

    # Another overlay, then none.
    page.select_option("#heatmap-kind", "segmentation")
    page.wait_for_function("window.suaViewerState.overlay === 'segmentation'", timeout=10_000)
    assert page.evaluate("window.suaViewer.world.getItemCount()") == 2
    page.select_option("#heatmap-kind", "")
    page.wait_for_function("window.suaViewer.world.getItemCount() === 1", timeout=10_000)


@pytest.mark.django_db
def test_the_cohort_page_says_which_slides_have_regions_to_review(
    computed: SlideHeatmap, people: dict[str, Any], demo_cohorts: dict[str, Any],
) -> None:
    from django.test import Client

    client = Client()
    client.force_login(people["pathologist"])
    page = client.get(f"/cohorts/{demo_cohorts['validation'].pk}/").content.decode()
    row = page[page.index(f'data-slide="{computed.slide_id}"'):]
    assert "3 flagged" in row[: row.index("</tr>")]
    # The other validation slide has no heatmaps yet.
    other = Slide.objects.filter(cohort=demo_cohorts["validation"]).exclude(pk=computed.slide_id).order_by("name")[0]
    row = page[page.index(f'data-slide="{other.pk}"'):]
    assert "no heatmaps" in row[: row.index("</tr>")]
