// @ts-check
/* SUA Portal: what the viewer lays over the slide, and the side panel that chooses it.
 *  - Heatmaps (tumor probability, uncertainty) as tile layers coloured on the server, with an opacity slider
 *    and a legend with values and the method's name.
 *  - The run's regions in the chosen SUA range, coloured by score on a scale with the threshold marked,
 *    flagged ones highlighted; the positive prediction's outline; the refined masks as tile layers.
 *  - The ground truth's outlines (for whoever may see them: the server leaves them out in a blind review).
 * Outlines go to the one canvas of vector.js; URLs come from the page's data attributes and the API's answers. */

import { getJSON, pageUrl, urlWithId } from "./http.js";

/**
 * A GeoJSON geometry as the API gives it (level-0 pixels).
 * @typedef {{ type?: string, coordinates?: any }} Geometry
 */

/**
 * Outlines as flat arrays (see vector.js).
 * @typedef {import("./vector.js").FlatShapes} FlatShapes
 * @typedef {import("./vector.js").ShapeClass} ShapeClass
 * @typedef {import("./vector.js").VectorLayer} VectorLayer
 */

/**
 * One slide's regions in one range of a run, as /api/runs/{id}/layers/{slide}/ gives them.
 * @typedef {{ run: number, run_name: string, slide: number, score: { aggregate: string, uncertainty: string },
 *   range: { index: number, lower: number, upper: number, threshold: number | null },
 *   scale: { min: number, max: number },
 *   regions: FlatShapes & { id: number[], label: number[], score: number[], flagged: number[], area_um2: (number | null)[] },
 *   positives: FlatShapes | null, masks: Record<string, string> }} RegionLayer
 */

/**
 * A tile pyramid of the layers API: sizes on the heatmap grid, levels, the tile URL template and a legend.
 * @typedef {{ width: number, height: number, downsample: number, tile_size: number, max_level: number, tiles: string,
 *   ensemble?: string, legend?: Legend }} Pyramid
 * @typedef {{ kind: string, name: string, method: string, unit: string, min: number, max: number, ticks: number[],
 *   stops: [number, number[]][] }} Legend
 */

/**
 * One slide's heatmaps by one ensemble, as the API lists them.
 * @typedef {{ id: number, status: string, ensemble_name: string, downsample: number }} Heatmap
 */

/**
 * A run as the API lists it: its ranges with their thresholds, and the range pathologists review.
 * @typedef {{ id: number, name: string, settings: { review_range?: number },
 *             ranges: { index: number, lower: number, upper: number, sua_threshold: number | null }[] }} Run
 */

/**
 * A mask another module lays over the slide beside the run's refined masks (the reviewed segmentation of
 * queue.js): one PNG, one pixel per heatmap cell of `downsample` level-0 pixels from the slide's corner;
 * `load` gives its URL when the mask is chosen.
 * @typedef {{ load: () => Promise<string>, downsample: number }} ImageMask
 */

/**
 * What initLayers gives the modules beside it (queue.js).
 * @typedef {{ setImageMask: (name: string, mask: ImageMask | null) => void,
 *   hideOverlays: (hidden: boolean) => void }} LayerControls
 */

/**
 * Fly the view to a level-0 box with some context around it: at least 3 times its size, and at least
 * 64 level-0 pixels.
 * @param {OpenSeadragon.Viewer} viewer
 * @param {number[]} box [x, y, width, height] in level-0 pixels
 * @param {boolean} [immediately] no animation (by default: none where the reader's system asks for less motion)
 */
export function flyTo(viewer, box, immediately) {
  const slide = viewer.world.getItemAt(0);
  if (!slide) return;
  const pad = Math.max(box[2], box[3], 64);
  const bounds = slide.imageToViewportRectangle(box[0] - pad, box[1] - pad, box[2] + 2 * pad, box[3] + 2 * pad);
  viewer.viewport.fitBoundsWithConstraints(bounds, immediately ?? reducedMotion());
}

/**
 * Whether the reader asked their system for less motion (prefers-reduced-motion): the view then jumps to a
 * region instead of flying there, which also saves a reviewer the flight's 0.6 s on every key.
 * @returns {boolean}
 */
export function reducedMotion() {
  return window.matchMedia("(prefers-reduced-motion: reduce)").matches;
}

/** Outline styles of annotations by source (ground truth, reviewer, imported). */
const SOURCES = ["ground_truth", "reviewer", "imported"];
/** @type {ShapeClass[]} */
const SOURCE_CLASSES = [
  { stroke: "#18c29c", width: 2, fill: "rgba(24, 194, 156, .10)" },
  { stroke: "#ffb300", width: 2, fill: "rgba(255, 179, 0, .10)" },
  { stroke: "#42a5f5", width: 2, fill: "rgba(66, 165, 245, .10)" },
];
/** @type {ShapeClass[]} */
const POSITIVE_CLASSES = [{ stroke: "#ff4d6d", width: 1.5, fill: null, dash: [6, 4] }];

/** @type {Record<string, string>} the uncertainty a run's scores aggregate, by its setting's name */
const UNCERTAINTY_NAMES = { entropy: "entropy", mi: "mutual information", variance: "variance" };

/** Colour bins on each side of the threshold. */
const BINS = 8;
/** Below the threshold: blues; at and above it (flagged): yellow to red. */
const BELOW = [[49, 90, 160], [150, 205, 235]];
const ABOVE = [[255, 214, 102], [214, 39, 40]];

/**
 * @param {number[][]} ends two RGB colours
 * @param {number} t 0..1
 * @returns {string}
 */
function mix(ends, t) {
  const c = ends[0].map((v, k) => Math.round(v + (ends[1][k] - v) * t));
  return c.join(", ");
}

/**
 * The regions' colour scale: BINS classes below the threshold, BINS at or above it (flagged: thicker, filled).
 * @param {{ min: number, max: number }} scale the run's scores in the range
 * @param {number | null} threshold
 */
export function scoreScale(scale, threshold) {
  const low = Math.min(scale.min, threshold ?? scale.min);
  const high = Math.max(scale.max, threshold ?? scale.max, low + 1e-9);
  const tau = threshold === null ? high : threshold;
  /** @type {ShapeClass[]} */
  const classes = [];
  for (let b = 0; b < BINS; b++) classes.push({ stroke: "rgb(" + mix(BELOW, b / (BINS - 1)) + ")", width: 1.25, fill: null });
  for (let b = 0; b < BINS; b++) {
    const rgb = mix(ABOVE, b / (BINS - 1));
    classes.push({ stroke: "rgb(" + rgb + ")", width: 2.5, fill: "rgba(" + rgb + ", .28)" });
  }
  return {
    low: low, high: high, tau: tau, classes: classes,
    /** @param {number} score @returns {number} its class */
    classOf: (score) => score >= tau
      ? BINS + Math.min(BINS - 1, Math.floor((score - tau) / Math.max(high - tau, 1e-9) * BINS))
      : Math.max(0, Math.min(BINS - 1, Math.floor((score - low) / Math.max(tau - low, 1e-9) * BINS))),
  };
}

/**
 * GeoJSON geometries as flat arrays (one shape each), the layout vector.js draws.
 * @param {Geometry[]} geometries
 * @returns {FlatShapes}
 */
export function flatten(geometries) {
  const rings = [0], points = [0];
  /** @type {number[]} */
  const coords = [];
  for (const geometry of geometries) {
    const polygons = geometry.type === "Polygon" ? [geometry.coordinates]
      : geometry.type === "MultiPolygon" ? geometry.coordinates : [];
    for (const polygon of polygons) {
      for (const ring of polygon) {
        let n = ring.length;
        if (n > 1 && ring[0][0] === ring[n - 1][0] && ring[0][1] === ring[n - 1][1]) n -= 1;
        if (n < 3) continue;
        for (let k = 0; k < n; k++) coords.push(ring[k][0], ring[k][1]);
        points.push(coords.length / 2);
      }
    }
    rings.push(points.length - 1);
  }
  return { count: geometries.length, rings: rings, points: points, coords: coords };
}

/**
 * @param {string} id
 * @returns {HTMLElement}
 */
function element(id) {
  const found = document.getElementById(id);
  if (!found) throw new Error("The viewer page has no #" + id);
  return found;
}

/**
 * Every page of a paginated API list.
 * @param {string} url
 * @returns {Promise<any[]>}
 */
async function getAll(url) {
  /** @type {any[]} */
  const rows = [];
  /** @type {string | null} */
  let next = url;
  while (next) {
    const page = await getJSON(next);
    rows.push(...(page.results || page));
    next = page.next || null;
  }
  return rows;
}

/**
 * @param {number} value
 * @returns {string}
 */
function formatValue(value) {
  return Math.abs(value) >= 10 ? value.toFixed(1) : value.toFixed(3).replace(/0+$/, "").replace(/\.$/, "");
}

/**
 * The slide's annotations as outlines on the canvas (ground truth only when the server sends it).
 * @param {VectorLayer} vector
 * @param {string} url the slide's annotations in the API
 * @param {SuaViewerState} state counts the outlines drawn
 * @returns {Promise<void>} once drawn (nothing when the annotations cannot be read: the slide alone still works)
 */
export async function loadOutlines(vector, url, state) {
  /** @type {{ geometry?: Geometry, source: string }[]} */
  let annotations;
  try { annotations = await getJSON(url); } catch { return; }
  const kept = annotations.filter((a) => a.geometry);
  const classOf = Uint8Array.from(kept, (a) => Math.max(0, SOURCES.indexOf(a.source)));
  vector.setShapes("outlines", flatten(kept.map((a) => /** @type {Geometry} */ (a.geometry))), classOf, SOURCE_CLASSES);
  state.annotations = kept.length;
  const toggle = /** @type {HTMLInputElement | null} */ (document.getElementById("show-truth"));
  if (toggle) {
    vector.setVisible("outlines", toggle.checked);
    toggle.addEventListener("change", () => vector.setVisible("outlines", toggle.checked));
  }
}

/**
 * The side panel's layers: heatmaps of the chosen ensemble, and the chosen run's regions, outline and masks.
 * @param {OpenSeadragon.Viewer} viewer
 * @param {HTMLElement} page
 * @param {VectorLayer} vector
 * @param {SuaViewerState} state
 * @param {() => number} imageWidth the slide's width in level-0 pixels
 * @returns {LayerControls | null} null: the page has no layers panel
 */
export function initLayers(viewer, page, vector, state, imageWidth) {
  const panel = document.getElementById("heatmap-panel");
  const listUrl = page.dataset.heatmaps;  // the slide's heatmaps; no panel without it
  if (!panel || !listUrl) return null;
  const heatmapLayerUrl = pageUrl(page, "heatmapLayer");
  const runsUrl = pageUrl(page, "runs");
  const runPageUrl = pageUrl(page, "runPage");
  const runLayerUrl = pageUrl(page, "runLayer");
  const maskSelect = /** @type {HTMLSelectElement} */ (element("refined-mask"));
  const ensembleSelect = /** @type {HTMLSelectElement} */ (element("heatmap-ensemble"));
  const kindSelect = /** @type {HTMLSelectElement} */ (element("heatmap-kind"));
  const opacity = /** @type {HTMLInputElement} */ (element("heatmap-opacity"));
  const legend = element("heatmap-legend");
  const rangeSelect = /** @type {HTMLSelectElement} */ (element("npr-range"));
  const showRegions = /** @type {HTMLInputElement} */ (element("show-regions"));
  const showPositives = /** @type {HTMLInputElement} */ (element("show-positives"));
  const list = element("npr-list");
  /** @type {Heatmap[]} */
  let heatmaps = [];
  /** @type {OpenSeadragon.TiledImage | null} */
  let overlay = null;
  /** @type {OpenSeadragon.TiledImage | null} */
  let maskOverlay = null;
  /** @type {Run | null} */
  let run = null;
  /** @type {RegionLayer | null} */
  let layer = null;
  /** @type {Map<string, ImageMask>} masks of other modules, by the mask select's value */
  const imageMasks = new Map();
  /** while H is held: every overlay is hidden */
  let overlaysHidden = false;
  state.overlay = "";
  state.mask = "";
  state.flaggedShown = 0;
  state.regionsLoaded = 0;
  state.activeRegion = null;

  /** @type {Promise<void>} */
  const slideOpen = new Promise((resolve) => {
    if (viewer.world.getItemCount() > 0) resolve();
    else viewer.addOnceHandler("open", () => resolve());
  });

  function current() {
    return heatmaps.find((h) => String(h.id) === ensembleSelect.value);
  }

  /**
   * Lay a tile pyramid of the layers API over the slide.
   * @param {Pyramid} pyramid
   * @param {number} index the layer's place in the world (1: heatmap, 2: refined mask)
   * @param {() => boolean} stillWanted false once the user chose something else meanwhile
   * @param {(item: OpenSeadragon.TiledImage) => void} added
   */
  async function addPyramid(pyramid, index, stillWanted, added) {
    // After the slide: it is the world's first item, whose pixels every layer and scale is measured in.
    await slideOpen;
    if (!stillWanted()) return;
    const tiles = pyramid.tiles;
    viewer.addTiledImage({
      // A custom tile source: OpenSeadragon asks getTileUrl for each tile (its type declarations want a TileSource).
      tileSource: /** @type {any} */ ({
        width: pyramid.width, height: pyramid.height, tileSize: pyramid.tile_size, tileOverlap: 0,
        minLevel: 0, maxLevel: pyramid.max_level,
        /** @param {number} level @param {number} x @param {number} y */
        getTileUrl: (level, x, y) => tiles.replace("{level}", String(level)).replace("{col}", String(x))
          .replace("{row}", String(y)),
      }),
      // One heatmap pixel covers `downsample` level-0 pixels; the slide is 1 viewport unit wide.
      x: 0, y: 0, width: pyramid.width * pyramid.downsample / imageWidth(),
      opacity: parseFloat(opacity.value), index: Math.min(index, viewer.world.getItemCount()),
      // OpenSeadragon passes {item}, the added TiledImage (its type declarations say Event).
      success: (event) => {
        const item = /** @type {{ item: OpenSeadragon.TiledImage }} */ (/** @type {unknown} */ (event)).item;
        if (stillWanted()) added(item); else viewer.world.removeItem(item);
      },
    });
  }

  /** @param {Legend} scale @param {string} ensemble */
  function drawLegend(scale, ensemble) {
    const stops = scale.stops.map(([at, c]) => "rgba(" + c[0] + ", " + c[1] + ", " + c[2] + ", " + (c[3] / 255).toFixed(2)
      + ") " + Math.round(at * 100) + "%");
    /** @type {HTMLElement} */ (legend.querySelector(".ramp")).style.background = "linear-gradient(90deg, " + stops.join(", ") + ")";
    /** @type {HTMLElement} */ (legend.querySelector(".legend-title")).textContent = scale.name + (scale.unit ? " (" + scale.unit + ")" : "");
    const ticks = /** @type {HTMLElement} */ (legend.querySelector(".ticks"));
    ticks.replaceChildren(...scale.ticks.map((value) => {
      const tick = document.createElement("span");
      tick.textContent = formatValue(value);
      return tick;
    }));
    /** @type {HTMLElement} */ (legend.querySelector(".legend-method")).textContent = scale.method + " · " + ensemble;
    legend.hidden = false;
  }

  async function showOverlay() {
    if (overlay) { viewer.world.removeItem(overlay); overlay = null; }
    state.overlay = "";
    const heatmap = current();
    const kind = kindSelect.value;
    legend.hidden = true;
    if (!heatmap || !kind) return;
    const stillWanted = () => current() === heatmap && kindSelect.value === kind;
    /** @type {Pyramid} */
    const pyramid = await getJSON(urlWithId(heatmapLayerUrl, heatmap.id).replace("/KIND/", "/" + encodeURIComponent(kind) + "/"));
    if (!stillWanted()) return;
    if (pyramid.legend) drawLegend(pyramid.legend, pyramid.ensemble || heatmap.ensemble_name);
    await addPyramid(pyramid, 1, stillWanted, (item) => {
      if (overlaysHidden) item.setOpacity(0);
      if (overlay) viewer.world.removeItem(overlay);
      overlay = item;
      state.overlay = kind;
    });
  }

  /** The run's SUA- or baseline-refined mask of this slide in the chosen range, over the heatmap. */
  async function showMask() {
    if (maskOverlay) { viewer.world.removeItem(maskOverlay); maskOverlay = null; }
    state.mask = "";
    const method = maskSelect.value;
    const shown = layer;
    const image = imageMasks.get(method);
    if (!shown || !method || (!shown.masks[method] && !image)) return;
    const stillWanted = () => layer === shown && maskSelect.value === method && imageMasks.get(method) === image;
    if (image) {
      await slideOpen;
      const url = await image.load();
      if (!stillWanted()) return;
      viewer.addTiledImage({
        tileSource: /** @type {any} */ ({ type: "image", url: url, buildPyramid: true }),
        x: 0, y: 0, opacity: overlaysHidden ? 0 : parseFloat(opacity.value), index: Math.min(2, viewer.world.getItemCount()),
        success: (event) => {
          const item = /** @type {{ item: OpenSeadragon.TiledImage }} */ (/** @type {unknown} */ (event)).item;
          if (!stillWanted()) { viewer.world.removeItem(item); return; }
          // One PNG pixel covers `downsample` level-0 pixels; the slide is 1 viewport unit wide.
          item.setWidth(item.source.dimensions.x * image.downsample / imageWidth(), true);
          if (maskOverlay) viewer.world.removeItem(maskOverlay);
          maskOverlay = item;
          state.mask = method;
        },
      });
      return;
    }
    /** @type {Pyramid} */
    const pyramid = await getJSON(shown.masks[method]);
    if (!stillWanted()) return;
    await addPyramid(pyramid, 2, stillWanted, (item) => {
      if (overlaysHidden) item.setOpacity(0);
      if (maskOverlay) viewer.world.removeItem(maskOverlay);
      maskOverlay = item;
      state.mask = method;
    });
  }

  /** The score legend: the colour bins, the threshold marked, the scale's ends and the threshold's value. */
  function drawScoreLegend(/** @type {ReturnType<typeof scoreScale>} */ scale, /** @type {number | null} */ threshold) {
    const box = element("score-legend");
    const span = scale.high - scale.low;
    const at = (/** @type {number} */ v) => Math.round((v - scale.low) / span * 1000) / 10;
    const stops = [];
    for (let b = 0; b < BINS; b++) {
      const from = scale.low + (scale.tau - scale.low) * b / BINS, to = scale.low + (scale.tau - scale.low) * (b + 1) / BINS;
      stops.push(scale.classes[b].stroke + " " + at(from) + "% " + at(to) + "%");
    }
    for (let b = 0; b < BINS; b++) {
      const from = scale.tau + (scale.high - scale.tau) * b / BINS, to = scale.tau + (scale.high - scale.tau) * (b + 1) / BINS;
      stops.push(scale.classes[BINS + b].stroke + " " + at(from) + "% " + at(to) + "%");
    }
    /** @type {HTMLElement} */ (box.querySelector(".ramp")).style.background = "linear-gradient(90deg, " + stops.join(", ") + ")";
    const marker = /** @type {HTMLElement} */ (box.querySelector(".threshold"));
    marker.hidden = threshold === null;
    marker.style.left = at(scale.tau) + "%";
    /** @type {HTMLElement} */ (box.querySelector(".low")).textContent = formatValue(scale.low);
    /** @type {HTMLElement} */ (box.querySelector(".high")).textContent = formatValue(scale.high);
    /** @type {HTMLElement} */ (box.querySelector(".tau")).textContent = threshold === null ? "no threshold: nothing flagged"
      : "τ = " + formatValue(threshold) + ": at or above is flagged";
    box.hidden = false;
  }

  /**
   * Go to a region with some context around it, and mark it in the list and on the slide.
   * @param {number} index the region's place in the layer (highest score first)
   * @param {boolean} fly whether to move the view there
   */
  function focusRegion(index, fly) {
    if (!layer) return;
    for (const el of list.querySelectorAll("li.active")) el.classList.remove("active");
    const item = list.querySelector('li[data-index="' + index + '"]');
    if (item) { item.classList.add("active"); item.scrollIntoView({ block: "nearest" }); }
    vector.setActive({ set: "regions", index: index });
    state.activeRegion = layer.regions.id[index];
    page.dispatchEvent(new CustomEvent("sua:focus", { detail: layer.regions.id[index] }));
    const box = vector.bounds("regions", index);
    if (fly && box) flyTo(viewer, box);
  }

  /** The flagged regions of the layer, highest score first (the first LIST_MAX as list items). */
  function showList() {
    const LIST_MAX = 200;
    list.replaceChildren();
    if (!layer) return;
    const regions = layer.regions;
    let flagged = 0;
    const items = [];
    for (let i = 0; i < regions.id.length; i++) {
      if (!regions.flagged[i]) continue;
      flagged += 1;
      if (items.length >= LIST_MAX) continue;
      const item = document.createElement("li");
      item.dataset.index = String(i);
      const area = regions.area_um2[i];
      const box = vector.bounds("regions", i);
      const size = area !== null ? Math.round(area).toLocaleString() + " µm²"
        : box ? Math.round(box[2]) + " × " + Math.round(box[3]) + " px" : "";
      item.innerHTML = '<span class="score"></span> <span class="muted small"></span>';
      /** @type {HTMLElement} */ (item.querySelector(".score")).textContent = "score " + regions.score[i].toFixed(3);
      /** @type {HTMLElement} */ (item.querySelector(".muted")).textContent = size;
      item.title = "Negative prediction region " + regions.label[i] + ": click to go there";
      items.push(item);
    }
    list.append(...items);
    element("npr-none").hidden = flagged > 0;
    const more = element("npr-more");
    more.hidden = flagged <= items.length;
    more.textContent = "and " + (flagged - items.length).toLocaleString() + " more with lower scores (all are outlined on the slide)";
    element("flag-count").textContent = flagged ? "(" + flagged.toLocaleString() + ")" : "";
    state.flaggedShown = flagged;
  }

  /** The chosen range's regions and positive outline, from the layers API. */
  async function loadRange() {
    if (!run) return;
    const chosen = run;
    const range = rangeSelect.value;
    /** @type {RegionLayer} */
    const loaded = await getJSON(urlWithId(runLayerUrl, chosen.id) + "?range=" + encodeURIComponent(range));
    if (run !== chosen || rangeSelect.value !== range) return;
    layer = loaded;
    const scale = scoreScale(loaded.scale, loaded.range.threshold);
    const scores = loaded.regions.score;
    vector.setShapes("regions", loaded.regions, Uint8Array.from(scores, scale.classOf), scale.classes);
    vector.setVisible("regions", showRegions.checked);
    if (loaded.positives) {
      vector.setShapes("positives", loaded.positives, new Uint8Array(loaded.positives.count), POSITIVE_CLASSES);
      vector.setVisible("positives", showPositives.checked);
    } else {
      vector.remove("positives");
    }
    showPositives.disabled = !loaded.positives;
    drawScoreLegend(scale, loaded.range.threshold);
    element("score-title").textContent = "Score: " + (UNCERTAINTY_NAMES[loaded.score.uncertainty] || loaded.score.uncertainty)
      + ", " + (loaded.score.aggregate === "mean" ? "mean" : loaded.score.aggregate) + " over the region";
    element("positives-none").hidden = Boolean(loaded.positives && loaded.positives.count);
    for (const option of maskSelect.options) {
      option.disabled = option.value !== "" && !loaded.masks[option.value] && !imageMasks.has(option.value);
    }
    state.regionsLoaded = scores.length;
    state.activeRegion = null;
    showList();
    // For the review panel (queue.js): which regions the canvas holds, in its order.
    page.dispatchEvent(new CustomEvent("sua:regions", { detail: { run: chosen.id, range: loaded.range.index,
      ids: loaded.regions.id } }));
    await showMask();
  }

  /** The run whose regions are shown: the page's ?run=, else the project's review run holding this slide. */
  async function loadRun() {
    const wanted = new URLSearchParams(window.location.search).get("run");
    const runs = await getAll(runsUrl + (wanted && /^\d+$/.test(wanted) ? "" : "&review=true"));
    run = runs.find((r) => String(r.id) === wanted) || runs[0] || null;
    const title = element("npr-run");
    title.replaceChildren();
    element("run-layers").hidden = !run;
    element("queue-panel").hidden = !run;
    page.dispatchEvent(new CustomEvent("sua:run", { detail: run }));
    if (!run) { title.textContent = "no run yet"; return; }
    const link = document.createElement("a");
    link.href = urlWithId(runPageUrl, run.id);
    link.textContent = run.name;
    title.appendChild(link);
    rangeSelect.replaceChildren();
    for (const range of run.ranges) {
      const option = document.createElement("option");
      option.value = String(range.index);
      const threshold = range.sua_threshold === null ? "none" : range.sua_threshold.toFixed(3);
      option.textContent = range.lower + " < s < " + range.upper + " · τ " + threshold;
      option.selected = range.index === (run.settings.review_range || 0);
      rangeSelect.appendChild(option);
    }
    await loadRange();
  }

  list.addEventListener("click", (event) => {
    const item = /** @type {HTMLElement | null} */ (/** @type {HTMLElement} */ (event.target).closest("li[data-index]"));
    if (item) focusRegion(parseInt(item.dataset.index || "0", 10), true);
  });
  viewer.addHandler("canvas-click", (event) => {
    // A click, not the end of a drag: the region under the pointer, if any, is marked (no flight).
    if (!event.quick || !layer || !viewer.world.getItemAt(0)) return;
    const point = viewer.world.getItemAt(0).viewerElementToImageCoordinates(event.position);
    const index = vector.hit("regions", point.x, point.y);
    if (index >= 0) focusRegion(index, false);
  });

  getJSON(listUrl).then((found) => {
    /** @type {Heatmap[]} */
    const listed = found.results || found;  // a paginated list
    heatmaps = listed.filter((h) => h.status === "done");
    panel.hidden = false;
    element("heatmap-none").hidden = heatmaps.length > 0;
    element("heatmap-controls").hidden = heatmaps.length === 0;
    for (const heatmap of heatmaps) {
      const option = document.createElement("option");
      option.value = String(heatmap.id);
      option.textContent = heatmap.ensemble_name;
      ensembleSelect.appendChild(option);
    }
    if (heatmaps.length) showOverlay().catch(() => { /* the slide still works without its heatmap */ });
  }).catch(() => { /* not allowed or offline: the slide alone still works */ });
  // A run's regions need no heatmap of the viewer's (a run made elsewhere may have none here).
  loadRun().catch(() => { /* not allowed or offline: the slide still works */ });

  ensembleSelect.addEventListener("change", showOverlay);
  kindSelect.addEventListener("change", showOverlay);
  rangeSelect.addEventListener("change", loadRange);
  maskSelect.addEventListener("change", showMask);
  showRegions.addEventListener("change", () => vector.setVisible("regions", showRegions.checked));
  showPositives.addEventListener("change", () => vector.setVisible("positives", showPositives.checked));
  opacity.addEventListener("input", () => {
    if (overlaysHidden) return;
    for (const item of [overlay, maskOverlay]) if (item) item.setOpacity(parseFloat(opacity.value));
  });

  return {
    setImageMask(name, mask) {
      const option = Array.from(maskSelect.options).find((o) => o.value === name);
      if (mask) imageMasks.set(name, mask); else imageMasks.delete(name);
      if (option) option.disabled = !mask;
      if (maskSelect.value === name) showMask().catch(() => { /* the slide still works without the mask */ });
      if (!mask && maskSelect.value === name) maskSelect.value = "";
    },
    hideOverlays(hidden) {
      overlaysHidden = hidden;
      vector.setHidden(hidden);
      for (const item of [overlay, maskOverlay]) if (item) item.setOpacity(hidden ? 0 : parseFloat(opacity.value));
      state.overlaysHidden = hidden;
    },
  };
}
