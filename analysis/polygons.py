"""Outlines of labelled regions (NPRs) as polygons in level-0 slide coordinates.

A run stores each negative prediction region as a shapely (Multi)Polygon
(SPEC §1, §3): traced from the NPR label image of :mod:`analysis.sua`, holes
kept, valid, and exact on the heatmap grid: rasterised with the annotation
rule (a pixel is inside when its centre is, :func:`analysis.annotations.rasterize`)
it gives the region's mask back.

The outline is the marching-squares contour of each region at the heatmap's
pixel size, the polygon ``skimage.measure.find_contours(mask, 0.5,
fully_connected="high")`` draws around one region: its vertices are the
midpoints of the pixel edges between the region and the rest, so that a
diagonal staircase is one straight edge, and two pixels of a region that
touch only at a corner (8-connectivity, as NPRs are labelled) are joined by a
thin bridge rather than a point, which keeps every ring simple.  Every pixel
centre lies at least ``sqrt(2) / 4`` pixel from the contour, so a
Douglas-Peucker simplification with a smaller tolerance cannot move a centre
to the other side: the default simplifies to just under that.

All regions are traced in one pass over the label image: each pixel edge
between a region and a different label is a directed boundary edge (region on
its right); the next edge at its end corner follows from the 2 x 2 labels
there (turn left into a diagonal neighbour of the same label first: the
8-connected rule); pointer jumping skips vertices that lie on a straight line
and orders each ring, all rings at once.  No Python loop runs over regions.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import shapely
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from skimage.measure import label as _skimage_label

__all__ = ["MAX_EXACT_TOLERANCE", "region_polygons"]

IntArray = npt.NDArray[np.int64]
GeometryArray = npt.NDArray[np.object_]

#: Distance, in heatmap pixels, from any pixel centre to the contour; a
#: simplification tolerance below it keeps the rasterisation exact.
MAX_EXACT_TOLERANCE: float = math.sqrt(2.0) / 4.0

#: Default tolerance: just under the exact limit, leaving room for rounding.
_DEFAULT_TOLERANCE: float = 0.35

#: Labels on fewer than 1 / _SPARSE_BELOW of the pixels are "sparse": their boundaries are found
#: at their own pixels (measured on Camelyon-size heatmaps: at 2.3 % of the pixels 0.35 -> 0.25 s;
#: at 12 % gathering was slower than four passes over the image, 0.72 -> 0.86-1.16 s).
_SPARSE_BELOW: int = 16

# Edge types, by the side of their pixel, travelled with the pixel on the
# right (image coordinates, y down): top east, right south, bottom west, left
# north.  Directions as (dx, dy).
_TOP, _RIGHT, _BOTTOM, _LEFT = 0, 1, 2, 3
_DIRECTIONS = np.array([(1, 0), (0, 1), (-1, 0), (0, -1)], dtype=np.int64)
# Midpoint of each edge type relative to its pixel's top-left corner (x, y).
_MIDPOINTS = np.array([(0.5, 0.0), (1.0, 0.5), (0.5, 1.0), (0.0, 0.5)])
# Neighbour across each edge type (drow, dcol).
_ACROSS = np.array([(-1, 0), (0, 1), (1, 0), (0, -1)], dtype=np.int64)
# At the end corner of an edge: the pixel ahead on the left and on the right
# (drow, dcol from the edge's pixel), and the next edge's type and pixel for
# a left turn, straight on and a right turn (SPEC of the walk in the module
# docstring; e.g. a top edge ends at the pixel's top-right corner).
_AHEAD_LEFT = np.array([(-1, 1), (1, 1), (1, -1), (-1, -1)], dtype=np.int64)
_AHEAD_RIGHT = np.array([(0, 1), (1, 0), (0, -1), (-1, 0)], dtype=np.int64)
_NEXT_TYPE = np.array(
    [
        (_LEFT, _TOP, _RIGHT),
        (_TOP, _RIGHT, _BOTTOM),
        (_RIGHT, _BOTTOM, _LEFT),
        (_BOTTOM, _LEFT, _TOP),
    ],
    dtype=np.int64,
)
_TURN_LEFT, _STRAIGHT, _TURN_RIGHT = 0, 1, 2


def _as_region_labels(labels: npt.ArrayLike) -> npt.NDArray[np.int32]:
    lab = np.asarray(labels)
    if lab.dtype.kind not in "iu":
        raise ValueError(f"labels must be an integer array, not {lab.dtype}")
    if lab.ndim != 2:
        raise ValueError(f"labels must be a 2-D label image; got shape {lab.shape}")
    if lab.size and (int(lab.min()) < 0 or int(lab.max()) > np.iinfo(np.int32).max):
        raise ValueError("labels must lie in 0 .. 2**31 - 1 (0 = outside every region)")
    return lab.astype(np.int32, copy=False)


def _jump(successor: IntArray, stop: npt.NDArray[np.bool_]) -> IntArray:
    """For every node, the first node after it (following ``successor``) where ``stop`` holds.

    Pointer jumping: log2(longest gap) rounds of vectorised gathers.
    """
    target = successor.copy()
    pending = np.flatnonzero(~stop[target])
    while pending.size:
        target[pending] = target[target[pending]]
        pending = pending[~stop[target[pending]]]
    return target


def _ring_order(successor: IntArray) -> tuple[IntArray, IntArray]:
    """Rings of a permutation and every node's position along its ring.

    Returns ``(ring, position)``: ring ids 0..R-1 and positions 0..len-1,
    counted from the ring's lowest node.  The cycles are broken before their
    lowest node and ranked by pointer jumping (distance to the end).
    """
    n = successor.size
    graph = csr_matrix((np.ones(n, dtype=np.int8), (np.arange(n), successor)), shape=(n, n))
    _, ring = connected_components(graph, directed=True, connection="strong")
    ring = ring.astype(np.int64)
    first = np.full(int(ring.max()) + 1 if n else 0, n, dtype=np.int64)
    np.minimum.at(first, ring, np.arange(n))
    # Break each cycle: the node before the ring's first node ends the list.
    is_last = successor == first[ring]
    nxt = np.where(is_last, np.arange(n), successor)
    to_end = (~is_last).astype(np.int64)
    active = np.flatnonzero(~is_last)
    while active.size:
        to_end[active] += to_end[nxt[active]]
        nxt[active] = nxt[nxt[active]]
        active = active[nxt[active] != nxt[nxt[active]]]
    length = np.bincount(ring, minlength=first.size)
    return ring, length[ring] - 1 - to_end


def region_polygons(
    labels: npt.ArrayLike,
    *,
    downsample: float,
    tolerance: float = _DEFAULT_TOLERANCE,
) -> GeometryArray:
    """Outline every labelled region as a (Multi)Polygon in level-0 coordinates.

    Parameters
    ----------
    labels : (H, W) ndarray of int
        0 = background, 1..N regions (e.g. the NPR labels of
        :func:`analysis.sua.negative_prediction_regions`); any labels may
        touch.
    downsample : float
        ``d``, level-0 pixels per heatmap pixel: heatmap pixel (r, c) covers
        level-0 ``[c d, (c + 1) d) x [r d, (r + 1) d)``.
    tolerance : float, optional
        Douglas-Peucker tolerance in heatmap pixels (topology preserved),
        ``0 <= tolerance < sqrt(2) / 4``; 0 only drops collinear vertices.

    Returns
    -------
    (N,) ndarray of shapely geometries
        ``out[i]`` outlines label ``i + 1``: a valid Polygon (holes as
        interiors) or a MultiPolygon when the label has several 8-connected
        parts; an empty Polygon for a label without pixels.  Rasterised at
        downsample ``d`` (pixel centre inside) each gives its label's mask.

    Examples
    --------
    >>> labels = np.zeros((5, 5), np.int32); labels[1:4, 1:4] = 1; labels[2, 2] = 0
    >>> ring = region_polygons(labels, downsample=16.0)[0]
    >>> ring.geom_type, len(ring.interiors), ring.area / 16**2   # a ring, not a box
    ('Polygon', 1, 8.0)
    """
    lab = _as_region_labels(labels)
    d = float(downsample)
    if not (d > 0 and math.isfinite(d)):
        raise ValueError(f"downsample ({downsample}) must be a positive number")
    tol = float(tolerance)
    if not 0.0 <= tol < MAX_EXACT_TOLERANCE:
        raise ValueError(
            f"tolerance ({tolerance}) must be in [0, {MAX_EXACT_TOLERANCE:.4f}) heatmap pixels: "
            "a larger one can move the outline across a pixel centre"
        )
    n_labels = int(lab.max()) if lab.size else 0
    out = np.full(n_labels, shapely.Polygon(), dtype=object)
    if n_labels == 0:
        return out

    # Pad with background so that every region's outline closes inside; in
    # the flat padded image a neighbour is a fixed offset away.
    padded = np.pad(lab, 1)
    width = padded.shape[1]
    flat = padded.reshape(-1)
    first, stop = width + 1, flat.size - width - 1  # every pixel that has all 8 neighbours
    core = flat[first:stop]
    in_region = core != 0

    # Boundary edges, all four types, keyed type * size + padded pixel index
    # (sorted, so that the next edge is found by binary search). Where regions are sparse (NPRs
    # on most slides: a few per cent of the heatmap) each neighbour is compared at the region
    # pixels only; where they are not, four passes over the whole image are faster than gathers.
    keys = []
    if np.count_nonzero(in_region) < core.size // _SPARSE_BELOW:
        region_pixels = first + np.flatnonzero(in_region)  # nonzero of a bool array: 6x faster than of int
        region_of_pixel = flat[region_pixels]
        for edge_type, to_across in enumerate(_ACROSS @ (width, 1)):
            boundary = region_of_pixel != flat[region_pixels + to_across]
            keys.append(edge_type * flat.size + region_pixels[boundary])
    else:
        for edge_type, to_across in enumerate(_ACROSS @ (width, 1)):
            boundary = core != flat[first + to_across : stop + to_across]
            boundary &= in_region
            keys.append(edge_type * flat.size + first + np.flatnonzero(boundary))
    key = np.concatenate(keys)
    edge_type_of = key // flat.size
    pixel = key % flat.size
    region = flat[pixel]

    # The next edge at the end corner: turn left into a diagonal pixel of
    # the same region first (8-connectivity), else straight on, else right.
    to_ahead_left = (_AHEAD_LEFT @ (width, 1))[edge_type_of]
    to_ahead_right = (_AHEAD_RIGHT @ (width, 1))[edge_type_of]
    ahead_left = flat[pixel + to_ahead_left] == region
    ahead_right = flat[pixel + to_ahead_right] == region
    turn = np.where(ahead_left, _TURN_LEFT, np.where(ahead_right, _STRAIGHT, _TURN_RIGHT))
    # The pixel of the next edge: the ahead-left pixel after a left turn,
    # the ahead-right one straight on, the same pixel after a right turn.
    next_pixel = pixel + np.where(ahead_left, to_ahead_left, np.where(ahead_right, to_ahead_right, 0))
    next_type = _NEXT_TYPE[edge_type_of, turn]
    successor = np.searchsorted(key, next_type * flat.size + next_pixel)

    # The contour joins the edges' midpoints; a midpoint is a vertex unless
    # the contour runs straight through it: between two straight steps, or
    # on a staircase (a turn one way, then the other).
    turn_in = np.empty_like(turn)
    turn_in[successor] = turn
    straight_through = ((turn_in == _STRAIGHT) & (turn == _STRAIGHT)) | (
        (turn_in != _STRAIGHT) & (turn != _STRAIGHT) & (turn_in != turn)
    )
    vertex = ~straight_through
    kept = np.flatnonzero(vertex)
    renumber = np.full(key.size, -1, dtype=np.int64)
    renumber[kept] = np.arange(kept.size)
    next_vertex = renumber[_jump(successor, vertex)[kept]]
    ring, position = _ring_order(next_vertex)

    v_type = edge_type_of[kept]
    v_pixel = pixel[kept]
    v_region = region[kept]
    row = v_pixel // width - 1
    col = v_pixel % width - 1
    x = (col + _MIDPOINTS[v_type, 0]) * d
    y = (row + _MIDPOINTS[v_type, 1]) * d

    # Shoelace per ring: with the region on the right in image coordinates
    # an outer ring has positive area, a hole negative.
    order = np.lexsort((position, ring))
    ring_sorted = ring[order]
    xs, ys = x[order], y[order]
    starts = np.flatnonzero(np.r_[True, ring_sorted[1:] != ring_sorted[:-1]])
    nxt = np.arange(order.size) + 1
    ends = np.r_[starts[1:], order.size]
    nxt[ends - 1] = starts
    twice_area = np.add.reduceat(xs * ys[nxt] - xs[nxt] * ys, starts)
    ring_region = v_region[order][starts]
    is_hole = twice_area < 0

    # Each 8-connected part of a region has one outer ring; holes belong to
    # the part on their right.  A region from sua.py is one part; otherwise
    # label the parts (one pass) to tell them apart.
    shells_per_region = np.bincount(ring_region[~is_hole], minlength=n_labels + 1)
    if (shells_per_region > 1).any():
        parts = np.pad(_skimage_label(lab, connectivity=2, background=0), 1)  # type: ignore[no-untyped-call]
        ring_part = parts.reshape(-1)[v_pixel[order][starts]].astype(np.int64)
    else:
        ring_part = ring_region.astype(np.int64)
    ring_order = np.lexsort((is_hole, ring_part))  # the shell first, then its holes

    rings = shapely.linearrings(np.column_stack((xs, ys)), indices=ring_sorted)
    rings = rings[ring_order]
    part_of_ring = ring_part[ring_order]
    new_part = np.r_[True, part_of_ring[1:] != part_of_ring[:-1]]
    polygons = shapely.polygons(rings, indices=np.cumsum(new_part) - 1)
    polygon_region = ring_region[ring_order][new_part]

    if tol > 0:
        polygons = shapely.simplify(polygons, tol * d, preserve_topology=True)
    # A bridge of the 8-connected rule keeps each ring simple, but two parts
    # of one label given by hand may touch at a corner in a MultiPolygon.
    n_parts = np.bincount(polygon_region, minlength=n_labels + 1)
    single = n_parts[polygon_region] == 1
    out[polygon_region[single] - 1] = polygons[single]
    multi = ~single
    if multi.any():
        by_region = np.flatnonzero(multi)[np.argsort(polygon_region[multi], kind="stable")]
        groups, group_of = np.unique(polygon_region[by_region], return_inverse=True)
        out[groups - 1] = shapely.multipolygons(polygons[by_region], indices=group_of)
    invalid = ~shapely.is_valid(out)
    if invalid.any():
        out[invalid] = shapely.make_valid(out[invalid], method="structure", keep_collapsed=False)
    return out
