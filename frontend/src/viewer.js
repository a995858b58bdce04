/* SUA Portal: the slide viewer (OpenSeadragon over the DeepZoom tiles, tumor outlines as SVG,
 * scale bar) and the resumable slide uploader of the cohort page. No build step: plain ES2017. */
(function () {
  "use strict";

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  // ------------------------------------------------------------------ the viewer

  const SVG_NS = "http://www.w3.org/2000/svg";

  function ringsToPath(geometry) {
    // GeoJSON Polygon / MultiPolygon in level-0 pixels -> one SVG path (even-odd keeps holes open).
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

  function niceLength(maxMicrons) {
    // The largest 1, 2 or 5 x 10^k micrometres not above maxMicrons.
    const exponent = Math.floor(Math.log10(maxMicrons));
    const base = Math.pow(10, exponent);
    for (const step of [5, 2, 1]) {
      if (step * base <= maxMicrons) return step * base;
    }
    return base;
  }

  function formatMicrons(um) {
    return um >= 1000 ? (um / 1000) + " mm" : um + " µm";
  }

  function initViewer(page) {
    const container = document.getElementById("osd");
    if (!container || typeof OpenSeadragon === "undefined") return;
    const mpp = parseFloat(page.dataset.mpp) || null;
    const state = { tilesLoaded: 0, tileErrors: 0, fullyLoaded: false, annotations: 0 };
    window.suaViewerState = state;

    const viewer = OpenSeadragon({
      element: container,
      prefixUrl: page.dataset.prefix,
      tileSources: page.dataset.dzi,
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
      container.querySelector(".viewer-failed p").textContent = event.message || "The tiles did not load.";
    });

    // Tumor outlines: an SVG laid over the canvas, moved with the viewport (one transform per frame).
    const svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("class", "annotation-layer");
    const layer = document.createElementNS(SVG_NS, "g");
    svg.appendChild(layer);
    viewer.canvas.appendChild(svg);

    function imageWidth() {
      const item = viewer.world.getItemAt(0);
      return item ? item.getContentSize().x : parseFloat(page.dataset.width) || 1;
    }

    function screenScale() {
      // Screen pixels per level-0 pixel, and the screen position of the image origin.
      // Through the slide's own TiledImage: heatmaps laid over it make the world multi-image.
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
      layer.setAttribute("transform",
        "translate(" + view.origin.x + "," + view.origin.y + ") scale(" + view.scale + ")");
      if (mpp && scalebar) {
        const pxPerMicron = view.scale / mpp;
        const length = niceLength(140 / pxPerMicron);
        scalebar.hidden = false;
        scalebar.querySelector(".bar").style.width = Math.round(length * pxPerMicron) + "px";
        scalebar.querySelector(".label").textContent = formatMicrons(length);
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
        const point = viewer.world.getItemAt(0).viewerElementToImageCoordinates(event.position);
        const x = Math.round(point.x), y = Math.round(point.y);
        const inside = x >= 0 && y >= 0 && x < imageWidth();
        coords.textContent = inside ? (x + ", " + y + " px" + (mpp ? "  ·  " +
          (x * mpp / 1000).toFixed(2) + ", " + (y * mpp / 1000).toFixed(2) + " mm" : "")) : "";
      },
      leaveHandler: () => { if (coords) coords.textContent = ""; },
    });

    const toggle = document.getElementById("show-annotations");
    if (toggle) toggle.addEventListener("change", () => { svg.style.display = toggle.checked ? "" : "none"; });

    fetch(page.dataset.annotations, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((response) => (response.ok ? response.json() : []))
      .then((annotations) => {
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
        update();
      });

    initHeatmaps(viewer, page, layer, state, imageWidth);
  }

  // ------------------------------------------------------------------ heatmaps and flagged regions

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((response) => (response.ok ? response.json() : Promise.reject(new Error(response.statusText))));
  }

  function initHeatmaps(viewer, page, layer, state, imageWidth) {
    const panel = document.getElementById("heatmap-panel");
    if (!panel || !page.dataset.heatmaps) return;
    const ensembleSelect = document.getElementById("heatmap-ensemble");
    const kindSelect = document.getElementById("heatmap-kind");
    const opacity = document.getElementById("heatmap-opacity");
    const legend = document.getElementById("heatmap-legend");
    const rangeSelect = document.getElementById("npr-range");
    const list = document.getElementById("npr-list");
    const regionLayer = document.createElementNS(SVG_NS, "g");
    layer.appendChild(regionLayer);
    let heatmaps = [];
    let overlay = null;
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
      const url = "/api/heatmaps/" + heatmap.id + "/image/?kind=" + kind;
      const probe = new Image();
      probe.onload = () => {
        if (current() !== heatmap || kindSelect.value !== kind) return;  // changed meanwhile
        // One heatmap pixel covers `downsample` level-0 pixels; the slide is 1 viewport unit wide.
        viewer.addTiledImage({
          tileSource: { type: "image", url: url, buildPyramid: false },
          x: 0, y: 0, width: probe.naturalWidth * heatmap.downsample / imageWidth(),
          opacity: parseFloat(opacity.value), index: 1,
          success: (event) => { overlay = event.item; state.overlay = kind; },
        });
      };
      probe.src = url;
    }

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
      document.getElementById("npr-none").hidden = shown.length > 0;
      const mpp = parseFloat(page.dataset.mpp) || null;
      shown.forEach((region) => {
        const rect = document.createElementNS(SVG_NS, "rect");
        rect.setAttribute("x", region.x);
        rect.setAttribute("y", region.y);
        rect.setAttribute("width", region.width);
        rect.setAttribute("height", region.height);
        rect.setAttribute("class", "npr");
        rect.setAttribute("vector-effect", "non-scaling-stroke");
        regionLayer.appendChild(rect);
        const item = document.createElement("li");
        const size = mpp ? (region.width * mpp).toFixed(0) + " × " + (region.height * mpp).toFixed(0) + " µm"
          : Math.round(region.width) + " × " + Math.round(region.height) + " px";
        item.innerHTML = '<span class="score"></span> <span class="muted small"></span>';
        item.querySelector(".score").textContent = "score " + region.score.toFixed(3);
        item.querySelector(".muted").textContent = size;
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
      getJSON("/api/heatmaps/" + heatmap.id + "/regions/?flagged=1").then((found) => {
        regions = found;
        const ranges = new Map();  // lower bound -> {upper, count}: one entry per SUA range
        for (const r of found) {
          if (!ranges.has(r.lower)) ranges.set(r.lower, { upper: r.upper, count: 0 });
          ranges.get(r.lower).count += 1;
        }
        for (const [lower, info] of [...ranges.entries()].sort((a, b) => a[0] - b[0])) {
          const option = document.createElement("option");
          option.value = lower;
          option.textContent = lower + " < s < " + info.upper + " (" + info.count + " flagged)";
          rangeSelect.appendChild(option);
        }
        showRegions();
      });
    }

    getJSON(page.dataset.heatmaps).then((found) => {
      heatmaps = (found.results || found).filter((h) => h.status === "done");  // a paginated list
      panel.hidden = false;
      document.getElementById("heatmap-none").hidden = heatmaps.length > 0;
      document.getElementById("heatmap-controls").hidden = heatmaps.length === 0;
      for (const heatmap of heatmaps) {
        const option = document.createElement("option");
        option.value = heatmap.id;
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

  // ------------------------------------------------------------------ the uploader

  const CHUNK_BYTES = 8 * 1024 * 1024;
  let uploading = false;

  async function api(url, options) {
    const response = await fetch(url, Object.assign({ credentials: "same-origin" }, options, {
      headers: Object.assign({ "X-CSRFToken": csrfToken(), Accept: "application/json" }, (options || {}).headers),
    }));
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    return { ok: response.ok, status: response.status, body: body };
  }

  function describe(result) {
    if (result.body && result.body.detail) return result.body.detail;
    if (result.body && typeof result.body === "object") {
      return Object.values(result.body).flat().join(" ");
    }
    return "The server answered " + result.status + ".";
  }

  async function uploadFile(cohortId, file, row) {
    const bar = row.querySelector("progress");
    const note = row.querySelector(".note");
    const start = await api("/api/cohorts/" + cohortId + "/uploads/", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ filename: file.name, size: file.size }),
    });
    if (!start.ok) throw new Error(describe(start));
    const url = "/api/uploads/" + start.body.id + "/";
    let offset = start.body.offset;
    let retries = 0;
    while (offset < file.size) {
      const end = Math.min(file.size, offset + CHUNK_BYTES);
      let result;
      try {
        result = await api(url, {
          method: "PUT",
          headers: { "Content-Type": "application/octet-stream",
                     "Content-Range": "bytes " + offset + "-" + (end - 1) + "/" + file.size },
          body: file.slice(offset, end),
        });
      } catch (networkError) {
        result = { ok: false, status: 0, body: null };
      }
      if (result.ok) {
        offset = result.body.offset;
        retries = 0;
      } else {
        // Resume from what the server has (a dropped connection keeps what arrived).
        if (++retries > 5) throw new Error(describe(result));
        note.textContent = "Connection trouble, resuming…";
        await new Promise((resolve) => setTimeout(resolve, 1000 * retries));
        const status = await api(url, { method: "GET" });
        if (!status.ok) throw new Error(describe(status));
        offset = status.body.offset;
      }
      bar.value = offset / file.size;
      note.textContent = Math.round(100 * offset / file.size) + " %";
    }
    note.textContent = "Checking the file…";
    const done = await api(url + "complete/", { method: "POST" });
    if (!done.ok) throw new Error(describe(done));
    return done.body;
  }

  function initUploader(section) {
    const input = document.getElementById("upload-input");
    const list = document.getElementById("upload-list");
    const drop = section.querySelector(".drop");
    async function handle(files) {
      let stored = 0;
      uploading = true;
      for (const file of files) {
        const row = document.createElement("li");
        row.innerHTML = '<span class="file"></span><progress max="1" value="0"></progress><span class="note"></span>';
        row.querySelector(".file").textContent = file.name;
        list.appendChild(row);
        try {
          const slide = await uploadFile(section.dataset.cohort, file, row);
          row.classList.add("done");
          row.querySelector(".note").textContent = "Stored as " + slide.name + "; the worker checks it now.";
          stored += 1;
        } catch (error) {
          row.classList.add("failed");
          row.querySelector(".note").textContent = error.message;
        }
      }
      uploading = false;
      if (stored) setTimeout(() => window.location.reload(), 1500);
    }
    input.addEventListener("change", () => handle(Array.from(input.files)));
    drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("over");
      handle(Array.from(event.dataTransfer.files));
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const page = document.getElementById("viewer-page");
    if (page) initViewer(page);
    const uploader = document.getElementById("uploader");
    if (uploader) initUploader(uploader);
    // Slides still being checked by a worker: look again in a while (never in the middle of an upload).
    const table = document.getElementById("slides");
    if (table && Number(table.dataset.checking) > 0) {
      setTimeout(function refresh() {
        if (uploading) setTimeout(refresh, 5000); else window.location.reload();
      }, 8000);
    }
  });
})();
