"""What the slide viewer lays over a slide, served in the shapes a browser draws fast.

* Heatmap tile layers: a slide's segmentation or uncertainty heatmap coloured on the server
  (:func:`analysis.io.heatmap_rgba`: transparent off tissue), cut into 256-pixel PNG tiles at every level
  of a mean pyramid over the heatmap grid, described by a JSON (size, levels, tile URL template) that
  also carries the legend: the values, the colours and the method's name.
* A run's refined masks (SUA and baseline, per range) as tile layers the same way.
* A run's negative prediction regions of one slide in one range in one JSON of flat arrays (ids,
  scores, flags, and every outline as offsets into one coordinate array), with the threshold, the
  run's score scale and the positive prediction's outline: 100,000 regions in one answer that the
  browser parses in one go, instead of a paginated list of GeoJSON objects.

A run never changes and a heatmap changes only when it is computed again, so every answer has an
ETag, and what was built is kept per process (least recently used first out, by size).
"""

from __future__ import annotations

import io
import json
import math
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from itertools import chain
from typing import Any, TypeVar

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage
from django.db.models import Count, Max, Min, QuerySet
from django.http import Http404, HttpResponse, HttpResponseBase
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from PIL import Image
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.views import APIView

from analysis.io import HEATMAP_RANGES, halve_mean, heatmap_rgba
from analysis.polygons import region_polygons
from analysis.refine import read_mask_tiff
from sua_portal.accounts.models import Project
from sua_portal.core.params import query_int
from sua_portal.ensembles.models import SlideHeatmap
from sua_portal.ensembles.services import HEATMAP_KINDS, read_heatmap
from sua_portal.http import not_modified
from sua_portal.runs import services
from sua_portal.runs.models import Region, Run, RunRange, RunSlide

#: Side of a layer tile in heatmap pixels (at the pyramid's finest level).
TILE_SIZE = 256
#: Bump when the way layers are drawn or encoded changes: it is in every ETag.
LAYERS_VERSION = "1"
#: What this process keeps of decoded heatmap and mask pyramids, and of encoded region layers.
CACHE_BYTES = 256 * 1024 * 1024
MASK_METHODS = ("sua", "baseline")

# What the legend says of each heatmap: its name, the method, the unit of its values.
_HEATMAP_NAMES = {
    "segmentation": ("Tumor probability", "the ensemble's mean tumor probability", ""),
    "entropy": ("Uncertainty: entropy", "predictive entropy of the ensemble's mean probability", "nats"),
    "mutual_information": ("Uncertainty: mutual information", "mutual information between the prediction "
                           "and the ensemble members (epistemic part)", "nats"),
    "variance": ("Uncertainty: variance", "variance of the members' tumor probabilities", ""),
}


# --------------------------------------------------------------------------- a small cache by size

_V = TypeVar("_V")


class _SizedCache:
    """Least recently used first out once the kept values add up to more than ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[object, tuple[object, int]] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()

    def get_or_make(self, key: object, make: Callable[[], _V], size: Callable[[_V], int]) -> _V:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit[0]  # type: ignore[return-value]
        value = make()  # outside the lock: two threads may make the same value once each
        nbytes = size(value)
        with self._lock:
            if key not in self._items:
                self._items[key] = (value, nbytes)
                self._total += nbytes
            while self._total > self.limit and len(self._items) > 1:
                _, (_, dropped) = self._items.popitem(last=False)
                self._total -= dropped
        return value


_pyramids = _SizedCache(CACHE_BYTES)
_payloads = _SizedCache(CACHE_BYTES // 2)


# --------------------------------------------------------------------------- tile pyramids


class LayerPyramid:
    """A 2-D array on the heatmap grid as a DeepZoom-style pyramid of coloured PNG tiles.

    Level ``max_level`` is the array itself (one pixel per heatmap cell); each level below is the 2x2 mean
    of the one above (``ceil(W / 2)`` wide), down to level 0, one pixel. Tiles are ``TILE_SIZE`` squares
    without overlap (edge tiles smaller), coloured by ``colour`` ((h, w) values -> (h, w, 4) uint8 RGBA).
    """

    def __init__(self, values: np.ndarray, colour: Callable[[np.ndarray], np.ndarray]) -> None:
        base = np.asarray(values, dtype=np.float32)
        if base.ndim != 2 or base.size == 0:
            raise ValueError(f"a layer is a non-empty 2-D array, not shape {base.shape}")
        self.height, self.width = base.shape
        self.max_level = max(0, math.ceil(math.log2(max(self.width, self.height))))
        self.colour = colour
        self._levels: dict[int, np.ndarray] = {self.max_level: base}
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._levels.values()) * 4 // 3 + 1  # the levels to come included

    def level(self, level: int) -> np.ndarray:
        with self._lock:
            finer = level
            while finer not in self._levels:
                finer += 1
            array = self._levels[finer]
            for k in range(finer - 1, level - 1, -1):
                array = halve_mean(array).astype(np.float32)
                self._levels[k] = array
            return array

    def tile_grid(self, level: int) -> tuple[int, int]:
        scale = 2 ** (self.max_level - level)
        w, h = math.ceil(self.width / scale), math.ceil(self.height / scale)
        return math.ceil(w / TILE_SIZE), math.ceil(h / TILE_SIZE)

    def tile(self, level: int, col: int, row: int) -> bytes:
        """PNG bytes of one tile; Http404 outside the pyramid."""
        if not 0 <= level <= self.max_level:
            raise Http404(f"Level {level} is outside 0..{self.max_level}.")
        cols, rows = self.tile_grid(level)
        if not (0 <= col < cols and 0 <= row < rows):
            raise Http404(f"Tile ({col}, {row}) is outside the {cols} x {rows} tiles of level {level}.")
        values = self.level(level)[row * TILE_SIZE:(row + 1) * TILE_SIZE, col * TILE_SIZE:(col + 1) * TILE_SIZE]
        out = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(self.colour(values)), mode="RGBA").save(out, format="PNG",
                                                                                    compress_level=1)
        return out.getvalue()

    def describe(self, tiles: str, downsample: float) -> dict[str, Any]:
        """What the viewer needs to open the pyramid: sizes, levels and the tile URL template."""
        return {"width": self.width, "height": self.height, "downsample": downsample, "tile_size": TILE_SIZE,
                "max_level": self.max_level, "tiles": tiles}


def _heatmap_pyramid(heatmap: SlideHeatmap, kind: str) -> LayerPyramid:
    key = ("heatmap", heatmap.pk, kind, heatmap.finished)
    return _pyramids.get_or_make(
        key, lambda: LayerPyramid(read_heatmap(heatmap, kind), lambda v: heatmap_rgba(v, kind)),
        lambda p: p.nbytes)


def _mask_rgba(values: np.ndarray) -> np.ndarray:
    """A refined mask's coverage (0..1 per pixel of a level) in the run's mask colour, clear outside."""
    rgba = np.zeros((*values.shape, 4), dtype=np.uint8)
    rgba[..., :3] = settings.RUN_MASK_RGBA[:3]
    rgba[..., 3] = np.round(np.clip(values, 0, 1) * settings.RUN_MASK_RGBA[3]).astype(np.uint8)
    return rgba


def _mask_pyramid(row: RunSlide, index: int, method: str) -> LayerPyramid:
    name = row.masks[index][method]

    def make() -> LayerPyramid:
        with tempfile.NamedTemporaryFile(suffix=".tiff") as tmp:
            with default_storage.open(name, "rb") as stored:
                tmp.write(stored.read())
            tmp.flush()
            mask, _ = read_mask_tiff(tmp.name)
        return LayerPyramid(mask, _mask_rgba)

    return _pyramids.get_or_make(("mask", row.pk, name), make, lambda p: p.nbytes)


def legend(kind: str) -> dict[str, Any]:
    """The colour scale of a heatmap kind: its name, method, unit, value range, ticks and colour stops."""
    top = HEATMAP_RANGES[kind]
    positions = np.linspace(0.0, 1.0, 11)
    colours = heatmap_rgba((positions * top)[np.newaxis, :], kind)[0]
    name, method, unit = _HEATMAP_NAMES[kind]
    return {
        "kind": kind, "name": name, "method": method, "unit": unit, "min": 0.0, "max": top,
        "ticks": [round(float(v), 3) for v in np.linspace(0.0, top, 5)],
        "stops": [[round(float(p), 2), [int(c) for c in rgba]] for p, rgba in zip(positions, colours, strict=True)],
    }


# --------------------------------------------------------------------------- region layers


class _Flat:
    """Outlines as flat arrays: shape i has rings ``rings[i] .. rings[i + 1] - 1``, ring k has points
    ``points[k] .. points[k + 1] - 1``, point p is ``coords[2p], coords[2p + 1]`` (level-0 pixels, the
    closing point of each ring left out)."""

    def __init__(self) -> None:
        self.rings: list[int] = [0]
        self.points: list[int] = [0]
        self.coords: list[float] = []

    def add(self, geometry: dict[str, Any]) -> None:
        """A GeoJSON Polygon or MultiPolygon as one shape (plain lists: 100,000 regions are flattened here)."""
        kind, coordinates = geometry.get("type"), geometry.get("coordinates") or []
        polygons = [coordinates] if kind == "Polygon" else coordinates if kind == "MultiPolygon" else []
        coords, points = self.coords, self.points
        for polygon in polygons:
            for ring in polygon:
                n = len(ring)
                if n > 1 and list(ring[0]) == list(ring[-1]):
                    n -= 1
                if n < 3:
                    continue
                coords.extend(chain.from_iterable(ring[:n]))
                points.append(len(coords) // 2)
        self.rings.append(len(points) - 1)

    def to_json(self) -> dict[str, Any]:
        return {"count": len(self.rings) - 1, "rings": self.rings, "points": self.points,
                "coords": list(map(round, self.coords))}


def _positives(row: RunSlide, upper: float) -> dict[str, Any] | None:
    """The outline of the slide's positive prediction (segmentation >= the range's upper bound)."""
    heatmap = row.heatmap
    if heatmap is None or heatmap.status != SlideHeatmap.Status.DONE or not heatmap.segmentation:
        return None

    def make() -> dict[str, Any]:
        positive = (read_heatmap(heatmap, "segmentation") >= upper).astype(np.int32)
        flat = _Flat()
        if positive.any():
            flat.add(region_polygons(positive, downsample=row.downsample)[0].__geo_interface__)
        return flat.to_json()

    return _payloads.get_or_make(("positives", heatmap.pk, heatmap.finished, row.downsample, upper), make,
                                 lambda p: 8 * len(p["coords"]) + 64)


def region_layer(run: Run, row: RunSlide, run_range: RunRange) -> bytes:
    """The JSON of one slide's regions in one range of a run (see the module docstring)."""
    regions: QuerySet[Region] = Region.objects.filter(run_slide=row, run_range=run_range)
    flat = _Flat()
    ids, labels, scores, flagged, areas = [], [], [], [], []
    for pk, label, score, flag, area, geometry in regions.order_by("-score", "label").values_list(
            "id", "label", "score", "flagged", "area_um2", "geometry").iterator(chunk_size=5000):
        ids.append(pk)
        labels.append(label)
        scores.append(score)
        flagged.append(1 if flag else 0)
        areas.append(None if area is None else round(area, 1))
        flat.add(geometry)
    scale = Region.objects.filter(run_range=run_range).aggregate(low=Min("score"), high=Max("score"))
    body = {
        "run": run.pk, "run_name": run.name, "slide": row.slide_id,
        # How a region's score was made: the run's aggregate of its pixels' uncertainty.
        "score": {"aggregate": run.aggregate or run.settings.get("aggregate"),
                  "uncertainty": run.settings.get("uncertainty")},
        "range": {"index": run_range.index, "lower": run_range.lower, "upper": run_range.upper,
                  "threshold": run_range.sua_threshold, "baseline_threshold": run_range.baseline_threshold},
        # The run's scores in this range, over every slide: one colour scale for all of them.
        "scale": {"min": scale["low"] if scale["low"] is not None else 0.0,
                  "max": scale["high"] if scale["high"] is not None else 1.0},
        "regions": {"id": ids, "label": labels, "score": scores, "flagged": flagged, "area_um2": areas,
                    **flat.to_json()},
        "positives": _positives(row, run_range.upper),
        # The refined masks of this range as tile layers: method -> the layer's URL.
        "masks": {m: reverse("run-mask-layer", args=[run.pk, row.slide_id, run_range.index, m]) for m in MASK_METHODS
                  if run_range.index < len(row.masks) and m in row.masks[run_range.index]},
    }
    return json.dumps(body, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- views


def _cached(response: HttpResponseBase, etag: str, seconds: int = 86400) -> HttpResponseBase:
    response["ETag"] = etag
    response["Cache-Control"] = f"private, max-age={seconds}"  # access is per project
    return response


def _visible_heatmap(request: Request, pk: int, kind: str) -> SlideHeatmap:
    if kind not in HEATMAP_KINDS:
        raise Http404(f"No heatmap kind {kind[:40]!r}: choose one of {', '.join(HEATMAP_KINDS)}.")
    heatmap = SlideHeatmap.objects.filter(
        pk=pk, ensemble__project__in=Project.objects.visible_to(request.user)).select_related("ensemble").first()
    if heatmap is None:
        raise Http404("No such heatmap.")
    if heatmap.status != SlideHeatmap.Status.DONE:
        raise Http404(f"The heatmaps of this slide are {heatmap.status}, not computed yet.")
    return heatmap


def _run_slide(request: Request, pk: int, slide: int) -> tuple[Run, RunSlide]:
    run = Run.objects.filter(pk=pk, project__in=Project.objects.visible_to(request.user)).first()
    if run is None:
        raise Http404("No such run.")
    row = RunSlide.objects.filter(run=run, slide=slide).select_related("heatmap").first()
    if row is None:
        raise Http404("That slide is not in this run.")
    return run, row


_TILE_RESPONSES = {(200, "image/png"): OpenApiTypes.BINARY, 304: OpenApiResponse(description="Not modified"),
                   404: OpenApiResponse(description="no such layer or tile for the caller")}
_INFO_RESPONSES = {200: OpenApiResponse(OpenApiTypes.OBJECT, description="the layer's pyramid and legend"),
                   304: OpenApiResponse(description="Not modified"),
                   404: OpenApiResponse(description="no such layer for the caller")}


class _LayerView(APIView):
    permission_classes = [IsAuthenticated]
    http_method_names = ["get", "head", "options"]

    def json(self, request: Request, etag: str, body: Callable[[], bytes]) -> HttpResponseBase:
        if (unchanged := not_modified(request, etag)) is not None:
            return _cached(unchanged, etag)
        return _cached(HttpResponse(body(), content_type="application/json"), etag)

    def png(self, request: Request, etag: str, body: Callable[[], bytes]) -> HttpResponseBase:
        if (unchanged := not_modified(request, etag)) is not None:
            return _cached(unchanged, etag)
        return _cached(HttpResponse(body(), content_type="image/png"), etag)


def _heatmap_etag(heatmap: SlideHeatmap, kind: str, *parts: object) -> str:
    finished = heatmap.finished.timestamp() if heatmap.finished else 0
    return '"' + "-".join(map(str, ("hl", heatmap.pk, kind, f"{finished:.0f}", *parts, LAYERS_VERSION))) + '"'


class HeatmapLayerView(_LayerView):
    @extend_schema(responses=_INFO_RESPONSES, parameters=[
        OpenApiParameter("kind", str, OpenApiParameter.PATH, enum=list(HEATMAP_KINDS))])
    def get(self, request: Request, pk: int, kind: str) -> HttpResponseBase:
        """A heatmap as a tile layer: its pyramid (sizes, levels, tile URL template with {level}, {col}
        and {row}) and its legend (name, method, unit, value range, ticks, colour stops)."""
        heatmap = _visible_heatmap(request, pk, kind)

        def body() -> bytes:
            pyramid = _heatmap_pyramid(heatmap, kind)
            tiles = reverse("heatmap-layer-tile", args=[heatmap.pk, kind, 0, 0, 0]).replace(
                "/0/0_0.png", "/{level}/{col}_{row}.png")
            return json.dumps({
                "heatmap": heatmap.pk, "ensemble": heatmap.ensemble.name,
                **pyramid.describe(tiles, float(heatmap.downsample or settings.HEATMAP_DOWNSAMPLE)),
                "legend": legend(kind),
            }).encode()

        return self.json(request, _heatmap_etag(heatmap, kind, "info"), body)


class HeatmapTileView(_LayerView):
    @extend_schema(responses=_TILE_RESPONSES, parameters=[
        OpenApiParameter("kind", str, OpenApiParameter.PATH, enum=list(HEATMAP_KINDS))])
    def get(self, request: Request, pk: int, kind: str, level: int, col: int, row: int) -> HttpResponseBase:
        """One tile of a heatmap layer: the heatmap coloured (transparent off tissue), PNG."""
        heatmap = _visible_heatmap(request, pk, kind)
        pyramid = _heatmap_pyramid(heatmap, kind)
        return self.png(request, _heatmap_etag(heatmap, kind, level, col, row),
                        lambda: pyramid.tile(level, col, row))


def _mask_of(request: Request, pk: int, slide: int, index: int, method: str) -> tuple[Run, RunSlide]:
    if method not in MASK_METHODS:
        raise Http404(f"No mask {method[:40]!r}: choose one of {', '.join(MASK_METHODS)}.")
    run, row = _run_slide(request, pk, slide)
    if index >= len(row.masks) or method not in row.masks[index]:
        raise Http404("This slide has no such refined mask in this run.")
    return run, row


_MASK_PARAMETERS = [OpenApiParameter("method", str, OpenApiParameter.PATH, enum=list(MASK_METHODS))]


class MaskLayerView(_LayerView):
    @extend_schema(responses=_INFO_RESPONSES, parameters=_MASK_PARAMETERS)
    def get(self, request: Request, pk: int, slide: int, index: int, method: str) -> HttpResponseBase:
        """A slide's SUA- or baseline-refined mask in one range of a run, as a tile layer (its pyramid)."""
        run, row = _mask_of(request, pk, slide, index, method)

        def body() -> bytes:
            pyramid = _mask_pyramid(row, index, method)
            tiles = reverse("run-mask-layer-tile", args=[run.pk, slide, index, method, 0, 0, 0]).replace(
                "/0/0_0.png", "/{level}/{col}_{row}.png")
            return json.dumps({"run": run.pk, "method": method, "range": index,
                               **pyramid.describe(tiles, row.downsample)}).encode()

        return self.json(request, f'"ml-{run.pk}-{row.pk}-{index}-{method}-{LAYERS_VERSION}"', body)


class MaskTileView(_LayerView):
    @extend_schema(responses=_TILE_RESPONSES, parameters=_MASK_PARAMETERS)
    def get(self, request: Request, pk: int, slide: int, index: int, method: str, level: int, col: int,
            row: int) -> HttpResponseBase:
        """One tile of a refined-mask layer, PNG."""
        run, run_slide = _mask_of(request, pk, slide, index, method)
        pyramid = _mask_pyramid(run_slide, index, method)
        return self.png(request, f'"mt-{run.pk}-{run_slide.pk}-{index}-{method}-{level}-{col}-{row}-{LAYERS_VERSION}"',
                        lambda: pyramid.tile(level, col, row))


class RegionLayerView(_LayerView):
    @extend_schema(
        parameters=[OpenApiParameter("range", int, description="range index, 0-based (default: the review range)")],
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description=(
            "run, run_name, slide; score {aggregate, uncertainty}: how scores were made; range {index, lower, upper, threshold, baseline_threshold}; scale {min, max} "
            "(the run's scores in this range); regions {id, label, score, flagged, area_um2: one entry per "
            "region, highest score first; count, rings, points, coords: the outlines as flat arrays}; positives "
            "(the positive prediction's outline, same flat arrays, or null); masks (method -> URL of its tile layer)")),
            304: OpenApiResponse(description="Not modified"),
            400: OpenApiResponse(description="no such range in the run"),
            404: OpenApiResponse(description="no such run, or the slide is not in it")},
    )
    def get(self, request: Request, pk: int, slide: int) -> HttpResponseBase:
        """One slide's negative prediction regions in one range of a run, all of them in one answer: scores,
        flags and level-0 outlines as flat arrays, with the threshold and the run's score scale."""
        run, row = _run_slide(request, pk, slide)
        review = services.review_range(run)
        ranges = run.range_set.count()
        index = query_int(request, "range", review.index if review else 0, low=0, high=max(ranges - 1, 0))
        run_range = run.range_set.filter(index=index).first()
        if run_range is None:
            raise Http404("The run has no ranges yet.")
        held = Region.objects.filter(run_slide=row, run_range=run_range).aggregate(n=Count("id"), last=Max("id"))
        etag = f'"rl-{run.pk}-{row.pk}-{index}-{held["n"]}-{held["last"]}-{LAYERS_VERSION}"'
        return self.json(request, etag, lambda: _payloads.get_or_make(
            etag, lambda: region_layer(run, row, run_range), len))
