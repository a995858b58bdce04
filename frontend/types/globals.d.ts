// What the pages share with the browser tests (tests/*/test_viewer.py read these) and with OpenSeadragon,
// which the viewer page loads as a classic script before the modules (it has no ES module build), and with
// vega-embed, which the run page loads the same way.

/** How far the viewer got: counted by the viewer and its layers, read by the browser tests. */
interface SuaViewerState {
  tilesLoaded: number;
  tileErrors: number;
  fullyLoaded: boolean;
  /** tumor outlines drawn */
  annotations: number;
  /** the heatmap kind laid over the slide ("" for none); set once the heatmap panel is there */
  overlay?: string;
  /** flagged regions listed for the chosen SUA range */
  flaggedShown?: number;
  /** the run's refined mask laid over the slide: "sua", "baseline" or "" for none */
  mask?: string;
  /** the run's regions in the chosen range on the canvas (flagged or not) */
  regionsLoaded?: number;
  /** whether H (held) hides every overlay now */
  overlaysHidden?: boolean;
  /** the id of the region marked (clicked in the list or on the slide), null for none */
  activeRegion?: number | null;
  /** milliseconds from the page's start to the first slide tile drawn (null before) */
  firstTileMs: number | null;
  /** per vector set, how the last frame drew it: "raster" or "vector", and how many shapes */
  drawn: Record<string, { mode: string, shapes: number }>;
}

/** The viewer's review panel (frontend/src/queue.js), read by the browser tests (tests/review/test_queue_browser.py). */
interface SuaReviewState {
  /** the queue is shown */
  loaded: boolean;
  run: number | null;
  slide: number | null;
  /** the caller is not a reviewer of the slide: no verdicts */
  readOnly: boolean;
  /** the current region's id */
  current: number | null;
  flagged: number;
  /** regions with a verdict (the caller's, or the outcome for a reader) */
  reviewed: number;
  /** writes not answered yet */
  saving: number;
  /** moves to a region so far */
  moves: number;
  /** the view is on its way to the current region */
  flying: boolean;
  /** the last moving key's event.timeStamp, then when the view got there and when its tiles were drawn (performance.now()) */
  keyAt: number | null;
  shownAt: number | null;
  drawnAt: number | null;
  /** the last error shown in the panel ("" for none) */
  error: string;
  keysShown: boolean;
}

/** How far the run page's charts got: counted by run.js, read by the browser tests (tests/runs/test_dashboard.py). */
interface SuaRunChartsState {
  /** charts asked for (each range's histogram row counts as one chart) */
  expected: number;
  /** charts vega-embed has drawn */
  drawn: number;
  /** why the others could not be drawn */
  failed: string[];
  /** the first drawing is over (drawn or failed) */
  ready: boolean;
}

interface Window {
  suaViewer?: OpenSeadragon.Viewer;
  suaViewerState?: SuaViewerState;
  /** the viewer's vector layer (frontend/src/vector.js): tests and benchmarks read shapes' bounds from it */
  suaViewerLayers?: import("../src/vector.js").VectorLayer;
  suaRunCharts?: SuaRunChartsState;
  suaReview?: SuaReviewState;
}

/** vega-embed's UMD build (static vega-embed/vega-embed.min.js, after vega and vega-lite): the run page's charts. */
declare const vegaEmbed: typeof import("vega-embed").default;

// vega-embed's declarations import fast-json-patch's ES module build, which ships no declarations of its own.
declare module "fast-json-patch/index.mjs" {
  export type Operation = import("fast-json-patch").Operation;
}
