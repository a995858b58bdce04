"""The synthetic H&E lymph-node slides: a readable pyramid, truth that matches the pixels."""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import large_image
import numpy as np
import pytest
import shapely
import tifffile
from scipy import ndimage
from shapely.geometry import Polygon
from skimage.color import rgb2hed
from skimage.filters import threshold_otsu
from skimage.morphology import disk

from analysis.annotations import load_tumor_geometry, write_asap_xml, write_geojson
from analysis.synthetic import (
    ITC_MAX_UM,
    MACRO_MIN_UM,
    SPLITS,
    CohortEntry,
    SlideSpec,
    SyntheticSlide,
    generate_slide,
    lesion_kind,
    main,
)
from analysis.synthetic.cohort import _cohort_jobs

#: 4096 x 2048 at 1 um/px: large-image counts five levels (4096 / 256 = 2**4), fast to render.
TUMOR_SPEC = SlideSpec(seed=7, width=4096, height=2048, mpp=1.0, lesions=("micro", "itc"))


@pytest.fixture(scope="module")
def tumor_slide(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSlide:
    return generate_slide(TUMOR_SPEC, tmp_path_factory.mktemp("slides") / "tumor.tiff")


@pytest.fixture(scope="module")
def tumor_pixels(tumor_slide: SyntheticSlide) -> np.ndarray:
    return tifffile.imread(tumor_slide.path, key=0)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _crops_inside(region: shapely.Geometry, pixels: np.ndarray, size: int, n: int) -> list[np.ndarray]:
    """``n`` square crops (size x size) lying wholly inside ``region`` (level-0 pixels)."""
    inner = region.buffer(-0.75 * size)
    assert not inner.is_empty, "region too small for a crop"
    rng = np.random.default_rng(0)
    x0, y0, x1, y1 = inner.bounds
    crops: list[np.ndarray] = []
    while len(crops) < n:
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        if inner.contains(shapely.Point(x, y)):
            crops.append(pixels[int(y) - size // 2 : int(y) + size // 2, int(x) - size // 2 : int(x) + size // 2])
    return crops


def _stain_and_nuclear_size(crops: list[np.ndarray]) -> tuple[float, float, float]:
    """Mean hematoxylin and eosin (colour deconvolution) and a nuclear-size granulometry.

    The granulometry is the share of the hematoxylin-rich (nuclear) mask that survives an
    opening with a disk of 5 px radius: near 0 for 6-8 µm lymphocytes, large for 12-20 µm
    carcinoma nuclei (at 1 µm/px).
    """
    h_mean, e_mean, survive = [], [], []
    for crop in crops:
        hed = rgb2hed(crop)
        h = ndimage.gaussian_filter(hed[..., 0], 1.0)
        nuclei = ndimage.binary_fill_holes(h > threshold_otsu(h))
        opened = ndimage.binary_opening(nuclei, structure=disk(5))
        h_mean.append(hed[..., 0].mean())
        e_mean.append(hed[..., 1].mean())
        survive.append(opened.sum() / max(int(nuclei.sum()), 1))
    return float(np.mean(h_mean)), float(np.mean(e_mean)), float(np.mean(survive))


# ------------------------------------------------------------------------------- determinism


def test_the_same_seed_gives_the_same_bytes(tmp_path: Path) -> None:
    spec = SlideSpec(seed=3, width=640, height=512, mpp=2.0, lesions=("micro",))
    a = generate_slide(spec, tmp_path / "a.tiff")
    b = generate_slide(spec, tmp_path / "b.tiff")
    assert _sha256(a.path) == _sha256(b.path)
    assert [p.wkt for p in a.polygons] == [p.wkt for p in b.polygons]


def test_another_seed_gives_another_slide(tmp_path: Path) -> None:
    a = generate_slide(SlideSpec(seed=3, width=512, height=512, mpp=2.0), tmp_path / "a.tiff")
    b = generate_slide(SlideSpec(seed=4, width=512, height=512, mpp=2.0), tmp_path / "b.tiff")
    assert not np.array_equal(tifffile.imread(a.path, key=0), tifffile.imread(b.path, key=0))


# ------------------------------------------------------------------------------- the pyramid


def test_large_image_opens_the_pyramid_with_the_right_mpp(tumor_slide: SyntheticSlide) -> None:
    source = large_image.open(str(tumor_slide.path))
    meta = source.getMetadata()
    assert (meta["sizeX"], meta["sizeY"]) == (4096, 2048)
    assert (meta["tileWidth"], meta["tileHeight"]) == (256, 256)
    assert meta["levels"] >= 5
    assert meta["mm_x"] == pytest.approx(TUMOR_SPEC.mpp / 1000)
    assert meta["mm_y"] == pytest.approx(TUMOR_SPEC.mpp / 1000)


def test_every_level_is_a_tiled_jpeg_half_the_size_of_the_one_above(tumor_slide: SyntheticSlide) -> None:
    with tifffile.TiffFile(tumor_slide.path) as tif:
        pages = list(tif.pages)
        assert len(pages) == TUMOR_SPEC.n_levels >= 5
        for level, page in enumerate(pages):
            assert isinstance(page, tifffile.TiffPage)
            assert page.is_tiled and (page.tilewidth, page.tilelength) == (256, 256)
            assert page.compression == tifffile.COMPRESSION.JPEG
            assert (page.imagewidth, page.imagelength) == tumor_slide.level_sizes[level]
            x_res = page.tags["XResolution"].value
            assert page.tags["ResolutionUnit"].value == tifffile.RESUNIT.CENTIMETER
            assert x_res[0] / x_res[1] == pytest.approx(1e4 / (TUMOR_SPEC.mpp * 2**level))
        first = pages[0]
        assert isinstance(first, tifffile.TiffPage) and "MPP = 1" in first.description


def test_tiles_decode_at_every_level(tumor_slide: SyntheticSlide) -> None:
    source = large_image.open(str(tumor_slide.path))
    for z in range(source.levels):
        tiles = list(source.tileIterator(level=z, format=large_image.constants.TILE_FORMAT_NUMPY))
        assert tiles
        for tile in tiles:
            arr = tile["tile"]
            assert arr.dtype == np.uint8 and arr.shape[2] >= 3
            assert arr.shape[0] == tile["height"] and arr.shape[1] == tile["width"]
    # the lowest level shows tissue (darker than glass) in the middle
    thumb, _ = source.getThumbnail(width=256, format=large_image.constants.TILE_FORMAT_NUMPY)
    assert thumb[..., :3].mean() < 235


def test_large_image_and_tifffile_read_the_same_pixels(tumor_slide: SyntheticSlide, tumor_pixels: np.ndarray) -> None:
    source = large_image.open(str(tumor_slide.path))
    region, _ = source.getRegion(
        region={"left": 1000, "top": 500, "width": 300, "height": 200},
        format=large_image.constants.TILE_FORMAT_NUMPY,
    )
    np.testing.assert_array_equal(region[..., :3], tumor_pixels[500:700, 1000:1300])


# ------------------------------------------------------------------------------- truth vs pixels


def test_tumor_polygons_lie_inside_the_slide_and_the_tissue(tumor_slide: SyntheticSlide) -> None:
    assert tumor_slide.polygons
    slide_box = shapely.box(0, 0, TUMOR_SPEC.width, TUMOR_SPEC.height)
    tissue = shapely.union_all(tumor_slide.tissue)
    nodes = shapely.union_all(tumor_slide.nodes)
    for lesion in tumor_slide.lesions:
        assert lesion.polygon.is_valid and lesion.polygon.area > 0
        assert lesion.polygon.within(slide_box)
        assert lesion.polygon.within(tissue) and lesion.polygon.within(nodes)
        assert lesion.n_cells >= 1
        assert lesion.kind == lesion_kind(lesion.major_axis_um)
    assert {lesion.kind for lesion in tumor_slide.lesions} == {"micro", "itc"}


def test_tissue_is_darker_than_glass(tumor_slide: SyntheticSlide, tumor_pixels: np.ndarray) -> None:
    h, w = tumor_pixels.shape[:2]
    yy, xx = np.mgrid[0:h:8, 0:w:8]
    inside = shapely.contains_xy(shapely.union_all(tumor_slide.tissue), xx + 0.5, yy + 0.5)
    sample = tumor_pixels[::8, ::8].astype(float).mean(axis=2)
    assert sample[~inside].mean() > 225  # glass is near white
    assert sample[inside].mean() < sample[~inside].mean() - 25


def test_metastasis_pixels_differ_from_lymphoid_pixels(tumor_slide: SyntheticSlide, tumor_pixels: np.ndarray) -> None:
    tumor = max(tumor_slide.polygons, key=lambda p: p.area)
    lymphoid = tumor_slide.nodes[0].buffer(-150).difference(shapely.union_all(tumor_slide.polygons).buffer(60))
    h_t, e_t, size_t = _stain_and_nuclear_size(_crops_inside(tumor, tumor_pixels, 96, 4))
    h_l, e_l, size_l = _stain_and_nuclear_size(_crops_inside(lymphoid, tumor_pixels, 96, 4))
    # carcinoma: paler nuclei, more eosinophilic cytoplasm, and larger nuclei than the dense small lymphocytes
    assert h_l > 1.15 * h_t
    assert e_t / h_t > 1.2 * e_l / h_l
    assert size_t > 0.3 and size_t > 1.5 * size_l


def test_a_tumor_free_slide_has_no_lesions(tmp_path: Path) -> None:
    slide = generate_slide(SlideSpec(seed=5, width=768, height=768, mpp=2.0, tumor=False), tmp_path / "n.tiff")
    assert slide.lesions == () and slide.polygons == []
    assert slide.metadata()["lesions"] == []


def test_lesion_kinds_follow_the_size_rules() -> None:
    assert lesion_kind(ITC_MAX_UM - 1) == "itc"
    assert lesion_kind(ITC_MAX_UM) == "micro"
    assert lesion_kind(MACRO_MIN_UM) == "micro"
    assert lesion_kind(MACRO_MIN_UM + 1) == "macro"


def test_a_macro_metastasis_is_over_two_millimetres(tmp_path: Path) -> None:
    spec = SlideSpec(seed=11, width=4096, height=4096, mpp=2.0, lesions=("macro",))
    slide = generate_slide(spec, tmp_path / "m.tiff")
    assert [lesion.kind for lesion in slide.lesions] == ["macro"]
    assert slide.lesions[0].major_axis_um > MACRO_MIN_UM


def test_a_faint_micro_metastasis_is_a_sparse_spread_of_tumor_cells(tmp_path: Path) -> None:
    slide = generate_slide(SlideSpec(seed=21, width=4096, height=4096, mpp=1.0, lesions=("micro", "faint")),
                           tmp_path / "f.tiff")
    faint = [lesion for lesion in slide.lesions if lesion.faint]
    cohesive = [lesion for lesion in slide.lesions if not lesion.faint]
    assert len(faint) == 1 and len(cohesive) == 1
    # A micro-metastasis by its size, so it counts as one; in the manifest it says it is faint.
    assert faint[0].kind == "micro" and faint[0].to_json()["faint"] is True and "faint" not in cohesive[0].to_json()
    # Tumor cells per mm2: well under half of a cohesive metastasis's (lymphocytes stay among them).
    assert faint[0].n_cells / faint[0].area_mm2 < 0.5 * cohesive[0].n_cells / cohesive[0].area_mm2
    # No nests and no stroma: lymphocytes stay among its cells (the cohesive one has almost none).
    pixels = tifffile.imread(slide.path, key=0)
    dark = rgb2hed(pixels)[..., 0] > 0.12  # small dense nuclei: lymphocytes take up the most haematoxylin

    def dark_share(region: shapely.Geometry) -> float:
        x0, y0, x1, y1 = (int(v) for v in region.bounds)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        return float(dark[y0:y1, x0:x1][shapely.contains_xy(region, xx + 0.5, yy + 0.5)].mean())

    assert dark_share(faint[0].polygon.buffer(-20)) > 2 * dark_share(cohesive[0].polygon.buffer(-20))


def test_look_alikes_are_drawn_in_the_node_and_leave_the_truth_alone(tmp_path: Path) -> None:
    spec = SlideSpec(seed=21, width=4096, height=4096, mpp=1.0, lesions=("faint",))
    plain = generate_slide(spec, tmp_path / "plain.tiff")
    with_mimics = generate_slide(SlideSpec(**{**spec.__dict__, "mimics": 3}), tmp_path / "mimics.tiff")
    # The same tissue and truth: the look-alikes come from their own random stream and are not tumor.
    assert [p.wkt for p in plain.polygons] == [p.wkt for p in with_mimics.polygons]
    assert [p.wkt for p in plain.nodes] == [p.wkt for p in with_mimics.nodes]
    # At the scale of the aggregates (64 px blocks) the slides differ only there: in the node, never in a lesion
    # (cells elsewhere may be drawn with other stamps: the cell placement's draws follow the densities).
    k = 64

    def blocks(path: Path) -> np.ndarray:
        pixels = tifffile.imread(path, key=0).astype(float)
        return pixels.reshape(4096 // k, k, 4096 // k, k, 3).mean(axis=(1, 3))

    diff = np.abs(blocks(plain.path) - blocks(with_mimics.path)).sum(axis=-1)
    assert np.median(diff) < 1 and (diff > 30).sum() >= 10
    ys, xs = np.nonzero(diff > 30)
    centres_x, centres_y = xs * k + k / 2, ys * k + k / 2
    assert shapely.contains_xy(shapely.union_all(with_mimics.nodes), centres_x, centres_y).all()
    assert not shapely.contains_xy(shapely.union_all(with_mimics.polygons), centres_x, centres_y).any()
    with pytest.raises(ValueError, match="mimics"):
        SlideSpec(mimics=-1)


def test_the_demo_cohort_is_made_to_be_hard() -> None:
    # Every test domain: two tumor-free slides at least; every tumor slide a faint micro-metastasis;
    # look-alikes on every slide.
    jobs = _cohort_jobs("demo", 0)
    for split in ("test_in_domain", "test_shifted"):
        specs = [job.spec for job in jobs if job.split == split]
        assert sum(not spec.tumor for spec in specs) >= 2
    for job in jobs:
        assert job.spec.mimics > 0
        if job.spec.tumor:
            assert job.spec.lesions is not None and "faint" in job.spec.lesions
    # The test preset stays as it was: no faint lesions, no look-alikes.
    assert all(job.spec.mimics == 0 and "faint" not in (job.spec.lesions or ()) for job in _cohort_jobs("test", 0))


# ------------------------------------------------------------------------------- domain shift


def test_the_shifted_domain_has_another_colour_distribution(tmp_path: Path) -> None:
    base = SlideSpec(seed=9, width=1024, height=1024, mpp=2.0, lesions=("micro",))
    a = generate_slide(base, tmp_path / "a.tiff")
    b = generate_slide(SlideSpec(**{**base.__dict__, "domain": "shifted"}), tmp_path / "b.tiff")
    # the seed fixes the tissue; the domain only changes the staining and the scanner
    assert [p.wkt for p in a.polygons] == [p.wkt for p in b.polygons]
    pa = tifffile.imread(a.path, key=0).reshape(-1, 3).astype(float)
    pb = tifffile.imread(b.path, key=0).reshape(-1, 3).astype(float)
    assert np.abs(pa.mean(0) - pb.mean(0)).max() > 8
    # per-channel histograms differ (total variation distance)
    for c in range(3):
        ha = np.histogram(pa[:, c], bins=32, range=(0, 256))[0] / len(pa)
        hb = np.histogram(pb[:, c], bins=32, range=(0, 256))[0] / len(pb)
        assert 0.5 * np.abs(ha - hb).sum() > 0.2
    # and it is still a plausible slide: near-white glass, darker tissue
    assert pb.mean(0).min() > 150


# ------------------------------------------------------------------------------- annotations


def test_cohort_asap_xml_and_geojson_hold_the_same_coordinates(
    synthetic_cohort_entries: tuple[Path, list[CohortEntry]],
) -> None:
    # The session's test cohort (tests/conftest.py): generate_cohort(preset="test", seed=0).
    _, entries = synthetic_cohort_entries
    entry = next(e for e in entries if e.tumor and e.lesions)
    assert entry.xml is not None and entry.geojson is not None
    root = ET.parse(entry.xml).getroot()
    xml_polys = []
    for ann in root.iter("Annotation"):
        assert ann.get("PartOfGroup") == "Tumor" and ann.get("Type") == "Polygon"
        coords = sorted(ann.iter("Coordinate"), key=lambda c: int(c.get("Order", "0")))
        xml_polys.append([(float(c.get("X", "nan")), float(c.get("Y", "nan"))) for c in coords])
    assert [g.get("Name") for g in root.iter("Group")] == ["Tumor"]
    doc = json.loads(entry.geojson.read_text())
    assert doc["type"] == "FeatureCollection"
    geo_polys = []
    for feature in doc["features"]:
        assert feature["properties"]["classification"]["name"] == "Tumor"
        assert feature["properties"]["objectType"] == "annotation"
        ring = feature["geometry"]["coordinates"][0]
        assert ring[0] == ring[-1]
        geo_polys.append([(x, y) for x, y in ring[:-1]])
    assert xml_polys == geo_polys
    assert len(xml_polys) == len(entry.lesions)
    assert all(len(p) >= 3 for p in xml_polys)


def test_annotation_files_match_the_returned_polygons_exactly(tmp_path: Path) -> None:
    spec = SlideSpec(seed=2, width=1024, height=1024, mpp=2.0, lesions=("micro", "itc"))
    slide = generate_slide(spec, tmp_path / "s.tiff")
    xml = tmp_path / "s.xml"
    write_asap_xml(slide.polygons, xml)
    geo = tmp_path / "s.geojson"
    write_geojson(slide.polygons, geo, id_namespace="s")
    expected = [list(p.exterior.coords)[:-1] for p in slide.polygons]
    root = ET.parse(xml).getroot()
    got_xml = [
        [(float(c.get("X", "nan")), float(c.get("Y", "nan"))) for c in ann.iter("Coordinate")]
        for ann in root.iter("Annotation")
    ]
    got_geo = [
        [tuple(xy) for xy in f["geometry"]["coordinates"][0][:-1]] for f in json.loads(geo.read_text())["features"]
    ]
    assert got_xml == expected
    assert got_geo == expected
    # the project's own reader agrees
    for path in (xml, geo):
        truth = load_tumor_geometry(path)
        assert truth.area == pytest.approx(shapely.union_all(slide.polygons).area, rel=1e-9)


# ------------------------------------------------------------------------------- cohorts


def test_the_test_cohort_has_every_split_with_tumor_and_tumor_free_slides(
    synthetic_cohort_entries: tuple[Path, list[CohortEntry]],
) -> None:
    tmp_path, entries = synthetic_cohort_entries
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [s["name"] for s in manifest["splits"]] == [name for name, _ in SPLITS]
    assert len(manifest["slides"]) == len(entries) == 8
    ids = [s["id"] for s in manifest["slides"]]
    assert len(set(ids)) == len(ids)
    for split, domain in SPLITS:
        rows = [s for s in manifest["slides"] if s["split"] == split]
        assert {s["tumor"] for s in rows} == {True, False}
        assert {s["domain"] for s in rows} == {domain}
    for row in manifest["slides"]:
        image = tmp_path / row["image"]
        assert image.is_file() and image.parent.name == row["split"]
        assert row["mpp"] == 2.0 and 512 <= row["width"] <= 1024
        if row["tumor"]:
            assert (tmp_path / row["annotation_xml"]).is_file()
            assert (tmp_path / row["annotation_geojson"]).is_file()
            assert row["lesions"]
        else:
            assert row["annotation_xml"] is None and row["annotation_geojson"] is None
            assert row["lesions"] == []


def test_the_command_line_writes_a_cohort(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "out"), "--preset", "test", "--seed", "2", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "[ 8/8]" in out and "manifest" in out
    assert (tmp_path / "out" / "manifest.json").is_file()


def test_bad_specs_are_refused() -> None:
    with pytest.raises(ValueError, match="domain"):
        SlideSpec(domain="other")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tile_size"):
        SlideSpec(tile_size=100)
    with pytest.raises(ValueError, match="lesion"):
        SlideSpec(lesions=("huge",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mpp"):
        SlideSpec(mpp=0)
    assert SlideSpec(width=512, height=512).n_levels == 5
    assert SlideSpec(width=16384, height=1000).n_levels == 7


def test_polygons_are_shapely_polygons_in_level0_pixels(tumor_slide: SyntheticSlide) -> None:
    for polygon in tumor_slide.polygons:
        assert isinstance(polygon, Polygon)
        x0, y0, x1, y1 = polygon.bounds
        assert 0 <= x0 < x1 <= TUMOR_SPEC.width and 0 <= y0 < y1 <= TUMOR_SPEC.height
