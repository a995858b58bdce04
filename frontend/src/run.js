// @ts-check
/* SUA Portal: the run page (dashboard). The paper's figures drawn with vega-embed from the run's figure
 * data (the page embeds it as JSON, id "run-figures"): NPR score histograms FN versus TN with the SUA
 * threshold (Figs. 3-4), the baseline's candidate-pixel histograms with its threshold (Fig. 5) and the
 * FNCR box plots over the bootstrap (Fig. 6); checkboxes show or hide each range. The per-slide table
 * sorts by any column. Loaded as a module after vega, vega-lite and vega-embed (UMD globals). */

/** @typedef {import("vega-embed").VisualizationSpec} Spec */
/** @typedef {import("vega-embed").Result} Embedded */
/** @typedef {import("vega-lite/types_unstable/spec/layer.js").LayerSpec<string>} LayerSpec one panel: layers over shared axes */

/**
 * One cohort part of one range: "validation" or a test domain.
 * @typedef {object} PartFigures
 * @property {number[]} npr_fn NPRs that are true FNs, per bin of score_edges
 * @property {number[]} npr_tn NPRs that are not, per bin of score_edges
 * @property {number[]} pixel_fn candidate pixels in tumor, per bin of pixel_edges
 * @property {number[]} pixel_tn candidate pixels outside tumor, per bin of pixel_edges
 * @property {Record<string, (number | null)[]>} fncr bootstrap FNCR samples per method ("sua", "baseline"); null where undefined
 */

/**
 * @typedef {object} RangeFigures
 * @property {number} lower
 * @property {number} upper
 * @property {number | null} sua_threshold
 * @property {number | null} baseline_threshold
 * @property {Record<string, PartFigures>} parts
 */

/**
 * @typedef {object} RunFigures
 * @property {number[]} score_edges
 * @property {number[]} pixel_edges
 * @property {RangeFigures[]} ranges
 */

/** One bar of a histogram, as the charts get it. */
/**
 * @typedef {object} Bar
 * @property {string} kind "FN" or "TN"
 * @property {number} start
 * @property {number} end
 * @property {number} count
 * @property {number} share the bar's count over every count of its kind in its part
 */

const FN_COLOUR = "#d62728";
const TN_COLOUR = "#1f77b4";
const METHODS = [
  { key: "sua", label: "SUA", colour: "#7a2e5b" },
  { key: "baseline", label: "Baseline", colour: "#5b7a99" },
];
/** A histogram panel's plot size; its width is fitted to the page (see panelWidth). */
const PANEL = { minWidth: 120, maxWidth: 320, height: 120, frame: 72 };
const EMBED_OPTIONS = {
  mode: /** @type {const} */ ("vega-lite"),
  renderer: /** @type {const} */ ("svg"),
  // PNG and SVG export only: "source", "compiled" and "editor" would open the online Vega editor.
  actions: { export: { png: true, svg: true }, source: false, compiled: false, editor: false },
  tooltip: { theme: "light" },
};
const CHART_CONFIG = {
  font: "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
  view: { stroke: "#e5e7eb" },
  axis: { labelColor: "#394150", titleColor: "#6b7280", titleFontWeight: /** @type {const} */ (500), gridColor: "#eef0f4" },
  header: { labelFontSize: 12, labelColor: "#1f2430" },
  legend: { labelColor: "#394150", titleColor: "#6b7280" },
  title: { fontSize: 12, fontWeight: /** @type {const} */ (600), color: "#1f2430", anchor: /** @type {const} */ ("start") },
};

/**
 * "0.55 to 0.95", as the page's tables name a range.
 * @param {RangeFigures} range
 */
function rangeLabel(range) {
  return `${range.lower} to ${range.upper}`;
}

/**
 * The bins where any of `histograms` has a count, widened by one bin each side and to hold `marks`:
 * the x domain that shows the data rather than the whole 0-1 axis.
 * @param {number[]} edges
 * @param {number[][]} histograms
 * @param {(number | null)[]} marks thresholds drawn as rules
 * @returns {[number, number]}
 */
function usedDomain(edges, histograms, marks) {
  let first = edges.length, last = -1;
  for (const counts of histograms) {
    counts.forEach((n, i) => {
      if (n > 0) { first = Math.min(first, i); last = Math.max(last, i); }
    });
  }
  if (last < 0) return [edges[0], edges[edges.length - 1]];
  let low = edges[Math.max(first - 1, 0)], high = edges[Math.min(last + 2, edges.length - 1)];
  for (const mark of marks) {
    if (mark !== null) { low = Math.min(low, mark); high = Math.max(high, mark); }
  }
  return [low, high];
}

/**
 * The bars of the FN and TN histograms of one part inside `domain`, empty bins left out (nothing to
 * hover there) unless the part has no count at all (its panel keeps its axes).
 * @param {number[]} edges
 * @param {number[]} fn
 * @param {number[]} tn
 * @param {[number, number]} domain
 * @returns {Bar[]}
 */
function bars(edges, fn, tn, domain) {
  /** @type {Bar[]} */
  const out = [];
  for (const [kind, counts] of /** @type {[string, number[]][]} */ ([["FN", fn], ["TN", tn]])) {
    const total = counts.reduce((a, b) => a + b, 0);
    counts.forEach((count, i) => {
      if ((count > 0 || !total) && edges[i] >= domain[0] - 1e-9 && edges[i + 1] <= domain[1] + 1e-9) {
        out.push({ kind, start: edges[i], end: edges[i + 1], count, share: total ? count / total : 0 });
      }
    });
  }
  return out;
}

/**
 * One panel: the FN and TN histograms of a part over each other, the threshold as a dashed rule.
 * @param {object} options
 * @param {string} options.title the part
 * @param {Bar[]} options.data
 * @param {[number, number]} options.domain
 * @param {string} options.xTitle
 * @param {"count" | "share"} options.y
 * @param {string} options.yTitle
 * @param {boolean} options.log a symlog y scale
 * @param {number | null} options.threshold
 * @param {string} options.thresholdName
 * @param {string} options.empty the words shown when the part has nothing to draw
 * @param {number} options.width
 * @returns {LayerSpec}
 */
function histogramPanel({ title, data, domain, xTitle, y, yTitle, log, threshold, thresholdName, empty, width }) {
  const total = data.reduce((sum, bar) => sum + bar.count, 0);
  /** @type {LayerSpec["layer"]} */
  const layer = [{
    data: { values: data },
    mark: { type: "rect", opacity: 0.55 },
    encoding: {
      x: { field: "start", type: "quantitative", scale: { domain, nice: false }, title: xTitle },
      x2: { field: "end" },
      y: { field: y, type: "quantitative", stack: null, title: yTitle,
           scale: log ? { type: "symlog" } : {}, axis: y === "share" ? { format: ".0%" } : {} },
      color: {
        field: "kind", type: "nominal", title: null,
        scale: { domain: ["FN", "TN"], range: [FN_COLOUR, TN_COLOUR] },
        legend: { orient: "top", direction: "horizontal", labelExpr: "datum.label === 'FN' ? 'FN (tumor)' : 'TN'" },
      },
      tooltip: [
        { field: "kind", title: "Class" },
        { field: "start", title: "From", format: ".3f" },
        { field: "end", title: "To", format: ".3f" },
        { field: "count", title: "Count", format: "," },
        { field: "share", title: "Share of its class", format: ".1%" },
      ],
    },
  }];
  if (threshold !== null) {
    layer.push({
      data: { values: [{ threshold }] },
      mark: { type: "rule", strokeDash: [5, 3], strokeWidth: 1.5, color: "#1f2430" },
      encoding: {
        x: { field: "threshold", type: "quantitative" },
        tooltip: [{ field: "threshold", title: thresholdName, format: ".4f" }],
      },
    });
  }
  if (total === 0) {
    layer.push({
      data: { values: [{ text: empty }] },
      mark: { type: "text", color: "#6b7280", fontSize: 12 },
      encoding: { text: { field: "text" }, x: { value: width / 2 }, y: { value: PANEL.height / 2 } },
    });
  }
  return { title, width, height: PANEL.height, layer };
}

/**
 * @param {HTMLElement} element
 * @param {string} tag
 * @param {string} [className]
 * @param {string} [text]
 */
function add(element, tag, className, text) {
  const child = document.createElement(tag);
  if (className) child.className = className;
  if (text !== undefined) child.textContent = text;
  element.append(child);
  return child;
}

/** What the charts did: read by the browser tests (tests/runs/test_dashboard.py). */
/** @type {SuaRunChartsState} */
const state = { expected: 0, drawn: 0, failed: [], ready: false };
window.suaRunCharts = state;

/**
 * Draw `spec` into `element`; a failure is said in the chart's place (and counted) instead of thrown.
 * @param {HTMLElement} element
 * @param {Spec} spec
 * @param {string} fileName the name the export menu gives PNG and SVG files
 * @returns {Promise<Embedded | null>}
 */
async function draw(element, spec, fileName) {
  state.expected += 1;
  try {
    const result = await vegaEmbed(element, { config: CHART_CONFIG, ...spec },
                                   { ...EMBED_OPTIONS, downloadFileName: fileName });
    state.drawn += 1;
    return result;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    state.failed.push(message);
    element.textContent = "This chart could not be drawn: " + message;
    element.classList.add("chart-failed");
    console.error("chart", fileName, error);
    return null;
  }
}

/**
 * A figure of one histogram chart per range (a row of panels: validation, then each test domain).
 * @param {HTMLElement} area
 * @param {object} options
 * @param {string} options.id
 * @param {string} options.caption
 * @param {RunFigures} options.figures
 * @param {string[]} options.parts
 * @param {(range: RangeFigures, part: PartFigures) => [number[], number[]]} options.counts FN and TN counts
 * @param {number[]} options.edges
 * @param {(range: RangeFigures) => number | null} options.threshold
 * @param {string} options.thresholdName
 * @param {string} options.xTitle
 * @param {string} options.empty
 * @param {string} options.fileName
 * @param {() => {y: "count" | "share", yTitle: string, log: boolean}} options.scale
 * @returns {() => Promise<void>} (re)draws the charts
 */
function histogramFigure(area, { id, caption, figures, parts, counts, edges, threshold, thresholdName, xTitle,
                                 empty, fileName, scale }) {
  const figure = add(area, "figure", "chart-figure");
  figure.id = id;
  add(figure, "figcaption", "", caption);
  const grid = add(figure, "div", "chart-grid");
  const histograms = figures.ranges.flatMap((range) => parts.flatMap((part) => {
    const data = range.parts[part];
    return data ? counts(range, data) : [];
  }));
  const domain = usedDomain(edges, histograms, figures.ranges.map(threshold));
  const cells = figures.ranges.map((range, k) => {
    const cell = add(grid, "div", "chart-range");
    cell.dataset.range = String(k);
    const head = add(cell, "h3", "", rangeLabel(range) + " ");
    const tau = threshold(range);
    add(head, "span", "muted small", tau === null ? `${thresholdName}: none (flags nothing)` : `${thresholdName} = ${tau.toFixed(4)}`);
    return add(cell, "div", "chart");
  });
  return async () => {
    const { y, yTitle, log } = scale();
    // The panels of a range share its cell (hidden cells have no width: take a shown one's).
    const cellWidth = cells.map((cell) => cell.clientWidth).find((w) => w > 0) || 640;
    const width = Math.max(PANEL.minWidth, Math.min(PANEL.maxWidth,
                                                    Math.floor(cellWidth / parts.length) - PANEL.frame));
    await Promise.all(figures.ranges.map((range, k) => draw(cells[k], {
      hconcat: parts.map((part) => {
        const data = range.parts[part];
        const [fn, tn] = data ? counts(range, data) : [[], []];
        return histogramPanel({
          title: part, data: bars(edges, fn, tn, domain), domain, xTitle, y, yTitle, log,
          threshold: threshold(range), thresholdName, empty, width,
        });
      }),
      spacing: 12,
    }, `${fileName}-${range.lower}-${range.upper}`)));
  };
}

/**
 * Fig. 6: FNCR over the bootstrap resamples, a box per method and range, a panel per test domain.
 * @param {HTMLElement} area
 * @param {RunFigures} figures
 * @param {string[]} domains the test domains
 * @param {string} fileName
 * @returns {Promise<Embedded | null>}
 */
async function fncrFigure(area, figures, domains, fileName) {
  const figure = add(area, "figure", "chart-figure");
  figure.id = "chart-fncr";
  add(figure, "figcaption", "",
      "FNCR, the share of the pixels a method turned positive that are tumor, over the bootstrap resamples " +
      "(Fig. 6): per test domain, range and method; hover a box for its quartiles.");
  const cell = add(figure, "div", "chart");
  /** @type {{domain: string, method: string, range: string, value: number}[]} */
  const values = [];
  /** @type {string[]} */
  const undefinedFor = [];
  for (const method of METHODS) {
    /** @type {string[]} */
    const missing = [];
    for (const range of figures.ranges) {
      /** @type {string[]} */
      const where = [];
      for (const domain of domains) {
        const samples = (range.parts[domain]?.fncr[method.key] || []).filter((v) => v !== null);
        if (!samples.length) where.push(domain);
        for (const value of samples) values.push({ domain, method: method.label, range: rangeLabel(range), value });
      }
      if (where.length) missing.push(rangeLabel(range) + (where.length < domains.length ? ` (${where.join(", ")})` : ""));
    }
    if (missing.length) undefinedFor.push(`${method.label} in ${missing.join(", ")}`);
  }
  if (undefinedFor.length) {
    add(figure, "p", "muted small chart-note",
        "No box where FNCR is undefined, the method having turned no pixel positive in any resample: " +
        undefinedFor.join("; ") + ".");
  }
  const labels = figures.ranges.map(rangeLabel);
  return draw(cell, {
    // The box plot's tooltips (quartiles) take this format: 0.909, not 0.909090909091.
    config: { ...CHART_CONFIG, numberFormat: ".3~f" },
    data: { values },
    params: [{ name: "shownRanges", value: labels }],
    transform: [{ filter: "indexof(shownRanges, datum.range) >= 0" }],
    facet: { column: { field: "domain", type: "nominal", sort: domains, title: null } },
    spec: {
      width: { step: 64 },
      height: 220,
      mark: { type: "boxplot", extent: 1.5, size: 20, median: { color: "#ffffff", strokeWidth: 2 }, outliers: { size: 8 } },
      encoding: {
        x: { field: "range", type: "nominal", sort: labels, title: "range", axis: { labelAngle: 0 } },
        xOffset: { field: "method", type: "nominal", sort: METHODS.map((m) => m.label) },
        y: { field: "value", type: "quantitative", title: "FNCR", scale: { domain: [0, 1] } },
        color: {
          field: "method", type: "nominal", title: null,
          scale: { domain: METHODS.map((m) => m.label), range: METHODS.map((m) => m.colour) },
          legend: { orient: "top", direction: "horizontal" },
        },
      },
    },
    spacing: 24,
  }, fileName);
}

/**
 * The checkboxes that show or hide ranges, and the pixel histograms' scale.
 * @param {HTMLElement} controls
 * @param {RunFigures} figures
 * @param {(shown: boolean[]) => void} onRanges
 * @param {(log: boolean) => void} onScale
 */
function buildControls(controls, figures, onRanges, onScale) {
  const ranges = add(controls, "fieldset", "range-toggles");
  add(ranges, "legend", "", "Ranges");
  /** @type {HTMLInputElement[]} */
  const boxes = figures.ranges.map((range, k) => {
    const label = add(ranges, "label", "check");
    const box = /** @type {HTMLInputElement} */ (add(label, "input"));
    box.type = "checkbox";
    box.checked = true;
    box.value = String(k);
    box.name = "range";
    label.append(" " + rangeLabel(range));
    return box;
  });
  for (const box of boxes) box.addEventListener("change", () => onRanges(boxes.map((b) => b.checked)));

  const scale = add(controls, "fieldset", "scale-toggle");
  add(scale, "legend", "", "Pixel histograms");
  for (const [value, text] of [["share", "share of each class"], ["log", "counts, log scale"]]) {
    const label = add(scale, "label", "check");
    const radio = /** @type {HTMLInputElement} */ (add(label, "input"));
    radio.type = "radio";
    radio.name = "pixel-scale";
    radio.value = value;
    radio.checked = value === "share";
    radio.addEventListener("change", () => { if (radio.checked) onScale(value === "log"); });
    label.append(" " + text);
  }
}

/**
 * @param {HTMLElement} area
 * @param {HTMLElement} controls
 * @param {RunFigures} figures
 * @param {string[]} parts validation first, then the test domains
 * @param {string} runName used in the names of exported files
 */
async function initCharts(area, controls, figures, parts, runName) {
  const known = new Set(figures.ranges.flatMap((range) => Object.keys(range.parts)));
  const ordered = [...parts.filter((p) => known.has(p)), ...[...known].filter((p) => !parts.includes(p)).sort()];
  const domains = ordered.filter((p) => p !== "validation");
  let logPixels = false;
  area.querySelector(".chart-loading")?.remove();

  const drawNprs = histogramFigure(area, {
    id: "chart-npr", figures, parts: ordered, edges: figures.score_edges, fileName: `${runName}-npr-scores`,
    caption: "NPR scores (aggregated uncertainty), FN versus TN, with the SUA threshold τ as a dashed rule " +
      "(Figs. 3-4): per range (rows) and cohort part (columns).",
    counts: (_, part) => [part.npr_fn, part.npr_tn], threshold: (range) => range.sua_threshold,
    thresholdName: "SUA τ", xTitle: "NPR score", empty: "no NPR",
    scale: () => ({ y: "count", yTitle: "NPRs", log: false }),
  });
  const drawPixels = histogramFigure(area, {
    id: "chart-pixels", figures, parts: ordered, edges: figures.pixel_edges, fileName: `${runName}-baseline-pixels`,
    caption: "Baseline: uncertainty of the candidate pixels, FN (tumor) versus TN, with the baseline threshold " +
      "τb as a dashed rule (Fig. 5). Each class as its share (TN pixels far outnumber FN), or counts on a log scale.",
    counts: (_, part) => [part.pixel_fn, part.pixel_tn], threshold: (range) => range.baseline_threshold,
    thresholdName: "baseline τb", xTitle: "pixel uncertainty", empty: "no candidate pixel",
    scale: () => (logPixels ? { y: "count", yTitle: "pixels (log)", log: true }
                            : { y: "share", yTitle: "share of class", log: false }),
  });
  const fncr = fncrFigure(area, figures, domains, `${runName}-fncr`);

  buildControls(controls, figures, (shown) => {
    area.querySelectorAll(".chart-range").forEach((cell) => {
      const k = Number(/** @type {HTMLElement} */ (cell).dataset.range);
      /** @type {HTMLElement} */ (cell).hidden = !shown[k];
    });
    fncr.then((result) => {
      if (!result) return;
      const labels = figures.ranges.filter((_, k) => shown[k]).map(rangeLabel);
      result.view.signal("shownRanges", labels).runAsync();
    });
  }, (log) => {
    logPixels = log;
    const pixels = area.querySelector("#chart-pixels");
    pixels?.querySelectorAll(".chart").forEach((chart) => { chart.textContent = ""; });
    drawPixels();
  });
  await Promise.all([drawNprs(), drawPixels(), fncr]);
  state.ready = true;
}

// --- the per-slide table -------------------------------------------------------------------------

/**
 * The value a cell sorts by: its number (null for "—", "n/a" or empty: always last) or its text.
 * @param {HTMLTableRowElement} row
 * @param {number} column
 * @param {string} kind "number" or "text"
 * @returns {number | string | null}
 */
function sortValue(row, column, kind) {
  const text = (row.cells[column]?.textContent || "").trim();
  if (kind !== "number") return text || null;
  const value = parseFloat(text.replace(/,/g, ""));
  return Number.isFinite(value) ? value : null;
}

const TEXT_ORDER = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

/**
 * Headers with data-sort="text|number" sort the table by their column, ascending then descending on the
 * next click (aria-sort says which); missing values stay last either way and ties keep their order.
 * @param {HTMLTableElement} table
 */
export function makeSortable(table) {
  const head = table.tHead?.rows[0];
  const body = table.tBodies[0];
  if (!head || !body) return;
  const headers = [...head.cells];
  headers.forEach((th, column) => {
    const kind = th.dataset.sort;
    if (!kind) return;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "sort";
    button.append(...th.childNodes);
    th.append(button);
    button.addEventListener("click", () => {
      const direction = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
      for (const other of headers) other.removeAttribute("aria-sort");
      th.setAttribute("aria-sort", direction);
      const sign = direction === "ascending" ? 1 : -1;
      const rows = [...body.rows];
      if (rows.some((row) => row.cells.length < headers.length)) return; // "No slide matches."
      const keyed = rows.map((row, index) => ({ row, index, value: sortValue(row, column, kind) }));
      keyed.sort((a, b) => {
        if (a.value === null || b.value === null) {
          return a.value === b.value ? a.index - b.index : a.value === null ? 1 : -1;
        }
        const order = typeof a.value === "number" && typeof b.value === "number"
          ? a.value - b.value : TEXT_ORDER.compare(String(a.value), String(b.value));
        return order * sign || a.index - b.index;
      });
      body.append(...keyed.map((item) => item.row));
    });
  });
}

// --- the review of the flags ---------------------------------------------------------------------------

/**
 * Verdict counts of the review API's summary (docs/review-api.md).
 * @typedef {{ flagged: number, reviewed: number, confirmed: number, rejected: number, unsure: number,
 *   disputed: number, settled: number, precision: number | null }} ReviewCounts
 * @typedef {ReviewCounts & { cohort: string, role: string, domain: string }} CohortReviewCounts
 * @typedef {{ run: number, range: { lower: number, upper: number, sua_threshold: number | null }, view: string,
 *   expected_precision: number | null, total: ReviewCounts, cohorts: CohortReviewCounts[] }} ReviewSummary
 */

/** @param {number | null} value @returns {string} */
function precisionText(value) {
  return value === null ? "—" : value.toFixed(3);
}

/**
 * The reviewers' verdicts on the run's flags, per cohort and in all, with the flags' precision by the verdicts
 * beside the calibration's. Shown for the review run, and for another run once it has verdicts.
 * @param {HTMLElement} section
 */
async function initReviewSummary(section) {
  const url = section.dataset.summary;
  if (!url) return;
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!response.ok) return;  // a run without a review range: nothing to show
  /** @type {ReviewSummary} */
  const summary = await response.json();
  if (section.dataset.reviewRun !== "true" && summary.total.reviewed === 0) return;
  const body = /** @type {HTMLTableSectionElement} */ (section.querySelector("#review-table tbody"));
  /** @param {string[]} head @param {ReviewCounts} counts @param {string} expected */
  const line = (head, counts, expected) => {
    const tr = document.createElement("tr");
    for (const text of [...head, ...[counts.flagged, counts.reviewed, counts.confirmed, counts.rejected, counts.unsure,
      counts.disputed].map(String), precisionText(counts.precision), expected]) {
      const td = document.createElement("td");
      td.textContent = text;
      if (tr.cells.length >= 3) td.className = "num";
      tr.appendChild(td);
    }
    return tr;
  };
  const expected = precisionText(summary.expected_precision);
  body.replaceChildren(...summary.cohorts.filter((c) => c.flagged > 0)
    .map((c) => line([c.cohort, c.role, c.domain], c, "")));
  const total = line(["All cohorts", "", ""], summary.total, expected);
  total.className = "total";
  total.dataset.total = "true";
  body.appendChild(total);
  const range = summary.range;
  /** @type {HTMLElement} */ (section.querySelector("#review-summary-note")).textContent = "range " + range.lower
    + " to " + range.upper + (range.sua_threshold !== null ? ", τ " + range.sua_threshold.toFixed(3) : "")
    + (summary.view === "all" ? " · every reviewer's verdicts (disputed: they differ, no admin settled)"
      : " · your own verdicts (blind review)");
  const precision = /** @type {HTMLElement} */ (section.querySelector("#review-precision"));
  precision.replaceChildren();
  const strong = document.createElement("strong");
  strong.textContent = precisionText(summary.total.precision);
  const calibrated = document.createElement("strong");
  calibrated.textContent = expected;
  precision.append("Precision of the flags by the verdicts: ", strong, " (" + summary.total.confirmed + " confirmed of "
    + (summary.total.confirmed + summary.total.rejected) + " decided, " + summary.total.reviewed + " of "
    + summary.total.flagged + " reviewed) · expected by the calibration: ", calibrated);
  section.hidden = false;
}

// --- the page ----------------------------------------------------------------------------------------

/**
 * The JSON the page embedded with json_script, or null when it has none.
 * @param {string} id
 * @returns {any}
 */
function pageJson(id) {
  const element = document.getElementById(id);
  return element && element.textContent ? JSON.parse(element.textContent) : null;
}

const table = document.getElementById("slide-table");
if (table instanceof HTMLTableElement) makeSortable(table);

const area = document.getElementById("chart-area");
const controls = document.getElementById("chart-controls");
/** @type {RunFigures | null} */
const figures = pageJson("run-figures");
if (area && controls && figures && figures.ranges && figures.ranges.length) {
  const parts = /** @type {string[]} */ (pageJson("run-parts") || ["validation"]);
  initCharts(area, controls, figures, parts, area.dataset.fileName || "run");
}

const review = document.getElementById("review-summary");
if (review) initReviewSummary(review).catch(() => { /* the rest of the page works without it */ });
