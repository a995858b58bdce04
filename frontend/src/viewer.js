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
      const origin = viewer.viewport.imageToViewerElementCoordinates(new OpenSeadragon.Point(0, 0));
      const width = imageWidth();
      const corner = viewer.viewport.imageToViewerElementCoordinates(new OpenSeadragon.Point(width, 0));
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
        const point = viewer.viewport.viewerElementToImageCoordinates(event.position);
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
