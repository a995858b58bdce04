"""DeepZoom tiles, thumbnails and regions: large-image's own pixels, HTTP caching, clean 4xx answers."""

from __future__ import annotations

import io
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import large_image
import numpy as np
import pytest
import tifffile
from large_image.constants import TILE_FORMAT_NUMPY
from PIL import Image

from sua_portal.slides import services, tiles

pytestmark = pytest.mark.django_db


@pytest.fixture
def boxes(cohort: Any, add_slide: Any) -> Any:
    slide = add_slide(cohort, "boxes.tiff")
    assert slide.status == "ready", slide.failure_reason
    return slide


def _source(slide: Any) -> Any:
    # The same source the endpoint uses: large-image fixes the encoding when a source is opened.
    return large_image.open(str(services.local_path(slide)), encoding="JPEG", jpegQuality=tiles.JPEG_QUALITY)


def _image(response: Any) -> Image.Image:
    return Image.open(io.BytesIO(response.content))


def _tile(client: Any, slide: Any, level: int, col: int, row: int, **headers: str) -> Any:
    return client.get(f"/api/slides/{slide.pk}/dzi_files/{level}/{col}_{row}.jpeg", **headers)


def test_the_dzi_descriptor_describes_the_slide(people: dict[str, Any], boxes: Any, api_for: Any) -> None:
    response = api_for(people["pathologist"]).get(f"/api/slides/{boxes.pk}/dzi.dzi")
    assert response.status_code == 200 and response["Content-Type"] == "application/xml"
    root = ET.fromstring(response.content)
    size = root.find("{http://schemas.microsoft.com/deepzoom/2008}Size")
    assert root.get("TileSize") == "64" and root.get("Overlap") == "0" and root.get("Format") == "jpeg"
    assert size is not None and (size.get("Width"), size.get("Height")) == ("300", "250")


@pytest.mark.parametrize(("level", "col", "row", "z"), [(9, 1, 1, 3), (9, 3, 2, 3), (8, 0, 0, 2), (8, 1, 0, 2)])
def test_an_interior_tile_is_large_images_own_jpeg(level: int, col: int, row: int, z: int,
                                                   people: dict[str, Any], boxes: Any, api_for: Any) -> None:
    response = _tile(api_for(people["researcher"]), boxes, level, col, row)
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    source = _source(boxes)
    assert response.content == bytes(source.getTile(col, row, z))
    # The same bytes; libtiff and Pillow decode them with different chroma upsampling, so the pixels
    # agree up to a little noise at colour edges.
    expected = np.asarray(source.getTile(col, row, z, format=TILE_FORMAT_NUMPY, numpyAllowed="always"))[:, :, :3]
    assert np.abs(np.asarray(_image(response).convert("RGB")).astype(int) - expected.astype(int)).mean() < 1.5


def _write_jpeg_pyramid(path: Path, *, width: int = 300, height: int = 250, tile: int = 64) -> Path:
    """A pyramid of complete YCbCr JPEG tiles, one page a level, as tifffile (and the synthetic slides) write it."""
    rng = np.random.default_rng(3)
    # Smooth colour fields with some texture: JPEG tiles of a few kilobytes, like tissue.
    coarse = rng.integers(60, 250, (height // 25 + 2, width // 25 + 2, 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC))
    image = np.clip(image.astype(int) + rng.integers(-12, 13, image.shape), 0, 255).astype(np.uint8)
    levels = [image]
    while max(levels[-1].shape[:2]) > tile:
        levels.append(np.ascontiguousarray(levels[-1][::2, ::2]))
    with tifffile.TiffWriter(path) as tw:
        for i, level in enumerate(levels):
            tw.write(level, tile=(tile, tile), photometric="rgb", compression="jpeg", compressionargs={"level": 85},
                     subfiletype=1 if i else 0, resolution=(2e4 / 2**i, 2e4 / 2**i), resolutionunit="CENTIMETER",
                     metadata=None)
    return path


def _stored_tile(path: Path, page: int, col: int, row: int) -> bytes:
    with tifffile.TiffFile(path) as tif:
        level = tif.pages[page]
        assert isinstance(level, tifffile.TiffPage)
        index = row * math.ceil(level.imagewidth / level.tilewidth) + col
        tif.filehandle.seek(level.dataoffsets[index])
        return bytes(tif.filehandle.read(level.databytecounts[index]))


def test_a_tiff_of_complete_jpeg_tiles_serves_its_own_tiles_unchanged(
    people: dict[str, Any], cohort: Any, add_slide: Any, api_for: Any, tmp_path: Path
) -> None:
    path = _write_jpeg_pyramid(tmp_path / "jpeg-tiles.tiff")
    slide = add_slide(cohort, path=path)
    assert slide.status == "ready", slide.failure_reason
    client = api_for(people["pathologist"])
    source = _source(slide)
    # DZI level 9 is level 0 of the file (page 0), level 8 its page 1: interior tiles are the stored JPEGs,
    # byte for byte, and show the pixels large-image decodes from them.
    for level, page, col, row in [(9, 0, 1, 1), (9, 0, 3, 2), (8, 1, 0, 0), (8, 1, 1, 0)]:
        response = _tile(client, slide, level, col, row)
        assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
        stored = _stored_tile(services.local_path(slide), page, col, row)
        assert response.content == stored
        reencoded = bytes(source.getTile(col, row, level - 6))
        assert reencoded != stored  # large-image would have decoded and encoded the tile again
        expected = np.asarray(source.getTile(col, row, level - 6, format=TILE_FORMAT_NUMPY,
                                             numpyAllowed="always"))[:, :, :3]
        shown = np.asarray(_image(response).convert("RGB")).astype(int)
        assert shown.shape == (64, 64, 3) and np.abs(shown - expected.astype(int)).mean() < 1.5
    # Edge tiles are still cut to the slide (a stored tile is a whole 64 x 64 square).
    assert _image(_tile(client, slide, 9, 4, 3)).size == (300 - 4 * 64, 250 - 3 * 64)


def test_stored_tiles_are_passed_through_only_where_each_is_a_complete_ycbcr_jpeg(
    testdata: Path, tmp_path: Path
) -> None:
    # Deflate tiles (boxes.tiff) and JPEG tiles with shared tables (small.svs, which large-image passes
    # through already) are left to large-image.
    for name in ("boxes.tiff", "small.svs"):
        zoom = tiles.DeepZoom(large_image.open(str(testdata / name)), testdata / name)
        assert zoom.raw is None, name
    # A stored tile that is not a whole JPEG (its end overwritten here) is not passed through: it is
    # large-image's to read, which fails as it did before (the endpoint answers that as any unreadable
    # tile), and the tiles beside it are still passed through.
    path = _write_jpeg_pyramid(tmp_path / "cut.tiff")
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert isinstance(page, tifffile.TiffPage)
        offset, count = int(page.dataoffsets[6]), int(page.databytecounts[6])  # tile (1, 1) of 5 across
    with open(path, "r+b") as f:
        f.seek(offset + count - 2)
        f.write(b"\x00\x00")
    zoom = tiles.DeepZoom(tiles.open_source(path), path)
    assert zoom.raw is not None and sorted(zoom.raw.levels) == [0, 1, 2, 3]
    assert zoom.raw.tile(3, 1, 1) is None
    assert zoom.tile(9, 2, 1) == _stored_tile(path, 0, 2, 1)
    with pytest.raises(tiles.SlideReadError, match="tile 9/1_1 cannot be read"):
        zoom.tile(9, 1, 1)
    # One view (with its tables of stored tiles) per cached source, dropped with it.
    kept = tiles.deep_zoom(path)
    assert tiles.deep_zoom(path) is kept
    tiles.forget_source(path)
    assert tiles.deep_zoom(path) is not kept


def test_an_edge_tile_is_large_images_tile_cut_to_the_slide(people: dict[str, Any], boxes: Any,
                                                            api_for: Any) -> None:
    response = _tile(api_for(people["pathologist"]), boxes, 9, 4, 3)
    image = np.asarray(_image(response).convert("RGB")).astype(int)
    assert image.shape == (250 - 3 * 64, 300 - 4 * 64, 3)
    expected = np.asarray(_source(boxes).getTile(4, 3, 3, format=TILE_FORMAT_NUMPY, numpyAllowed="always"))
    expected = expected[: image.shape[0], : image.shape[1], :3].astype(int)
    # Cut tiles are encoded again (JPEG quality 90): the same picture up to compression noise.
    assert np.abs(image - expected).mean() < 2.0


def test_every_tile_of_every_level_has_the_size_deepzoom_expects(people: dict[str, Any], boxes: Any,
                                                                  api_for: Any) -> None:
    client = api_for(people["pathologist"])
    max_level = math.ceil(math.log2(300))
    for level in range(max_level + 1):
        width, height = math.ceil(300 / 2 ** (max_level - level)), math.ceil(250 / 2 ** (max_level - level))
        for col in range(math.ceil(width / 64)):
            for row in range(math.ceil(height / 64)):
                response = _tile(client, boxes, level, col, row)
                assert response.status_code == 200, (level, col, row)
                assert _image(response).size == (min(64, width - 64 * col), min(64, height - 64 * row))


def test_levels_above_the_pyramid_are_the_coarsest_tile_scaled_down(people: dict[str, Any], boxes: Any,
                                                                     api_for: Any) -> None:
    # DZI level 5 is 19 x 16 pixels; large-image's coarsest level (DZI 6) is 38 x 32.
    small = np.asarray(_image(_tile(api_for(people["pathologist"]), boxes, 5, 0, 0)).convert("RGB")).astype(float)
    top = np.asarray(_source(boxes).getTile(0, 0, 0, format=TILE_FORMAT_NUMPY, numpyAllowed="always"))[:32, :38, :3]
    halved = np.asarray(Image.fromarray(np.ascontiguousarray(top)).resize((19, 16), Image.Resampling.BOX)).astype(float)
    assert small.shape == (16, 19, 3)
    assert np.abs(small - halved).mean() < 12


@pytest.mark.parametrize(
    "path",
    ["dzi_files/10/0_0.jpeg", "dzi_files/9/5_0.jpeg", "dzi_files/9/0_4.jpeg", "dzi_files/0/1_0.jpeg",
     "dzi_files/9/0_0.png", "dzi_files/99999999999/0_0.jpeg", "dzi_files/-1/0_0.jpeg", "dzi_files/9/a_b.jpeg"],
)
def test_a_tile_outside_the_pyramid_is_a_404(path: str, people: dict[str, Any], boxes: Any, api_for: Any) -> None:
    assert api_for(people["pathologist"]).get(f"/api/slides/{boxes.pk}/{path}").status_code == 404


def test_tiles_carry_an_etag_and_a_matching_request_gets_304(people: dict[str, Any], boxes: Any,
                                                             api_for: Any) -> None:
    client = api_for(people["pathologist"])
    first = _tile(client, boxes, 9, 1, 1)
    assert first["Cache-Control"] == "private, max-age=86400" and first["ETag"].startswith('"')
    again = _tile(client, boxes, 9, 1, 1, HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304 and again.content == b"" and again["ETag"] == first["ETag"]
    other = _tile(client, boxes, 9, 1, 2, HTTP_IF_NONE_MATCH=first["ETag"])
    assert other.status_code == 200 and other["ETag"] != first["ETag"]
    dzi = client.get(f"/api/slides/{boxes.pk}/dzi.dzi")
    assert client.get(f"/api/slides/{boxes.pk}/dzi.dzi", HTTP_IF_NONE_MATCH=dzi["ETag"]).status_code == 304


def _conditions(etag: str) -> list[str]:
    """If-None-Match values that all name ``etag``: weak, in a list (with spaces or not), and any tag."""
    return [f"W/{etag}", f'"other", {etag}', f'W/"other",W/{etag}', "*"]


def test_a_weak_listed_or_any_etag_gets_304_from_every_image_endpoint(people: dict[str, Any], boxes: Any,
                                                                      api_for: Any) -> None:
    client = api_for(people["pathologist"])
    for path in ("dzi.dzi", "dzi_files/9/1_1.jpeg", "thumbnail.png?width=64", "region.jpeg?left=0&top=0&width=8&height=8"):
        etag = client.get(f"/api/slides/{boxes.pk}/{path}")["ETag"]
        for wanted in _conditions(etag):
            again = client.get(f"/api/slides/{boxes.pk}/{path}", HTTP_IF_NONE_MATCH=wanted)
            assert again.status_code == 304 and again["ETag"] == etag, (path, wanted)
        assert client.get(f"/api/slides/{boxes.pk}/{path}", HTTP_IF_NONE_MATCH='"other", W/"else"').status_code == 200


def test_a_slide_read_by_openslide_serves_tiles_too(people: dict[str, Any], cohort: Any, add_slide: Any,
                                                    api_for: Any) -> None:
    slide = add_slide(cohort, "small.svs")
    client = api_for(people["pathologist"])
    assert b'Width="16"' in client.get(f"/api/slides/{slide.pk}/dzi.dzi").content
    response = _tile(client, slide, 4, 0, 0)
    assert response.status_code == 200 and _image(response).size == (16, 16)
    expected = np.asarray(_source(slide).getTile(0, 0, 0, format=TILE_FORMAT_NUMPY, numpyAllowed="always"))[:, :, :3]
    assert np.abs(np.asarray(_image(response).convert("RGB")).astype(int) - expected.astype(int)).mean() < 3


def test_thumbnails_fit_the_asked_size(people: dict[str, Any], boxes: Any, api_for: Any) -> None:
    client = api_for(people["researcher"])
    png = client.get(f"/api/slides/{boxes.pk}/thumbnail.png?width=100")
    assert png.status_code == 200 and png["Content-Type"] == "image/png" and _image(png).size == (100, 83)
    jpeg = client.get(f"/api/slides/{boxes.pk}/thumbnail.jpeg")
    assert jpeg["Content-Type"] == "image/jpeg" and _image(jpeg).size == (256, 213)
    assert client.get(f"/api/slides/{boxes.pk}/thumbnail.jpeg?width=1").status_code == 400
    assert client.get(f"/api/slides/{boxes.pk}/thumbnail.jpeg?width=abc").status_code == 400
    assert client.get(f"/api/slides/{boxes.pk}/thumbnail.gif").status_code == 404


def test_a_region_is_large_images_pixels(people: dict[str, Any], boxes: Any, api_for: Any) -> None:
    response = api_for(people["pathologist"]).get(
        f"/api/slides/{boxes.pk}/region.png?left=10&top=20&width=50&height=40")
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    expected, _ = _source(boxes).getRegion(
        region={"left": 10, "top": 20, "width": 50, "height": 40, "units": "base_pixels"}, format=TILE_FORMAT_NUMPY)
    assert np.array_equal(np.asarray(_image(response).convert("RGB")), np.asarray(expected)[:, :, :3])


def test_a_large_region_is_scaled_to_max_size(people: dict[str, Any], boxes: Any, api_for: Any) -> None:
    response = api_for(people["pathologist"]).get(
        f"/api/slides/{boxes.pk}/region.jpeg?left=0&top=0&width=300&height=250&max_size=60")
    assert _image(response).size == (60, 50)


@pytest.mark.parametrize(
    "query",
    ["left=0&top=0&width=301&height=10", "left=-1&top=0&width=10&height=10", "left=290&top=240&width=20&height=20",
     "left=0&top=0&width=0&height=10", "top=0&width=10&height=10", "left=0&top=0&width=10&height=10&max_size=99999"],
)
def test_a_region_outside_the_slide_or_malformed_is_a_400(query: str, people: dict[str, Any], boxes: Any,
                                                          api_for: Any) -> None:
    response = api_for(people["pathologist"]).get(f"/api/slides/{boxes.pk}/region.png?{query}")
    assert response.status_code == 400, response.content


def test_a_failed_slide_answers_409_with_its_reason(people: dict[str, Any], cohort: Any, add_slide: Any,
                                                    api_for: Any) -> None:
    slide = add_slide(cohort, "unreadable.svs", probe=False)
    assert slide.status == "failed"
    client = api_for(people["pathologist"])
    for path in ("dzi.dzi", "dzi_files/0/0_0.jpeg", "thumbnail.jpeg", "region.png?left=0&top=0&width=4&height=4"):
        response = client.get(f"/api/slides/{slide.pk}/{path}")
        assert response.status_code == 409, path
        assert "failed its check" in response.json()["detail"] and "cannot be decoded" in response.json()["detail"]


def test_the_metadata_tells_what_large_image_reads(people: dict[str, Any], boxes: Any, api_for: Any) -> None:
    body = api_for(people["researcher"]).get(f"/api/slides/{boxes.pk}/metadata/").json()
    assert body["slide"]["width"] == 300 and body["large_image"]["levels"] == 4
    assert body["deepzoom"] == {"tile_size": 64, "levels": 10, "overlap": 0, "format": "jpeg"}


# --------------------------------------------------------------------------- the tile fast path


@pytest.fixture
def fresh_caches() -> Any:
    """Django's cache, empty (other tests may have left callers and slides of the image views in it)."""
    from django.core.cache import cache

    cache.clear()
    yield cache
    cache.clear()


@pytest.fixture
def full_view_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    """Tiles answered by DeepZoomTileView (the full stack) rather than the fast path."""
    from sua_portal.slides import views

    calls: list[tuple[int, int, int]] = []
    original = views.DeepZoomTileView.get

    def counted(self: Any, request: Any, pk: int, level: int, col: int, row: int, fmt: str) -> Any:
        calls.append((level, col, row))
        return original(self, request, pk, level, col, row, fmt)

    monkeypatch.setattr(views.DeepZoomTileView, "get", counted)
    return calls


def _token_client(user: Any) -> Any:
    from django.test import Client
    from rest_framework.authtoken.models import Token

    token, _ = Token.objects.get_or_create(user=user)
    return Client(HTTP_AUTHORIZATION=f"Token {token.key}")


@pytest.mark.parametrize(
    "path",
    ["/api/slides/1/dzi_files/9/0_0.jpeg", "/api/slides/12/dzi_files/0/31_7.jpg",
     "/api/slides/3/dzi_files/99999999999/0_0.jpeg"],
)
def test_the_fast_path_matches_exactly_the_tile_route(path: str) -> None:
    from django.urls import resolve

    from sua_portal.slides.views import _TILE_PATH

    match = _TILE_PATH.fullmatch(path)
    assert match is not None
    route = resolve(path)
    assert route.url_name == "slide-tile"
    assert [route.kwargs[k] for k in ("pk", "level", "col", "row")] == [int(g) for g in match.groups()]


@pytest.mark.parametrize(
    "path",
    ["/api/slides/1/dzi_files/9/0_0.png", "/api/slides/1/dzi_files/-1/0_0.jpeg", "/api/slides/1/dzi_files/9/a_b.jpeg",
     "/api/slides/1/dzi_files/9/0_0.jpeg/", "/api/slides/1/dzi.dzi", "/x/api/slides/1/dzi_files/9/0_0.jpeg"],
)
def test_the_fast_path_leaves_other_urls_alone(path: str) -> None:
    from sua_portal.slides.views import _TILE_PATH

    assert _TILE_PATH.fullmatch(path) is None


def test_a_token_caller_gets_the_same_tile_from_the_fast_path(people: dict[str, Any], boxes: Any, fresh_caches: Any,
                                                             full_view_calls: list[Any], api_for: Any,
                                                             django_assert_num_queries: Any) -> None:
    client = _token_client(people["pathologist"])
    first = _tile(client, boxes, 9, 1, 1)  # the full way: fills the caches
    assert first.status_code == 200 and full_view_calls == [(9, 1, 1)]
    with django_assert_num_queries(0):
        second = _tile(client, boxes, 9, 1, 1)
        other = _tile(client, boxes, 9, 3, 2)
    assert full_view_calls == [(9, 1, 1)], "answered by the fast path"
    assert second.status_code == 200 and second.content == first.content
    assert second.content == bytes(_source(boxes).getTile(1, 1, 3))
    assert bytes(other.content) == bytes(_source(boxes).getTile(3, 2, 3))
    for name in ("Content-Type", "ETag", "Cache-Control", "Content-Length", "X-Frame-Options",
                 "X-Content-Type-Options"):
        assert second[name] == first[name], name
    # The edge tiles (encoded again) and the levels above large-image's pyramid come out the same way too.
    for level, col, row in ((9, 4, 3), (5, 0, 0)):
        full = _tile(api_for(people["pathologist"]), boxes, level, col, row)
        assert _tile(client, boxes, level, col, row).content == full.content


def test_the_fast_path_answers_304_and_leaves_404_to_the_view(people: dict[str, Any], boxes: Any,
                                                              fresh_caches: Any, full_view_calls: list[Any]) -> None:
    client = _token_client(people["researcher"])
    etag = _tile(client, boxes, 9, 1, 1)["ETag"]
    again = _tile(client, boxes, 9, 1, 1, HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again.content == b"" and again["ETag"] == etag
    assert again["Cache-Control"] == "private, max-age=86400" and len(full_view_calls) == 1
    for level, col, row in ((10, 0, 0), (9, 5, 0), (9, 0, 4), (0, 1, 0)):
        response = _tile(client, boxes, level, col, row)
        assert response.status_code == 404 and "outside" in response.json()["detail"]
    assert len(full_view_calls) == 5


def test_the_fast_path_answers_304_to_weak_listed_and_any_etags(people: dict[str, Any], boxes: Any,
                                                                fresh_caches: Any, full_view_calls: list[Any]) -> None:
    client = _token_client(people["researcher"])
    etag = _tile(client, boxes, 9, 1, 1)["ETag"]
    for wanted in _conditions(etag):
        again = _tile(client, boxes, 9, 1, 1, HTTP_IF_NONE_MATCH=wanted)
        assert again.status_code == 304 and again["ETag"] == etag, wanted
    assert _tile(client, boxes, 9, 1, 1, HTTP_IF_NONE_MATCH=f"W/{etag[:-2]}x\"").status_code == 200
    assert len(full_view_calls) == 1, "all but the first answered by the fast path"


def test_a_session_caller_gets_the_fast_path_and_loses_it_with_the_session(
    people: dict[str, Any], boxes: Any, fresh_caches: Any, full_view_calls: list[Any],
) -> None:
    from django.contrib.sessions.models import Session
    from django.test import Client

    client = Client()
    client.force_login(people["pathologist"])
    assert client.get(f"/api/slides/{boxes.pk}/dzi.dzi").status_code == 200  # as the viewer starts
    response = _tile(client, boxes, 9, 1, 1)
    assert response.status_code == 200 and full_view_calls == []
    assert response.content == bytes(_source(boxes).getTile(1, 1, 3))
    # Signed out elsewhere (the cookie is still sent): the cached session answers for at most the TTL;
    # once it has expired, the full view finds no session and refuses.
    Session.objects.all().delete()
    assert _tile(client, boxes, 9, 1, 2).status_code == 200 and full_view_calls == []
    fresh_caches.clear()
    assert _tile(client, boxes, 9, 1, 2).status_code in (401, 403)


def test_every_fast_tile_checks_project_membership(people: dict[str, Any], boxes: Any, fresh_caches: Any,
                                                  full_view_calls: list[Any], settings: Any) -> None:
    from sua_portal.accounts.models import Membership

    outsider = _token_client(people["outsider"])
    for _ in range(2):
        assert _tile(outsider, boxes, 9, 1, 1).status_code == 404
    assert len(full_view_calls) == 2, "an outsider's tile never takes the fast path"

    member = _token_client(people["pathologist"])
    assert _tile(member, boxes, 9, 1, 1).status_code == 200
    Membership.objects.filter(user=people["pathologist"], project=people["own"]).delete()
    # Within the TTL (SLIDE_IMAGE_ACCESS_CACHE_SECONDS) the cached membership still answers; once it has
    # expired the next tile is refused.
    assert _tile(member, boxes, 9, 1, 2).status_code == 200
    fresh_caches.clear()
    assert _tile(member, boxes, 9, 1, 2).status_code == 404

    settings.SLIDE_IMAGE_ACCESS_CACHE_SECONDS = 0  # nothing cached: every tile goes the full way
    fresh_caches.clear()
    researcher = _token_client(people["researcher"])
    calls = len(full_view_calls)
    assert _tile(researcher, boxes, 9, 1, 1).status_code == 200
    assert _tile(researcher, boxes, 9, 1, 1).status_code == 200
    assert len(full_view_calls) == calls + 2
    Membership.objects.filter(user=people["researcher"], project=people["own"]).delete()
    assert _tile(researcher, boxes, 9, 1, 1).status_code == 404


def test_the_fast_path_refuses_what_the_full_stack_refuses(people: dict[str, Any], boxes: Any,
                                                          fresh_caches: Any) -> None:
    from django.test import Client

    client = _token_client(people["pathologist"])
    assert _tile(client, boxes, 9, 1, 1).status_code == 200
    # A host outside ALLOWED_HOSTS, a token that is not the cached one, a HEAD (full view) and another format.
    assert _tile(client, boxes, 9, 1, 1, HTTP_HOST="evil.example").status_code == 400
    assert Client(HTTP_AUTHORIZATION="Token nonsense").get(
        f"/api/slides/{boxes.pk}/dzi_files/9/1_1.jpeg").status_code in (401, 403)
    assert client.head(f"/api/slides/{boxes.pk}/dzi_files/9/1_1.jpeg").status_code == 200
    assert client.get(f"/api/slides/{boxes.pk}/dzi_files/9/1_1.png").status_code == 404
