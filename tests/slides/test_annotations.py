"""Tumor annotations uploaded as ASAP XML, QuPath GeoJSON and binary masks: exact round trips and refusals."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
import tifffile
from PIL import Image
from shapely.geometry import MultiPolygon, Polygon, box, shape

from analysis.annotations import rasterize, write_asap_xml, write_geojson
from sua_portal.slides.models import Annotation, Slide
from tests.slides.conftest import Storage, multipart
from tests.slides.test_strict_inputs import NO_TUMOR_AREA

pytestmark = pytest.mark.django_db

# Inside boxes.tiff (300 x 250): one polygon with a hole, one without, off-grid float coordinates.
TUMOR = MultiPolygon([
    Polygon([(10.25, 12.5), (120.75, 15.0), (110.5, 90.125), (20.0, 80.0)],
            [[(40.5, 30.5), (60.25, 32.0), (50.0, 50.75)]]),
    Polygon([(200.0, 150.5), (280.5, 160.0), (260.25, 240.0), (190.0, 230.0)]),
])


def _post(client: Any, slide: Any, name: str, content: bytes, **fields: str) -> Any:
    body, content_type = multipart("file", name, content, **fields)
    return client.generic("POST", f"/api/slides/{slide.pk}/annotations/", body, content_type=content_type)


def _same_polygons(stored: dict[str, Any], expected: Any) -> bool:
    """Exactly the same vertices (start point and ring direction aside)."""
    return bool(shape(stored).normalize().equals_exact(expected.normalize(), 0.0))


@pytest.fixture
def slide(people: dict[str, Any], cohort: Any, add_slide: Any) -> Any:
    return add_slide(cohort, "boxes.tiff")


def test_asap_xml_polygons_come_back_exactly(people: dict[str, Any], slide: Any, api_for: Any,
                                             tmp_path: Path) -> None:
    write_asap_xml(TUMOR, tmp_path / "boxes.xml")
    response = _post(api_for(people["admin"]), slide, "boxes.xml", (tmp_path / "boxes.xml").read_bytes())
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["source"] == "ground_truth" and body["author"] == "admin" and body["original_filename"] == "boxes.xml"
    assert _same_polygons(body["geometry"], TUMOR)
    listed = api_for(people["researcher"]).get(f"/api/slides/{slide.pk}/annotations/").json()  # blind review hides it from pathologists
    assert [a["id"] for a in listed] == [body["id"]] and _same_polygons(listed[0]["geometry"], TUMOR)
    slide.refresh_from_db()
    assert slide.has_tumor is True


def test_camelyon_groups_and_exclusions_are_understood(people: dict[str, Any], slide: Any, api_for: Any) -> None:
    xml = """<?xml version="1.0"?><ASAP_Annotations><Annotations>
      <Annotation Name="A" Type="Polygon" PartOfGroup="_0"><Coordinates>
        <Coordinate Order="0" X="10" Y="10"/><Coordinate Order="1" X="110" Y="10"/>
        <Coordinate Order="2" X="110" Y="110"/><Coordinate Order="3" X="10" Y="110"/></Coordinates></Annotation>
      <Annotation Name="B" Type="Polygon" PartOfGroup="_2"><Coordinates>
        <Coordinate Order="0" X="30" Y="30"/><Coordinate Order="1" X="60" Y="30"/>
        <Coordinate Order="2" X="60" Y="60"/><Coordinate Order="3" X="30" Y="60"/></Coordinates></Annotation>
    </Annotations></ASAP_Annotations>"""
    response = _post(api_for(people["admin"]), slide, "camelyon.xml", xml.encode())
    assert response.status_code == 201
    expected = box(10, 10, 110, 110).difference(box(30, 30, 60, 60))
    assert shape(response.json()["geometry"]).equals(expected)


def test_qupath_geojson_comes_back_exactly_and_only_tumor_classes_count(
    people: dict[str, Any], slide: Any, api_for: Any, tmp_path: Path,
) -> None:
    write_geojson(TUMOR, tmp_path / "tumor.geojson")
    features = json.loads((tmp_path / "tumor.geojson").read_text())["features"]
    stroma = {"type": "Feature", "geometry": shapely.geometry.mapping(box(150, 10, 200, 60)),
              "properties": {"objectType": "annotation", "classification": {"name": "Stroma", "color": [0, 0, 255]}}}
    # QuPath "Export objects as GeoJSON" without "FeatureCollection": a bare list of features.
    content = json.dumps([*features, stroma]).encode()
    response = _post(api_for(people["admin"]), slide, "export.geojson", content)
    assert response.status_code == 201, response.content
    assert _same_polygons(response.json()["geometry"], TUMOR)


def test_a_self_intersecting_outline_is_repaired_and_keeps_its_area(
    people: dict[str, Any], slide: Any, api_for: Any,
) -> None:
    bowtie = {"type": "Feature", "properties": {"classification": {"name": "Tumor"}},
              "geometry": {"type": "Polygon", "coordinates": [[[10, 10], [110, 110], [110, 10], [10, 110], [10, 10]]]}}
    response = _post(api_for(people["admin"]), slide, "bowtie.json", json.dumps([bowtie]).encode())
    assert response.status_code == 201
    geometry = shape(response.json()["geometry"])
    assert geometry.is_valid and geometry.area == pytest.approx(5000.0)


@pytest.mark.parametrize("suffix", ["png", "tif"])
def test_a_binary_mask_becomes_polygons_that_rasterise_back_to_it(
    suffix: str, people: dict[str, Any], slide: Any, api_for: Any,
) -> None:
    mask = np.zeros((63, 75), dtype=np.uint8)  # boxes.tiff at downsample 4
    mask[5:20, 3:30] = 255
    mask[8:12, 10:14] = 0  # a hole
    mask[40:62, 50:75] = 1  # touches the right and bottom edges
    mask[30, 30] = 7
    out = io.BytesIO()
    if suffix == "png":
        Image.fromarray(mask).save(out, format="PNG")
    else:
        tifffile.imwrite(out, mask)
    response = _post(api_for(people["admin"]), slide, f"boxes_mask.{suffix}", out.getvalue(), downsample="4")
    assert response.status_code == 201, response.content
    geometry = shape(response.json()["geometry"])
    assert geometry.is_valid
    assert np.array_equal(rasterize(geometry, shape=mask.shape, downsample=4), mask != 0)


def test_a_mask_downsample_is_inferred_from_its_size(people: dict[str, Any], slide: Any, api_for: Any) -> None:
    mask = np.zeros((125, 150), dtype=np.uint8)  # downsample 2
    mask[10:20, 10:20] = 255
    out = io.BytesIO()
    Image.fromarray(mask).save(out, format="PNG")
    response = _post(api_for(people["admin"]), slide, "mask.png", out.getvalue())
    assert response.status_code == 201
    assert shape(response.json()["geometry"]).equals(box(20, 20, 40, 40))


def test_the_truth_of_a_slide_is_the_union_of_its_ground_truth(
    people: dict[str, Any], slide: Any, api_for: Any, tmp_path: Path,
) -> None:
    from sua_portal.slides.truth import truth_mask, tumor_geometry

    write_geojson(TUMOR, tmp_path / "a.geojson")
    _post(api_for(people["admin"]), slide, "a.geojson", (tmp_path / "a.geojson").read_bytes())
    write_geojson(box(250, 10, 290, 40), tmp_path / "b.geojson")
    _post(api_for(people["admin"]), slide, "b.geojson", (tmp_path / "b.geojson").read_bytes(), source="reviewer")
    truth = tumor_geometry(slide)
    assert truth is not None and truth.equals(TUMOR)  # the reviewer's outline is not ground truth
    mask = truth_mask(slide, shape=(63, 75), downsample=4)
    assert mask is not None and np.array_equal(mask, rasterize(TUMOR, shape=(63, 75), downsample=4))


BAD_ANNOTATIONS = [
    ("broken XML", "a.xml", b"<ASAP_Annotations><Annotations><Annot", "cannot read ASAP XML"),
    ("broken JSON", "a.geojson", b'{"type": "FeatureCollection", "features": [', "cannot read GeoJSON"),
    ("JSON that is not GeoJSON", "a.json", b'{"hello": "world"}', "not a GeoJSON"),
    ("a mask that is no image", "a_mask.png", b"not a png at all", "cannot be read as an image"),
    ("an unknown format", "a.txt", b"10,10 20,20 30,10", "none of these"),
    ("polygons outside the slide", "far.geojson",
     json.dumps([{"type": "Feature", "properties": {"classification": {"name": "Tumor"}},
                  "geometry": shapely.geometry.mapping(box(250, 200, 900, 700))}]).encode(),
     "outside the slide's 300 x 250 pixels"),
    ("no tumor class", "stroma.geojson",
     json.dumps([{"type": "Feature", "properties": {"classification": {"name": "Stroma"}},
                  "geometry": shapely.geometry.mapping(box(10, 10, 50, 50))}]).encode(),
     "no class in it means tumor: it holds the classes Stroma (1); tumor classes are Tumor, Metastasis. Send "
     "tumor_classes"),
    ("a mask bigger than the slide", "big_mask.png", "big-mask", "more than the slide's"),
    *NO_TUMOR_AREA,  # tests/slides/test_strict_inputs.py: files that outline no tumor
]


@pytest.mark.parametrize(("case", "name", "content", "message"), BAD_ANNOTATIONS, ids=[c[0] for c in BAD_ANNOTATIONS])
def test_a_bad_annotation_file_is_refused_with_a_reason_and_stores_nothing(
    case: str, name: str, content: Any, message: str, people: dict[str, Any], slide: Any, api_for: Any,
    storage: Storage,
) -> None:
    extra = {}
    if content == "big-mask":
        out = io.BytesIO()
        Image.fromarray(np.full((300, 300), 255, np.uint8)).save(out, format="PNG")
        content, extra = out.getvalue(), {"downsample": "2"}
    elif content == "zero-mask":
        out = io.BytesIO()
        Image.new("L", (75, 63)).save(out, format="PNG")
        content = out.getvalue()
    files_before = storage.files()
    response = _post(api_for(people["admin"]), slide, name, content, **extra)
    assert response.status_code == 400, response.content
    assert message in response.json()["detail"], response.json()
    assert Annotation.objects.count() == 0 and storage.files() == files_before
    assert str(storage.media) not in response.json()["detail"]
    assert Slide.objects.get(pk=slide.pk).has_tumor is None


def test_other_class_names_can_be_named_as_tumor(people: dict[str, Any], slide: Any, api_for: Any) -> None:
    content = json.dumps([{"type": "Feature", "properties": {"classification": {"name": "Tumour"}},
                           "geometry": shapely.geometry.mapping(box(10, 10, 50, 50))}]).encode()
    response = _post(api_for(people["admin"]), slide, "uk.geojson", content, tumor_classes="Tumour, Metastasis")
    assert response.status_code == 201 and shape(response.json()["geometry"]).equals(box(10, 10, 50, 50))


def test_deleting_the_ground_truth_makes_the_tumor_flag_unknown_again(
    people: dict[str, Any], slide: Any, api_for: Any, tmp_path: Path,
) -> None:
    client = api_for(people["admin"])
    write_geojson(TUMOR, tmp_path / "t.geojson")
    tumor = _post(client, slide, "t.geojson", (tmp_path / "t.geojson").read_bytes()).json()
    reviewed = _post(client, slide, "r.geojson", (tmp_path / "t.geojson").read_bytes(), source="reviewer").json()
    assert Slide.objects.get(pk=slide.pk).has_tumor is True
    assert client.delete(f"/api/slides/{slide.pk}/annotations/{tumor['id']}/").status_code == 204
    assert Slide.objects.get(pk=slide.pk).has_tumor is None  # nobody says now; a reviewer's outline is no truth
    assert [a["id"] for a in client.get(f"/api/slides/{slide.pk}/annotations/").json()] == [reviewed["id"]]
