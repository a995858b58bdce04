"""The heatmap image endpoint (the viewer with a run's flagged regions: tests/runs/test_viewer.py)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from PIL import Image

from analysis.io import HEATMAP_RANGES
from sua_portal.ensembles import services
from sua_portal.ensembles.models import SlideHeatmap


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
