"""A Camelyon-size synthetic slide, rendered and written tile row by tile row in bounded memory.

A Camelyon16 slide is about 100,000 x 220,000 pixels at 0.243 µm/px (a 40x scan),
2.6 x 5.2 cm of glass: 21 gigapixels.  :func:`~analysis.synthetic.slide.generate_slide`
holds what is cheap at 8,192 pixels and not at that size (the layout's fields on
an 8 µm grid, every cell of the slide, bands the full width of the slide, a
quarter of the slide for level 1), so the large slide is made differently, from
the same parts:

* the layout is that of the slide seen at a coarser resolution: the spec at
  ``step`` times the pixel size, whose field grid samples every
  ``step * mpp`` µm (``LARGE_FIELD_SPACING_UM``, 16 µm, rather than 8: the
  layout's memory grows with the area over the square of the spacing); its
  distances are turned into level-0 pixels and its outlines scaled by ``step``;
* cells are placed strip by strip (``CELL_STRIP_ROWS`` level-0 rows, each with
  its own seed), with the package's placement on the strip's part of the layout,
  and forgotten once the rows they reach are written;
* level 0 is rendered window by window (``WINDOW_PX`` columns) by the package's
  renderer, its stamp banks and textures those of the slide's seed, its layout
  and cells swapped for each window's; a window on glass (no tissue within reach)
  copies the glass rows the renderer drew once (one period of its sensor noise);
* :func:`~analysis.synthetic.stream.write_tiff_streamed` writes the pyramid as
  the bands come.

The same spec gives the same pixels; they are not those ``generate_slide`` would
render for it (another layout grid, cells placed per strip).

Command line: ``python -m analysis.synthetic large OUT_DIR [--seed N] [--rows Y0 Y1]``.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import Polygon

from analysis.annotations import write_asap_xml, write_geojson
from analysis.synthetic.layout import FIELD_TISSUE, Layout, build_layout
from analysis.synthetic.placement import Cells, place_cells
from analysis.synthetic.render import Renderer
from analysis.synthetic.shapes import major_axis
from analysis.synthetic.spec import F32, U8, Domain, Lesion, LesionKind, SlideSpec, SyntheticSlide, lesion_kind
from analysis.synthetic.stream import Progress, write_tiff_streamed

#: Level-0 resolution of the Camelyon16 scanners at 40x (µm per pixel).
CAMELYON_MPP = 0.243
#: Level-0 size of the Camelyon-size slide (about that of a Camelyon16 slide), pixels.
CAMELYON_WIDTH = 98_000
CAMELYON_HEIGHT = 215_000
#: Metastases of the Camelyon-size slide: one of each size class.
CAMELYON_LESIONS: tuple[LesionKind, ...] = ("macro", "micro", "itc")

#: Spacing of the layout's field samples on a large slide (µm, at most: rounded down to a power-of-two step).
LARGE_FIELD_SPACING_UM = 16.0
#: Level-0 rows whose cells are placed together (each strip with its own seed).
CELL_STRIP_ROWS = 256
#: Level-0 columns the renderer draws at a time.
WINDOW_PX = 8192
#: Longest period of the renderer's textures (px): windows start on its multiples, so textures run on across them.
_TEXTURE_PERIOD_PX = 1024
#: The coarse spec's pixel size may not exceed the spec's limit.
_MAX_MPP = 16.0
#: Rows of the spec the window renderer is made from (its own layout and cells are never drawn).
_RENDERER_ROWS = 64
#: Tissue distance (level-0 px) at and below which the renderer's tissue weight is 0 (its edge is 1.2 px wide).
_GLASS_SDF_PX = -1.0


def camelyon_spec(seed: int = 0, *, domain: Domain = "in-domain", tumor: bool = True) -> SlideSpec:
    """The Camelyon-size slide: 98,000 x 215,000 pixels at 0.243 µm/px, a macro-, a micro-metastasis and ITCs."""
    return SlideSpec(
        seed=seed,
        width=CAMELYON_WIDTH,
        height=CAMELYON_HEIGHT,
        mpp=CAMELYON_MPP,
        tumor=tumor,
        domain=domain,
        lesions=CAMELYON_LESIONS if tumor else None,
    )


def layout_step(spec: SlideSpec, field_spacing_um: float = LARGE_FIELD_SPACING_UM) -> int:
    """Level-0 pixels between the large slide's field samples: the largest power of two whose
    spacing is at most ``field_spacing_um`` and that divides the cell strips and the windows' alignment.
    """
    if not field_spacing_um > 0:
        raise ValueError(f"field_spacing_um must be positive, got {field_spacing_um}")
    most = min(field_spacing_um, _MAX_MPP) / spec.mpp
    if most < 1:
        raise ValueError(f"a field spacing of {field_spacing_um} µm is finer than a pixel ({spec.mpp} µm)")
    step = 2 ** math.floor(math.log2(most))
    return min(step, CELL_STRIP_ROWS, _TEXTURE_PERIOD_PX)


def _transformed(polygon: Polygon, scale: int, dy: float = 0.0) -> Polygon:
    """An outline scaled by ``scale`` (coarse to level-0 pixels, say) and moved ``dy`` rows."""
    return shapely.transform(polygon, lambda xy: xy * scale + np.array([0.0, dy]))


@dataclass(frozen=True)
class _Window:
    """Level-0 columns ``[x0, x0 + width)``, rendered from column ``x0 - halo`` with this layout.

    ``tissue`` (ny,) is the largest tissue distance of each row of layout samples: a
    band whose rows all lie on glass is copied from the glass rows, not rendered.
    """

    x0: int
    width: int
    layout: Layout
    tissue: F32


class LargeSlide:
    """The layout, cells and renderer of a large slide; :meth:`render` draws level-0 bands.

    Attributes:
        spec: the slide.
        step: level-0 pixels between layout samples.
        lesions: metastases, outlines in level-0 pixels; ``n_cells`` counts the
            tumor cells of the strips placed so far (all of them once the slide is written).
        tissue, nodes: outlines of the tissue and of the lymph nodes, level-0 pixels.
    """

    def __init__(
        self,
        spec: SlideSpec,
        *,
        field_spacing_um: float = LARGE_FIELD_SPACING_UM,
        window_px: int = WINDOW_PX,
    ) -> None:
        if window_px < _TEXTURE_PERIOD_PX or window_px % _TEXTURE_PERIOD_PX:
            raise ValueError(f"window_px must be a positive multiple of {_TEXTURE_PERIOD_PX}, got {window_px}")
        self.spec = spec
        k = self.step = layout_step(spec, field_spacing_um)
        # the seed's streams as generate_slide draws them: layout, stamp banks, cells, textures
        s_layout, _, s_cells, _ = np.random.SeedSequence([spec.seed, 0x5A5A]).spawn(4)
        coarse = replace(spec, width=-(-spec.width // k), height=-(-spec.height // k), mpp=spec.mpp * k, levels=None)
        layout = build_layout(coarse, np.random.default_rng(s_layout))
        if layout.f != 1:
            raise ValueError(f"the coarse layout samples every {layout.f} pixels; use a coarser field spacing")
        # distances in level-0 pixels, outlines in level-0 coordinates: the layout of the slide itself
        layout.fields[FIELD_TISSUE] *= k
        layout.tumor_sdf *= k
        self.layout = replace(
            layout,
            f=k,
            nodes=[_transformed(p, k) for p in layout.nodes],
            tissue=[_transformed(p, k) for p in layout.tissue],
            lesions=[(_transformed(p, k), []) for p, _ in layout.lesions],
            node_centres=[(x * k, y * k) for x, y in layout.node_centres],
        )
        self.tissue = tuple(self.layout.tissue)
        self.nodes = tuple(self.layout.nodes)
        n_strips = -(-spec.height // CELL_STRIP_ROWS)
        self._strip_seeds = s_cells.spawn(n_strips)
        self._home = [int(p.representative_point().y // CELL_STRIP_ROWS) for p, _ in self.layout.lesions]
        self._lesion_cells = [0] * len(self.layout.lesions)
        self._counted: set[int] = set()
        self._strips: dict[int, Cells] = {}
        # the package's renderer over one window: stamp banks and textures of the slide's seed
        width = min(window_px, -(-spec.width // _TEXTURE_PERIOD_PX) * _TEXTURE_PERIOD_PX)
        self._renderer = Renderer(
            replace(spec, width=width, height=_RENDERER_ROWS, tumor=False, lesions=None, levels=None),
            np.random.SeedSequence([spec.seed, 0x5A5A]),
        )
        # the shifted domain's blur reaches across window edges: render each window with a margin
        self._halo = _TEXTURE_PERIOD_PX if self._renderer.margin else 0
        self._windows = self._column_windows(width - 2 * self._halo)
        self._glass: U8 | None = None

    @property
    def lesions(self) -> tuple[Lesion, ...]:
        um = 1.0 / self.spec.mpp
        out = []
        for (poly, _), n_cells, faint in zip(self.layout.lesions, self._lesion_cells, self.layout.faint_lesions,
                                             strict=True):
            major = major_axis(poly) / um
            out.append(Lesion(poly, lesion_kind(major), major, poly.area * self.spec.mpp**2 / 1e6, n_cells, faint))
        return tuple(out)

    def _column_windows(self, step_px: int) -> list[_Window]:
        """Windows of ``step_px`` delivered columns; fields padded at the slide's edges."""
        if step_px < _TEXTURE_PERIOD_PX:
            raise ValueError("windows too narrow for the shifted domain's margin")
        k, halo = self.step, self._halo
        fields = self.layout.fields
        nx = fields.shape[2]
        render_cols = (step_px + 2 * halo) // k + 2
        windows = []
        for x0 in range(0, self.spec.width, step_px):
            c0 = (x0 - halo) // k
            cols = np.arange(c0, c0 + render_cols)
            inside = cols[0] >= 0 and cols[-1] < nx
            window_fields = fields[:, :, cols[0] : cols[-1] + 1] if inside else fields[:, :, np.clip(cols, 0, nx - 1)]
            windows.append(
                _Window(
                    x0,
                    min(step_px, self.spec.width - x0),
                    replace(self.layout, fields=window_fields),
                    window_fields[FIELD_TISSUE].max(axis=1),
                )
            )
        return windows

    def _on_glass(self, window: _Window, y0: int, y1: int) -> bool:
        """Whether rows ``[y0, y1)`` of the window hold no tissue (so neither cells nor stain)."""
        k, m = self.step, self._renderer.margin
        lo, hi = max(0, (y0 - m) // k - 1), (y1 + m) // k + 2
        return bool(window.tissue[lo:hi].max() <= _GLASS_SDF_PX)

    def _glass_rows(self) -> U8:
        """The renderer's pixels of a window on glass, one period of its sensor noise: (period, width, 3).

        Without tissue every pixel is the glass's colour plus the noise of its row
        (modulo the period) and column, so these rows are those of any band on glass.
        """
        if self._glass is None:
            r = self._renderer
            fields = np.zeros_like(self._windows[0].layout.fields)
            fields[FIELD_TISSUE] = 8 * _GLASS_SDF_PX
            r.layout = replace(self.layout, fields=fields)
            none = np.zeros(0, np.int64)
            r.cells = Cells(none, none, np.zeros(0, np.int8), none, np.zeros(0, np.float32), tuple(r.banks))
            self._glass = r.render(0, r.noise.shape[1])
        return self._glass

    # -- cells, strip by strip ------------------------------------------------------------
    def _strip(self, i: int) -> Cells:
        """Cells of level-0 rows ``[i * CELL_STRIP_ROWS, (i + 1) * CELL_STRIP_ROWS)``, sorted by row."""
        k = self.step
        y0 = i * CELL_STRIP_ROWS
        rows = slice(y0 // k, (y0 + CELL_STRIP_ROWS) // k + 2)
        L = self.layout
        # the strip's part of the layout; a lesion gets a tumor cell in the strip of its representative point
        strip = replace(
            L,
            fields=L.fields[:, rows],
            fibrous=L.fibrous[rows],
            density={name: d[rows] for name, d in L.density.items()},
            tumor_sdf=L.tumor_sdf[rows],
            faint=L.faint[rows],
            angle=L.angle[rows],
            lesions=[(_transformed(p, 1, -y0), []) for (p, _), h in zip(L.lesions, self._home, strict=True) if h == i],
            faint_lesions=[f for f, h in zip(L.faint_lesions, self._home, strict=True) if h == i],
        )
        strip_spec = replace(self.spec, height=CELL_STRIP_ROWS, levels=None)
        cells = place_cells(strip_spec, strip, self._renderer.banks, np.random.default_rng(self._strip_seeds[i]))
        cells = replace(cells, y=cells.y + y0)
        if i not in self._counted:
            self._counted.add(i)
            names = cells.bank_names
            tumor = np.isin(cells.bank, [names.index("tumor"), names.index("mitosis")])
            tx, ty = cells.x[tumor] + 0.5, cells.y[tumor] + 0.5
            for n, (poly, _) in enumerate(L.lesions):
                self._lesion_cells[n] += int(shapely.contains_xy(poly, tx, ty).sum())
        return cells

    def _cells(self, y0: int, y1: int) -> Cells:
        """Cells whose stamps reach rows ``[y0, y1)``, sorted by row; strips above are forgotten."""
        pad = self._renderer.pad
        first = max(0, (y0 - 2 * pad) // CELL_STRIP_ROWS)
        last = min(len(self._strip_seeds) - 1, (y1 + 2 * pad) // CELL_STRIP_ROWS)
        for i in [i for i in self._strips if i < first]:
            del self._strips[i]
        for i in range(first, last + 1):
            if i not in self._strips:
                self._strips[i] = self._strip(i)
        parts = [self._strips[i] for i in range(first, last + 1)]
        return Cells(
            y=np.concatenate([c.y for c in parts]),
            x=np.concatenate([c.x for c in parts]),
            bank=np.concatenate([c.bank for c in parts]),
            index=np.concatenate([c.index for c in parts]),
            amp=np.concatenate([c.amp for c in parts]),
            bank_names=parts[0].bank_names,
        )

    # -- pixels ---------------------------------------------------------------------------
    def render(self, y0: int, y1: int) -> U8:
        """RGB rows ``[y0, y1)`` of level 0, (y1 - y0, width, 3) uint8."""
        if not 0 <= y0 < y1 <= self.spec.height:
            raise ValueError(f"rows [{y0}, {y1}) are not inside the slide's {self.spec.height}")
        r = self._renderer
        cells = self._cells(y0, y1)
        out = np.empty((y1 - y0, self.spec.width, 3), np.uint8)
        reach = r.pad
        for window in self._windows:
            if self._on_glass(window, y0, y1):
                glass = self._glass_rows()
                rows = np.arange(y0, y1) % glass.shape[0]
                out[:, window.x0 : window.x0 + window.width] = glass[rows, self._halo : self._halo + window.width]
                continue
            left = window.x0 - self._halo
            near = (cells.x >= left - reach) & (cells.x < left + r.spec.width + reach)
            r.layout = window.layout
            r.cells = Cells(
                y=cells.y[near],
                x=cells.x[near] - left,
                bank=cells.bank[near],
                index=cells.index[near],
                amp=cells.amp[near],
                bank_names=cells.bank_names,
            )
            rgb = r.render(y0, y1)
            out[:, window.x0 : window.x0 + window.width] = rgb[:, self._halo : self._halo + window.width]
        return out


def generate_large_slide(
    spec: SlideSpec,
    path: str | Path,
    *,
    rows: tuple[int, int] | None = None,
    field_spacing_um: float = LARGE_FIELD_SPACING_UM,
    progress: Progress | None = None,
    slide: LargeSlide | None = None,
) -> SyntheticSlide:
    """Render the large slide ``spec`` to a pyramidal tiled JPEG TIFF at ``path``, in bounded memory.

    ``rows = (y0, y1)`` writes only that horizontal band of level 0 (``spec.width x
    (y1 - y0)``, with its own pyramid; outlines then in the band's coordinates, lesions
    outside it left out): the layout is still the whole slide's, so the band's time
    and memory project to the whole slide.  ``slide``: the :class:`LargeSlide` of ``spec``
    if already made (its layout timed apart, say).  Returns the slide as
    :func:`~analysis.synthetic.slide.generate_slide` does.
    """
    t0 = time.perf_counter()
    y0, y1 = rows if rows is not None else (0, spec.height)
    if not 0 <= y0 < y1 <= spec.height:
        raise ValueError(f"rows ({y0}, {y1}) must satisfy 0 <= y0 < y1 <= {spec.height}")
    if slide is not None and slide.spec != spec:
        raise ValueError("slide was made from another spec")
    out = Path(path)
    slide = slide or LargeSlide(spec, field_spacing_um=field_spacing_um)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = replace(spec, height=y1 - y0)
    write_tiff_streamed(written, lambda a, b: slide.render(a + y0, b + y0), out, progress=progress)
    band = shapely.box(0, y0, spec.width, y1)

    def moved(polygons: Sequence[Polygon]) -> tuple[Polygon, ...]:
        return tuple(_transformed(p, 1, -y0) for p in polygons if p.intersects(band))

    lesions = tuple(
        replace(les, polygon=_transformed(les.polygon, 1, -y0)) for les in slide.lesions if les.polygon.intersects(band)
    )
    return SyntheticSlide(
        path=out,
        spec=written,
        lesions=lesions,
        tissue=moved(slide.tissue),
        nodes=moved(slide.nodes),
        level_sizes=tuple(written.level_sizes()),
        elapsed_s=time.perf_counter() - t0,
    )


def write_annotations(slide: SyntheticSlide, **extra: object) -> dict[str, Path]:
    """The slide's tumor outlines as ASAP XML and QuPath GeoJSON and its description (and ``extra``) as JSON,
    beside the TIFF."""
    paths = {
        "xml": slide.path.with_suffix(".xml"),
        "geojson": slide.path.with_suffix(".geojson"),
        "json": slide.path.with_suffix(".json"),
    }
    write_asap_xml(slide.polygons, paths["xml"])
    write_geojson(slide.polygons, paths["geojson"], id_namespace=f"synthetic:{slide.path.stem}")
    meta = slide.metadata() | {
        "elapsed_s": round(slide.elapsed_s, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "tumor_wkt": [p.wkt for p in slide.polygons],
        "tissue_wkt": [p.wkt for p in slide.tissue],
        **extra,
    }
    paths["json"].write_text(json.dumps(meta, indent=1))
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m analysis.synthetic large OUT_DIR [--seed N] [--domain D] [--size W H] [--mpp M] [--rows Y0 Y1]``."""
    parser = argparse.ArgumentParser(
        prog="python -m analysis.synthetic large",
        description="A Camelyon-size synthetic H&E slide (98,000 x 215,000 px at 0.243 µm/px), tile row by tile row.",
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--domain", choices=["in-domain", "shifted"], default="in-domain")
    parser.add_argument("--size", type=int, nargs=2, metavar=("W", "H"), default=(CAMELYON_WIDTH, CAMELYON_HEIGHT))
    parser.add_argument("--mpp", type=float, default=CAMELYON_MPP)
    parser.add_argument(
        "--rows",
        type=int,
        nargs=2,
        metavar=("Y0", "Y1"),
        default=None,
        help="write only this horizontal band of level 0 (to measure a part of the slide)",
    )
    args = parser.parse_args(argv)
    try:
        spec = replace(
            camelyon_spec(args.seed, domain=args.domain), width=args.size[0], height=args.size[1], mpp=args.mpp
        )
    except ValueError as e:
        parser.error(str(e))
    name = f"camelyon_{spec.width}x{spec.height}_seed{spec.seed}"
    if args.rows is not None:
        name += f"_rows{args.rows[0]}-{args.rows[1]}"
    path = args.out_dir / f"{name}.tiff"
    t0 = time.perf_counter()
    layout_s = 0.0
    next_report = [0.0]

    def report(done: int, total: int) -> None:
        if done / total >= next_report[0] or done == total:
            next_report[0] += 0.05
            rate = done * spec.width / 1e6 / (time.perf_counter() - t0 - layout_s)
            print(f"{done}/{total} rows ({done / total:.0%}), {rate:.1f} MP/s since the layout", flush=True)

    rows = None if args.rows is None else (args.rows[0], args.rows[1])
    if rows is not None and not 0 <= rows[0] < rows[1] <= spec.height:
        parser.error(f"rows {rows[0]} {rows[1]} must satisfy 0 <= Y0 < Y1 <= {spec.height}")
    layout = LargeSlide(spec)
    layout_s = time.perf_counter() - t0
    slide = generate_large_slide(spec, path, rows=rows, progress=report, slide=layout)
    tissue = shapely.union_all(layout.tissue).bounds
    write_annotations(
        slide, layout_s=round(layout_s, 1), rows=rows, whole_height=spec.height, tissue_rows=[tissue[1], tissue[3]]
    )
    kinds = ", ".join(f"{les.kind} {les.major_axis_um:.0f} µm" for les in slide.lesions) or "no lesion"
    print(
        f"{path} {spec.width}x{slide.spec.height} at {spec.mpp} µm/px ({kinds}): layout {layout_s:.1f} s, "
        f"pixels {slide.elapsed_s:.1f} s, "
        f"{path.stat().st_size / 2**20:.0f} MiB"
    )
    return 0
