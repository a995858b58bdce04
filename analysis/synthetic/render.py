"""Band renderer: level-0 RGB rows from the layout, the cells and the stain model."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from analysis.synthetic.cells import make_banks
from analysis.synthetic.layout import FIELD_E, FIELD_EFIB, FIELD_FAT, FIELD_H, FIELD_TISSUE, build_layout
from analysis.synthetic.noise import binomial_blur, periodic_noise
from analysis.synthetic.placement import place_cells
from analysis.synthetic.spec import F32, I64, U8, SlideSpec
from analysis.synthetic.stains import STAIN_MODELS, unit_vector

#: Slides up to this width get textures pre-widened to their width (faster, ~(512 x width) floats each).
_WIDEN_MAX = 16384


class Renderer:
    """Renders level-0 RGB rows ``[y0, y1)`` of a slide, (y1 - y0, width, 3) uint8."""

    def __init__(self, spec: SlideSpec, seed_seq: np.random.SeedSequence) -> None:
        self.spec = spec
        s_layout, s_banks, s_cells, s_tex = seed_seq.spawn(4)
        self.um = 1.0 / spec.mpp
        self.layout = build_layout(spec, np.random.default_rng(s_layout))
        self.banks = make_banks(np.random.default_rng(s_banks), self.um)
        self.cells = place_cells(spec, self.layout, self.banks, np.random.default_rng(s_cells))
        self.stain = STAIN_MODELS[spec.domain]
        self.pad = max(b.size for b in self.banks.values()) // 2 + 1
        self.margin = self.stain.blur_passes
        self._make_textures(np.random.default_rng(s_tex))
        st = self.stain
        self._hv = unit_vector(st.h_vec) * st.h_scale
        self._ev = unit_vector(st.e_vec) * st.e_scale
        # flattened stamp banks and their pixel offsets for the splatter
        self._cols = np.arange(spec.width, dtype=np.int64)
        w_cols = spec.width + 2 * self.pad
        self._bank_h: list[F32] = []
        self._bank_e: list[F32] = []
        self._bank_n: list[F32] = []
        self._bank_off: list[I64] = []
        for name in self.cells.bank_names:
            bank = self.banks[name]
            size = bank.size
            off = np.arange(size, dtype=np.int64) - size // 2
            self._bank_off.append((off[:, None] * w_cols + off[None, :]).ravel())
            self._bank_h.append(bank.h.reshape(bank.count, -1))
            self._bank_e.append(bank.e.reshape(bank.count, -1))
            self._bank_n.append(bank.nucleus.reshape(bank.count, -1))

    def _make_textures(self, rng: np.random.Generator) -> None:
        """Periodic textures, (period, width) each: pre-widened to the slide width up to
        ``_WIDEN_MAX`` pixels (a row gather per band), narrower tiles beyond (a column gather too).
        """
        um = self.um
        n = 512
        W = self.spec.width

        def widen(t: F32) -> F32:
            if W > _WIDEN_MAX:
                return t
            return np.ascontiguousarray(np.tile(t, (1, -(-W // t.shape[1])))[:, :W]).astype(np.float32)

        # collagen: thin wavy ridges of band-passed noise
        a = periodic_noise(rng, n, max(0.8, 2.2 * um))
        b = periodic_noise(rng, n, max(0.8, 2.2 * um))
        c = periodic_noise(rng, n, max(1.0, 5.0 * um))
        ridges = np.exp(-((a / 0.5) ** 2)) + 0.5 * np.exp(-((b / 0.4) ** 2)) + 0.5 + 0.3 * c
        fib = ridges / ridges.mean()
        grain = periodic_noise(rng, n, max(0.5, 0.8 * um))
        # eosin of plain and of fibrous tissue, hematoxylin background granularity
        self.tex_e = widen((1.0 + 0.12 * grain).astype(np.float32))
        self.tex_efib = widen((1.0 + 0.5 * (fib - 1.0) + 0.12 * grain).astype(np.float32))
        self.tex_h = widen((1.0 + 0.15 * grain).astype(np.float32))
        # adipocytes: membranes of a periodic Voronoi tessellation (computed at half resolution)
        step = 2 if um >= 0.75 else 1
        fat_um = step / um
        nt = 512
        cell_um = rng.uniform(55, 80)
        n_seeds = int((nt * fat_um / cell_um) ** 2 * 1.15)
        seeds = rng.uniform(0, nt, (n_seeds, 2))
        tree = cKDTree(seeds, boxsize=nt)
        gy, gx = np.mgrid[0:nt, 0:nt].astype(np.float64) + 0.5
        warp = 5.0 / fat_um  # wavy membranes: query a warped grid
        gy = (gy + warp * periodic_noise(rng, nt, 6.0)) % nt
        gx = (gx + warp * periodic_noise(rng, nt, 6.0)) % nt
        d, nearest = tree.query(np.column_stack([gy.ravel(), gx.ravel()]), k=2)
        # distance to the bisector of the two nearest seeds: (d2^2 - d1^2) / (2 |s1 - s2|), periodic
        sep = seeds[nearest[:, 1]] - seeds[nearest[:, 0]]
        sep -= nt * np.round(sep / nt)
        to_edge = (d[:, 1] ** 2 - d[:, 0] ** 2) / (2 * np.hypot(sep[:, 0], sep[:, 1]) + 1e-9)
        to_edge_um = to_edge.reshape(nt, nt) * fat_um
        mem = np.exp(-((to_edge_um / 1.3) ** 2)).astype(np.float32)
        if step > 1:  # bilinear to full resolution, still periodic
            mem = ndimage.zoom(mem, step, order=1, mode="grid-wrap", grid_mode=True)
        self.tex_fat = widen(mem)
        # sensor noise, a strip of a prime number of rows (no visible period)
        self.noise = rng.standard_normal((3, 127, min(W, _WIDEN_MAX)), dtype=np.float32)
        self.noise *= self.stain.noise_sigma
        self.noise += 0.5  # rounding to nearest when cast to uint8

    def _tex(self, tex: F32, rows: I64) -> F32:
        """Rows ``rows`` of a periodic texture over the slide width, (len(rows), width)."""
        block = tex[rows % tex.shape[0]]
        if block.shape[1] == self.spec.width:
            return block
        return np.take(block, self._cols % tex.shape[1], axis=1)

    # -- fields ---------------------------------------------------------------------------
    def _fields(self, y0: int, y1: int) -> F32:
        """Bilinearly upsampled fields for rows [y0, y1), (5, y1 - y0, width)."""
        L = self.layout.fields
        f = self.layout.f
        t = (np.arange(y0, y1) + 0.5) / f
        i0 = np.clip(np.floor(t).astype(np.int64), 0, L.shape[1] - 2)
        wy = np.clip(t - i0, 0, 1).astype(np.float32)[None, :, None]
        rows = L[:, i0] * (1 - wy) + L[:, i0 + 1] * wy  # (F, h, nx)
        # pixel x = j * f + k sits between samples j and j + 1 at weight (k + 0.5) / f
        wx = ((np.arange(f, dtype=np.float32) + 0.5) / f)[None, None, None, :]
        left = rows[:, :, :-1, None]
        right = rows[:, :, 1:, None]
        up = left + (right - left) * wx  # (F, h, nx - 1, f)
        n_f, h = up.shape[:2]
        return up.reshape(n_f, h, -1)[:, :, : self.spec.width].astype(np.float32, copy=False)

    def _splat(self, y0: int, y1: int) -> tuple[F32, F32, F32]:
        """Hematoxylin, eosin and nuclear cover of the cells for rows [y0, y1), each (y1 - y0, width)."""
        pad = self.pad
        W = self.spec.width
        h_rows = y1 - y0 + 4 * pad  # cells up to ``pad`` outside, stamps up to ``pad`` around them
        w_cols = W + 2 * pad
        cells = self.cells
        lo = int(np.searchsorted(cells.y, y0 - pad, side="left"))
        hi = int(np.searchsorted(cells.y, y1 + pad, side="left"))
        size = h_rows * w_cols
        if hi <= lo:
            z = np.zeros((y1 - y0, W), np.float32)
            return z, z.copy(), z.copy()
        cy = cells.y[lo:hi] - y0 + 2 * pad
        cx = cells.x[lo:hi] + pad
        bank = cells.bank[lo:hi]
        idx = cells.index[lo:hi]
        amp = cells.amp[lo:hi]
        lins: list[I64] = []
        whs: list[F32] = []
        lins_e: list[I64] = []
        wes: list[F32] = []
        wns: list[F32] = []
        for b in np.unique(bank):
            m = bank == b
            base = cy[m] * w_cols + cx[m]
            lin = (base[:, None] + self._bank_off[b][None, :]).ravel()
            a = amp[m][:, None]
            lins.append(lin)
            whs.append((self._bank_h[b][idx[m]] * a).ravel())
            wns.append(self._bank_n[b][idx[m]].ravel())
            be = self._bank_e[b]
            if be.any():
                lins_e.append(lin)
                wes.append((be[idx[m]] * a).ravel())
        lin_all = np.concatenate(lins)
        # weighted bincount: a scatter-add of every stamp pixel onto the band (float64)
        canvas_h = np.asarray(np.bincount(lin_all, np.concatenate(whs), minlength=size), np.float64)
        canvas_n = np.asarray(np.bincount(lin_all, np.concatenate(wns), minlength=size), np.float64)
        if lins_e:
            canvas_e = np.asarray(np.bincount(np.concatenate(lins_e), np.concatenate(wes), minlength=size), np.float64)
        else:
            canvas_e = np.zeros(size, np.float64)
        ch = canvas_h.reshape(h_rows, w_cols)[2 * pad : -2 * pad, pad:-pad].astype(np.float32)
        ce = canvas_e.reshape(h_rows, w_cols)[2 * pad : -2 * pad, pad:-pad].astype(np.float32)
        cn = canvas_n.reshape(h_rows, w_cols)[2 * pad : -2 * pad, pad:-pad].astype(np.float32)
        return ch, ce, cn

    def concentrations(self, y0: int, y1: int) -> tuple[F32, F32]:
        """Hematoxylin and eosin concentration (natural-log OD units) of rows [y0, y1), (h, width) each."""
        fl = self._fields(y0, y1)
        ch, ce, cn = self._splat(y0, y1)
        rows = np.arange(y0, y1, dtype=np.int64)
        # E = Eb * plain texture + Ef * collagen texture + cells + fat membranes
        E = fl[FIELD_E] * self._tex(self.tex_e, rows)
        E += fl[FIELD_EFIB] * self._tex(self.tex_efib, rows)
        E += ce
        # chromatin takes up little eosin: nuclei stay blue-purple
        np.minimum(cn, 1.0, out=cn)
        cn *= -0.6
        cn += 1.0
        E *= cn
        H = fl[FIELD_H] * self._tex(self.tex_h, rows)
        H += ch
        fm = fl[FIELD_FAT] * self._tex(self.tex_fat, rows)
        H += 0.06 * fm
        fm *= 0.5
        E += fm
        # crisp tissue edge from the upsampled signed distance
        tissue = fl[FIELD_TISSUE]
        tissue *= 1.0 / 1.2
        tissue += 0.5
        np.clip(tissue, 0.0, 1.0, out=tissue)
        H *= tissue
        E *= tissue
        return H, E

    def render(self, y0: int, y1: int) -> U8:
        """RGB rows [y0, y1) of level 0, (y1 - y0, width, 3) uint8."""
        m = self.margin
        st = self.stain
        H, E = self.concentrations(y0 - m, y1 + m)
        if m:
            H = binomial_blur(H, m)[m:-m]
            E = binomial_blur(E, m)[m:-m]
        h = y1 - y0
        rows = np.arange(y0, y1)
        # 255 * (I / 255) ** gamma with I = white * exp(-OD): a gamma scales the optical density
        g = st.gamma
        chans: list[F32] = []
        for c in range(3):
            od = H * (self._hv[c] * g)
            od += E * (self._ev[c] * g)
            od += 0.012 * g  # glass
            np.negative(od, out=od)
            np.exp(od, out=od)
            od *= 255.0 * (st.white[c] / 255.0) ** g
            chans.append(od)
        if st.saturation != 1.0:
            grey = chans[0] + chans[1]
            grey += chans[2]
            grey *= (1.0 - st.saturation) / 3.0
            for ch in chans:
                ch *= st.saturation
                ch += grey
        out = np.empty((h, self.spec.width, 3), np.uint8)
        for c, ch in enumerate(chans):
            ch += self._tex(self.noise[c], rows)
            np.clip(ch, 0, 255, out=ch)
            out[..., c] = ch
        return out

