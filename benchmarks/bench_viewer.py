"""Benchmark: the slide viewer in headless Chromium — frame times over many regions, and time to the first tile.

A demo-size synthetic slide (8192 x 6144 at 1 µm/px, as ``make demo``'s) is stored in a fresh project
and ``manage.py make_region_run`` (a measurement fixture) makes a finished run with N made-up regions on
it (10,000 and 100,000 by default). A real server (gunicorn with production's settings,
docker/gunicorn.conf.py) serves the portal; headless Chromium (Debian's, as the browser tests use it)
signs in as a pathologist and opens the viewer with the run.

Frame times: ``requestAnimationFrame`` deltas while the page pans and zooms the slide with its own
animations (10 moves: zoom in and out by up to 2.5x around the whole slide, pans of a tenth of the view),
so all N regions are on screen at the start and at least a sixth of them throughout. Chromium runs
with ``--disable-gpu-vsync --disable-frame-rate-limit``: frames are not held to the display's 60 Hz, so
a delta is what a frame costs (at 60 Hz every delta would read 16.7 ms or a multiple of it). Only frames
in which the view moved count. Two ways of drawing the same regions:

* ``svg``: the old way, one SVG path (non-scaling stroke) and one list item with its own listener per
  region, the group's transform set on every frame (re-created here by the benchmark);
* ``canvas``: the viewer's vector layer (frontend/src/vector.js), as shipped.

* ``none``: the slide alone, the floor (OpenSeadragon's own drawing and the browser's compositing).

Each is measured ``--repeat`` times (default 2) on the same page; p50 / p95 of each pass are printed,
and the ratio of the p95s. Beside them, the JavaScript time spent in OpenSeadragon's drawer and in the
vector layer per frame: a 2-D canvas records drawing calls and rasterises them when the frame is
painted, so most of a frame's pixel work shows only in the deltas.

Time to the first tile: a fresh browser context (empty cache) opens the viewer; the time from the
navigation's start to the first slide tile drawn (the viewer's ``tile-loaded``), to the whole view's
tiles loaded, and the median gap between successive tile requests. The same with the viewer's old
OpenSeadragon settings (one new tile per frame, WebGL drawer), swapped in by rewriting viewer.js as it
is served, shows what the settings changed.

The API: the region layer (``/api/runs/{id}/layers/{slide}/``) of each run, cold (the server builds it)
and warm (kept per process), and its size.

Run (starts embedded PostgreSQL and Redis when DATABASE_URL is not set)::

    .venv/bin/python benchmarks/bench_viewer.py [--regions 10000 100000] [--repeat 2]

The machine is shared with other work: figures vary from run to run; the ratios vary less.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.serving import gunicorn, percentiles  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
#: The browser tests' flags, and frames not held to 60 Hz (so a rAF delta is what the frame cost).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--disable-gpu-vsync",
                 "--disable-frame-rate-limit"]
VIEWPORT = {"width": 1400, "height": 900}
#: The demo's slide size (analysis.synthetic's "demo" preset) at 1 µm/px.
SLIDE_SIZE = (8192, 6144)
PASSWORD = "bench-viewer-pw"
#: The viewer's OpenSeadragon settings before this benchmark's findings (for the time-to-first-tile comparison).
OLD_SETTINGS = [("maxTilesPerFrame: 24", "maxTilesPerFrame: 1"), ('drawer: "canvas"', 'drawer: ["webgl", "canvas"]'),
                ("imageLoaderLimit: 12", "imageLoaderLimit: 8")]

# The pans and zooms of one pass: zoom factors and pans in viewport fractions, each animated by OpenSeadragon.
MOVES: list[dict[str, float]] = [
    {"zoom": 1.6}, {"x": 0.1}, {"zoom": 1.5}, {"y": 0.08}, {"x": -0.12},
    {"zoom": 1 / 1.5}, {"y": -0.08}, {"zoom": 1 / 1.6}, {"x": 0.02}, {"zoom": 1.2},
]

MEASURE_JS = """async (moves) => {
  const viewer = window.suaViewer, vp = viewer.viewport;
  vp.goHome(true);
  await new Promise((r) => setTimeout(r, 400));
  // What each frame spent in OpenSeadragon's drawer and in the vector layer (the rest: the browser's own work).
  const spent = { osd: [], vector: [] };
  const time = (object, name, into) => {
    const original = object[name];
    object[name] = function (...args) {
      const t0 = performance.now();
      try { return original.apply(this, args); } finally { into.push(performance.now() - t0); }
    };
    return () => { object[name] = original; };
  };
  const undo = [time(viewer.drawer, 'draw', spent.osd), time(window.suaViewerLayers, 'draw', spent.vector)];
  const deltas = [];
  let running = true, last = 0, lastKey = '';
  const key = () => { const b = vp.getBounds(true); return [b.x, b.y, b.width].map((v) => v.toFixed(7)).join(); };
  function tick(now) {
    const k = key();
    if (last && k !== lastKey) deltas.push(now - last);
    last = now; lastKey = k;
    if (running) requestAnimationFrame(tick);
  }
  requestAnimationFrame(tick);
  for (const move of moves) {
    if (move.zoom) vp.zoomBy(move.zoom);
    else {
      const b = vp.getBounds();
      vp.panBy(new OpenSeadragon.Point((move.x || 0) * b.width, (move.y || 0) * b.height));
    }
    await new Promise((r) => setTimeout(r, 700));
  }
  running = false;
  undo.forEach((f) => f());
  return { deltas: deltas, osd: spent.osd, vector: spent.vector };
}"""

# The old way: one SVG path and one list item (with its own listener) per region, moved by a transform per frame.
SVG_JS = """() => {
  const layers = window.suaViewerLayers, viewer = window.suaViewer;
  const set = layers.sets.get('regions');
  layers.setVisible('regions', false);
  layers.setVisible('positives', false);
  const NS = 'http://www.w3.org/2000/svg';
  const style = document.createElement('style');
  style.textContent = '.annotation-layer { position: absolute; inset: 0; width: 100%; height: 100%; pointer-events: none;'
    + ' overflow: visible; } .annotation-layer path.npr { fill: none; stroke: #29b6f6; stroke-width: 2px;'
    + ' stroke-dasharray: 6 3; }';
  document.head.appendChild(style);
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('class', 'annotation-layer');
  const g = document.createElementNS(NS, 'g');
  svg.appendChild(g);
  viewer.canvas.appendChild(svg);
  const list = document.getElementById('npr-list');
  list.replaceChildren();
  for (let i = 0; i < set.n; i++) {
    const parts = [];
    for (let r = set.rings[i]; r < set.rings[i + 1]; r++) {
      const pts = [];
      for (let p = set.points[r]; p < set.points[r + 1]; p++) pts.push(set.coords[2 * p] + ' ' + set.coords[2 * p + 1]);
      parts.push('M' + pts.join('L') + 'Z');
    }
    const path = document.createElementNS(NS, 'path');
    path.setAttribute('d', parts.join(''));
    path.setAttribute('class', 'npr');
    path.setAttribute('fill-rule', 'evenodd');
    path.setAttribute('vector-effect', 'non-scaling-stroke');
    g.appendChild(path);
    const item = document.createElement('li');
    item.textContent = 'region ' + i;
    item.addEventListener('click', () => path.classList.add('active'));
    list.appendChild(item);
  }
  const follow = () => {
    const slide = viewer.world.getItemAt(0);
    const o = slide.imageToViewerElementCoordinates(new OpenSeadragon.Point(0, 0));
    const w = slide.getContentSize().x;
    const c = slide.imageToViewerElementCoordinates(new OpenSeadragon.Point(w, 0));
    g.setAttribute('transform', 'translate(' + o.x + ',' + o.y + ') scale(' + (c.x - o.x) / w + ')');
  };
  viewer.addHandler('update-viewport', follow);
  viewer.addHandler('animation', follow);
  follow();
  return set.n;
}"""

FIRST_TILE_JS = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const timeline = [['page', 0, Math.round(nav.responseEnd)], ['domContentLoaded', 0, Math.round(nav.domContentLoadedEventEnd)]]
    .concat(performance.getEntriesByType('resource').slice(0, 40).map((e) => [e.name.replace(location.origin, '').slice(0, 70),
      Math.round(e.startTime), Math.round(e.responseEnd)]));
  const tiles = performance.getEntriesByType('resource').filter((e) => e.name.includes('/dzi_files/'));
  const starts = tiles.map((e) => e.requestStart || e.startTime).sort((a, b) => a - b);
  const gaps = starts.slice(1).map((t, i) => t - starts[i]).sort((a, b) => a - b);
  return { first: window.suaViewerState.firstTileMs, tiles: tiles.length, timeline: timeline,
           load: Math.round(nav.loadEventEnd),
           lastEnd: Math.max(...tiles.map((e) => e.responseEnd)),
           medianGap: gaps.length ? gaps[Math.floor(gaps.length / 2)] : null };
}"""


def _get(url: str, token: str) -> tuple[float, int]:
    request = urllib.request.Request(url, headers={"Authorization": f"Token {token}"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=300) as answer:
        size = len(answer.read())
    return time.perf_counter() - start, size


def _sign_in(context: Any, base: str, username: str) -> Any:
    page = context.new_page()
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    return page


def _open_viewer(page: Any, url: str, regions: int) -> None:
    page.goto(url, wait_until="commit")
    page.wait_for_function(f"window.suaViewerState && window.suaViewerState.regionsLoaded === {regions}",
                           timeout=300_000)
    page.wait_for_function("window.suaViewerState.fullyLoaded", timeout=120_000)
    page.wait_for_timeout(500)


def _rewrite_viewer(page: Any, swaps: Sequence[tuple[str, str]]) -> None:
    """Serve viewer.js to this page with each (text, replacement) of `swaps` made: other OpenSeadragon settings."""
    if not swaps:
        return

    def swap(route: Any) -> None:
        body = route.fetch().text()
        for text, replacement in swaps:
            if text not in body:
                raise RuntimeError(f"viewer.js no longer says {text!r}: update the benchmark")
            body = body.replace(text, replacement)
        route.fulfill(body=body, content_type="text/javascript")

    page.route(re.compile(r".*/static/app/viewer\.js$"), swap)


def _drawer(name: str) -> list[tuple[str, str]]:
    return [] if name == "canvas" else [('drawer: "canvas"', f'drawer: "{name}"')]


def first_tile(browser: Any, base: str, username: str, url: str, *, old: bool) -> dict[str, Any]:
    """Time to the first tile in a fresh context (empty cache), with the viewer's settings or its old ones."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = _sign_in(context, base, username)
        _rewrite_viewer(page, OLD_SETTINGS if old else [])
        page.goto(url, wait_until="commit")  # the load event waits for every tile asked for before it
        page.wait_for_function("window.suaViewerState && window.suaViewerState.fullyLoaded", timeout=120_000)
        page.wait_for_load_state("load", timeout=120_000)
        result: dict[str, Any] = page.evaluate(FIRST_TILE_JS)
        return result
    finally:
        context.close()


def frames(browser: Any, base: str, username: str, url: str, regions: int, mode: str, repeat: int,
           drawer: str) -> list[dict[str, list[float]]]:
    """rAF deltas (ms) of `repeat` passes of MOVES, drawing the regions the way `mode` says."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = _sign_in(context, base, username)
        _rewrite_viewer(page, _drawer(drawer))
        _open_viewer(page, url, regions)
        if page.locator("#heatmap-kind").is_visible():  # the regions alone over the slide (the run has no heatmaps)
            page.select_option("#heatmap-kind", "")
            page.wait_for_function("window.suaViewer.world.getItemCount() === 1")
        if mode == "none":
            page.evaluate("() => { window.suaViewerLayers.setVisible('regions', false); "
                          "window.suaViewerLayers.setVisible('positives', false); }")
        if mode == "svg":
            page.evaluate(SVG_JS)
            page.wait_for_timeout(500)
        return [page.evaluate(MEASURE_JS, MOVES) for _ in range(repeat)]
    finally:
        context.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regions", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=2, help="passes of the pans and zooms per way of drawing")
    parser.add_argument("--modes", nargs="+", default=["none", "svg", "canvas"], choices=["none", "svg", "canvas"],
                        help="none: the slide alone (the floor); svg: the old way; canvas: the viewer's")
    parser.add_argument("--drawer", default="canvas", choices=["canvas", "webgl", "html"],
                        help="OpenSeadragon's drawer for the frame times (the viewer's: canvas)")
    parser.add_argument("--no-first-tile", action="store_true", help="skip the time-to-first-tile part")
    args = parser.parse_args(argv)

    if not os.environ.get("DATABASE_URL"):
        return subprocess.call([sys.executable, str(ROOT / "scripts" / "devenv.py"), "run", "--",
                                sys.executable, __file__, *(argv or sys.argv[1:])], cwd=ROOT)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: install Debian's chromium", file=sys.stderr)
        return 1

    work = Path(tempfile.mkdtemp(prefix="bench-viewer-"))
    os.environ.setdefault("SECRET_KEY", "bench-viewer-secret-key")
    os.environ["MEDIA_ROOT"] = str(work / "media")
    os.environ["STATIC_ROOT"] = str(work / "static")
    os.environ["DJANGO_SETTINGS_MODULE"] = "sua_portal.settings"
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
    os.environ["LOG_LEVEL"] = "WARNING"
    import django

    django.setup()
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command

    from analysis.synthetic import SlideSpec, generate_slide
    from sua_portal.accounts import tokens
    from sua_portal.accounts.models import Membership, Project
    from sua_portal.runs.models import Run
    from sua_portal.slides import services
    from sua_portal.slides.models import Cohort

    call_command("migrate", verbosity=0)
    call_command("collectstatic", verbosity=0, interactive=False)
    cached = ROOT / "var" / "bench-viewer" / "slide-8192x6144.tiff"
    if not cached.exists():
        print(f"Rendering a {SLIDE_SIZE[0]} x {SLIDE_SIZE[1]} synthetic slide (kept in {cached.parent}) ...", flush=True)
        cached.parent.mkdir(parents=True, exist_ok=True)
        generate_slide(SlideSpec(seed=3, width=SLIDE_SIZE[0], height=SLIDE_SIZE[1], mpp=1.0), cached)

    Project.objects.filter(name="bench-viewer").delete()
    project = Project.objects.create(name="bench-viewer")
    user = User.objects.filter(username="bench-pathologist").first() or User.objects.create_user(
        "bench-pathologist", password=PASSWORD)
    user.set_password(PASSWORD)
    user.save()
    user.groups.add(Group.objects.get_or_create(name="pathologist")[0])
    Membership.objects.create(project=project, user=user)
    _, token = tokens.issue(user, name="bench-viewer")
    cohort = Cohort.objects.create(project=project, name="bench", split="test")
    slide = services.store_slide(cohort, cached, filename=cached.name, queue_check=False)
    services.check_slide(slide.pk)
    runs = {}
    for count in args.regions:
        started = time.perf_counter()
        call_command("make_region_run", slide=slide.pk, regions=count, verbosity=0, stdout=io.StringIO())
        runs[count] = Run.objects.filter(project=project).order_by("-pk").values_list("pk", flat=True)[0]
        print(f"made run {runs[count]} with {count:,} regions in {time.perf_counter() - started:.1f} s", flush=True)

    from playwright.sync_api import sync_playwright

    lines: list[str] = []
    try:
        with gunicorn(dict(os.environ)) as port, sync_playwright() as pw:
            base = f"http://127.0.0.1:{port}"
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            # Every worker process past its first request (Django loads the URLconf and the views' imports then):
            # the figures are a running server's.
            for _ in range(24):
                _get(f"{base}/api/runs/?limit=1", token)
                _get(f"{base}/api/slides/{slide.pk}/dzi.dzi", token)
            lines.append("API: one slide's region layer, GET /api/runs/{id}/layers/{slide}/ (cold: built by the server)")
            for count, run in runs.items():
                url = f"{base}/api/runs/{run}/layers/{slide.pk}/"
                cold, size = _get(url, token)
                warm = min(_get(url, token)[0] for _ in range(4 * 2))  # every worker process has built it by then
                lines.append(f"  {count:>7,} regions: {size / 1e6:6.1f} MB, cold {cold * 1000:7.0f} ms, "
                             f"warm {warm * 1000:6.0f} ms")
            print("\n".join(lines), flush=True)

            small = min(runs)
            viewer_url = f"{base}/slides/{slide.pk}/?run={runs[small]}"
            lines.append("\nTime to the first tile (fresh context, empty cache; the demo slide, 8192 x 6144):")
            for label, old in () if args.no_first_tile else (("viewer's settings", False),
                                                            ("old settings (1 tile/frame, WebGL)", True)):
                for attempt in range(args.repeat):
                    got = first_tile(browser, base, user.username, viewer_url, old=old)
                    lines.append(f"  {label:<36} #{attempt + 1}: first tile {got['first']:6.0f} ms, "
                                 f"{got['tiles']:3d} tiles loaded by {got['lastEnd']:6.0f} ms, "
                                 f"median gap between tile requests {got['medianGap'] or 0:5.1f} ms, "
                                 f"load event {got['load']:6.0f} ms")
                    print(lines[-1], flush=True)
                    if os.environ.get("BENCH_VIEWER_TIMELINE"):  # what the page loaded when (start, end ms)
                        for name, start, end in got["timeline"]:
                            print(f"      {start:6d} {end:6d}  {name}")

            lines.append("\nFrames while panning and zooming (rAF deltas, ms; all regions on screen at the start):")
            for count, run in runs.items():
                url = f"{base}/slides/{slide.pk}/?run={run}"
                p95s: dict[str, list[float]] = {}
                for mode in args.modes:
                    for number, measured in enumerate(frames(browser, base, user.username, url, count, mode,
                                                           args.repeat, args.drawer)):
                        deltas = measured["deltas"]
                        p50, p95 = percentiles(deltas)
                        p95s.setdefault(mode, []).append(p95)
                        osd, vector = percentiles(measured["osd"]), percentiles(measured["vector"])
                        lines.append(f"  {count:>7,} regions  {mode:<6} pass {number + 1}: p50 {p50:6.1f}  p95 {p95:6.1f}  "
                                     f"({len(deltas)} frames; JS in OpenSeadragon's drawer p95 {osd[1]:5.1f}, "
                                     f"in the vector layer p95 {vector[1]:5.1f})")
                        print(lines[-1], flush=True)
                if "svg" in p95s and "canvas" in p95s:
                    ratio = statistics.median(p95s["svg"]) / statistics.median(p95s["canvas"])
                    lines.append(f"  {count:>7,} regions  p95 svg / canvas: {ratio:.1f}x")
                    print(lines[-1], flush=True)
            browser.close()
    finally:
        Project.objects.filter(pk=project.pk).delete()
        shutil.rmtree(work, ignore_errors=True)
    print("\n" + "\n".join(lines))
    print(json.dumps({"regions": list(runs)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
