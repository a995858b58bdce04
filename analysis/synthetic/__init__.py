"""Synthetic H&E lymph-node whole-slide images for the demo and the tests.

A slide is rendered from a seed: one or two lymph nodes (capsule, subcapsular
sinus, cortex with follicles and pale germinal centres, paracortex, medulla with
sinuses) in perinodal fat on glass, and, on tumor slides, carcinoma metastases
of every size class used by the Camelyon / pN staging rules:

* isolated tumor cells (ITC): major axis < 200 µm,
* micro-metastases: 200 µm - 2 mm,
* macro-metastases: > 2 mm.

Metastases are cohesive nests of large (12-20 µm), pale, vesicular,
pleomorphic nuclei with prominent nucleoli and eosinophilic cytoplasm,
separated by fibrous stroma; lymphocytes are small (6-8 µm), round, dark and
densely packed.  Colour follows the Beer-Lambert law: per-pixel hematoxylin and
eosin concentrations times their optical-density vectors give the absorbance,
``I = I0 * exp(-OD)``.  The "shifted" domain uses other stain vectors and
strengths, another white point, a slightly blurred optical path, more sensor
noise and a saturation change: a visibly different but plausible scanner/lab.

Output is a pyramidal tiled TIFF (JPEG tiles, each level half the size of the
one above, resolution tags in pixels per centimetre) that large-image and
OpenSlide open; level 0 is rendered in bands of one tile row, so memory grows
with the width and a quarter of the area (the level-1 buffer), never with the
full level-0 image.  Ground truth comes with it: tumor polygons in level-0
pixel coordinates (shapely) and ASAP XML / QuPath GeoJSON files.

Example::

    >>> from analysis.synthetic import SlideSpec, generate_slide
    >>> slide = generate_slide(SlideSpec(seed=1, width=1024, height=1024, mpp=2.0), "/tmp/s.tiff")
    >>> [lesion.kind for lesion in slide.lesions]  # doctest: +SKIP
    ['micro', 'itc']

Command line: ``python -m analysis.synthetic OUT_DIR [--preset demo|test] [--seed N]``.
A Camelyon-size slide (98,000 x 215,000 px at 0.243 µm/px), streamed in bounded memory by
:mod:`~analysis.synthetic.large` and :mod:`~analysis.synthetic.stream`:
``python -m analysis.synthetic large OUT_DIR [--seed N] [--rows Y0 Y1]``.

The package's modules, in the order a slide is made: :mod:`~analysis.synthetic.spec`
(what a slide is made from and what comes back); :mod:`~analysis.synthetic.layout`
(the tissue compartments, as data, painted on the field grid of
:mod:`~analysis.synthetic.grid` from :mod:`~analysis.synthetic.node` and
:mod:`~analysis.synthetic.metastases`); :mod:`~analysis.synthetic.cells` (the cell
types, as data, drawn with :mod:`~analysis.synthetic.stamps`);
:mod:`~analysis.synthetic.placement` (where the cells go);
:mod:`~analysis.synthetic.stains` and :mod:`~analysis.synthetic.render` (colour, band
by band); :mod:`~analysis.synthetic.tiff` (the pyramid); :mod:`~analysis.synthetic.slide`
and :mod:`~analysis.synthetic.cohort` (the entry points).  Only the names
below are public; the modules' own names may change.
"""

from analysis.synthetic.cohort import SPLITS, CohortEntry, generate_cohort, main
from analysis.synthetic.large import camelyon_spec, generate_large_slide
from analysis.synthetic.slide import generate_slide
from analysis.synthetic.spec import ITC_MAX_UM, MACRO_MIN_UM, Lesion, SlideSpec, SyntheticSlide, lesion_kind

__all__ = [
    "ITC_MAX_UM",
    "MACRO_MIN_UM",
    "SPLITS",
    "CohortEntry",
    "Lesion",
    "SlideSpec",
    "SyntheticSlide",
    "camelyon_spec",
    "generate_cohort",
    "generate_large_slide",
    "generate_slide",
    "lesion_kind",
    "main",
]
