"""One synthetic slide: render it, write the pyramid, describe its metastases."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import shapely

from analysis.synthetic.render import Renderer
from analysis.synthetic.shapes import major_axis
from analysis.synthetic.spec import Lesion, SlideSpec, SyntheticSlide, lesion_kind
from analysis.synthetic.tiff import write_tiff


def generate_slide(spec: SlideSpec, path: str | os.PathLike[str]) -> SyntheticSlide:
    """Render the slide ``spec`` to a pyramidal tiled JPEG TIFF at ``path``.

    Level 0 is ``spec.width x spec.height`` RGB (uint8); level ``k`` is about
    ``1 / 2**k`` of it.  Resolution tags hold ``1e4 / (mpp * 2**k)`` pixels per
    centimetre.  Returns the lesions (tumor outlines in level-0 pixels), tissue
    outlines and sizes; the same spec always gives the same pixels.
    """
    t0 = time.perf_counter()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # the seed fixes the tissue; the domain only changes staining and scanner
    seq = np.random.SeedSequence([spec.seed, 0x5A5A])
    renderer = Renderer(spec, seq)
    write_tiff(spec, renderer, out)
    um = 1.0 / spec.mpp
    lesions = []
    cx, cy = renderer.cells.x, renderer.cells.y
    tumor_bank = np.isin(renderer.cells.bank, [renderer.cells.bank_names.index(n) for n in ("tumor", "mitosis")])
    for (poly, _), faint in zip(renderer.layout.lesions, renderer.layout.faint_lesions, strict=True):
        major = major_axis(poly) / um
        n_cells = int(shapely.contains_xy(poly, cx[tumor_bank] + 0.5, cy[tumor_bank] + 0.5).sum())
        lesions.append(
            Lesion(
                polygon=poly,
                kind=lesion_kind(major),
                major_axis_um=major,
                area_mm2=poly.area * spec.mpp**2 / 1e6,
                n_cells=n_cells,
                faint=faint,
            )
        )
    return SyntheticSlide(
        path=out,
        spec=spec,
        lesions=tuple(lesions),
        tissue=tuple(renderer.layout.tissue),
        nodes=tuple(renderer.layout.nodes),
        level_sizes=tuple(spec.level_sizes()),
        elapsed_s=time.perf_counter() - t0,
    )

