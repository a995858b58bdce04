"""Strict inputs: annotation files that outline no tumor, a second ground truth, filter values, bodies over
their limit and file names after Unicode normalisation. Every refusal says why and changes nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import shapely
from shapely.geometry import box, shape

from analysis.annotations import write_asap_xml, write_geojson
from sua_portal.slides.models import Annotation, Slide, SlideUpload
from tests.slides.conftest import Storage, multipart

pytestmark = pytest.mark.django_db


def _post(client: Any, slide: Any, name: str, content: bytes, **fields: str) -> Any:
    body, content_type = multipart("file", name, content, **fields)
    return client.generic("POST", f"/api/slides/{slide.pk}/annotations/", body, content_type=content_type)


@pytest.fixture
def slide(people: dict[str, Any], cohort: Any, add_slide: Any) -> Any:
    return add_slide(cohort, "boxes.tiff")  # 300 x 250


def _feature(geometry: Any, name: str | None = "Tumor") -> dict[str, Any]:
    properties = {"classification": {"name": name}} if name else {}
    return {"type": "Feature", "geometry": geometry, "properties": properties}


def _points() -> bytes:
    return json.dumps({"type": "FeatureCollection", "features": [
        _feature({"type": "Point", "coordinates": [50, 50]}), _feature({"type": "Point", "coordinates": [80, 60]})]}
    ).encode()


ONE_VERTEX_XML = b"""<?xml version="1.0"?><ASAP_Annotations><Annotations>
  <Annotation Name="A" Type="Polygon" PartOfGroup="Tumor"><Coordinates>
    <Coordinate Order="0" X="10" Y="10"/></Coordinates></Annotation>
</Annotations></ASAP_Annotations>"""

#: Annotation files that outline no tumor area: (case, name, content, message). Sent, refused and checked
#: to store nothing by tests/slides/test_annotations.py's test of bad annotation files.
NO_TUMOR_AREA = [
    ("points only", "points.geojson", _points(),
     "points.geojson: none of its 2 annotations encloses an area (Point (2)); tumor must be outlined by polygons of "
     "at least 3 distinct vertices."),
    ("a polygon of one vertex", "one.xml", ONE_VERTEX_XML,
     "one.xml: none of its 1 annotations encloses an area (polygon of 1 distinct vertex (1))"),
    ("a polygon of two distinct vertices", "two.geojson", json.dumps([_feature(
        {"type": "Polygon", "coordinates": [[[10, 10], [90, 90], [90, 90], [10, 10]]]})]).encode(),
     "(polygon of 2 distinct vertices (1))"),
    ("tumor dots beside stroma", "dots.json", json.dumps([
        _feature({"type": "MultiPoint", "coordinates": [[5, 5], [6, 6]]}),
        _feature(shapely.geometry.mapping(box(10, 10, 50, 50)), "Stroma")]).encode(),
     "its tumor annotations enclose no area (MultiPoint (1))"),
    ("an empty file", "none.geojson", b'{"type": "FeatureCollection", "features": []}',
     "none.geojson: the file holds no annotations. A tumor-free slide needs no annotation file: mark it so with "
     "has_tumor false (PATCH /api/slides/{id}/)."),
    ("an all-zero mask", "zero_mask.png", "zero-mask", "the mask has no non-zero pixel, so it marks no tumor"),
]


@pytest.mark.parametrize(("name", "content", "message"), [
    ("qupath.geojson", json.dumps([_feature(shapely.geometry.mapping(box(10, 10, 50, 50)), "Stroma"),
                                   _feature(shapely.geometry.mapping(box(60, 10, 90, 50)), "Immune cells"),
                                   _feature(shapely.geometry.mapping(box(60, 60, 90, 90)), None)]).encode(),
     "qupath.geojson: no class in it means tumor: it holds the classes (no class) (1), Immune cells (1), Stroma (1); "
     "tumor classes are Tumor, Metastasis. Send tumor_classes (comma-separated names) to say which of them mean "
     "tumor."),
    ("asap.xml", b"""<ASAP_Annotations><Annotations>
       <Annotation Name="A" Type="Polygon" PartOfGroup="Lymphocytes"><Coordinates>
        <Coordinate Order="0" X="10" Y="10"/><Coordinate Order="1" X="60" Y="10"/>
        <Coordinate Order="2" X="60" Y="60"/></Coordinates></Annotation></Annotations></ASAP_Annotations>""",
     "asap.xml: no group in it means tumor: it holds the groups Lymphocytes (1); tumor groups are Tumor, _0, _1, "
     "metastases, metastasis."),
])
def test_a_file_whose_groups_or_classes_mean_no_tumor_names_them(
    name: str, content: bytes, message: str, people: dict[str, Any], slide: Any, api_for: Any, storage: Storage,
) -> None:
    response = _post(api_for(people["admin"]), slide, name, content)
    assert response.status_code == 400 and message in response.json()["detail"], response.content
    assert not Annotation.objects.exists()
    # Named as tumor, the same file is read.
    named = _post(api_for(people["admin"]), slide, name, content, tumor_classes="Stroma, Lymphocytes")
    assert named.status_code == 201, named.content


def test_camelyon16s_singular_metastasis_group_is_tumor(people: dict[str, Any], slide: Any, api_for: Any,
                                                         tmp_path: Path) -> None:
    write_asap_xml(box(10, 10, 60, 60), tmp_path / "c16.xml", group="Metastasis")
    response = _post(api_for(people["admin"]), slide, "c16.xml", (tmp_path / "c16.xml").read_bytes())
    assert response.status_code == 201 and shape(response.json()["geometry"]).equals(box(10, 10, 60, 60))


# --------------------------------------------------------------------------- one ground truth per slide


def test_a_second_ground_truth_is_a_409_saying_how_to_replace_the_first(
    people: dict[str, Any], slide: Any, api_for: Any, tmp_path: Path, storage: Storage,
) -> None:
    client = api_for(people["admin"])
    write_geojson(box(10, 10, 60, 60), tmp_path / "first.geojson")
    write_geojson(box(100, 100, 200, 200), tmp_path / "second.geojson")
    first = _post(client, slide, "first.geojson", (tmp_path / "first.geojson").read_bytes())
    assert first.status_code == 201
    before = storage.files()
    second = _post(client, slide, "second.geojson", (tmp_path / "second.geojson").read_bytes())
    assert second.status_code == 409, second.content
    body = second.json()
    assert body["annotation"] == first.json()["id"]
    assert "slide 'boxes' already has its ground truth (first.geojson" in body["detail"]
    assert "by admin" in body["detail"] and "send it again with replace=true" in body["detail"]
    assert "nothing was changed" in body["detail"]
    assert [a.pk for a in Annotation.objects.all()] == [first.json()["id"]] and storage.files() == before
    # A reviewer's outline is not a second truth.
    assert _post(client, slide, "second.geojson", (tmp_path / "second.geojson").read_bytes(),
                 source="reviewer").status_code == 201
    replaced = _post(client, slide, "second.geojson", (tmp_path / "second.geojson").read_bytes(), replace="true")
    assert replaced.status_code == 201, replaced.content
    truth = Annotation.objects.filter(slide=slide, source="ground_truth")
    assert [a.pk for a in truth] == [replaced.json()["id"]]
    assert shape(truth[0].geometry).equals(box(100, 100, 200, 200))
    assert Annotation.objects.filter(slide=slide, source="reviewer").count() == 1


def test_a_refused_replacement_keeps_the_first_truth(people: dict[str, Any], slide: Any, api_for: Any,
                                                     tmp_path: Path) -> None:
    client = api_for(people["admin"])
    write_geojson(box(10, 10, 60, 60), tmp_path / "first.geojson")
    first = _post(client, slide, "first.geojson", (tmp_path / "first.geojson").read_bytes()).json()
    response = _post(client, slide, "points.geojson", _points(), replace="true")
    assert response.status_code == 400
    assert [a.pk for a in Annotation.objects.all()] == [first["id"]]
    assert Slide.objects.get(pk=slide.pk).has_tumor is True


# --------------------------------------------------------------------------- filter values


@pytest.mark.parametrize(("url", "named", "why"), [
    ("/api/slides/?cohort=abc", "cohort", "'abc' is not a whole number"),
    ("/api/slides/?cohort=0", "cohort", "between 1 and"),
    ("/api/slides/?cohort=99999999999999999999", "cohort", "between 1 and"),
    ("/api/cohorts/?project=1.5", "project", "not a whole number"),
    ("/api/heatmaps/?ensemble=-1", "ensemble", "between 1 and"),
    ("/api/heatmaps/?slide=two", "slide", "not a whole number"),
    ("/api/runs/{r}/regions/?flagged=maybe", "flagged", "'maybe' is neither true nor false"),
    ("/api/runs/{r}/regions/?range=low", "range", "not a whole number"),
    ("/api/runs/?slide=0", "slide", "between 1 and"),
    ("/api/slides/{s}/annotations/?source=truth", "source", "not one of ground_truth, reviewer, imported"),
    ("/api/heatmaps/{h}/image/?kind=heat", "kind", "Choose one of"),
    ("/api/slides/?cohrt=1", "cohrt", "Unknown query parameter; this takes cohort, limit, offset"),
    ("/api/projects/?name=Own", "name", "this takes limit, offset"),
    ("/api/runs/{r}/regions/?flaged=1", "flaged", "this takes flagged, limit, offset, range, slide"),
    ("/api/cohorts/{c}/slides/?status=ready", "status", "this takes limit, offset"),
])
def test_an_invalid_filter_is_a_400_naming_the_parameter(
    people: dict[str, Any], slide: Any, api_for: Any, url: str, named: str, why: str,
) -> None:
    from sua_portal.ensembles.models import Ensemble, SlideHeatmap
    from sua_portal.runs.models import Run

    ensemble = Ensemble.objects.create(project=people["own"], name="E", origin=Ensemble.Origin.IMPORTED)
    heatmap = SlideHeatmap.objects.create(ensemble=ensemble, slide=slide, status=SlideHeatmap.Status.DONE)
    run = Run.objects.create(project=people["own"], name="R", ensemble=ensemble, ensemble_name="E",
                             settings={"ranges": [[0.55, 0.95]]}, status=Run.Status.DONE)
    response = api_for(people["admin"]).get(url.format(h=heatmap.pk, s=slide.pk, c=slide.cohort_id, r=run.pk))
    assert response.status_code == 400, response.content
    assert list(response.json()) == [named] and why in response.json()[named][0], response.json()


def test_valid_filters_filter(people: dict[str, Any], slide: Any, cohort: Any, api_for: Any) -> None:
    from sua_portal.slides.models import Cohort

    other = Cohort.objects.create(project=people["own"], name="Other", split="test")
    client = api_for(people["pathologist"])
    assert client.get(f"/api/slides/?cohort={cohort.pk}").json()["count"] == 1
    assert client.get(f"/api/slides/?cohort={other.pk}").json()["count"] == 0
    assert client.get("/api/slides/?cohort=").json()["count"] == 1  # a blank form field filters nothing
    # (A run's regions by flag and range: tests/runs/test_runs.py.)
    researcher = api_for(people["researcher"])
    assert researcher.get(f"/api/slides/?cohort={cohort.pk}&format=json&limit=5").status_code == 200


# --------------------------------------------------------------------------- bodies over their limit


def _announced(client: Any, method: str, url: str, length: int | str, **extra: Any) -> Any:
    """A request that announces ``length`` bytes but carries three: anything that reads past them fails."""
    return client.generic(method, url, b"abc", content_type=extra.pop("content_type", "application/json"),
                          CONTENT_LENGTH=str(length), **extra)


def test_a_body_over_the_limit_is_refused_from_its_content_length_before_a_byte_is_read(
    people: dict[str, Any], slide: Any, cohort: Any, api_for: Any, storage: Storage, settings: Any,
) -> None:
    client = api_for(people["admin"])
    upload = SlideUpload.objects.create(cohort=cohort, filename="next.svs", size_bytes=10)
    gib30 = 30 * 1024**3
    cases = [
        ("POST", f"/api/cohorts/{cohort.pk}/slides/", gib30, "multipart/form-data; boundary=x", "at most 21,474,"),
        ("PUT", f"/api/uploads/{upload.pk}/", gib30, "application/octet-stream", "at most 21,474,836,480 bytes"),
        ("POST", f"/api/slides/{slide.pk}/annotations/", 300 * 1024**2, "multipart/form-data; boundary=x",
         "at most 268,"),
        ("POST", "/api/projects/", 17 * 1024**2, "application/json", "at most 16,777,216 bytes (16.0 MiB)"),
        ("POST", "/api/ensembles/import/", 5 * 1024**3, "multipart/form-data; boundary=x", "(4.0 GiB)"),
        ("POST", "/accounts/login/", 17 * 1024**2, "application/x-www-form-urlencoded", "16.0 MiB"),
    ]
    for method, url, length, content_type, limit in cases:
        response = _announced(client, method, url, length, content_type=content_type)
        assert response.status_code == 413, (url, response.content)
        detail = response.json()["detail"]
        assert f"announces a body of {length:,} bytes" in detail and limit in detail, detail
        assert "Nothing was read or stored" in detail
    settings.SLIDE_MAX_UPLOAD_BYTES = 1000  # the limit follows the setting
    response = _announced(client, "PUT", f"/api/uploads/{upload.pk}/", 1001, content_type="application/octet-stream")
    assert response.status_code == 413
    assert Slide.objects.count() == 1 and SlideUpload.objects.get(pk=upload.pk).received_bytes == 0
    assert storage.files() == [str(storage.media / str(slide.file.name))]


def test_a_content_length_that_is_no_number_is_a_400(people: dict[str, Any], api_for: Any) -> None:
    response = _announced(api_for(people["admin"]), "POST", "/api/projects/", "lots")
    assert response.status_code == 400 and "Content-Length must be a whole number" in response.json()["detail"]


# --------------------------------------------------------------------------- file names


def _upload(client: Any, cohort: Any, name: str, content: bytes) -> Any:
    body, content_type = multipart("file", name, content)
    return client.generic("POST", f"/api/cohorts/{cohort.pk}/slides/", body, content_type=content_type)


ZWSP, ZWJ, BOM, RLO = "\u200b", "\u200d", "\ufeff", "\u202e"

BAD_NAMES = [
    ("zero-width characters and .svs", f"{ZWSP}{ZWJ}{BOM}.svs",
     "is an empty name before its extension '.svs' once invisible and control characters are removed"),
    ("spaces and .svs", "   .svs", "is an empty name before its extension '.svs'"),
    ("only zero-width characters", f"{ZWSP}{ZWSP}", "has no name"),
    ("a full-width solidus", "a\uff0fb.svs", "contains a path"),
    ("a full-width reverse solidus", "..\uff3cb.svs", "contains a path"),
    ("dots made of invisible parts", f".{ZWSP}.", "contains a path"),
    ("no extension at all", f"slide{ZWSP}", "files without an extension are not accepted"),
    ("a hidden wrong extension", f"slide.svs{ZWSP}.exe", "slide.svs.exe: files '.exe' are not accepted"),
]


@pytest.mark.parametrize(("case", "name", "message"), BAD_NAMES, ids=[c[0] for c in BAD_NAMES])
def test_file_names_are_checked_after_unicode_normalisation(
    case: str, name: str, message: str, people: dict[str, Any], cohort: Any, api_for: Any, storage: Storage,
    testdata: Path,
) -> None:
    client = api_for(people["admin"])
    whole = _upload(client, cohort, name, (testdata / "small.svs").read_bytes())
    assert whole.status_code == 400 and message in whole.json()["detail"], (case, whole.content)
    started = client.post(f"/api/cohorts/{cohort.pk}/uploads/", {"filename": name, "size": 10}, format="json")
    assert started.status_code == 400 and message in started.json()["detail"], (case, started.content)
    assert Slide.objects.count() == 0 and SlideUpload.objects.count() == 0 and storage.files() == []


def test_a_name_is_stored_as_normalised(people: dict[str, Any], cohort: Any, api_for: Any, storage: Storage,
                                        testdata: Path) -> None:
    client = api_for(people["admin"])
    # Full-width letters, a zero-width space, a right-to-left override and a byte-order mark.
    sent = f"{BOM}\uff53\uff4d\uff41{ZWSP}ll{RLO}.svs"
    response = _upload(client, cohort, sent, (testdata / "small.svs").read_bytes())
    assert response.status_code == 201, response.content
    assert response.json()["name"] == "small" and Path(str(Slide.objects.get().file.name)).name == "small.svs"
    started = client.post(f"/api/cohorts/{cohort.pk}/uploads/", {"filename": f"ne{ZWSP}xt.svs", "size": 10},
                          format="json")
    assert started.status_code == 201 and started.json()["filename"] == "next.svs"


def test_an_annotation_file_name_is_checked_too(people: dict[str, Any], slide: Any, api_for: Any,
                                                tmp_path: Path) -> None:
    write_geojson(box(10, 10, 60, 60), tmp_path / "t.geojson")
    response = _post(api_for(people["admin"]), slide, f"{ZWSP}.geojson", (tmp_path / "t.geojson").read_bytes())
    assert response.status_code == 400
    assert "is an empty name before its extension '.geojson'" in response.json()["detail"]
    named = _post(api_for(people["admin"]), slide, f"tu{ZWSP}mor.geojson", (tmp_path / "t.geojson").read_bytes())
    assert named.status_code == 201 and named.json()["original_filename"] == "tumor.geojson"
