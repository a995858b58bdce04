"""Annotation formats, tumor geometry, rasterisation and mask outlines."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import MultiPolygon, Polygon, box

from analysis.annotations import (
    Annotation,
    annotations_csv,
    asap_xml,
    geojson,
    load_tumor_geometry,
    mask_to_polygons,
    rasterize,
    read_annotations,
    read_asap_xml,
    read_csv,
    read_geojson,
    valid_multipolygon,
    write_asap_xml,
    write_geojson,
)
from analysis.io import InputError

# Coordinates that do not survive a "%.6f" or float32 round trip.
AWKWARD = Polygon([(0.1 + 0.2, 1e-7), (123456.789012345, 0.0), (98765.4321, 54321.000001), (1 / 3, 2 / 3 * 1e5)])
WITH_HOLE = Polygon(
    [(0.0, 0.0), (100.5, 0.0), (100.5, 80.25), (0.0, 80.25)],
    [[(20.125, 20.0), (40.0, 20.0), (40.0, 40.0 + 1 / 7), (20.125, 40.0)]],
)

CAMELYON_XML = """<?xml version="1.0"?>
<ASAP_Annotations>
  <Annotations>
    <Annotation Name="Annotation 0" Type="Polygon" PartOfGroup="_0" Color="#F4FA58">
      <Coordinates>
        <Coordinate Order="2" X="100" Y="100" />
        <Coordinate Order="0" X="0" Y="0" />
        <Coordinate Order="3" X="0,0" Y="100,0" />
        <Coordinate Order="1" X="100" Y="0" />
      </Coordinates>
    </Annotation>
    <Annotation Name="Annotation 1" Type="Spline" PartOfGroup="_1" Color="#F4FA58">
      <Coordinates>
        <Coordinate Order="0" X="200" Y="0" /><Coordinate Order="1" X="250" Y="0" />
        <Coordinate Order="2" X="250" Y="50" />
      </Coordinates>
    </Annotation>
    <Annotation Name="Annotation 2" Type="Polygon" PartOfGroup="_2" Color="#64FE2E">
      <Coordinates>
        <Coordinate Order="0" X="25" Y="25" /><Coordinate Order="1" X="75" Y="25" />
        <Coordinate Order="2" X="75" Y="75" /><Coordinate Order="3" X="25" Y="75" />
      </Coordinates>
    </Annotation>
    <Annotation Name="Annotation 3" Type="Dot" PartOfGroup="_0" Color="#F4FA58">
      <Coordinates><Coordinate Order="0" X="500" Y="500" /></Coordinates>
    </Annotation>
    <Annotation Name="Annotation 4" Type="Polygon" PartOfGroup="Stroma" Color="#F4FA58">
      <Coordinates>
        <Coordinate Order="0" X="300" Y="0" /><Coordinate Order="1" X="400" Y="0" />
        <Coordinate Order="2" X="400" Y="100" />
      </Coordinates>
    </Annotation>
  </Annotations>
  <AnnotationGroups>
    <Group Name="_0" PartOfGroup="None" Color="#FF0000"><Attributes /></Group>
    <Group Name="_1" PartOfGroup="None" Color="#FF0000"><Attributes /></Group>
    <Group Name="_2" PartOfGroup="None" Color="#00FF00"><Attributes /></Group>
  </AnnotationGroups>
</ASAP_Annotations>
"""


def _coords(polygon: Polygon) -> list[list[tuple[float, ...]]]:
    return [list(polygon.exterior.coords), *[list(ring.coords) for ring in polygon.interiors]]


# --------------------------------------------------------------------------- ASAP XML


def test_asap_round_trip_is_exact(tmp_path: Path) -> None:
    write_asap_xml([AWKWARD, box(5, 6, 7, 8)], tmp_path / "a.xml", group="metastases")
    annotations = read_asap_xml(tmp_path / "a.xml")
    assert [a.label for a in annotations] == ["metastases", "metastases"]
    assert _coords(annotations[0].geometry) == _coords(AWKWARD)
    assert _coords(annotations[1].geometry) == _coords(box(5, 6, 7, 8))


def test_asap_holes_become_exclusions_and_come_back(tmp_path: Path) -> None:
    write_asap_xml(WITH_HOLE, tmp_path / "h.xml")
    annotations = read_asap_xml(tmp_path / "h.xml")
    assert [a.label for a in annotations] == ["Tumor", "_2"]
    assert list(annotations[1].geometry.exterior.coords) == list(WITH_HOLE.interiors[0].coords)
    geometry = load_tumor_geometry(tmp_path / "h.xml")
    assert geometry.equals(MultiPolygon([WITH_HOLE]))


def test_camelyon_groups_order_commas_and_exclusion(tmp_path: Path) -> None:
    (tmp_path / "c.xml").write_text(CAMELYON_XML)
    annotations = read_asap_xml(tmp_path / "c.xml")
    assert [a.name for a in annotations] == ["Annotation 0", "Annotation 1", "Annotation 2", "Annotation 4"]
    assert list(annotations[0].geometry.exterior.coords)[:4] == [(0, 0), (100, 0), (100, 100), (0, 100)]
    geometry = load_tumor_geometry(tmp_path / "c.xml")
    expected = box(0, 0, 100, 100).difference(box(25, 25, 75, 75)).union(Polygon([(200, 0), (250, 0), (250, 50)]))
    assert geometry.equals(expected)
    assert geometry.area == pytest.approx(100 * 100 - 50 * 50 + 50 * 50 / 2)
    # The setting decides which groups are tumor.
    assert load_tumor_geometry(tmp_path / "c.xml", tumor_classes=("stroma",)).area == pytest.approx(5000)


def test_asap_groups_count_through_their_parents(tmp_path: Path) -> None:
    xml = CAMELYON_XML.replace('<Group Name="_1" PartOfGroup="None"', '<Group Name="_1" PartOfGroup="Lesions"').replace(
        "</AnnotationGroups>", '<Group Name="Lesions" PartOfGroup="None" /></AnnotationGroups>'
    )
    (tmp_path / "p.xml").write_text(xml)
    only_lesions = load_tumor_geometry(tmp_path / "p.xml", tumor_classes=("Lesions",))
    assert only_lesions.equals(Polygon([(200, 0), (250, 0), (250, 50)]))


def test_bad_xml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.xml").write_text("<ASAP_Annotations><Annotations>")
    with pytest.raises(InputError, match=r"bad\.xml: cannot read ASAP XML"):
        load_tumor_geometry(tmp_path / "bad.xml")
    (tmp_path / "nan.xml").write_text(CAMELYON_XML.replace('X="250" Y="50"', 'X="abc" Y="50"'))
    with pytest.raises(InputError, match=r"nan\.xml: annotation 1 coordinate 2 is not a number \('abc'\)"):
        read_asap_xml(tmp_path / "nan.xml")


# --------------------------------------------------------------------------- GeoJSON


def test_geojson_round_trip_is_exact_with_holes(tmp_path: Path) -> None:
    write_geojson([AWKWARD, WITH_HOLE], tmp_path / "g.geojson", classification="Metastasis")
    annotations = read_geojson(tmp_path / "g.geojson")
    assert [a.label for a in annotations] == ["Metastasis", "Metastasis"]
    assert _coords(annotations[0].geometry) == _coords(AWKWARD)
    assert _coords(annotations[1].geometry) == _coords(WITH_HOLE)
    assert load_tumor_geometry(tmp_path / "g.geojson").equals(MultiPolygon([AWKWARD, WITH_HOLE]).buffer(0))


def _feature(geometry: Mapping[str, object], name: str | None) -> dict[str, object]:
    properties: dict[str, object] = {"objectType": "annotation", "isLocked": False}
    if name is not None:
        properties["classification"] = {"name": name, "color": [200, 0, 0]}
    return {"type": "Feature", "id": "c3f2", "geometry": geometry, "properties": properties}


def test_qupath_bare_feature_list_with_classes_and_multipolygons(tmp_path: Path) -> None:
    ring = [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]
    hole = [[2, 2], [4, 2], [4, 4], [2, 4], [2, 2]]
    far = [[100, 100], [110, 100], [110, 110], [100, 100]]
    features = [
        _feature({"type": "Polygon", "coordinates": [ring, hole]}, "Tumor"),
        _feature({"type": "MultiPolygon", "coordinates": [[far], [[[50, 0], [60, 0], [60, 5], [50, 0]]]]}, "tumor"),
        _feature({"type": "Polygon", "coordinates": [[[20, 20], [30, 20], [30, 30], [20, 20]]]}, "Stroma"),
        _feature({"type": "Polygon", "coordinates": [[[40, 40], [45, 40], [45, 45], [40, 40]]]}, None),
        _feature({"type": "Point", "coordinates": [1, 1]}, "Tumor"),
        {"type": "Feature", "geometry": None, "properties": {}},
    ]
    (tmp_path / "q.json").write_text(json.dumps(features))
    annotations = read_geojson(tmp_path / "q.json")
    assert [a.label for a in annotations] == ["Tumor", "tumor", "Stroma", ""]
    geometry = load_tumor_geometry(tmp_path / "q.json")
    assert geometry.area == pytest.approx(100 - 4 + 50 + 25)
    assert not geometry.contains(shapely.Point(3, 3))  # in the hole
    assert load_tumor_geometry(tmp_path / "q.json", tumor_classes=("Stroma",)).area == pytest.approx(50)


def test_invalid_outlines_are_repaired_keeping_their_area(tmp_path: Path) -> None:
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]]]}
    (tmp_path / "b.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": [_feature(bowtie, "Tumor")]})
    )
    geometry = load_tumor_geometry(tmp_path / "b.geojson")
    assert geometry.is_valid and geometry.area == pytest.approx(50)


def test_bad_geojson_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "x.geojson").write_text('{"type": "Topology"}')
    with pytest.raises(InputError, match=r"x\.geojson: not a GeoJSON"):
        load_tumor_geometry(tmp_path / "x.geojson")
    (tmp_path / "y.geojson").write_text(json.dumps([_feature({"type": "Polygon", "coordinates": [[[0, 0]]]}, "T")]))
    with pytest.raises(InputError, match=r"y\.geojson: feature 0 has a bad geometry"):
        read_geojson(tmp_path / "y.geojson")


# --------------------------------------------------------------------------- labelled annotations

TWO_PARTS = MultiPolygon([box(200, 200, 210.5, 210), box(220, 200, 230, 210.25)])
LABELLED = [
    Annotation("Region 1", "Tumor", AWKWARD),
    Annotation("Region 2", "Not tumor", WITH_HOLE),
    Annotation("Region 3", "Unsure", TWO_PARTS),
]


def _same(a: Polygon | MultiPolygon, b: Polygon | MultiPolygon) -> bool:
    """The same polygons with the same coordinates, bit for bit."""
    parts_a = list(a.geoms) if isinstance(a, MultiPolygon) else [a]
    parts_b = list(b.geoms) if isinstance(b, MultiPolygon) else [b]
    return len(parts_a) == len(parts_b) and all(_coords(x) == _coords(y) for x, y in zip(parts_a, parts_b, strict=True))


def test_labelled_geojson_is_what_qupath_imports_and_reads_back_exactly(tmp_path: Path) -> None:
    document = geojson(LABELLED, colors={"Tumor": (200, 0, 0), "Unsure": (255, 170, 0)},
                       properties=[{"measurements": {"score": 0.5}}, {"comment": "rim"}, {}])
    assert document["type"] == "FeatureCollection"
    first, second, third = (f["properties"] for f in document["features"])
    assert first == {"objectType": "annotation", "name": "Region 1", "measurements": {"score": 0.5},
                     "classification": {"name": "Tumor", "color": [200, 0, 0]}}
    assert second["classification"] == {"name": "Not tumor"} and second["comment"] == "rim"
    assert third["classification"] == {"name": "Unsure", "color": [255, 170, 0]}
    assert document["features"][2]["geometry"]["type"] == "MultiPolygon"
    (tmp_path / "labelled.geojson").write_text(json.dumps(document))
    back = read_annotations(tmp_path / "labelled.geojson")
    assert [(a.name, a.label) for a in back] == [(a.name, a.label) for a in LABELLED]
    assert all(_same(a.geometry, b.geometry) for a, b in zip(back, LABELLED, strict=True))
    with pytest.raises(ValueError, match="2 property sets for 3 annotations"):
        geojson(LABELLED, properties=[{}, {}])


def test_labelled_asap_xml_has_a_coloured_group_per_label_and_reads_back_exactly(tmp_path: Path) -> None:
    (tmp_path / "labelled.xml").write_bytes(asap_xml(LABELLED, colors={"Tumor": "#C80000", "Unsure": "#FFAA00"}))
    root = ET.parse(tmp_path / "labelled.xml").getroot()
    assert {g.get("Name"): g.get("Color") for g in root.iter("Group")} == {
        "Tumor": "#C80000", "Not tumor": "#64FE2E", "_2": "#64FE2E", "Unsure": "#FFAA00"}
    back = read_asap_xml(tmp_path / "labelled.xml")
    assert [(a.name, a.label) for a in back] == [
        ("Region 1", "Tumor"), ("Region 2", "Not tumor"), ("Region 2 hole 0", "_2"),
        ("Region 3 part 0", "Unsure"), ("Region 3 part 1", "Unsure")]
    assert _coords(back[0].geometry) == _coords(AWKWARD)
    assert list(back[2].geometry.exterior.coords) == list(WITH_HOLE.interiors[0].coords)
    assert [_coords(a.geometry) for a in back[3:]] == [_coords(p) for p in TWO_PARTS.geoms]
    # Camelyon's reading: the tumor group, holes (group _2) cut out.
    assert load_tumor_geometry(tmp_path / "labelled.xml", tumor_classes=("Not tumor",)).equals(WITH_HOLE)


def test_annotations_csv_has_wkt_outlines_that_read_back_exactly(tmp_path: Path) -> None:
    text = annotations_csv(LABELLED, columns=[{"score": 0.5}, {"comment": 'a "quoted", two-line\nnote'}, {}])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["name", "classification", "score", "comment", "geometry"]
    assert [(r["score"], r["comment"]) for r in rows] == [("0.5", ""), ("", 'a "quoted", two-line\nnote'), ("", "")]
    (tmp_path / "labelled.csv").write_text(text)
    back = read_csv(tmp_path / "labelled.csv")
    assert [(a.name, a.label) for a in back] == [(a.name, a.label) for a in LABELLED]
    assert all(_same(a.geometry, b.geometry) for a, b in zip(back, LABELLED, strict=True))
    assert read_annotations(tmp_path / "labelled.csv") == back
    (tmp_path / "no-geometry.csv").write_text("name,outline\nRegion 1,POLYGON EMPTY\n")
    with pytest.raises(InputError, match=r"no-geometry\.csv: no 'geometry' column"):
        read_csv(tmp_path / "no-geometry.csv")
    (tmp_path / "bad.csv").write_text("name,geometry\nRegion 1,POLYGON ((0 0, 1\n")
    with pytest.raises(InputError, match=r"bad\.csv: row 1 has a bad WKT geometry"):
        read_csv(tmp_path / "bad.csv")


# --------------------------------------------------------------------------- rasterisation


def test_rasterize_hand_computed_centres() -> None:
    # d = 10: centres at 5, 15, 25, 35 in both axes.
    triangle = Polygon([(0, 0), (40, 0), (0, 40)])  # inside when x + y < 40
    expected = np.array(
        [
            [1, 1, 1, 0],  # y=5: x=5,15,25 (30 < 40), x=35 -> 40: on the edge, not strictly left of it
            [1, 1, 0, 0],  # y=15: 20, 30 inside; 40 on the edge
            [1, 0, 0, 0],
            [0, 0, 0, 0],  # y=35: x=5 -> 40 on the edge
        ],
        dtype=bool,
    )
    np.testing.assert_array_equal(rasterize(triangle, shape=(4, 4), downsample=10), expected)
    ring = box(0, 0, 40, 40).difference(box(10, 10, 30, 30))  # hole holds centres (15|25, 15|25)
    expected_ring = np.ones((4, 4), dtype=bool)
    expected_ring[1:3, 1:3] = False
    np.testing.assert_array_equal(rasterize(ring, shape=(4, 4), downsample=10), expected_ring)
    # A box from 6 to 14 holds no centre at d = 10 (5 and 15 are outside) ...
    assert not rasterize(box(6, 6, 14, 14), shape=(3, 3), downsample=10).any()
    # ... and one from 4 to 6 holds exactly one.
    assert rasterize(box(4, 4, 6, 6), shape=(3, 3), downsample=10).sum() == 1


def test_rasterize_edges_through_centres_are_half_open() -> None:
    # Two boxes sharing the edge x = 15 (a centre column): each centre is claimed exactly once.
    left, right = box(0, 0, 15, 40), box(15, 0, 40, 40)
    a = rasterize(left, shape=(4, 4), downsample=10)
    b = rasterize(right, shape=(4, 4), downsample=10)
    assert not (a & b).any() and (a | b).all()
    np.testing.assert_array_equal(a[0], [True, False, False, False])


def test_rasterize_clips_to_the_grid_and_handles_empty() -> None:
    big = box(-100, -100, 1000, 1000)
    assert rasterize(big, shape=(3, 5), downsample=4).all()
    assert not rasterize(MultiPolygon(), shape=(3, 5), downsample=4).any()
    assert rasterize(big, shape=(0, 5), downsample=4).shape == (0, 5)


def test_rasterize_merges_overlapping_parts_of_invalid_input() -> None:
    overlapping = MultiPolygon([box(0, 0, 30, 30), box(10, 10, 40, 40)])  # invalid: parts overlap
    out = rasterize(overlapping, shape=(4, 4), downsample=10)
    assert out[1, 1] and out[2, 2]  # inside both parts: even-odd alone would drop it


@st.composite
def _polygons(draw: st.DrawFn) -> Polygon:
    n = draw(st.integers(3, 12))
    angles = np.sort(np.array(draw(st.lists(st.floats(0, 2 * np.pi), min_size=n, max_size=n))))
    radii = np.array(draw(st.lists(st.floats(5, 60), min_size=n, max_size=n)))
    cx, cy = draw(st.floats(20, 80)), draw(st.floats(20, 80))
    return Polygon(np.c_[cx + radii * np.cos(angles), cy + radii * np.sin(angles)])


@settings(max_examples=60, deadline=None)
@given(polygon=_polygons(), downsample=st.sampled_from([1.0, 2.5, 3.0, 7.0]))
def test_rasterize_agrees_with_shapely_off_the_boundary(polygon: Polygon, downsample: float) -> None:
    geometry = shapely.make_valid(polygon)
    height, width = int(110 / downsample) + 2, int(130 / downsample) + 2
    rows, cols = np.mgrid[0:height, 0:width]
    x, y = (cols + 0.5) * downsample, (rows + 0.5) * downsample
    inside = shapely.contains_xy(geometry, x, y)
    on_edge = shapely.dwithin(geometry.boundary, shapely.points(x, y), 1e-9)
    out = rasterize(geometry, shape=(height, width), downsample=downsample)
    np.testing.assert_array_equal(out[~on_edge], inside[~on_edge])


def test_rasterize_is_fast_on_a_large_grid() -> None:
    import time

    circle = shapely.Point(5000, 5000).buffer(4000, quad_segs=1000)  # 4000 vertices
    start = time.perf_counter()
    out = rasterize(circle, shape=(2000, 2000), downsample=5)
    assert time.perf_counter() - start < 2.0
    assert out.sum() == pytest.approx(np.pi * 800**2, rel=1e-3)


# --------------------------------------------------------------------------- mask outlines


def _shapes() -> dict[str, np.ndarray]:
    ring = np.zeros((9, 9), dtype=bool)
    ring[1:8, 1:8] = True
    ring[3:6, 3:6] = False
    ring[4, 4] = True  # an island in the hole
    diagonal = np.eye(6, dtype=bool) | np.eye(6, dtype=bool)[::-1]
    rng = np.random.default_rng(5)
    return {
        "ring": ring,
        "diagonal": diagonal,
        "single": np.pad(np.ones((1, 1), dtype=bool), 2),
        "full": np.ones((4, 7), dtype=bool),
        "noise": rng.random((40, 50)) > 0.55,
    }


@pytest.mark.parametrize("name", list(_shapes()))
@pytest.mark.parametrize("downsample", [1.0, 4.0, 2.5])
def test_mask_to_polygons_round_trips(name: str, downsample: float) -> None:
    mask = _shapes()[name]
    polygons = mask_to_polygons(mask, downsample=downsample)
    assert all(p.is_valid for p in polygons)
    back = rasterize(shapely.union_all(polygons), shape=mask.shape, downsample=downsample)
    np.testing.assert_array_equal(back, mask)
    assert sum(p.area for p in polygons) == pytest.approx(mask.sum() * downsample**2)


def test_mask_to_polygons_keeps_holes_and_drops_collinear_vertices() -> None:
    polygons = mask_to_polygons(_shapes()["ring"], downsample=2)
    ring = max(polygons, key=lambda p: p.area)
    assert len(ring.interiors) == 1
    assert len(ring.exterior.coords) == 5  # a square: 4 corners + closing vertex
    assert mask_to_polygons(np.zeros((3, 3)), downsample=1) == []


def test_overlapping_parts_of_a_multipolygon_stay_area_when_it_is_repaired() -> None:
    # Two squares overlapping in a 1 x 2 strip: an invalid MultiPolygon that
    # make_valid on the whole would read with a hole where they overlap.
    overlapping = MultiPolygon([box(0, 0, 2, 2), box(1, 0, 3, 2)])
    assert not overlapping.is_valid
    repaired = valid_multipolygon(overlapping)
    assert repaired.is_valid and repaired.geom_type == "MultiPolygon"
    assert repaired.area == pytest.approx(6.0)
    assert valid_multipolygon(shapely.GeometryCollection([box(0, 0, 1, 1), shapely.Point(5, 5)])).area == 1.0


# --------------------------------------------------------------------------- files that outline no tumor


def _asap(*annotations: tuple[str, str, list[tuple[float, float]]]) -> str:
    """ASAP XML of (type, group, points) annotations."""
    body = "".join(
        f'<Annotation Name="A{i}" Type="{kind}" PartOfGroup="{group}"><Coordinates>'
        + "".join(f'<Coordinate Order="{j}" X="{x}" Y="{y}" />' for j, (x, y) in enumerate(points))
        + "</Coordinates></Annotation>"
        for i, (kind, group, points) in enumerate(annotations)
    )
    return f"<ASAP_Annotations><Annotations>{body}</Annotations></ASAP_Annotations>"


SQUARE = [(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)]


@pytest.mark.parametrize(("name", "content", "message"), [
    ("empty.geojson", '{"type": "FeatureCollection", "features": []}',
     "the file holds no annotations. A tumor-free slide needs no annotation file"),
    ("empty.xml", "<ASAP_Annotations><Annotations /></ASAP_Annotations>", "holds no annotations"),
    ("points.geojson", json.dumps([_feature({"type": "Point", "coordinates": [1, 1]}, "Tumor"),
                                   _feature({"type": "MultiPoint", "coordinates": [[1, 1], [5, 5]]}, "Tumor")]),
     "none of its 2 annotations encloses an area (MultiPoint (1), Point (1)); tumor must be outlined by polygons "
     "of at least 3 distinct vertices"),
    ("one-vertex.xml", _asap(("Polygon", "Tumor", [(5, 5)])),
     r"none of its 1 annotations encloses an area (polygon of 1 distinct vertex (1))"),
    ("repeated.xml", _asap(("Polygon", "_0", [(5, 5), (9, 9), (5, 5), (9, 9)]), ("Dot", "_0", [(1, 1)])),
     "(Dot (1), polygon of 2 distinct vertices (1))"),
    ("sliver.geojson", json.dumps([_feature({"type": "Polygon", "coordinates": [[[0, 0], [4, 4], [4, 4], [0, 0]]]},
                                            "Tumor")]), "polygon of 2 distinct vertices (1)"),
    ("stroma.geojson", json.dumps([_feature(shapely.geometry.mapping(box(0, 0, 9, 9)), "Stroma"),
                                   _feature(shapely.geometry.mapping(box(20, 0, 29, 9)), "Stroma"),
                                   _feature(shapely.geometry.mapping(box(40, 0, 49, 9)), None)]),
     "no class in it means tumor: it holds the classes (no class) (1), Stroma (2); tumor classes are Tumor, "
     "Metastasis"),
    ("groups.xml", _asap(("Polygon", "Lymphocytes", SQUARE), ("Polygon", "_2", SQUARE)),
     "no group in it means tumor: it holds the groups _2 (1), Lymphocytes (1); tumor groups are Tumor, _0, _1, "
     "metastases, metastasis"),
    ("tumor-dots.xml", _asap(("Dot", "Tumor", [(1, 1)]), ("Polygon", "Stroma", SQUARE)),
     "its tumor annotations enclose no area (Dot (1)); tumor must be outlined by polygons of at least 3 distinct "
     "vertices. Its areas are of the groups Stroma (1)"),
    ("line.xml", _asap(("Polygon", "Tumor", [(0, 0), (5, 5), (10, 10)])), "vertices lie on one line"),
    ("cut-out.xml", _asap(("Polygon", "_0", SQUARE), ("Polygon", "_2", [(-1, -1), (11, -1), (11, 11), (-1, 11)])),
     "its tumor outlines lie entirely inside its exclusion groups (_2), which leaves no tumor"),
])
def test_a_file_that_outlines_no_tumor_is_an_error_saying_why(tmp_path: Path, name: str, content: str,
                                                              message: str) -> None:
    from analysis.errors import NoTumorAreaError

    (tmp_path / name).write_text(content)
    with pytest.raises(NoTumorAreaError) as caught:
        load_tumor_geometry(tmp_path / name)
    assert str(caught.value).startswith(f"{tmp_path / name}: ")
    assert message in str(caught.value)


def test_points_beside_a_tumor_outline_are_left_out_and_named_when_asked(tmp_path: Path) -> None:
    from analysis.annotations import read_annotation_file

    (tmp_path / "mixed.xml").write_text(_asap(("Polygon", "Tumor", SQUARE), ("Dot", "Tumor", [(50, 50)]),
                                              ("Polygon", "Tumor", [(70, 70), (80, 80)])))
    assert load_tumor_geometry(tmp_path / "mixed.xml").equals(box(0, 0, 10, 10))
    read = read_annotation_file(tmp_path / "mixed.xml")
    assert [a.name for a in read.annotations] == ["A0"]
    assert [(s.name, s.kind) for s in read.skipped] == [("A1", "Dot"), ("A2", "polygon of 2 distinct vertices")]


def test_group_names_match_without_case_and_metastasis_singular_is_tumor(tmp_path: Path) -> None:
    (tmp_path / "c16.xml").write_text(_asap(("Polygon", "Metastasis", SQUARE), ("Polygon", "TUMOR", [
        (20, 0), (30, 0), (30, 10)])))
    assert load_tumor_geometry(tmp_path / "c16.xml").area == pytest.approx(100 + 50)


def test_the_error_carries_the_labels_and_tumor_classes(tmp_path: Path) -> None:
    from analysis.errors import NoTumorAreaError

    (tmp_path / "s.geojson").write_text(json.dumps([_feature(shapely.geometry.mapping(box(0, 0, 9, 9)), "Stroma")]))
    with pytest.raises(NoTumorAreaError) as caught:
        load_tumor_geometry(tmp_path / "s.geojson", tumor_classes=("Tumour",))
    assert caught.value.labels == ("Stroma",) and caught.value.tumor_classes == ("Tumour",)
    assert "tumor classes are Tumour" in str(caught.value)
