// @ts-check
/* SUA Portal: what the viewer draws over the slide. Tumor outlines and flagged regions as SVG in level-0
 * pixels, moved with the viewport; the ensemble's heatmaps (tumor probability, uncertainty) as a second
 * OpenSeadragon image over the slide. URLs come from the page's data attributes. */

import { getJSON, pageUrl, urlWithId } from "./http.js";

const SVG_NS = "http://www.w3.org/2000/svg";

/**
 * A GeoJSON geometry as the API gives it (level-0 pixels).
 * @typedef {{ type?: string, coordinates?: any }} Geometry
 */

/**
 * GeoJSON Polygon / MultiPolygon in level-0 pixels -> one SVG path (even-odd keeps holes open).
 * @param {Geometry} geometry
 * @returns {string} the path's "d"; empty when there is nothing to draw
 */
function ringsToPath(geometry) {
  /** @type {number[][][][]} polygons, each a list of rings of [x, y] points */
  const polygons = geometry.type === "Polygon" ? [geometry.coordinates]
    : geometry.type === "MultiPolygon" ? geometry.coordinates : [];
  const parts = [];
  for (const polygon of polygons) {
    for (const ring of polygon) {
      if (ring.length < 3) continue;
      parts.push("M" + ring.map((p) => p[0] + " " + p[1]).join("L") + "Z");
    }
  }
  return parts.join("");
}

/**
 * An SVG laid over the viewer's canvas, with one group drawn in the slide's level-0 pixels.
 * @param {OpenSeadragon.Viewer} viewer
 * @returns {{ svg: SVGSVGElement, layer: SVGGElement, follow: (origin: OpenSeadragon.Point, scale: number) => void }}
 *   follow: move the group with the viewport (screen position of the image origin, screen px per level-0 px);
 *   one transform per frame instead of redrawing.
 */
export function addDrawingLayer(viewer) {
  const svg = /** @type {SVGSVGElement} */ (document.createElementNS(SVG_NS, "svg"));
  svg.setAttribute("class", "annotation-layer");
  const layer = /** @type {SVGGElement} */ (document.createElementNS(SVG_NS, "g"));
  svg.appendChild(layer);
  viewer.canvas.appendChild(svg);
  return {
    svg: svg,
    layer: layer,
    follow: (origin, scale) => {
      layer.setAttribute("transform", "translate(" + origin.x + "," + origin.y + ") scale(" + scale + ")");
    },
  };
}

/**
 * Draw the slide's tumor outlines (every annotation, coloured by its source) into the layer.
 * @param {SVGGElement} layer
 * @param {string} url the slide's annotations in the API
 * @param {SuaViewerState} state counts the outlines drawn
 * @returns {Promise<void>} once drawn (nothing when the annotations cannot be read: the slide alone still works)
 */
export async function loadOutlines(layer, url, state) {
  /** @type {{ geometry?: Geometry, source: string }[]} */
  let annotations;
  try { annotations = await getJSON(url); } catch { return; }
  for (const annotation of annotations) {
    const d = ringsToPath(annotation.geometry || {});
    if (!d) continue;
    const path = document.createElementNS(SVG_NS, "path");
    path.setAttribute("d", d);
    path.setAttribute("class", "outline source-" + annotation.source);
    path.setAttribute("fill-rule", "evenodd");
    path.setAttribute("vector-effect", "non-scaling-stroke");
    layer.appendChild(path);
    state.annotations += 1;
  }
}

/**
 * One slide's heatmaps by one ensemble, as the API lists them.
 * @typedef {{ id: number, status: string, ensemble_name: string, downsample: number }} Heatmap
 */

/**
 * A negative prediction region (NPR) of a run in one SUA range, outlined in level-0 pixels.
 * @typedef {{ id: number, range_index: number, lower: number, upper: number, label: number, score: number,
 *             flagged: boolean, area_um2: number | null, geometry: Geometry,
 *             x: number, y: number, width: number, height: number }} Region
 */

/**
 * A run as the API lists it: its ranges with their thresholds, and the range pathologists review.
 * @typedef {{ id: number, name: string, settings: { review_range?: number, heatmap_downsample: number },
 *             ranges: { index: number, lower: number, upper: number, sua_threshold: number | null }[] }} Run
 */

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
 * @param {string} id
 * @returns {HTMLElement}
 */
function element(id) {
  const found = document.getElementById(id);
  if (!found) throw new Error("The viewer page has no #" + id);
  return found;
}

/**
 * The heatmap panel: the overlay of the chosen ensemble and kind, and the regions it flags for review.
 * @param {OpenSeadragon.Viewer} viewer
 * @param {HTMLElement} page
 * @param {SVGGElement} layer the drawing layer (level-0 pixels) the flagged regions go into
 * @param {SuaViewerState} state
 * @param {() => number} imageWidth the slide's width in level-0 pixels
 */
export function initHeatmaps(viewer, page, layer, state, imageWidth) {
  const panel = document.getElementById("heatmap-panel");
  const listUrl = page.dataset.heatmaps;  // the slide's heatmaps; no panel without it
  if (!panel || !listUrl) return;
  const imageUrl = pageUrl(page, "heatmapImage");
  const regionsUrl = pageUrl(page, "runRegions");
  const runsUrl = pageUrl(page, "runs");
  const runPageUrl = pageUrl(page, "runPage");
  const maskUrl = pageUrl(page, "runMask");
  const maskSelect = /** @type {HTMLSelectElement} */ (element("refined-mask"));
  const ensembleSelect = /** @type {HTMLSelectElement} */ (element("heatmap-ensemble"));
  const kindSelect = /** @type {HTMLSelectElement} */ (element("heatmap-kind"));
  const opacity = /** @type {HTMLInputElement} */ (element("heatmap-opacity"));
  const legend = element("heatmap-legend");
  const rangeSelect = /** @type {HTMLSelectElement} */ (element("npr-range"));
  const list = element("npr-list");
  const regionLayer = document.createElementNS(SVG_NS, "g");
  layer.appendChild(regionLayer);
  /** @type {Heatmap[]} */
  let heatmaps = [];
  /** @type {OpenSeadragon.TiledImage | null} */
  let overlay = null;
  /** @type {OpenSeadragon.TiledImage | null} */
  let maskOverlay = null;
  /** @type {Region[]} */
  let regions = [];
  /** @type {Run | null} */
  let run = null;
  state.overlay = "";
  state.mask = "";
  state.flaggedShown = 0;

  function current() {
    return heatmaps.find((h) => String(h.id) === ensembleSelect.value);
  }

  /**
   * Lay an image on the heatmap grid over the slide.
   * @param {string} url a PNG, one pixel per heatmap cell
   * @param {number} downsample level-0 pixels per heatmap cell
   * @param {number} index the layer's place in the world (1: heatmap, 2: refined mask)
   * @param {() => boolean} stillWanted false once the user chose something else meanwhile
   * @param {(item: OpenSeadragon.TiledImage) => void} added
   */
  function addGridImage(url, downsample, index, stillWanted, added) {
    const probe = new Image();
    probe.onload = () => {
      if (!stillWanted()) return;
      // One heatmap pixel covers `downsample` level-0 pixels; the slide is 1 viewport unit wide.
      viewer.addTiledImage({
        tileSource: /** @type {any} */ ({ type: "image", url: url, buildPyramid: false }),
        x: 0, y: 0, width: probe.naturalWidth * downsample / imageWidth(),
        opacity: parseFloat(opacity.value), index: Math.min(index, viewer.world.getItemCount()),
        // OpenSeadragon passes {item}, the added TiledImage (its type declarations say Event).
        success: (event) => added(/** @type {{ item: OpenSeadragon.TiledImage }} */ (/** @type {unknown} */ (event)).item),
      });
    };
    probe.src = url;
  }

  function showOverlay() {
    if (overlay) { viewer.world.removeItem(overlay); overlay = null; }
    state.overlay = "";
    const heatmap = current();
    const kind = kindSelect.value;
    legend.hidden = !kind;
    legend.className = "legend " + kind;
    if (!heatmap || !kind) return;
    const url = urlWithId(imageUrl, heatmap.id) + "?kind=" + encodeURIComponent(kind);
    addGridImage(url, heatmap.downsample, 1, () => current() === heatmap && kindSelect.value === kind, (item) => {
      overlay = item;
      state.overlay = kind;
    });
  }

  /** The run's SUA- or baseline-refined mask of this slide in the chosen range, over the heatmap. */
  function showMask() {
    if (maskOverlay) { viewer.world.removeItem(maskOverlay); maskOverlay = null; }
    state.mask = "";
    const method = maskSelect.value;
    if (!run || !method) return;
    const chosen = run;
    const range = rangeSelect.value;
    const url = urlWithId(maskUrl, chosen.id) + "&range=" + encodeURIComponent(range) + "&method=" + method;
    addGridImage(url, chosen.settings.heatmap_downsample, 2,
      () => run === chosen && maskSelect.value === method && rangeSelect.value === range, (item) => {
        maskOverlay = item;
        state.mask = method;
      });
  }

  /**
   * Go to a region with some context around it, and mark it in the list and on the slide.
   * @param {Region} region
   * @param {HTMLElement} item
   * @param {SVGPathElement} outline
   */
  function focusRegion(region, item, outline) {
    for (const el of list.querySelectorAll("li.active")) el.classList.remove("active");
    for (const el of regionLayer.querySelectorAll("path.active")) el.classList.remove("active");
    item.classList.add("active");
    outline.classList.add("active");
    // Some context around the region: at least 3 times its size.
    const pad = Math.max(region.width, region.height);
    const bounds = viewer.world.getItemAt(0).imageToViewportRectangle(
      region.x - pad, region.y - pad, region.width + 2 * pad, region.height + 2 * pad);
    viewer.viewport.fitBoundsWithConstraints(bounds);
  }

  function showRegions() {
    regionLayer.replaceChildren();
    list.replaceChildren();
    const index = parseInt(rangeSelect.value, 10);
    const shown = regions.filter((r) => r.range_index === index).sort((a, b) => b.score - a.score);
    element("npr-none").hidden = shown.length > 0;
    shown.forEach((region) => {
      // The region's own outline (holes kept), not its bounding box: a ring round a tumor stays a ring.
      const outline = /** @type {SVGPathElement} */ (document.createElementNS(SVG_NS, "path"));
      outline.setAttribute("d", ringsToPath(region.geometry));
      outline.setAttribute("fill-rule", "evenodd");
      outline.setAttribute("class", "npr");
      outline.setAttribute("vector-effect", "non-scaling-stroke");
      regionLayer.appendChild(outline);
      const item = document.createElement("li");
      const size = region.area_um2 !== null ? Math.round(region.area_um2).toLocaleString() + " µm²"
        : Math.round(region.width) + " × " + Math.round(region.height) + " px";
      item.innerHTML = '<span class="score"></span> <span class="muted small"></span>';
      /** @type {HTMLElement} */ (item.querySelector(".score")).textContent = "score " + region.score.toFixed(3);
      /** @type {HTMLElement} */ (item.querySelector(".muted")).textContent = size;
      item.title = "Negative prediction region " + region.label + ": click to go there";
      item.addEventListener("click", () => focusRegion(region, item, outline));
      list.appendChild(item);
    });
    state.flaggedShown = shown.length;
  }

  /** The run whose flags are shown: the page's ?run=, else the project's review run holding this slide. */
  async function loadRun() {
    const wanted = new URLSearchParams(window.location.search).get("run");
    const runs = await getAll(runsUrl + (wanted && /^\d+$/.test(wanted) ? "" : "&review=true"));
    run = runs.find((r) => String(r.id) === wanted) || runs[0] || null;
    const title = element("npr-run");
    title.replaceChildren();
    element("refined-controls").hidden = !run;
    if (!run) { title.textContent = "no run yet"; return; }
    const link = document.createElement("a");
    link.href = urlWithId(runPageUrl, run.id);
    link.textContent = run.name;
    title.appendChild(link);
    regions = await getAll(urlWithId(regionsUrl, run.id));
    rangeSelect.replaceChildren();
    for (const range of run.ranges) {
      const option = document.createElement("option");
      option.value = String(range.index);
      const count = regions.filter((r) => r.range_index === range.index).length;
      const threshold = range.sua_threshold === null ? "none" : range.sua_threshold.toFixed(3);
      option.textContent = range.lower + " < s < " + range.upper + " · τ " + threshold + " (" + count + " flagged)";
      option.selected = range.index === (run.settings.review_range || 0);
      rangeSelect.appendChild(option);
    }
    showRegions();
  }

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
    if (!heatmaps.length) return;
    showOverlay();
    loadRun().catch(() => { /* not allowed or offline: the slide and its heatmaps still work */ });
  }).catch(() => { /* not allowed or offline: the slide alone still works */ });

  ensembleSelect.addEventListener("change", showOverlay);
  kindSelect.addEventListener("change", showOverlay);
  rangeSelect.addEventListener("change", () => { showRegions(); showMask(); });
  maskSelect.addEventListener("change", showMask);
  opacity.addEventListener("input", () => {
    for (const item of [overlay, maskOverlay]) if (item) item.setOpacity(parseFloat(opacity.value));
  });
}
