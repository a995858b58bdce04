// @ts-check
/* SUA Portal: the viewer's vector layers (tumor outlines, the positive prediction's outline, a run's regions)
 * on one canvas over the slide, drawn to scale:
 *  - culled to the viewport through a grid index of the shapes' bounding boxes;
 *  - simplified per zoom level (Douglas-Peucker at about one screen pixel, computed once per shape and level);
 *  - a shape smaller than a few screen pixels drawn as a dot, so that no region goes missing at any zoom;
 *  - a set of many shapes drawn from a raster of the whole set at low zoom (a few sizes, each made once), so a
 *    frame costs one drawImage however many regions are on screen;
 *  - while the view moves, the layer as drawn at rest (a snapshot with a margin around the view) moved and scaled
 *    with it, and drawn afresh when the view comes to rest.
 * Shapes come as flat arrays (the layout of /api/runs/{id}/layers/{slide}/, sua_portal/runs/layers.py). */

/**
 * Outlines as flat arrays: shape i has rings rings[i] .. rings[i + 1] - 1, ring k has points
 * points[k] .. points[k + 1] - 1, point p is coords[2p], coords[2p + 1] (level-0 pixels).
 * @typedef {{ count: number, rings: ArrayLike<number>, points: ArrayLike<number>, coords: ArrayLike<number> }} FlatShapes
 */

/**
 * How one class of shapes is drawn: outline colour and width (CSS pixels), fill (null: none), dash pattern.
 * @typedef {{ stroke: string, width: number, fill: string | null, dash?: number[] }} ShapeClass
 */

/** Sets with at least this many shapes are drawn from a raster at low zoom. */
const RASTER_MIN_SHAPES = 1500;
/** Longest side of the finest raster of a set, in pixels. */
const RASTER_SIDE = 4096;
/** Coarser rasters, each half the size of the one before. */
const RASTER_LEVELS = 5;
/** Above this many shapes in view, a set stays on its finest raster (magnified) rather than drawn shape by shape. */
const VECTOR_BUDGET = 6000;
/** A shape smaller than this (device pixels) on screen is a dot of this size. */
const DOT = 3;
/** Simplification tolerance, in device pixels. */
const TOLERANCE_PX = 0.75;
/** The snapshot drawn at rest reaches this fraction of the view's size beyond each side (see VectorLayer.draw). */
const SNAPSHOT_MARGIN = 0.25;

/**
 * Douglas-Peucker over one closed ring: the kept points' indices (as point numbers) pushed to `keep`.
 * The ring is walked as an open line from its first point back to it, so the farthest point is always kept.
 * @param {ArrayLike<number>} coords
 * @param {number} first first point of the ring
 * @param {number} end one past its last point
 * @param {number} tol2 squared tolerance (level-0 pixels)
 * @param {number[]} keep
 */
function simplifyRing(coords, first, end, tol2, keep) {
  const n = end - first;
  /** @param {number} j @returns {number} */
  const at = (j) => first + (j % n);
  const marked = new Uint8Array(n + 1);
  marked[0] = 1;
  marked[n] = 1;
  const stack = [0, n];
  while (stack.length) {
    const b = /** @type {number} */ (stack.pop());
    const a = /** @type {number} */ (stack.pop());
    const ax = coords[2 * at(a)], ay = coords[2 * at(a) + 1];
    const dx = coords[2 * at(b)] - ax, dy = coords[2 * at(b) + 1] - ay;
    const len2 = dx * dx + dy * dy;
    let worst = -1, worstD = tol2;
    for (let j = a + 1; j < b; j++) {
      const px = coords[2 * at(j)] - ax, py = coords[2 * at(j) + 1] - ay;
      let d;
      if (len2 === 0) d = px * px + py * py;
      else {
        const cross = px * dy - py * dx;
        d = cross * cross / len2;
      }
      if (d > worstD) { worstD = d; worst = j; }
    }
    if (worst >= 0) {
      marked[worst] = 1;
      stack.push(a, worst, worst, b);
    }
  }
  for (let j = 0; j < n; j++) if (marked[j]) keep.push(first + j);
}

/** One set of shapes: its data, bounding boxes, grid index, simplified copies and rasters. */
class ShapeSet {
  /**
   * @param {FlatShapes} flat
   * @param {Uint8Array} classOf each shape's class
   * @param {ShapeClass[]} classes
   * @param {number} width the slide's width (level-0 pixels)
   * @param {number} height
   */
  constructor(flat, classOf, classes, width, height) {
    this.n = flat.count;
    this.rings = Uint32Array.from(flat.rings);
    this.points = Uint32Array.from(flat.points);
    this.coords = Float64Array.from(flat.coords);
    this.classOf = classOf;
    this.classes = classes;
    this.visible = true;
    this.width = width;
    this.height = height;
    /** @type {Map<number, (Float64Array | undefined)[]>} simplified copies by level (tolerance 2^level) */
    this.simplified = new Map();
    /** @type {Map<number, HTMLCanvasElement>} rasters by level (0: the finest) */
    this.rasters = new Map();
    this.rasterScale = Math.min(1, RASTER_SIDE / Math.max(width, height, 1));
    this.bbox = new Float64Array(4 * this.n);
    for (let i = 0; i < this.n; i++) {
      let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
      const p0 = this.points[this.rings[i]], p1 = this.points[this.rings[i + 1]];
      for (let p = p0; p < p1; p++) {
        const x = this.coords[2 * p], y = this.coords[2 * p + 1];
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
      if (p1 === p0) { x0 = y0 = x1 = y1 = NaN; }
      this.bbox.set([x0, y0, x1, y1], 4 * i);
    }
    // The grid index (buildGrid): cells `cell` pixels square, gx x gy of them; the shapes of cell c are
    // cellItems[cellStart[c] .. cellStart[c + 1] - 1]; shapes spanning many cells are in `big`.
    this.cell = 1;
    this.gx = 1;
    this.gy = 1;
    this.cellStart = new Uint32Array(2);
    this.cellItems = new Uint32Array(0);
    /** @type {number[]} */
    this.big = [];
    this.buildGrid();
    this.stamp = new Uint32Array(this.n);
    this.round = 0;
    this.hits = new Uint32Array(Math.min(this.n, 1 << 16) || 1);
  }

  buildGrid() {
    const across = Math.max(1, Math.min(256, Math.ceil(Math.sqrt(this.n / 2))));
    this.cell = Math.max(this.width, this.height, 1) / across;
    this.gx = Math.ceil(this.width / this.cell) + 1;
    this.gy = Math.ceil(this.height / this.cell) + 1;
    const cells = this.gx * this.gy;
    const counts = new Uint32Array(cells + 1);
    this.big = [];
    /** @param {number} i @param {(c: number) => void} visit */
    const each = (i, visit) => {
      const b = 4 * i;
      if (Number.isNaN(this.bbox[b])) return;
      const c0 = this.cellX(this.bbox[b]), c1 = this.cellX(this.bbox[b + 2]);
      const r0 = this.cellY(this.bbox[b + 1]), r1 = this.cellY(this.bbox[b + 3]);
      if ((c1 - c0 + 1) * (r1 - r0 + 1) > 64) { if (visit === count) this.big.push(i); return; }
      for (let r = r0; r <= r1; r++) for (let c = c0; c <= c1; c++) visit(r * this.gx + c);
    };
    /** @param {number} c */
    const count = (c) => { counts[c + 1] += 1; };
    for (let i = 0; i < this.n; i++) each(i, count);
    for (let c = 0; c < cells; c++) counts[c + 1] += counts[c];
    this.cellStart = counts;
    this.cellItems = new Uint32Array(counts[cells]);
    const fill = counts.slice(0, cells);
    for (let i = 0; i < this.n; i++) each(i, (c) => { this.cellItems[fill[c]++] = i; });
  }

  /** @param {number} x */
  cellX(x) { return Math.max(0, Math.min(this.gx - 1, Math.floor(x / this.cell))); }
  /** @param {number} y */
  cellY(y) { return Math.max(0, Math.min(this.gy - 1, Math.floor(y / this.cell))); }

  /**
   * The shapes whose boxes meet a rectangle (level-0 pixels), in index order, at most `limit`.
   * @returns {number} how many (in this.hits[0 .. count - 1]); more than limit means "too many"
   */
  query(/** @type {number} */ x0, /** @type {number} */ y0, /** @type {number} */ x1, /** @type {number} */ y1,
    /** @type {number} */ limit) {
    this.round += 1;
    const round = this.round;
    let found = 0;
    /** @param {number} i */
    const take = (i) => {
      if (this.stamp[i] === round) return;
      this.stamp[i] = round;
      const b = 4 * i;
      if (this.bbox[b] > x1 || this.bbox[b + 2] < x0 || this.bbox[b + 1] > y1 || this.bbox[b + 3] < y0) return;
      if (found >= this.hits.length) {
        const grown = new Uint32Array(Math.min(this.n, this.hits.length * 2));
        grown.set(this.hits);
        this.hits = grown;
      }
      this.hits[found++] = i;
    };
    for (const i of this.big) take(i);
    const c0 = this.cellX(x0), c1 = this.cellX(x1), r0 = this.cellY(y0), r1 = this.cellY(y1);
    for (let r = r0; r <= r1; r++) {
      for (let c = c0; c <= c1; c++) {
        const cell = r * this.gx + c;
        const end = this.cellStart[cell + 1];
        for (let k = this.cellStart[cell]; k < end; k++) {
          take(this.cellItems[k]);
          if (found > limit) return found;
        }
      }
    }
    this.hits.subarray(0, found).sort();  // the server's order (regions: highest score first) stays the order
    return found;
  }

  /**
   * Shape i simplified at `level` (tolerance 2^level level-0 pixels): [rings, n0, x, y, ..., n1, x, y, ...].
   * @param {number} i
   * @param {number} level
   * @returns {Float64Array}
   */
  simplifiedShape(i, level) {
    let copies = this.simplified.get(level);
    if (!copies) { copies = new Array(this.n); this.simplified.set(level, copies); }
    const hit = copies[i];
    if (hit) return hit;
    const tol2 = Math.pow(4, level);
    /** @type {number[]} */
    const out = [0];
    const r0 = this.rings[i], r1 = this.rings[i + 1];
    for (let r = r0; r < r1; r++) {
      /** @type {number[]} */
      const keep = [];
      const first = this.points[r], end = this.points[r + 1];
      simplifyRing(this.coords, first, end, tol2, keep);
      if (keep.length < 3) {
        if (r > r0) continue;  // a hole smaller than the tolerance: gone
        keep.length = 0;
        for (let p = first; p < end; p++) keep.push(p);  // the outline itself stays, whatever its size
      }
      out[0] += 1;
      out.push(keep.length);
      for (const p of keep) out.push(this.coords[2 * p], this.coords[2 * p + 1]);
    }
    const shape = Float64Array.from(out);
    copies[i] = shape;
    return shape;
  }

  /**
   * Draw shapes (indices[0 .. count - 1]) with their classes' styles, level-0 pixels mapped by scale and origin.
   * @param {CanvasRenderingContext2D} ctx
   * @param {ArrayLike<number>} indices
   * @param {number} count
   * @param {{ x: number, y: number, scale: number }} view device pixels: screen = origin + scale * level-0
   * @param {number} lineScale multiplies every line width (device pixels per CSS pixel, more for rasters)
   * @param {ShapeClass} [override] one style for all of them instead of their classes'
   * @returns {number} shapes drawn
   */
  draw(ctx, indices, count, view, lineScale, override) {
    const { x: ox, y: oy, scale: s } = view;
    const tolerance = TOLERANCE_PX / s;
    const level = tolerance >= 2 ? Math.floor(Math.log2(tolerance)) : 0;
    const classes = override ? [override] : this.classes;
    /** @type {number[][]} */
    const byClass = classes.map(() => []);
    /** @type {number[][]} */
    const dots = classes.map(() => []);
    for (let k = 0; k < count; k++) {
      const i = indices[k];
      const b = 4 * i;
      if (Number.isNaN(this.bbox[b])) continue;
      const c = override ? 0 : this.classOf[i];
      if ((this.bbox[b + 2] - this.bbox[b]) * s < DOT && (this.bbox[b + 3] - this.bbox[b + 1]) * s < DOT) {
        dots[c].push(ox + s * (this.bbox[b] + this.bbox[b + 2]) / 2, oy + s * (this.bbox[b + 1] + this.bbox[b + 3]) / 2);
      } else {
        byClass[c].push(i);
      }
    }
    for (let c = 0; c < classes.length; c++) {
      const style = classes[c];
      if (byClass[c].length) {
        ctx.beginPath();
        for (const i of byClass[c]) this.trace(ctx, i, level, ox, oy, s);
        if (style.fill) { ctx.fillStyle = style.fill; ctx.fill("evenodd"); }
        ctx.strokeStyle = style.stroke;
        ctx.lineWidth = style.width * lineScale;
        ctx.setLineDash(style.dash ? style.dash.map((d) => d * lineScale) : []);
        ctx.stroke();
      }
      if (dots[c].length) {
        ctx.fillStyle = style.stroke;
        const size = DOT * Math.max(1, lineScale / 1.5);
        const list = dots[c];
        ctx.beginPath();
        for (let k = 0; k < list.length; k += 2) ctx.rect(list[k] - size / 2, list[k + 1] - size / 2, size, size);
        ctx.fill();
      }
    }
    ctx.setLineDash([]);
    return count;
  }

  /**
   * Add shape i's rings to the current path.
   * @param {CanvasRenderingContext2D} ctx
   * @param {number} i @param {number} level @param {number} ox @param {number} oy @param {number} s
   */
  trace(ctx, i, level, ox, oy, s) {
    if (level === 0) {
      const coords = this.coords;
      for (let r = this.rings[i]; r < this.rings[i + 1]; r++) {
        const p0 = this.points[r], p1 = this.points[r + 1];
        ctx.moveTo(ox + s * coords[2 * p0], oy + s * coords[2 * p0 + 1]);
        for (let p = p0 + 1; p < p1; p++) ctx.lineTo(ox + s * coords[2 * p], oy + s * coords[2 * p + 1]);
        ctx.closePath();
      }
      return;
    }
    const shape = this.simplifiedShape(i, level);
    let at = 1;
    for (let r = 0; r < shape[0]; r++) {
      const n = shape[at++];
      ctx.moveTo(ox + s * shape[at], oy + s * shape[at + 1]);
      for (let k = 1; k < n; k++) ctx.lineTo(ox + s * shape[at + 2 * k], oy + s * shape[at + 2 * k + 1]);
      ctx.closePath();
      at += 2 * n;
    }
  }

  /**
   * The whole set drawn once at a raster level (made on first use).
   * @param {number} level 0: the finest (RASTER_SIDE on the longest side), each next half as large
   * @returns {{ canvas: HTMLCanvasElement, scale: number }} scale: raster pixels per level-0 pixel
   */
  raster(level) {
    const scale = this.rasterScale / Math.pow(2, level);
    let canvas = this.rasters.get(level);
    if (!canvas) {
      canvas = document.createElement("canvas");
      canvas.width = Math.max(1, Math.ceil(this.width * scale));
      canvas.height = Math.max(1, Math.ceil(this.height * scale));
      const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
      const all = new Uint32Array(this.n);
      for (let i = 0; i < this.n; i++) all[i] = i;
      // Drawn at most 2x smaller on screen: lines twice as wide as wanted stay at least as wide as wanted.
      this.draw(ctx, all, this.n, { x: 0, y: 0, scale: scale }, 2);
      this.rasters.set(level, canvas);
    }
    return { canvas: canvas, scale: scale };
  }

  /**
   * Whether a level-0 point is inside shape i (even-odd over its rings).
   * @param {number} i @param {number} x @param {number} y
   */
  contains(i, x, y) {
    let inside = false;
    for (let r = this.rings[i]; r < this.rings[i + 1]; r++) {
      const p0 = this.points[r], p1 = this.points[r + 1];
      for (let p = p0, q = p1 - 1; p < p1; q = p++) {
        const xi = this.coords[2 * p], yi = this.coords[2 * p + 1], xj = this.coords[2 * q], yj = this.coords[2 * q + 1];
        if ((yi > y) !== (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) inside = !inside;
      }
    }
    return inside;
  }
}

/**
 * What was drawn in the last frame, per set: "raster" or "vector" and how many shapes.
 * @typedef {{ mode: string, shapes: number }} DrawnSet
 */

/** The canvas over the slide and the sets drawn on it, in the order they were added. */
export class VectorLayer {
  /**
   * @param {OpenSeadragon.Viewer} viewer
   * @param {() => { origin: OpenSeadragon.Point, scale: number }} screenScale CSS pixels: screen = origin + scale * level-0
   * @param {() => { width: number, height: number }} slideSize level-0 pixels
   */
  constructor(viewer, screenScale, slideSize) {
    this.viewer = viewer;
    this.screenScale = screenScale;
    this.slideSize = slideSize;
    // With OpenSeadragon's 2-D canvas drawer the shapes go onto its canvas, right after it drew the tiles
    // ("update-viewport" follows its drawing in the same frame): no second full-size canvas to clear, fill
    // and composite on every frame. With another drawer, on a canvas of our own laid over it.
    const drawer = /** @type {{ getType?: () => string, context?: CanvasRenderingContext2D, canvas?: HTMLCanvasElement }} */
      (/** @type {unknown} */ (viewer.drawer));
    this.shared = Boolean(drawer && drawer.getType && drawer.getType() === "canvas" && drawer.context && drawer.canvas);
    if (this.shared) {
      this.canvas = /** @type {HTMLCanvasElement} */ (drawer.canvas);
      this.ctx = /** @type {CanvasRenderingContext2D} */ (drawer.context);
    } else {
      this.canvas = document.createElement("canvas");
      this.canvas.className = "vector-layer";
      viewer.canvas.appendChild(this.canvas);
      this.ctx = /** @type {CanvasRenderingContext2D} */ (this.canvas.getContext("2d"));
    }
    viewer.addHandler("update-viewport", () => this.draw());
    /** @type {Map<string, ShapeSet>} */
    this.sets = new Map();
    /** @type {{ set: string, index: number } | null} the shape drawn on top, highlighted */
    this.active = null;
    /** @type {Record<string, DrawnSet>} */
    this.drawn = {};
    this.hidden = false;
    this.pending = 0;
    /** @type {number} bumped by every change of what is drawn (data, style, visibility, the active shape) */
    this.version = 0;
    /** The layer as last drawn at rest, a margin around the view (see draw).
     * @type {{ canvas: HTMLCanvasElement, version: number, x: number, y: number, scale: number,
     *   margin: number, width: number, height: number } | null} */
    this.snapshot = null;
  }

  /**
   * Put a set of shapes on the layer (replacing one of the same name).
   * @param {string} name
   * @param {FlatShapes} flat
   * @param {Uint8Array} classOf each shape's class
   * @param {ShapeClass[]} classes
   */
  setShapes(name, flat, classOf, classes) {
    const size = this.slideSize();
    const visible = this.sets.has(name) ? /** @type {ShapeSet} */ (this.sets.get(name)).visible : true;
    const set = new ShapeSet(flat, classOf, classes, size.width, size.height);
    set.visible = visible;
    this.sets.set(name, set);
    if (this.active && this.active.set === name) this.active = null;
    this.schedule();
    this.prepare(name, set);
  }

  /**
   * Make a large set's rasters while the page is idle, coarsest first (the cheapest, and the first needed
   * when zooming out), one per idle moment: otherwise the first zoom to a new raster level draws every
   * shape of the set in the middle of the animation (with 10,000 regions, tens of milliseconds: the
   * slowest frames of a first pan).
   * @param {string} name @param {ShapeSet} set
   */
  prepare(name, set) {
    if (set.n < RASTER_MIN_SHAPES) return;
    /** @type {(work: () => void) => void} */
    const whenIdle = typeof window.requestIdleCallback === "function"
      ? (work) => { window.requestIdleCallback(work, { timeout: 2000 }); }
      : (work) => { setTimeout(work, 50); };
    let level = RASTER_LEVELS - 1;
    const next = () => {
      if (this.sets.get(name) !== set || level < 0) return;  // replaced, removed or done
      set.raster(level);
      level -= 1;
      whenIdle(next);
    };
    whenIdle(next);
  }

  /** @param {string} name */
  remove(name) {
    this.sets.delete(name);
    if (this.active && this.active.set === name) this.active = null;
    this.schedule();
  }

  /** @param {string} name @param {boolean} visible */
  setVisible(name, visible) {
    const set = this.sets.get(name);
    if (set) { set.visible = visible; this.schedule(); }
  }

  /**
   * Hide every set at once (the whole canvas), or show them again.
   * @param {boolean} hidden
   */
  setHidden(hidden) {
    this.hidden = hidden;
    this.schedule();
  }

  /** @param {{ set: string, index: number } | null} active */
  setActive(active) {
    this.active = active;
    this.schedule();
  }

  /**
   * A shape's bounding box in level-0 pixels.
   * @param {string} name @param {number} index
   * @returns {number[] | null} [x, y, width, height]
   */
  bounds(name, index) {
    const set = this.sets.get(name);
    if (!set || index < 0 || index >= set.n || Number.isNaN(set.bbox[4 * index])) return null;
    const b = set.bbox.subarray(4 * index, 4 * index + 4);
    return [b[0], b[1], b[2] - b[0], b[3] - b[1]];
  }

  /**
   * The first shape of a set (in its order) under a level-0 point, or near it (a few screen pixels).
   * @param {string} name @param {number} x @param {number} y
   * @returns {number} its index, -1 when none
   */
  hit(name, x, y) {
    const set = this.sets.get(name);
    if (!set || !set.visible) return -1;
    const reach = 4 / Math.max(this.screenScale().scale, 1e-9);
    const count = set.query(x - reach, y - reach, x + reach, y + reach, set.n);
    for (let k = 0; k < count; k++) {
      const i = set.hits[k];
      const b = 4 * i;
      const small = (set.bbox[b + 2] - set.bbox[b]) < 3 * reach && (set.bbox[b + 3] - set.bbox[b + 1]) < 3 * reach;
      if (small || set.contains(i, x, y)) return i;
    }
    return -1;
  }

  /** Draw again soon (data or style changed): OpenSeadragon draws its next frame, and the shapes after it. */
  schedule() {
    this.version += 1;
    if (this.shared) { this.viewer.forceRedraw(); return; }
    if (this.pending) return;
    this.pending = requestAnimationFrame(() => { this.pending = 0; this.draw(); });
  }

  /**
   * Draw now: on every frame OpenSeadragon draws (the view moved, tiles came, or schedule asked).
   *
   * At rest the shapes are drawn into a snapshot a margin larger than the view, which is then put on screen.
   * While the view moves (a pan or a zoom animating), the snapshot is put on screen moved and scaled with the
   * view, one drawImage, as long as it covers the view and nothing drawn changed; the shapes are drawn
   * afresh when the view comes to rest (as OpenLayers keeps vector layers while animating). Drawing up to
   * VECTOR_BUDGET shapes on every frame of a pan took 7-10 ms of the frame's 16.
   */
  draw() {
    const dpr = this.shared ? this.canvas.width / Math.max(1, this.canvas.clientWidth) : window.devicePixelRatio || 1;
    const canvas = this.canvas;
    const ctx = this.ctx;
    ctx.save();
    try {
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      if (!this.shared) {
        const width = Math.round(canvas.clientWidth * dpr), height = Math.round(canvas.clientHeight * dpr);
        if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
        ctx.clearRect(0, 0, width, height);
      }
      if (this.hidden || !this.viewer.world.getItemAt(0)) return;
      const screen = this.screenScale();
      const view = { x: screen.origin.x * dpr, y: screen.origin.y * dpr, scale: screen.scale * dpr };
      const viewport = this.viewer.viewport;
      const moving = !viewport.getBounds(true).equals(viewport.getBounds());
      const snap = this.snapshot;
      // At rest where the snapshot was drawn (tiles arriving, a redraw asked for): the snapshot as it is.
      const same = snap !== null && snap.x === view.x && snap.y === view.y && snap.scale === view.scale;
      if ((moving || same) && this.fromSnapshot(ctx, view)) return;
      if (moving) { this.drawSets(ctx, dpr, view, canvas.width, canvas.height); return; }
      const made = this.makeSnapshot(dpr, view);
      ctx.drawImage(made.canvas, -made.margin, -made.margin);
    } finally {
      ctx.restore();
    }
  }

  /**
   * The snapshot put on screen for a view that moved since it was drawn, if it still shows everything.
   * @param {CanvasRenderingContext2D} ctx
   * @param {{ x: number, y: number, scale: number }} view device pixels: screen = origin + scale * level-0
   * @returns {boolean} whether it did
   */
  fromSnapshot(ctx, view) {
    const snap = this.snapshot;
    if (!snap || snap.version !== this.version || snap.width !== this.canvas.width
      || snap.height !== this.canvas.height) return false;
    // The snapshot's pixel (u, v) shows level-0 ((u - margin - snap.x) / snap.scale, ...); on screen now at
    // view.x + view.scale * that: a scale k and a shift.
    const k = view.scale / snap.scale;
    const dx = view.x - k * (snap.x + snap.margin), dy = view.y - k * (snap.y + snap.margin);
    // It must cover the whole screen (no shape may go missing at an edge) and not be blown up more than 2x.
    const w = k * snap.canvas.width, h = k * snap.canvas.height;
    if (k > 2 || dx > 0 || dy > 0 || dx + w < this.canvas.width || dy + h < this.canvas.height) return false;
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(snap.canvas, dx, dy, w, h);
    return true;
  }

  /**
   * Draw every set into the snapshot: the view and a margin around it.
   * @param {number} dpr
   * @param {{ x: number, y: number, scale: number }} view
   * @returns {{ canvas: HTMLCanvasElement, margin: number }}
   */
  makeSnapshot(dpr, view) {
    const width = this.canvas.width, height = this.canvas.height;
    const margin = Math.round(SNAPSHOT_MARGIN * Math.max(width, height));
    const canvas = this.snapshot ? this.snapshot.canvas : document.createElement("canvas");
    if (canvas.width !== width + 2 * margin || canvas.height !== height + 2 * margin) {
      canvas.width = width + 2 * margin;
      canvas.height = height + 2 * margin;
    }
    const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    this.drawSets(ctx, dpr, { x: view.x + margin, y: view.y + margin, scale: view.scale }, canvas.width, canvas.height);
    this.snapshot = { canvas: canvas, version: this.version, x: view.x, y: view.y, scale: view.scale, margin: margin,
      width: width, height: height };
    return { canvas: canvas, margin: margin };
  }

  /**
   * @param {CanvasRenderingContext2D} ctx
   * @param {number} dpr device pixels per CSS pixel
   * @param {{ x: number, y: number, scale: number }} view device pixels of ctx: x = origin + scale * level-0
   * @param {number} width ctx's canvas size, device pixels
   * @param {number} height
   */
  drawSets(ctx, dpr, view, width, height) {
    // The budget of shapes drawn one by one is the screen's: more in proportion over a larger snapshot.
    const budget = Math.round(VECTOR_BUDGET * (width * height) / Math.max(1, this.canvas.width * this.canvas.height));
    const x0 = -view.x / view.scale, y0 = -view.y / view.scale;
    const x1 = (width - view.x) / view.scale, y1 = (height - view.y) / view.scale;
    /** @type {Record<string, DrawnSet>} */
    const drawn = {};
    for (const [name, set] of this.sets) {
      if (!set.visible || !set.n) continue;
      let level = -1;
      let count = 0;
      if (set.n >= RASTER_MIN_SHAPES) {
        if (view.scale <= set.rasterScale * 1.5) {
          level = Math.max(0, Math.min(RASTER_LEVELS - 1, Math.floor(Math.log2(set.rasterScale / view.scale))));
        } else {
          count = set.query(x0, y0, x1, y1, budget);
          if (count > budget) level = 0;
        }
      } else {
        count = set.query(x0, y0, x1, y1, set.n);
      }
      if (level >= 0) {
        const raster = set.raster(level);
        ctx.imageSmoothingEnabled = true;
        ctx.drawImage(raster.canvas, view.x, view.y, raster.canvas.width / raster.scale * view.scale,
          raster.canvas.height / raster.scale * view.scale);
        drawn[name] = { mode: "raster", shapes: set.n };
      } else {
        drawn[name] = { mode: "vector", shapes: set.draw(ctx, set.hits, count, view, dpr) };
      }
    }
    const active = this.active && this.sets.get(this.active.set);
    if (this.active && active && active.visible) {
      const one = [this.active.index];
      active.draw(ctx, one, 1, view, dpr, { stroke: "rgba(0, 0, 0, .6)", width: 6, fill: null });
      active.draw(ctx, one, 1, view, dpr, { stroke: "#ffffff", width: 3, fill: "rgba(255, 255, 255, .15)" });
    }
    this.drawn = drawn;
  }
}
