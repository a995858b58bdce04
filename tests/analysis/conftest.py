"""A small synthetic cohort on disk for the `sua evaluate` tests.

Twelve 64 x 64 slides at downsample 16 (level 0 is 1024 x 1024) and 2 um per
level-0 pixel, so one heatmap pixel is 32 um: a 16-pixel lesion (512 um) is
countable for FROC and the dilation is 75 / (2 * 16 * 2) = 1.2 pixels.

Every tumor slide has a lesion square whose core the model finds (s = 252/255)
and whose rim band it misses (s = 204/255 = 0.8: a candidate for the lower
bounds 0.55, 0.65 and 0.75 but not 0.85).  Away from the lesion lies a
square the model is unsure about but which is not tumor (s = 0.8 too).  So
each slide has one false-negative NPR (entirely tumor) and one true-negative
NPR per candidate range; tumor-free slides have only the true-negative one.

The uncertainty inside an NPR is a checkerboard ``base +- 0.25`` whose mean
is exactly ``base``: FN regions have bases >= 0.55, TN regions <= 0.35 in
the validation split and the "camelyon" test domain, so SUA separates them
perfectly there while single pixels overlap (0.35 .. 0.85 vs 0.05 .. 0.6).
The "sentinel" domain is shifted: one tumor-free slide's TN region is very
uncertain (flagged), and two slides carry no uncertainty file (one gives
ensemble members, one only its segmentation).

Files vary on purpose: .npy, float TIFF, 8-bit PNG heatmaps; truth as a PNG
mask at the analysis level, a level-0 .npy mask, a tiled level-0 TIFF mask,
ASAP XML (with a ``_2`` exclusion that cuts nothing), QuPath GeoJSON, and
``"truth": null`` for the tumor-free slides without a PNG mask.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from shapely.geometry import box

from analysis.annotations import write_asap_xml, write_geojson

SIZE = 64
DOWNSAMPLE = 16
MPP = 2.0
BACKGROUND, UNSURE, POSITIVE = 3, 204, 252  # segmentation values x 255

#: Lesion rows/cols [r0, r1) x [c0, c1); the core is the lesion minus a 3-pixel
#: band on its right, which is the missed (FN) region.
LESION = (10, 30, 10, 30)
FN_BAND = (10, 30, 27, 30)
TN_SQUARE = (40, 50, 40, 50)
CHECKER_AMPLITUDE = 0.25


@dataclass
class SlideSpec:
    id: str
    split: str
    domain: str
    tumor: bool
    fn_base: float = 0.6
    tn_base: float = 0.3
    heatmap: str = "npy"  # npy | tif | png
    uncertainty: str = "file"  # file | members | none
    truth: str = "png"  # png | level0-npy | level0-tif | xml | geojson | none (manifest null)


@dataclass
class Cohort:
    manifest: Path
    slides: list[SlideSpec] = field(default_factory=list)

    def domain(self, name: str) -> list[SlideSpec]:
        return [s for s in self.slides if s.split == "test" and s.domain == name]


SLIDES = [
    SlideSpec("val-1", "validation", "camelyon", True, fn_base=0.55, tn_base=0.3),
    SlideSpec("val-2", "validation", "camelyon", True, fn_base=0.65, tn_base=0.25, truth="xml"),
    SlideSpec("val-3", "validation", "camelyon", False, tn_base=0.35, heatmap="tif"),
    SlideSpec("val-4", "validation", "camelyon", True, fn_base=0.7, tn_base=0.3, truth="level0-npy"),
    SlideSpec("cam-1", "test", "camelyon", True, fn_base=0.6, tn_base=0.3),
    SlideSpec("cam-2", "test", "camelyon", True, fn_base=0.75, tn_base=0.26, truth="geojson"),
    SlideSpec("cam-3", "test", "camelyon", True, fn_base=0.58, tn_base=0.33, heatmap="png", truth="level0-tif"),
    SlideSpec("cam-4", "test", "camelyon", False, tn_base=0.3, truth="none"),
    SlideSpec("sen-1", "test", "sentinel", True, fn_base=0.6, tn_base=0.4),
    # Tumor-free slides come without an annotation file (an empty one is an error, SPEC).
    SlideSpec("sen-2", "test", "sentinel", False, tn_base=0.7, truth="none"),
    SlideSpec("sen-3", "test", "sentinel", True, uncertainty="members"),
    SlideSpec("sen-4", "test", "sentinel", False, uncertainty="none", truth="none"),
]


def _square(array: np.ndarray, rect: tuple[int, int, int, int], value: float | bool) -> None:
    r0, r1, c0, c1 = rect
    array[r0:r1, c0:c1] = value


def _checker(rect: tuple[int, int, int, int], base: float) -> np.ndarray:
    r0, r1, c0, c1 = rect
    rows, cols = np.mgrid[r0:r1, c0:c1]
    sign = np.where((rows + cols) % 2 == 0, 1.0, -1.0)
    return (base + CHECKER_AMPLITUDE * sign).astype(np.float32)


def slide_arrays(spec: SlideSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(segmentation, uncertainty, truth) of a slide on the 64 x 64 grid, as the files hold them."""
    level = np.full((SIZE, SIZE), BACKGROUND, dtype=np.uint8)
    truth = np.zeros((SIZE, SIZE), dtype=bool)
    uncertainty = np.full((SIZE, SIZE), 0.02, dtype=np.float32)
    if spec.tumor:
        _square(level, LESION, POSITIVE)
        _square(level, FN_BAND, UNSURE)
        _square(truth, LESION, True)
        r0, r1, c0, c1 = FN_BAND
        uncertainty[r0:r1, c0:c1] = _checker(FN_BAND, spec.fn_base)
    _square(level, TN_SQUARE, UNSURE)
    r0, r1, c0, c1 = TN_SQUARE
    uncertainty[r0:r1, c0:c1] = _checker(TN_SQUARE, spec.tn_base)
    segmentation = level.astype(np.float32) / np.float32(255.0)
    return segmentation, uncertainty, truth


def _write_truth(spec: SlideSpec, truth: np.ndarray, folder: Path) -> str | None:
    level0 = np.kron(truth, np.ones((DOWNSAMPLE, DOWNSAMPLE), dtype=bool))
    r0, r1, c0, c1 = LESION
    lesion = box(c0 * DOWNSAMPLE, r0 * DOWNSAMPLE, c1 * DOWNSAMPLE, r1 * DOWNSAMPLE)
    polygons = [lesion] if spec.tumor else []
    if spec.truth == "none":
        return None
    if spec.truth == "png":
        Image.fromarray(truth.astype(np.uint8) * 255).save(folder / f"{spec.id}-truth.png")
        return f"{spec.id}-truth.png"
    if spec.truth == "level0-npy":
        np.save(folder / f"{spec.id}-truth.npy", level0)
        return f"{spec.id}-truth.npy"
    if spec.truth == "level0-tif":
        tifffile.imwrite(folder / f"{spec.id}-truth.tif", level0.astype(np.uint8), tile=(256, 256))
        return f"{spec.id}-truth.tif"
    if spec.truth == "xml":
        write_asap_xml(polygons, folder / f"{spec.id}.xml", group="_0")
        if spec.tumor:
            # A "_2" exclusion outside the lesion: cuts nothing, but must be read.
            text = (folder / f"{spec.id}.xml").read_text()
            extra = (
                '<Annotation Name="x" Type="Polygon" PartOfGroup="_2" Color="#00FF00"><Coordinates>'
                '<Coordinate Order="0" X="0" Y="0" /><Coordinate Order="1" X="10" Y="0" />'
                '<Coordinate Order="2" X="10" Y="10" /></Coordinates></Annotation></Annotations>'
            )
            (folder / f"{spec.id}.xml").write_text(text.replace("</Annotations>", extra, 1))
        return f"{spec.id}.xml"
    write_geojson(polygons, folder / f"{spec.id}.geojson", classification="Tumor")
    return f"{spec.id}.geojson"


def _write_heatmap(array: np.ndarray, spec: SlideSpec, name: str, folder: Path) -> str:
    if spec.heatmap == "png" and name == "segmentation":
        Image.fromarray(np.round(array * 255).astype(np.uint8)).save(folder / f"{spec.id}-{name}.png")
        return f"{spec.id}-{name}.png"
    if spec.heatmap == "tif":
        tifffile.imwrite(folder / f"{spec.id}-{name}.tif", array)
        return f"{spec.id}-{name}.tif"
    np.save(folder / f"{spec.id}-{name}.npy", array)
    return f"{spec.id}-{name}.npy"


def write_cohort(root: Path, slides: list[SlideSpec] = SLIDES) -> Cohort:
    """Write the slides' files and a manifest (paths relative to it) under ``root``."""
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    entries = []
    for spec in slides:
        segmentation, uncertainty, truth = slide_arrays(spec)
        truth_file = _write_truth(spec, truth, data)
        entry: dict[str, object] = {
            "id": spec.id,
            "split": spec.split,
            "domain": spec.domain,
            "segmentation": "data/" + _write_heatmap(segmentation, spec, "segmentation", data),
            "truth": None if truth_file is None else "data/" + truth_file,
            "mpp": MPP,
            "downsample": DOWNSAMPLE,
        }
        if spec.uncertainty == "file":
            entry["uncertainty"] = "data/" + _write_heatmap(uncertainty, spec, "uncertainty", data)
        elif spec.uncertainty == "members":
            # Three members that agree on the mean but disagree on the unsure squares.
            spread = np.zeros_like(segmentation)
            _square(spread, TN_SQUARE, 0.15)
            _square(spread, FN_BAND, 0.15)
            members = np.stack([segmentation - spread, segmentation, segmentation + spread]).astype(np.float32)
            np.save(data / f"{spec.id}-members.npy", members)
            entry["members"] = f"data/{spec.id}-members.npy"
        entries.append(entry)
    manifest = root / "manifest.json"
    manifest.write_text(json.dumps({"slides": entries}, indent=1))
    return Cohort(manifest=manifest, slides=list(slides))


@pytest.fixture(scope="session")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    """The twelve-slide cohort, written once per test session (read-only for tests)."""
    return write_cohort(tmp_path_factory.mktemp("cohort"))


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread for a module: an oversubscribed OpenMP pool on shared cores is far slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
