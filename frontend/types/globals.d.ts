// What the pages share with the browser tests (tests/*/test_viewer.py read these) and with OpenSeadragon,
// which the viewer page loads as a classic script before the modules (it has no ES module build).

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
}

interface Window {
  suaViewer?: OpenSeadragon.Viewer;
  suaViewerState?: SuaViewerState;
}
