// @ts-check
/* SUA Portal: the slide viewer page. OpenSeadragon over the DeepZoom tiles with a minimap, a scale bar in µm,
 * zoom presets in objective magnification, full screen and the pointer's position; what is laid over the slide
 * (heatmaps, regions, outlines, masks) is chosen in layers.js and outlines are drawn by vector.js.
 * Loaded as a module after openseadragon.min.js, which defines the global OpenSeadragon. */

import { pageUrl } from "./http.js";
import { initLayers, loadOutlines } from "./layers.js";
import { initQueue } from "./queue.js";
import { VectorLayer } from "./vector.js";

/** Objective magnifications offered as zoom presets, those the slide's own magnification reaches. */
const PRESETS = [2, 5, 10, 20, 40];
/** Objective magnification of a scan at 1 µm per pixel (10x, the usual convention: 40x ~ 0.25 µm/px). */
const MAGNIFICATION_AT_1_MPP = 10;

/**
 * The largest 1, 2 or 5 x 10^k micrometres not above maxMicrons: the scale bar's length.
 * @param {number} maxMicrons
 * @returns {number}
 */
function niceLength(maxMicrons) {
  const exponent = Math.floor(Math.log10(maxMicrons));
  const base = Math.pow(10, exponent);
  for (const step of [5, 2, 1]) {
    if (step * base <= maxMicrons) return step * base;
  }
  return base;
}

/**
 * @param {number} um
 * @returns {string}
 */
function formatMicrons(um) {
  return um >= 1000 ? (um / 1000) + " mm" : um + " µm";
}

/**
 * @param {HTMLElement} page the element carrying the slide's data attributes (URLs, resolution, size)
 */
function initViewer(page) {
  const container = document.getElementById("osd");
  if (!container || typeof OpenSeadragon === "undefined") return;
  const mpp = parseFloat(page.dataset.mpp || "") || null;
  /** @type {SuaViewerState} */
  const state = { tilesLoaded: 0, tileErrors: 0, fullyLoaded: false, annotations: 0, firstTileMs: null, drawn: {} };
  window.suaViewerState = state;

  const viewer = OpenSeadragon({
    element: container,
    prefixUrl: pageUrl(page, "prefix"),
    tileSources: pageUrl(page, "dzi"),
    showNavigator: true,
    navigatorPosition: "BOTTOM_RIGHT",
    navigatorSizeRatio: 0.18,
    navigatorAutoFade: false,
    showRotationControl: false,
    maxZoomPixelRatio: 2,
    visibilityRatio: 0.5,
    minZoomImageRatio: 0.6,
    animationTime: 0.6,
    // Tiles: OpenSeadragon starts at most maxTilesPerFrame new tile loads per drawn frame (default 1), so where
    // frames are slow (headless, software rendering, a busy page) tiles were requested one per frame, ~0.6 s
    // apart. Ask for every tile a frame wants at once; the browser keeps 6 connections to the server.
    maxTilesPerFrame: 24,
    imageLoaderLimit: 12,
    // The 2-D canvas drawer: WebGL without a GPU (headless Chromium, remote desktops) is software-emulated
    // and many times slower per frame.
    drawer: "canvas",
    gestureSettingsMouse: { clickToZoom: false, dblClickToZoom: true },
  });
  window.suaViewer = viewer;

  viewer.addHandler("tile-loaded", () => {
    state.tilesLoaded += 1;
    if (state.firstTileMs === null) state.firstTileMs = Math.round(performance.now());
  });
  viewer.addHandler("tile-load-failed", () => { state.tileErrors += 1; });
  viewer.addHandler("open-failed", (event) => {
    container.insertAdjacentHTML("beforeend",
      '<div class="viewer-failed" role="alert"><h2>The slide cannot be opened</h2><p></p></div>');
    const reason = /** @type {HTMLElement} */ (container.querySelector(".viewer-failed p"));
    reason.textContent = event.message || "The tiles did not load.";
  });

  /** @returns {number} the slide's width in level-0 pixels */
  function imageWidth() {
    const item = viewer.world.getItemAt(0);
    return item ? item.getContentSize().x : parseFloat(page.dataset.width || "") || 1;
  }

  /** @returns {{ width: number, height: number }} the slide's size in level-0 pixels */
  function slideSize() {
    const item = viewer.world.getItemAt(0);
    if (item) { const size = item.getContentSize(); return { width: size.x, height: size.y }; }
    return { width: parseFloat(page.dataset.width || "") || 1, height: parseFloat(page.dataset.height || "") || 1 };
  }

  /**
   * Screen pixels per level-0 pixel, and the screen position of the image origin.
   * Through the slide's own TiledImage: heatmaps laid over it make the world multi-image.
   * @returns {{ origin: OpenSeadragon.Point, scale: number }}
   */
  function screenScale() {
    const slide = viewer.world.getItemAt(0);
    const origin = slide.imageToViewerElementCoordinates(new OpenSeadragon.Point(0, 0));
    const width = imageWidth();
    const corner = slide.imageToViewerElementCoordinates(new OpenSeadragon.Point(width, 0));
    return { origin: origin, scale: (corner.x - origin.x) / width };
  }

  // The slide's objective magnification: its own, else 10x at 1 µm/px; 0 when unknown (no presets then).
  const nativePower = parseFloat(page.dataset.magnification || "") || (mpp ? MAGNIFICATION_AT_1_MPP / mpp : 0);
  const vector = new VectorLayer(viewer, screenScale, slideSize);
  window.suaViewerLayers = vector;

  const scalebar = document.getElementById("scalebar");
  const magnification = document.getElementById("magnification");
  function update() {
    if (!viewer.world.getItemAt(0)) return;
    const view = screenScale();
    state.drawn = vector.drawn;
    if (magnification && nativePower) {
      magnification.textContent = (nativePower * view.scale).toFixed(view.scale * nativePower < 10 ? 1 : 0) + "×";
    }
    if (mpp && scalebar) {
      const pxPerMicron = view.scale / mpp;
      const length = niceLength(140 / pxPerMicron);
      scalebar.hidden = false;
      /** @type {HTMLElement} */ (scalebar.querySelector(".bar")).style.width = Math.round(length * pxPerMicron) + "px";
      /** @type {HTMLElement} */ (scalebar.querySelector(".label")).textContent = formatMicrons(length);
    }
  }
  viewer.addHandler("open", () => {
    update();
    const item = viewer.world.getItemAt(0);
    item.addHandler("fully-loaded-change", (event) => {
      state.fullyLoaded = event.fullyLoaded;
      if (event.fullyLoaded) document.body.dataset.tiles = "loaded";
    });
  });
  // Once per drawn frame in which the view moved (OpenSeadragon's own drawing is in the same frame).
  viewer.addHandler("update-viewport", update);
  viewer.addHandler("resize", update);

  // Zoom presets in objective magnification: the slide's own (or 10x at 1 µm/px), and the presets up to it.
  const presets = document.getElementById("zoom-presets");
  if (presets && nativePower) {
    for (const power of PRESETS.filter((p) => p <= nativePower * 1.001)) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = power + "×";
      button.title = "Zoom to " + power + "× (objective magnification; the slide was scanned at " +
        Math.round(nativePower) + "×)";
      button.addEventListener("click", () => zoomToPower(power));
      presets.appendChild(button);
    }
  }
  /** @param {number} power objective magnification: one level-0 pixel is power / nativePower screen pixels */
  function zoomToPower(power) {
    const slide = viewer.world.getItemAt(0);
    if (!slide) return;
    viewer.viewport.zoomTo(slide.imageToViewportZoom(power / nativePower), viewer.viewport.getCenter(true));
  }
  const fit = document.getElementById("zoom-fit");
  if (fit) fit.addEventListener("click", () => viewer.viewport.goHome());
  // Full screen: the slide's whole section (toolbar, scale bar and minimap with it); OpenSeadragon follows
  // its container's size. Esc or the button again leaves.
  const full = document.getElementById("full-screen");
  const section = container.parentElement;
  if (full && section) {
    full.addEventListener("click", () => {
      if (document.fullscreenElement) document.exitFullscreen();
      else section.requestFullscreen().catch(() => viewer.setFullScreen(true));
    });
  }

  const coords = document.getElementById("coords");
  new OpenSeadragon.MouseTracker({
    element: viewer.container,
    moveHandler: (event) => {
      if (!viewer.world.getItemAt(0) || !coords) return;
      // The pointer's position in the viewer element (OpenSeadragon gives it; its type declarations omit it).
      const position = /** @type {{ position: OpenSeadragon.Point }} */ (/** @type {unknown} */ (event)).position;
      const point = viewer.world.getItemAt(0).viewerElementToImageCoordinates(position);
      const x = Math.round(point.x), y = Math.round(point.y);
      const inside = x >= 0 && y >= 0 && x < imageWidth();
      coords.textContent = inside ? (x + ", " + y + " px" + (mpp ? "  ·  " +
        (x * mpp / 1000).toFixed(2) + ", " + (y * mpp / 1000).toFixed(2) + " mm" : "")) : "";
    },
    leaveHandler: () => { if (coords) coords.textContent = ""; },
  });

  loadOutlines(vector, pageUrl(page, "annotations"), state);
  const layers = initLayers(viewer, page, vector, state, imageWidth);
  if (layers && document.getElementById("review-queue")) initQueue(viewer, page, vector, layers, state);
}

const page = document.getElementById("viewer-page");
if (page) initViewer(page);
