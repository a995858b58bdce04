// @ts-check
/* SUA Portal: the review panel of the viewer. On the project's review run it lists the slide's flagged regions
 * (the review queue of docs/review-api.md: highest score first, each with its small image, score, area and
 * verdict), marks the current one in the list and on the canvas, and flies the view to it. Verdicts are given
 * by key or button and saved at once; the view then moves on to the next region without one. When none is
 * left, the slide can be marked complete and the next slide of the worklist opened. Keys:
 *   N / P next / previous region, T tumor, F not tumor, U unsure, C comment (Enter saves it with the verdict),
 *   Z undo the last verdict, H hides every overlay while held, ? the keys.
 * Keys are ignored while typing in a field and with Ctrl, Meta or Alt. Whoever is not a reviewer of the slide
 * (researchers, a pathologist the cohort does not name) reads the panel: the verdicts' outcome and counts.
 * Every URL comes from the page's data attributes (viewer.html). */

import { api, describe, getJSON, pageUrl, urlWithId } from "./http.js";
import { flyTo } from "./layers.js";

/**
 * @typedef {import("./layers.js").LayerControls} LayerControls
 * @typedef {import("./layers.js").Run} Run
 * @typedef {import("./vector.js").VectorLayer} VectorLayer
 * @typedef {import("./http.js").ApiResult} ApiResult
 */

/**
 * A verdict of the caller's, and what the caller may see of every verdict on a region.
 * @typedef {{ verdict: string, comment: string, slot?: number, updated?: string }} MyVerdict
 * @typedef {{ verdict: string, settled: boolean }} Outcome
 */

/**
 * One flagged region of the queue (level-0 bounding box).
 * @typedef {{ id: number, label: number, score: number, area_um2: number | null, x: number, y: number,
 *   width: number, height: number, image: string | null, verdict: MyVerdict | null, outcome: Outcome | null }} QueueRegion
 */

/**
 * The queue of one slide in the run's review range.
 * @typedef {{ run: number, slide: number, slide_name: string, slot: number | null, view: string,
 *   downsample: number, complete: boolean, completed: string | null, flagged: number, reviewed: number,
 *   resume: number | null, regions: QueueRegion[] }} Queue
 */

/** @type {Record<string, string>} the verdict of each verdict key */
const VERDICT_KEYS = { t: "tumor", f: "not_tumor", u: "unsure" };
/** @type {Record<string, string>} */
const NAMES = { tumor: "Tumor", not_tumor: "Not tumor", unsure: "Unsure", disputed: "Disputed" };
const KEYS = new Set(["n", "p", "t", "f", "u", "c", "z", "h", "?"]);
const WRITE_KEYS = new Set(["t", "f", "u", "c", "z"]);
/** Rows of the review list drawn at once (a window over the queue), and the step by which the window moves. */
const WINDOW_ROWS = 80;
const WINDOW_STEP = 20;
/** A row's height before one was measured (queue.css: a 48 px image and padding). */
const ROW_GUESS_PX = 58;

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
 * Whether a key event happens while the person types (a field has the focus).
 * @param {EventTarget | null} target
 */
function typing(target) {
  if (!(target instanceof HTMLElement)) return false;
  return target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName);
}

/**
 * @param {number | null} area µm²
 * @returns {string}
 */
function formatArea(area) {
  return area === null ? "" : Math.round(area).toLocaleString() + " µm²";
}

/**
 * A verdict's badge (empty for none).
 * @param {string | null} verdict
 * @param {boolean} [settled]
 * @returns {HTMLElement}
 */
function badge(verdict, settled) {
  const span = document.createElement("span");
  span.className = "verdict-badge" + (verdict ? " verdict-" + verdict : " verdict-none");
  span.textContent = verdict ? (NAMES[verdict] || verdict) + (settled ? " (settled)" : "") : "no verdict";
  return span;
}

/**
 * The review panel on the viewer page.
 * @param {OpenSeadragon.Viewer} viewer
 * @param {HTMLElement} page the element carrying the page's URLs (data attributes)
 * @param {VectorLayer} vector
 * @param {LayerControls} layers
 * @param {SuaViewerState} viewerState the viewer's state: its activeRegion follows the current region
 */
export function initQueue(viewer, page, vector, layers, viewerState) {
  const panel = element("review-queue");
  const list = /** @type {HTMLOListElement} */ (element("queue-list"));
  const message = element("queue-message");
  const commentForm = /** @type {HTMLFormElement} */ (element("queue-comment"));
  const commentText = /** @type {HTMLTextAreaElement} */ (element("queue-comment-text"));
  const commentVerdict = /** @type {HTMLSelectElement} */ (element("queue-comment-verdict"));
  const keysOverlay = document.getElementById("queue-keys");
  const done = element("queue-done");
  const oldList = [element("npr-list"), element("npr-more"), element("npr-none")];
  /** @type {SuaReviewState} */
  const state = { loaded: false, run: null, slide: null, readOnly: true, current: null, flagged: 0, reviewed: 0,
    saving: 0, moves: 0, flying: false, keyAt: null, shownAt: null, drawnAt: null, error: "", keysShown: false };
  window.suaReview = state;

  /** @type {Queue | null} */
  let queue = null;
  /** @type {number} the current region's place in the queue, -1 for none */
  let index = -1;
  /** @type {Map<number, number>} region id -> its index in the canvas's "regions" set */
  let canvasIndex = new Map();
  /** @type {Promise<unknown>} writes go one after another (an undo after the verdict it takes back) */
  let writes = Promise.resolve();
  /** @type {string | null} the reviewed segmentation's PNG as a blob: URL (revoked when replaced) */
  let maskUrl = null;
  /** the run shown on the page, null until layers.js chose it */
  /** @type {Run | null} */
  let run = null;
  /** @type {number | null} the flight the timing waits for (state.keyAt .. shownAt .. drawnAt) */
  let timing = null;
  /** @type {number} the first queue index with a row in the list (see drawList), -1: none drawn */
  let windowStart = -1;
  /** @type {number} a row's height in pixels, measured on the first row drawn */
  let rowHeight = 0;
  /** @returns {number} a row's height: as measured, else as queue.css makes it */
  const rowPx = () => rowHeight || ROW_GUESS_PX;

  /** @type {Promise<void>} */
  const slideOpen = new Promise((resolve) => {
    if (viewer.world.getItemCount() > 0) resolve();
    else viewer.addOnceHandler("open", () => resolve());
  });

  /** @param {string} name a data-review-* URL of the page, with the run's id in place */
  function url(name) {
    if (!run) throw new Error("no run");
    return urlWithId(pageUrl(page, name), run.id);
  }

  /** @param {string} text @param {boolean} [error] */
  function say(text, error) {
    message.textContent = text;
    message.hidden = !text;
    message.classList.toggle("error", Boolean(error));
    state.error = error ? text : "";
  }

  /**
   * Whether the caller sees a region as reviewed: their own verdict (a reviewer), else the outcome.
   * @param {QueueRegion} region
   * @returns {{ verdict: string, settled: boolean } | null}
   */
  function shown(region) {
    if (!state.readOnly) return region.verdict ? { verdict: region.verdict.verdict, settled: false } : null;
    return region.outcome;
  }

  // --- drawing the panel ---

  /** @param {QueueRegion} region @param {number} i */
  function row(region, i) {
    const item = document.createElement("li");
    item.dataset.id = String(region.id);
    item.dataset.index = String(i);
    const image = document.createElement("img");
    image.alt = "";
    image.loading = "lazy";
    image.width = 48;
    image.height = 48;
    if (region.image) image.src = region.image;
    const text = document.createElement("div");
    text.className = "queue-row-text";
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = "score " + region.score.toFixed(3);
    const area = document.createElement("span");
    area.className = "muted small";
    area.textContent = formatArea(region.area_um2);
    text.append(score, " ", area, document.createElement("br"));
    item.append(image, text);
    item.title = "Region " + region.label + ": click to go there";
    if (i === index) item.classList.add("current");
    fillRow(item, region);
    return item;
  }

  /** @param {HTMLElement} item @param {QueueRegion} region */
  function fillRow(item, region) {
    const text = /** @type {HTMLElement} */ (item.querySelector(".queue-row-text"));
    const old = text.querySelector(".verdict-badge");
    const seen = shown(region);
    const mark = badge(seen ? seen.verdict : null, seen ? seen.settled : false);
    if (region.verdict && region.verdict.comment) mark.title = region.verdict.comment;
    if (old) old.replaceWith(mark); else text.appendChild(mark);
    item.dataset.verdict = seen ? seen.verdict : "";
  }

  /** @param {number} i */
  function redrawRow(i) {
    if (!queue) return;
    const item = list.querySelector('li[data-index="' + i + '"]');
    if (item instanceof HTMLElement) fillRow(item, queue.regions[i]);
  }

  function drawProgress() {
    if (!queue) return;
    /** @type {Record<string, number>} */
    const counts = { tumor: 0, not_tumor: 0, unsure: 0, disputed: 0 };
    let reviewed = 0;
    for (const region of queue.regions) {
      const seen = shown(region);
      if (!seen) continue;
      reviewed += 1;
      counts[seen.verdict] = (counts[seen.verdict] || 0) + 1;
    }
    state.reviewed = reviewed;
    state.flagged = queue.regions.length;
    const box = element("queue-progress");
    box.replaceChildren();
    const line = document.createElement("div");
    line.className = "queue-count";
    const whose = state.readOnly ? (queue.view === "all" ? " (every reviewer's verdicts)" : "") : " by you";
    line.textContent = reviewed + " of " + queue.regions.length + " reviewed" + whose;
    const bar = document.createElement("progress");
    bar.max = Math.max(1, queue.regions.length);
    bar.value = reviewed;
    const split = document.createElement("div");
    split.className = "queue-split small";
    for (const kind of ["tumor", "not_tumor", "unsure", "disputed"]) {
      if (kind === "disputed" && !counts.disputed) continue;
      const part = badge(kind);
      part.textContent = NAMES[kind] + " " + counts[kind];
      part.dataset.count = String(counts[kind]);
      split.appendChild(part);
    }
    box.append(line, bar, split);
    drawDone();
    offerReviewed(reviewed > 0);
  }

  function drawDone() {
    if (!queue) return;
    const left = queue.regions.some((r) => !r.verdict);
    const showIt = !state.readOnly && (queue.complete || !left) && queue.regions.length > 0;
    done.hidden = !showIt;
    element("queue-done-text").textContent = queue.complete
      ? "You marked this slide review complete" + (queue.completed ? " on " + queue.completed.slice(0, 10) : "")
        + ": reopen it to change a verdict."
      : "Every flagged region of this slide has your verdict.";
    element("queue-complete").hidden = queue.complete;
    element("queue-reopen").hidden = !queue.complete;
    for (const button of element("queue-buttons").querySelectorAll("button.write")) {
      /** @type {HTMLButtonElement} */ (button).disabled = state.readOnly || queue.complete;
    }
  }

  function drawCurrent() {
    const box = element("queue-current");
    if (!queue || index < 0) { box.hidden = true; state.current = null; return; }
    const region = queue.regions[index];
    state.current = region.id;
    box.hidden = false;
    const image = /** @type {HTMLImageElement} */ (element("queue-image"));
    if (region.image && image.getAttribute("src") !== region.image) image.src = region.image;
    element("queue-title").textContent = "Region " + region.label + " · " + (index + 1) + " of " + queue.regions.length;
    element("queue-facts").textContent = "score " + region.score.toFixed(3)
      + (region.area_um2 !== null ? " · " + formatArea(region.area_um2) : "");
    const verdict = element("queue-verdict");
    verdict.replaceChildren();
    const seen = shown(region);
    verdict.append(state.readOnly ? "Outcome: " : "Your verdict: ", badge(seen ? seen.verdict : null, seen ? seen.settled : false));
    if (region.verdict && region.verdict.comment) {
      const note = document.createElement("div");
      note.className = "queue-note small";
      note.textContent = "“" + region.verdict.comment + "”";
      verdict.appendChild(note);
    }
  }

  /**
   * The list: a window of rows over the queue, the rows above and below it stood in for by an empty row each.
   * A slide may have thousands of flagged regions; a row each (with its image) made the page's every frame
   * slower (with 100,000, the slide alone panned at ~110 ms a frame instead of ~10). The window moves by
   * WINDOW_STEP rows, so scrolling redraws it only every so often.
   * @param {boolean} [again] redraw even where the window has not moved
   */
  function drawList(again) {
    if (!queue) return;
    const n = queue.regions.length;
    const first = Math.floor(list.scrollTop / rowPx());
    const start = Math.max(0, Math.min(Math.floor(first / WINDOW_STEP) * WINDOW_STEP - WINDOW_STEP,
      n - WINDOW_ROWS));
    if (!again && start === windowStart) return;
    windowStart = start;
    const end = Math.min(n, start + WINDOW_ROWS);
    const rows = [];
    for (let i = start; i < end; i++) rows.push(row(queue.regions[i], i));
    list.replaceChildren(...rows);
    if (!rowHeight && rows.length) rowHeight = rows[0].getBoundingClientRect().height;
    if (start > 0) list.prepend(spacer(start * rowPx()));
    if (end < n) list.append(spacer((n - end) * rowPx()));
  }

  /** @param {number} height @returns {HTMLLIElement} an empty row as tall as the rows it stands for */
  function spacer(height) {
    const item = document.createElement("li");
    item.className = "queue-spacer";
    item.setAttribute("aria-hidden", "true");
    item.style.height = height + "px";
    return item;
  }

  /** The canvas's highlight on the current region (when the canvas holds the review range's regions). */
  function highlight() {
    if (!queue || index < 0) return;
    const at = canvasIndex.get(queue.regions[index].id);
    if (at !== undefined) vector.setActive({ set: "regions", index: at });
  }

  // --- moving ---

  /**
   * Make region i the current one: marked in the list and on the canvas, the view flown there.
   * @param {number} i
   * @param {{ fly?: boolean, keyAt?: number | null }} [how]
   */
  function goTo(i, how) {
    if (!queue || i < 0 || i >= queue.regions.length) return;
    index = i;
    for (const el of list.querySelectorAll("li.current")) el.classList.remove("current");
    let item = list.querySelector('li[data-index="' + i + '"]');
    if (!item) {  // outside the list's window of rows: scroll there, the window follows
      list.scrollTop = Math.max(0, i * rowPx() - list.clientHeight / 2);
      drawList();
      item = list.querySelector('li[data-index="' + i + '"]');
    }
    if (item) { item.classList.add("current"); item.scrollIntoView({ block: "nearest" }); }
    drawCurrent();
    highlight();
    viewerState.activeRegion = queue.regions[i].id;
    const options = how || {};
    if (options.fly === false) return;
    const region = queue.regions[i];
    state.moves += 1;
    state.flying = true;
    const move = state.moves;
    if (options.keyAt !== undefined && options.keyAt !== null) {
      state.keyAt = options.keyAt;
      state.shownAt = null;
      state.drawnAt = null;
      timing = move;
    }
    slideOpen.then(() => {
      flyTo(viewer, [region.x, region.y, region.width, region.height]);
      // Already there (no flight to wait for): arrived now.
      if (viewer.viewport.getBounds(true).equals(viewer.viewport.getBounds())) arrived(move);
    });
  }

  /** @param {number} from @returns {number} the next region without the caller's verdict after `from` (round), -1 none */
  function nextOpen(from) {
    if (!queue) return -1;
    const n = queue.regions.length;
    for (let k = 1; k < n; k++) {
      const i = (from + k) % n;
      if (!queue.regions[i].verdict) return i;
    }
    return -1;
  }

  /**
   * The view got to the region of a move (its flight ended); for a move by key, the timing: the view there,
   * then its tiles drawn.
   * @param {number} move
   */
  function arrived(move) {
    if (move !== state.moves) return;  // a later move is under way
    state.flying = false;
    if (timing !== move || state.shownAt !== null) return;
    state.shownAt = performance.now();
    const slide = viewer.world.getItemAt(0);
    if (!slide || slide.getFullyLoaded()) { state.drawnAt = state.shownAt; timing = null; return; }
    const until = () => {
      if (move !== timing) return;
      if (!slide.getFullyLoaded()) { slide.addOnceHandler("fully-loaded-change", until); return; }
      state.drawnAt = performance.now();
      timing = null;
    };
    slide.addOnceHandler("fully-loaded-change", until);
  }
  viewer.addHandler("animation-finish", () => arrived(state.moves));

  // --- writing ---

  /**
   * Run a write after the ones before it.
   * @param {() => Promise<void>} work
   */
  function write(work) {
    state.saving += 1;
    writes = writes.then(work).catch((error) => say(String(error), true)).finally(() => { state.saving -= 1; });
  }

  /**
   * @param {ApiResult} result
   * @returns {string} the server's words, or what a failed connection means
   */
  function problem(result) {
    return result.status === 0 ? "The server could not be reached: nothing was saved." : describe(result);
  }

  /**
   * Save the caller's verdict on the current region (with a comment, or keeping the one there is), and move on.
   * @param {string} kind
   * @param {string | null} comment
   * @param {number | null} keyAt when the key was pressed (event.timeStamp), for the timing
   */
  function giveVerdict(kind, comment, keyAt) {
    if (!queue || index < 0) return;
    if (queue.complete) { say("You marked this slide review complete: reopen it to change a verdict.", true); return; }
    const i = index;
    const region = queue.regions[i];
    const before = region.verdict;
    const wasNew = !before;
    region.verdict = { verdict: kind, comment: comment !== null ? comment : (before ? before.comment : "") };
    say("");
    redrawRow(i);
    const item = list.querySelector('li[data-index="' + i + '"]');
    if (item) item.classList.add("saving");
    drawProgress();
    // Move on at once (the save follows): to the next region without a verdict, else stay (the slide is done).
    const next = wasNew || comment === null ? nextOpen(i) : -1;
    if (next >= 0) goTo(next, { keyAt: keyAt }); else drawCurrent();
    /** @type {Record<string, string | number>} */
    const body = { region: region.id, verdict: kind };
    if (comment !== null) body.comment = comment;
    write(async () => {
      const result = await api(pageUrl(page, "reviewVerdicts"), {
        method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" } });
      if (item) item.classList.remove("saving");
      if (!result.ok) {
        region.verdict = before;
        say(problem(result), true);
        redrawRow(i);
        drawProgress();
        goTo(i);
        return;
      }
      region.verdict = { verdict: result.body.verdict, comment: result.body.comment, slot: result.body.slot,
        updated: result.body.updated };
      if (queue && queue.view === "own") region.outcome = { verdict: result.body.verdict, settled: false };
      redrawRow(i);
      if (i === index) drawCurrent();
      drawProgress();
      refreshReviewed();
    });
  }

  /** Z: take back the caller's last verdict change on the slide; go to its region. */
  function undo() {
    if (!queue) return;
    write(async () => {
      const result = await api(url("reviewUndo"), {
        method: "POST", body: JSON.stringify({ slide: queue ? queue.slide : 0 }),
        headers: { "Content-Type": "application/json" } });
      if (!queue) return;
      if (!result.ok) { say(problem(result), true); return; }
      const i = queue.regions.findIndex((r) => r.id === result.body.region);
      if (i < 0) return;
      const now = result.body.verdict;
      queue.regions[i].verdict = now ? { verdict: now.verdict, comment: now.comment, slot: now.slot, updated: now.updated } : null;
      if (queue.view === "own") queue.regions[i].outcome = now ? { verdict: now.verdict, settled: false } : null;
      say("Undone: " + (NAMES[result.body.undone.verdict] || result.body.undone.verdict) + " on region "
        + queue.regions[i].label + ".");
      redrawRow(i);
      drawProgress();
      goTo(i);
      refreshReviewed();
    });
  }

  /** C: the comment field, with the region's comment and verdict. */
  function openComment() {
    if (!queue || index < 0) return;
    if (queue.complete) { say("You marked this slide review complete: reopen it to change a verdict.", true); return; }
    const region = queue.regions[index];
    commentText.value = region.verdict ? region.verdict.comment : "";
    commentVerdict.value = region.verdict ? region.verdict.verdict : "";
    commentForm.hidden = false;
    commentText.focus();
  }

  function closeComment() {
    commentForm.hidden = true;
    commentText.blur();
  }

  commentForm.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!commentVerdict.value) {
      say("Choose the verdict the comment is saved with.", true);
      commentVerdict.focus();
      return;
    }
    const kind = commentVerdict.value;
    closeComment();
    giveVerdict(kind, commentText.value, null);
  });
  commentText.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); commentForm.requestSubmit(); }
  });
  commentForm.addEventListener("keydown", (event) => {
    if (event.key === "Escape") { event.preventDefault(); closeComment(); }
  });
  element("queue-comment-cancel").addEventListener("click", closeComment);

  /**
   * Mark the slide review complete for the caller (every region has their verdict), or open it again.
   * @param {boolean} complete
   */
  function markComplete(complete) {
    if (!queue) return;
    write(async () => {
      if (!queue) return;
      const result = await api(url(complete ? "reviewComplete" : "reviewReopen"), {
        method: "POST", body: JSON.stringify({ slide: queue.slide }), headers: { "Content-Type": "application/json" } });
      if (!result.ok) { say(problem(result), true); return; }
      queue.complete = result.body.complete;
      queue.completed = result.body.completed;
      say(complete ? "Slide marked review complete." : "The slide is open to your verdicts again.");
      drawDone();
    });
  }
  element("queue-complete").addEventListener("click", () => markComplete(true));
  element("queue-reopen").addEventListener("click", () => markComplete(false));
  element("queue-next-slide").addEventListener("click", async () => {
    const result = await api(url("reviewNext"));
    if (!result.ok) { say(problem(result), true); return; }
    const next = result.body.next;
    if (!next) { say("No other slide of this run has regions left for you."); return; }
    window.location.assign(next.slide.viewer + (next.region ? "&region=" + encodeURIComponent(next.region) : ""));
  });

  // --- the reviewed segmentation (a layer of layers.js, and downloads) ---

  /** Fetch the reviewed PNG (revalidated: it changes with every verdict) as a blob: URL for the layer. */
  async function loadMask() {
    const response = await fetch(url("reviewReviewed") + "&type=png", { credentials: "same-origin", cache: "no-cache" });
    if (!response.ok) {
      const body = await response.json().catch(() => null);
      throw new Error(body && body.detail ? body.detail : "The reviewed segmentation could not be drawn.");
    }
    const made = URL.createObjectURL(await response.blob());
    if (maskUrl) URL.revokeObjectURL(maskUrl);
    maskUrl = made;
    return made;
  }

  let offered = false;
  /** @param {boolean} any whether there is a verdict to draw */
  function offerReviewed(any) {
    if (!queue) return;
    if (any !== offered) {
      offered = any;
      layers.setImageMask("reviewed", any ? { load: loadMask, downsample: queue.downsample } : null);
    }
    const links = element("reviewed-downloads");
    links.hidden = !any;
    const exports = element("queue-downloads");
    exports.hidden = !any;
    if (!any || links.childElementCount) return;
    links.append("Reviewed segmentation: ", link(url("reviewReviewed") + "&type=tiff", "TIFF"), " · ",
      link(url("reviewReviewed") + "&type=geojson", "GeoJSON"));
    exports.append("Verdicts: ", link(url("reviewExport") + "&type=geojson", "QuPath GeoJSON"), " · ",
      link(url("reviewExport") + "&type=xml", "ASAP XML"));
  }

  /** The reviewed layer drawn again after a verdict changed (when it is shown). */
  function refreshReviewed() {
    if (queue && offered) layers.setImageMask("reviewed", { load: loadMask, downsample: queue.downsample });
  }

  /** @param {string} href @param {string} text */
  function link(href, text) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    return a;
  }

  // --- keys and buttons ---

  /** @param {boolean} hidden */
  function hide(hidden) {
    layers.hideOverlays(hidden);
    element("queue-buttons").querySelector('[data-key="h"]')?.classList.toggle("held", hidden);
  }

  /** @param {boolean} [show] */
  function toggleKeys(show) {
    if (!keysOverlay) return;
    keysOverlay.hidden = show === undefined ? !keysOverlay.hidden : !show;
    state.keysShown = !keysOverlay.hidden;
  }

  /**
   * What a key (or its button) does.
   * @param {string} key lower case
   * @param {number | null} keyAt
   */
  function act(key, keyAt) {
    if (!queue) return;
    if (key === "?") { toggleKeys(); return; }
    if (key === "n") { goTo(Math.min(index + 1, queue.regions.length - 1), { keyAt: keyAt }); return; }
    if (key === "p") { goTo(Math.max(index - 1, 0), { keyAt: keyAt }); return; }
    if (WRITE_KEYS.has(key) && state.readOnly) {
      say(element("queue-readonly").textContent || "You read this queue: you give no verdicts here.");
      return;
    }
    if (VERDICT_KEYS[key]) giveVerdict(VERDICT_KEYS[key], null, keyAt);
    else if (key === "c") openComment();
    else if (key === "z") undo();
  }

  // In the capture phase, before OpenSeadragon (its canvas takes F to flip the slide, and others).
  window.addEventListener("keydown", (event) => {
    if (!queue || event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    if (event.key === "Escape" && state.keysShown) { toggleKeys(false); return; }
    const key = event.key.length === 1 ? event.key.toLowerCase() : "";
    if (!KEYS.has(key)) return;
    event.preventDefault();
    event.stopPropagation();
    if (key === "h") { hide(true); return; }
    if (event.repeat && key !== "n" && key !== "p") return;  // a key held down gives one verdict
    act(key, event.timeStamp);
  }, true);
  window.addEventListener("keyup", (event) => {
    if (event.key.toLowerCase() === "h" && state.loaded) hide(false);
  }, true);
  window.addEventListener("blur", () => { if (state.loaded) hide(false); });

  const buttons = element("queue-buttons");
  buttons.addEventListener("click", (event) => {
    const button = /** @type {HTMLElement} */ (event.target).closest("button[data-key]");
    if (!(button instanceof HTMLElement) || button.dataset.key === "h") return;
    act(button.dataset.key || "", null);
  });
  // The hide button hides while pressed, as H does while held.
  const hideButton = /** @type {HTMLElement} */ (buttons.querySelector('[data-key="h"]'));
  hideButton.addEventListener("pointerdown", () => hide(true));
  for (const end of ["pointerup", "pointerleave", "pointercancel"]) hideButton.addEventListener(end, () => hide(false));
  element("queue-keys-close").addEventListener("click", () => toggleKeys(false));
  list.addEventListener("scroll", () => drawList(), { passive: true });
  list.addEventListener("click", (event) => {
    const item = /** @type {HTMLElement} */ (event.target).closest("li[data-index]");
    if (item instanceof HTMLElement) goTo(parseInt(item.dataset.index || "0", 10));
  });

  // --- what layers.js tells: the run, the canvas's regions, a region clicked on the slide ---

  page.addEventListener("sua:regions", (event) => {
    const detail = /** @type {CustomEvent<{ run: number, ids: number[] }>} */ (event).detail;
    canvasIndex = new Map(detail.ids.map((id, i) => [id, i]));
    highlight();
  });
  page.addEventListener("sua:focus", (event) => {
    if (!queue) return;
    const id = /** @type {CustomEvent<number>} */ (event).detail;
    const i = queue.regions.findIndex((r) => r.id === id);
    if (i >= 0 && i !== index) goTo(i, { fly: false });
  });
  page.addEventListener("sua:run", (event) => {
    run = /** @type {CustomEvent<Run | null>} */ (event).detail;
    if (run) whenReviewRun(run).catch((error) => say(String(error), true));
  });

  /**
   * The queue when the run shown is its project's review run (the one chosen, else the newest finished:
   * the runs API's ?review=true says which).
   * @param {Run} shownRun
   */
  async function whenReviewRun(shownRun) {
    const found = await getJSON(pageUrl(page, "runs") + "&review=true");
    /** @type {Run[]} */
    const reviewRuns = found.results || found;
    if (run !== shownRun || !reviewRuns.some((r) => r.id === shownRun.id)) return;
    panel.hidden = false;
    for (const el of oldList) el.classList.add("replaced");
    await load();
  }

  /** The slide's queue: the list, the counts, and the view at the region to go on with. */
  async function load() {
    const result = await api(url("reviewQueue"));
    if (!result.ok) { say(problem(result), true); return; }
    queue = /** @type {Queue} */ (result.body);
    state.run = queue.run;
    state.slide = queue.slide;
    state.readOnly = queue.slot === null;
    const note = element("queue-readonly");
    note.hidden = !state.readOnly;
    note.textContent = queue.view === "all"
      ? "You read this queue: the outcome of the reviewers' verdicts. Reviewers give verdicts here."
      : "You are not a reviewer of this slide's cohort: you read its queue only.";
    panel.classList.toggle("read-only", state.readOnly);
    drawList(true);
    drawProgress();
    // Open where the reviewer goes on: ?region= (the worklist's resume), else the first region without a verdict.
    const wanted = parseInt(new URLSearchParams(window.location.search).get("region") || "", 10);
    let start = queue.regions.findIndex((r) => r.id === wanted);
    if (start < 0) start = queue.regions.findIndex((r) => r.id === queue?.resume);
    state.loaded = true;
    if (start >= 0) goTo(start);
    else drawCurrent();
  }
}
