// @ts-check
/* SUA Portal: the slide viewer page. OpenSeadragon over the DeepZoom tiles, a scale bar and the pointer's
 * position; what is drawn over the slide (tumor outlines, heatmaps, flagged regions) is in layers.js.
 * Loaded as a module after openseadragon.min.js, which defines the global OpenSeadragon. */

import { pageUrl } from "./http.js";
import { addDrawingLayer, loadOutlines, initHeatmaps } from "./layers.js";

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
  const state = { tilesLoaded: 0, tileErrors: 0, fullyLoaded: false, annotations: 0 };
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
    imageLoaderLimit: 8,
    gestureSettingsMouse: { clickToZoom: false, dblClickToZoom: true },
  });
  window.suaViewer = viewer;

  viewer.addHandler("tile-loaded", () => { state.tilesLoaded += 1; });
  viewer.addHandler("tile-load-failed", () => { state.tileErrors += 1; });
  viewer.addHandler("open-failed", (event) => {
    container.insertAdjacentHTML("beforeend",
      '<div class="viewer-failed" role="alert"><h2>The slide cannot be opened</h2><p></p></div>');
    const reason = /** @type {HTMLElement} */ (container.querySelector(".viewer-failed p"));
    reason.textContent = event.message || "The tiles did not load.";
  });

  const drawing = addDrawingLayer(viewer);

  /** @returns {number} the slide's width in level-0 pixels */
  function imageWidth() {
    const item = viewer.world.getItemAt(0);
    return item ? item.getContentSize().x : parseFloat(page.dataset.width || "") || 1;
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

  const scalebar = document.getElementById("scalebar");
  function update() {
    if (!viewer.world.getItemAt(0)) return;
    const view = screenScale();
    drawing.follow(view.origin, view.scale);
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
  viewer.addHandler("animation", update);
  viewer.addHandler("update-viewport", update);
  viewer.addHandler("resize", update);

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

  const toggle = /** @type {HTMLInputElement | null} */ (document.getElementById("show-annotations"));
  if (toggle) toggle.addEventListener("change", () => { drawing.svg.style.display = toggle.checked ? "" : "none"; });

  loadOutlines(drawing.layer, pageUrl(page, "annotations"), state).then(update);
  initHeatmaps(viewer, page, drawing.layer, state, imageWidth);
}

const page = document.getElementById("viewer-page");
if (page) initViewer(page);
