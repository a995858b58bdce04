"""The paper's parameters, in one place.

Every number the SPEC names is a default here and a keyword argument (or a
command-line option, or a Django setting) everywhere it is used, so that no
threshold is written twice.  Django settings read their defaults from this
module too.
"""

from __future__ import annotations

#: Ranges (lower, upper) of the segmentation heatmap that make up the
#: candidate pixels of negative prediction regions (paper §3.2, Table 1).
PAPER_RANGES: tuple[tuple[float, float], ...] = (
    (0.55, 0.95),
    (0.65, 0.95),
    (0.75, 0.95),
    (0.85, 0.95),
)

#: Segmentation cutoff: a pixel is predicted tumor where ``s >= UPPER``.
SEGMENTATION_CUTOFF: float = 0.95

#: How an NPR's pixel uncertainties become one score ("mean" or "pNN").
AGGREGATE: str = "mean"
#: The candidates of aggregation "auto": the one with the better calibrated
#: validation F-beta wins (``analysis.metrics.choose_aggregate``), as in the paper.
AUTO_AGGREGATES: tuple[str, ...] = ("mean", "p90")

#: Pixel-wise uncertainty: "entropy" (of the mean; the paper's), "mi", "variance".
UNCERTAINTY: str = "entropy"

#: An NPR is a true false negative when at least this fraction lies in tumor.
FN_FRACTION: float = 0.9

#: beta of the F-beta score used for calibration and reporting (precision-weighted).
BETA: float = 0.5

#: Bootstrap resamples of slides, and the seed that makes them repeatable.
BOOTSTRAP: int = 1000
SEED: int = 0

#: Camelyon16 FROC: truth dilated by this many micrometres ...
FROC_DILATION_UM: float = 75.0
#: ... and lesions whose major axis is shorter than this are isolated tumor cells.
ITC_MAJOR_AXIS_UM: float = 275.0
#: Average false positives per slide at which FROC sensitivity is read.
FROC_FP_RATES: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
#: Detections are the 8-connected components of ``s >= DETECTION_CUTOFF``.
DETECTION_CUTOFF: float = 0.5

#: Tumor class names in QuPath GeoJSON exports and ASAP XML groups.
GEOJSON_TUMOR_CLASSES: tuple[str, ...] = ("Tumor", "Metastasis")
#: (Names match without regard to case; "metastasis", singular, is in circulating Camelyon16 copies.)
ASAP_TUMOR_GROUPS: tuple[str, ...] = ("Tumor", "_0", "_1", "metastases", "metastasis")
ASAP_EXCLUDE_GROUPS: tuple[str, ...] = ("_2",)

#: Deep ensemble (paper §4.1-4.2).
ENSEMBLE_MEMBERS: int = 5
LEARNING_RATE: float = 0.01
ADAM_BETAS: tuple[float, float] = (0.9, 0.999)
LR_DECAY: float = 0.1
LR_PATIENCE_EPOCHS: int = 20
MAX_EPOCHS: int = 250
HEALTHY_PER_TUMOR_PATCH: int = 4

#: Tissue mask (inference, training and the cohort page's "Tissue %" alike):
#: Otsu on HSV saturation, never below this floor (glass is unsaturated) ...
TISSUE_MIN_SATURATION: float = 0.04
#: ... dust under this many mask pixels dropped, holes up to this many filled ...
TISSUE_MIN_OBJECT_PX: int = 16
TISSUE_MAX_HOLE_PX: int = 64
#: ... on a thumbnail at least this coarse (Otsu sees tissue, not nuclei) and
#: at most this many pixels on its longer side.
TISSUE_MIN_DOWNSAMPLE: float = 16.0
TISSUE_MAX_SIDE: int = 4096

#: Whole-slide inference (analysis.inference.run_ensemble): threads that decode
#: tissue tiles side by side (JPEG and zlib decoders release the GIL) ...
INFERENCE_DECODE_THREADS: int = 4
#: ... batches decoded ahead of the model (a bounded queue, so memory does not
#: grow with the slide) ...
INFERENCE_PREFETCH: int = 3
#: ... and the longest wait, in seconds, before progress is reported and a
#: cancel request is answered, even inside a batch.
INFERENCE_POLL_S: float = 0.25
