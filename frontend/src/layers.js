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
 * A negative prediction region (NPR) found in one SUA range, in level-0 pixels.
 * @typedef {{ lower: number, upper: number, label: number, score: number,
 *             x: number, y: number, width: number, height: number }} Region
 */

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
  const regionsUrl = pageUrl(page, "heatmapRegions");
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
  /** @type {Region[]} */
  let regions = [];
  state.overlay = "";
  state.flaggedShown = 0;

  function current() {
    return heatmaps.find((h) => String(h.id) === ensembleSelect.value);
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
    const probe = new Image();
    probe.onload = () => {
      if (current() !== heatmap || kindSelect.value !== kind) return;  // changed meanwhile
      // One heatmap pixel covers `downsample` level-0 pixels; the slide is 1 viewport unit wide.
      viewer.addTiledImage({
        tileSource: /** @type {any} */ ({ type: "image", url: url, buildPyramid: false }),
        x: 0, y: 0, width: probe.naturalWidth * heatmap.downsample / imageWidth(),
        opacity: parseFloat(opacity.value), index: 1,
        success: (event) => {
          // OpenSeadragon passes {item}, the added TiledImage (its type declarations say Event).
          overlay = /** @type {{ item: OpenSeadragon.TiledImage }} */ (/** @type {unknown} */ (event)).item;
          state.overlay = kind;
        },
      });
    };
    probe.src = url;
  }

  /**
   * Go to a region with some context around it, and mark it in the list and on the slide.
   * @param {Region} region
   * @param {HTMLElement} item
   * @param {SVGRectElement} rect
   */
  function focusRegion(region, item, rect) {
    for (const el of list.querySelectorAll("li.active")) el.classList.remove("active");
    for (const el of regionLayer.querySelectorAll("rect.active")) el.classList.remove("active");
    item.classList.add("active");
    rect.classList.add("active");
    // Some context around the region: at least 3 times its size.
    const pad = Math.max(region.width, region.height);
    const bounds = viewer.world.getItemAt(0).imageToViewportRectangle(
      region.x - pad, region.y - pad, region.width + 2 * pad, region.height + 2 * pad);
    viewer.viewport.fitBoundsWithConstraints(bounds);
  }

  function showRegions() {
    regionLayer.replaceChildren();
    list.replaceChildren();
    const lower = parseFloat(rangeSelect.value);
    const shown = regions.filter((r) => r.lower === lower).sort((a, b) => b.score - a.score);
    element("npr-none").hidden = shown.length > 0;
    const mpp = parseFloat(page.dataset.mpp || "") || null;
    shown.forEach((region) => {
      const rect = /** @type {SVGRectElement} */ (document.createElementNS(SVG_NS, "rect"));
      rect.setAttribute("x", String(region.x));
      rect.setAttribute("y", String(region.y));
      rect.setAttribute("width", String(region.width));
      rect.setAttribute("height", String(region.height));
      rect.setAttribute("class", "npr");
      rect.setAttribute("vector-effect", "non-scaling-stroke");
      regionLayer.appendChild(rect);
      const item = document.createElement("li");
      const size = mpp ? (region.width * mpp).toFixed(0) + " × " + (region.height * mpp).toFixed(0) + " µm"
        : Math.round(region.width) + " × " + Math.round(region.height) + " px";
      item.innerHTML = '<span class="score"></span> <span class="muted small"></span>';
      /** @type {HTMLElement} */ (item.querySelector(".score")).textContent = "score " + region.score.toFixed(3);
      /** @type {HTMLElement} */ (item.querySelector(".muted")).textContent = size;
      item.title = "Negative prediction region " + region.label + ": click to go there";
      item.addEventListener("click", () => focusRegion(region, item, rect));
      list.appendChild(item);
    });
    state.flaggedShown = shown.length;
  }

  function loadRegions() {
    const heatmap = current();
    regions = [];
    rangeSelect.replaceChildren();
    if (!heatmap) { showRegions(); return; }
    getJSON(urlWithId(regionsUrl, heatmap.id)).then((/** @type {Region[]} */ found) => {
      regions = found;
      /** @type {Map<number, { upper: number, count: number }>} lower bound -> one entry per SUA range */
      const ranges = new Map();
      for (const r of found) {
        const range = ranges.get(r.lower) || { upper: r.upper, count: 0 };
        range.count += 1;
        ranges.set(r.lower, range);
      }
      for (const [lower, info] of [...ranges.entries()].sort((a, b) => a[0] - b[0])) {
        const option = document.createElement("option");
        option.value = String(lower);
        option.textContent = lower + " < s < " + info.upper + " (" + info.count + " flagged)";
        rangeSelect.appendChild(option);
      }
      showRegions();
    });
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
    loadRegions();
  }).catch(() => { /* not allowed or offline: the slide alone still works */ });

  ensembleSelect.addEventListener("change", () => { showOverlay(); loadRegions(); });
  kindSelect.addEventListener("change", showOverlay);
  rangeSelect.addEventListener("change", showRegions);
  opacity.addEventListener("input", () => { if (overlay) overlay.setOpacity(parseFloat(opacity.value)); });
}
