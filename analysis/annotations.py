"""Annotations: ASAP XML, QuPath GeoJSON, CSV with WKT outlines and binary masks, as shapely geometry.

All coordinates are level-0 pixels (x to the right, y down), as every format
stores them.  Labelled annotations (a class per shape: reviewers' verdicts,
say) are written with :func:`asap_xml` (a group per label), :func:`geojson`
(``classification`` with name and colour, as QuPath imports it) and
:func:`annotations_csv`, and read back by :func:`read_annotations`.

The ground truth of a slide is the union of its tumor polygons
minus the union of its exclusion polygons (ASAP group ``_2``), rasterised onto
a heatmap grid by one rule (SPEC §6): grid pixel (r, c) at downsample ``d`` is
tumor when its centre ((c + 0.5) d, (r + 0.5) d) lies inside.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon, mapping, shape
from shapely.geometry.base import BaseGeometry

from analysis.defaults import ASAP_EXCLUDE_GROUPS, ASAP_TUMOR_GROUPS, GEOJSON_TUMOR_CLASSES
from analysis.errors import InputError, NoTumorAreaError

__all__ = [
    "Annotation",
    "AnnotationFile",
    "Skipped",
    "annotations_csv",
    "asap_xml",
    "file_tumor_geometry",
    "geojson",
    "load_tumor_geometry",
    "mask_to_polygons",
    "rasterize",
    "read_annotation_file",
    "read_annotations",
    "read_asap_file",
    "read_asap_xml",
    "read_csv",
    "read_csv_file",
    "read_geojson",
    "read_geojson_file",
    "tumor_geometry",
    "valid_multipolygon",
    "write_asap_xml",
    "write_geojson",
]

# ASAP's annotation types that enclose an area; Dot and PointSet do not.
_ASAP_AREA_TYPES = frozenset({"polygon", "spline", "rectangle", ""})


@dataclass(frozen=True)
class Annotation:
    """One annotation as stored in the file, before any repair.

    Attributes
    ----------
    name
        The annotation's name (ASAP ``Name``; GeoJSON ``properties.name``).
    label
        ASAP ``PartOfGroup`` or the QuPath class name ("" when none).
    geometry
        Polygon or MultiPolygon in level-0 pixels, coordinates exactly as read.
    ancestors
        Enclosing ASAP groups of ``label`` (innermost first); empty for GeoJSON.
    """

    name: str
    label: str
    geometry: Polygon | MultiPolygon
    ancestors: tuple[str, ...] = ()


# --------------------------------------------------------------------------- readers


@dataclass(frozen=True)
class Skipped:
    """An annotation of a file that encloses no area (a point, a line, a polygon of too few vertices).

    Never part of the truth; kept so that a file of nothing else can be refused with the reason.
    ``kind`` says what it is ("Dot", "Point", "polygon of 2 distinct vertices").
    """

    name: str
    label: str
    kind: str
    ancestors: tuple[str, ...] = ()


@dataclass(frozen=True)
class AnnotationFile:
    """What an annotation file holds: the annotations that enclose an area, and those that do not.

    ``format`` is "xml" (ASAP, whose labels are groups), "geojson" (QuPath, whose labels are classes)
    or "csv" (a table of WKT outlines with a class column).
    """

    path: Path
    format: str
    annotations: tuple[Annotation, ...]
    skipped: tuple[Skipped, ...] = ()

    @property
    def label_word(self) -> str:
        return "group" if self.format == "xml" else "class"


def _number(text: str | None, *, path: Path, what: str) -> float:
    if text is None:
        raise InputError(f"{path}: {what} has no value")
    try:
        # ASAP written under a comma-decimal locale stores "1234,5".
        return float(text.replace(",", "."))
    except ValueError as exc:
        raise InputError(f"{path}: {what} is not a number ({text!r})") from exc


def _vertices(count: int) -> str:
    return f"polygon of {count} distinct vert{'ex' if count == 1 else 'ices'}"


def _distinct_vertices(ring: Any) -> int:
    coordinates = shapely.get_coordinates(ring)
    return len(np.unique(coordinates, axis=0)) if len(coordinates) else 0


def read_asap_file(path: str | Path) -> AnnotationFile:
    """Read an ASAP (Camelyon) XML file: its area annotations, and those that enclose none.

    ``ASAP_Annotations/Annotations/Annotation`` elements with
    ``Coordinates/Coordinate`` (``Order``, ``X``, ``Y``); coordinates are put
    in ``Order``.  Dots, point sets and annotations of fewer than three
    distinct points enclose no area: they are listed in ``skipped``.
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise InputError(f"{path}: cannot read ASAP XML ({exc})") from exc
    parents = {group.get("Name", ""): group.get("PartOfGroup", "None") for group in root.iter("Group")}
    result: list[Annotation] = []
    skipped: list[Skipped] = []
    for number, element in enumerate(root.iter("Annotation")):
        name = element.get("Name", f"Annotation {number}")
        label = element.get("PartOfGroup", "None")
        ancestors: list[str] = []
        parent = parents.get(label)
        # Walk up the group tree (bounded, in case a file has a cycle).
        while parent not in (None, "None", "") and len(ancestors) < len(parents):
            ancestors.append(str(parent))
            parent = parents.get(str(parent))
        kind = element.get("Type", "").strip()
        if kind.lower() not in _ASAP_AREA_TYPES:
            skipped.append(Skipped(name, label, kind, tuple(ancestors)))
            continue
        points: list[tuple[float, float, float]] = []
        for index, coordinate in enumerate(element.iter("Coordinate")):
            what = f"annotation {number} coordinate {index}"
            order_text = coordinate.get("Order")
            order = _number(order_text, path=path, what=what) if order_text is not None else float(index)
            points.append(
                (
                    order,
                    _number(coordinate.get("X"), path=path, what=what),
                    _number(coordinate.get("Y"), path=path, what=what),
                )
            )
        distinct = len({(x, y) for _, x, y in points})
        if distinct < 3:
            skipped.append(Skipped(name, label, _vertices(distinct), tuple(ancestors)))
            continue
        points.sort(key=lambda p: p[0])
        result.append(
            Annotation(
                name=name,
                label=label,
                geometry=Polygon([(x, y) for _, x, y in points]),
                ancestors=tuple(ancestors),
            )
        )
    return AnnotationFile(path, "xml", tuple(result), tuple(skipped))


def read_asap_xml(path: str | Path) -> list[Annotation]:
    """The area annotations of an ASAP (Camelyon) XML file (see :func:`read_asap_file`)."""
    return list(read_asap_file(path).annotations)


def _class_name(properties: dict[str, Any]) -> str:
    classification = properties.get("classification")
    if isinstance(classification, dict):
        return str(classification.get("name", ""))
    if isinstance(classification, str):
        return classification
    return ""


def _area_parts(geometry: BaseGeometry) -> list[Polygon]:
    """The polygons in a geometry (collections flattened, lines and points dropped)."""
    result: list[Polygon] = []
    for part in shapely.get_parts(geometry):
        if isinstance(part, Polygon):
            if not part.is_empty:
                result.append(part)
        elif isinstance(part, MultiPolygon | shapely.GeometryCollection):
            result.extend(_area_parts(part))
    return result


def _split_area(geometry: BaseGeometry) -> tuple[list[Polygon], list[str]]:
    """The polygons of a geometry that may enclose an area, and what each other part is
    (a MultiPoint is one part, "MultiPoint"; a MultiPolygon's degenerate polygons one each)."""
    if isinstance(geometry, Polygon):
        distinct = _distinct_vertices(geometry.exterior) if not geometry.is_empty else 0
        return ([geometry], []) if distinct >= 3 else ([], [_vertices(distinct)])
    if isinstance(geometry, MultiPolygon | shapely.GeometryCollection):
        areas: list[Polygon] = []
        others: list[str] = []
        for part in geometry.geoms:
            more_areas, more_others = _split_area(part)
            areas += more_areas
            others += more_others
        return areas, others
    return [], [geometry.geom_type]


def _add_parsed(name: str, label: str, parsed: BaseGeometry, result: list[Annotation], skipped: list[Skipped]) -> None:
    """The annotations of one parsed geometry onto ``result``, the parts that enclose no area onto ``skipped``."""
    areas, others = _split_area(parsed)
    skipped += [Skipped(name, label, kind) for kind in others]
    if isinstance(parsed, Polygon | MultiPolygon) and not others:
        result.append(Annotation(name=name, label=label, geometry=parsed))  # as read, holes and all
    elif isinstance(parsed, MultiPolygon) and areas:
        result.append(Annotation(name=name, label=label, geometry=MultiPolygon(areas)))
    else:
        result.extend(Annotation(name=name, label=label, geometry=part) for part in areas)


def read_geojson_file(path: str | Path) -> AnnotationFile:
    """Read a GeoJSON file as QuPath exports it: its area features, and those that enclose none.

    Accepts a FeatureCollection, a bare list of Features, a single Feature or
    a bare geometry.  The label is ``properties.classification.name`` (or a
    plain string ``classification``).  Polygon and MultiPolygon (holes kept)
    are read; points, lines, polygons of fewer than three distinct vertices
    and features without a geometry enclose no area: they are listed in ``skipped``.
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read GeoJSON ({exc})") from exc
    if isinstance(document, dict) and document.get("type") == "FeatureCollection":
        features = document.get("features", [])
    elif isinstance(document, dict) and document.get("type") == "Feature":
        features = [document]
    elif isinstance(document, dict) and "coordinates" in document:
        features = [{"type": "Feature", "geometry": document, "properties": {}}]
    elif isinstance(document, list):
        features = document
    else:
        raise InputError(f"{path}: not a GeoJSON FeatureCollection, Feature list or geometry")
    if not isinstance(features, list):
        raise InputError(f"{path}: the features of a FeatureCollection must be a list")
    result: list[Annotation] = []
    skipped: list[Skipped] = []
    for number, feature in enumerate(features):
        if not isinstance(feature, dict):
            raise InputError(f"{path}: feature {number} is not an object")
        properties = feature.get("properties") or {}
        if not isinstance(properties, dict):
            raise InputError(f"{path}: the properties of feature {number} are not an object")
        name = str(properties.get("name", f"Feature {number}"))
        label = _class_name(properties)
        geometry = feature.get("geometry")
        if not geometry:
            skipped.append(Skipped(name, label, "feature without a geometry"))
            continue
        try:
            parsed = shape(geometry)
        except (ValueError, TypeError, AttributeError, KeyError, shapely.errors.GEOSException) as exc:
            raise InputError(f"{path}: feature {number} has a bad geometry ({exc})") from exc
        _add_parsed(name, label, parsed, result, skipped)
    return AnnotationFile(path, "geojson", tuple(result), tuple(skipped))


def read_geojson(path: str | Path) -> list[Annotation]:
    """The area features of a GeoJSON file (see :func:`read_geojson_file`)."""
    return list(read_geojson_file(path).annotations)


def read_csv_file(path: str | Path) -> AnnotationFile:
    """Read a CSV table of annotations as :func:`annotations_csv` writes it.

    One row per annotation: the outline in column ``geometry`` (WKT, Polygon
    or MultiPolygon, level-0 pixels), the label in ``classification`` and the
    name in ``name`` (both optional); other columns are ignored.  Rows whose
    geometry is empty or encloses no area are listed in ``skipped``.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            columns, rows = reader.fieldnames or [], list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read CSV ({exc})") from exc
    if "geometry" not in columns:
        raise InputError(f"{path}: no 'geometry' column (WKT outlines); columns: {', '.join(columns) or 'none'}")
    result: list[Annotation] = []
    skipped: list[Skipped] = []
    for number, row in enumerate(rows):
        name, label = row.get("name") or f"Row {number + 1}", row.get("classification") or ""
        text = (row.get("geometry") or "").strip()
        if not text:
            skipped.append(Skipped(name, label, "row without a geometry"))
            continue
        try:
            parsed = shapely.from_wkt(text)
        except shapely.errors.GEOSException as exc:
            raise InputError(f"{path}: row {number + 1} has a bad WKT geometry ({exc})") from exc
        _add_parsed(name, label, parsed, result, skipped)
    return AnnotationFile(path, "csv", tuple(result), tuple(skipped))


def read_csv(path: str | Path) -> list[Annotation]:
    """The area annotations of a CSV table (see :func:`read_csv_file`)."""
    return list(read_csv_file(path).annotations)


def read_annotation_file(path: str | Path) -> AnnotationFile:
    """Read ASAP XML (``.xml``), GeoJSON (``.geojson``, ``.json``) or CSV with WKT outlines (``.csv``),
    what encloses an area and what does not."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".xml":
        return read_asap_file(path)
    if suffix in (".geojson", ".json"):
        return read_geojson_file(path)
    if suffix == ".csv":
        return read_csv_file(path)
    raise InputError(f"{path}: unknown annotation format {suffix!r} (use .xml, .geojson or .csv)")


def read_annotations(path: str | Path) -> list[Annotation]:
    """The area annotations of ASAP XML (``.xml``), GeoJSON (``.geojson``, ``.json``) or CSV (``.csv``)."""
    return list(read_annotation_file(path).annotations)


# --------------------------------------------------------------------------- tumor geometry


def valid_multipolygon(geometry: BaseGeometry) -> MultiPolygon:
    """A valid MultiPolygon with the area of ``geometry`` (lines and points dropped).

    An invalid input is repaired polygon by polygon and the parts merged
    (:func:`_repaired_union`): ``make_valid`` on a whole MultiPolygon whose
    parts overlap would turn the overlap into a hole.

    >>> valid_multipolygon(shapely.box(0, 0, 2, 2)).geom_type
    'MultiPolygon'
    >>> figure_eight = Polygon([(0, 0), (2, 2), (2, 0), (0, 2)])
    >>> valid_multipolygon(figure_eight).area
    2.0
    """
    if not (isinstance(geometry, Polygon | MultiPolygon) and geometry.is_valid):
        geometry = _repaired_union([geometry])
    return _as_multipolygon(geometry)


def _as_multipolygon(geometry: BaseGeometry) -> MultiPolygon:
    if isinstance(geometry, MultiPolygon):
        return geometry
    if isinstance(geometry, Polygon):
        return MultiPolygon([geometry]) if not geometry.is_empty else MultiPolygon()
    parts = _area_parts(geometry)
    return MultiPolygon(parts) if parts else MultiPolygon()


def _repaired_union(geometries: Iterable[BaseGeometry]) -> BaseGeometry:
    """Union of the area parts of ``geometries``, each made valid first.

    Hand-drawn outlines self-intersect; ``make_valid`` keeps all enclosed
    area (where a buffer(0) would drop the lobes of a figure eight).
    """
    parts: list[Polygon] = []
    for geometry in geometries:
        # Repair polygon by polygon: make_valid on a MultiPolygon whose parts
        # overlap would treat the overlap as a hole (even-odd), not as area.
        for polygon in _area_parts(geometry):
            parts.extend(_area_parts(polygon if polygon.is_valid else shapely.make_valid(polygon)))
    return shapely.union_all(parts) if parts else MultiPolygon()


def tumor_geometry(
    annotations: Sequence[Annotation],
    *,
    tumor_classes: Sequence[str],
    exclude_classes: Sequence[str] = (),
) -> MultiPolygon:
    """Union of the tumor annotations minus the union of the exclusions.

    Labels are compared case-insensitively; an ASAP annotation also counts by
    its enclosing groups.  Exclusion wins over tumor for one annotation.
    """
    tumor_set = {name.casefold() for name in tumor_classes}
    exclude_set = {name.casefold() for name in exclude_classes}
    tumor: list[BaseGeometry] = []
    excluded: list[BaseGeometry] = []
    for annotation in annotations:
        labels = {annotation.label.casefold(), *(a.casefold() for a in annotation.ancestors)}
        if labels & exclude_set:
            excluded.append(annotation.geometry)
        elif labels & tumor_set:
            tumor.append(annotation.geometry)
    result = _repaired_union(tumor)
    if excluded and not result.is_empty:
        result = result.difference(_repaired_union(excluded))
    return _as_multipolygon(result)


def _labels(item: Annotation | Skipped) -> set[str]:
    return {item.label.casefold(), *(a.casefold() for a in item.ancestors)}


def _counted(names: Iterable[str]) -> str:
    counts = Counter(names)
    return ", ".join(f"{name} ({n})" for name, n in sorted(counts.items(), key=lambda kv: kv[0].casefold()))


def _why_no_tumor(
    file: AnnotationFile, *, tumor_classes: Sequence[str], exclude_classes: Sequence[str]
) -> NoTumorAreaError:
    """The error that says why ``file`` outlines no tumor area, in the order a person would fix it."""
    word = file.label_word
    words = "classes" if word == "class" else "groups"
    tumor_set = {name.casefold() for name in tumor_classes}
    exclude_set = {name.casefold() for name in exclude_classes}
    every: list[Annotation | Skipped] = [*file.annotations, *file.skipped]
    labels = tuple(sorted({name for item in every for name in (item.label or f"(no {word})", *item.ancestors)},
                          key=str.casefold))

    def error(reason: str, message: str) -> NoTumorAreaError:
        return NoTumorAreaError(f"{file.path}: {message}", reason=reason, labels=labels,
                                tumor_classes=tuple(tumor_classes))

    def is_tumor(item: Annotation | Skipped) -> bool:
        found = _labels(item)
        return bool(found & tumor_set) and not found & exclude_set

    def held(items: Iterable[Annotation | Skipped]) -> str:
        return _counted(item.label or f"(no {word})" for item in items)

    outline_rule = "tumor must be outlined by polygons of at least 3 distinct vertices"
    if not every:
        return error("empty", "the file holds no annotations. A tumor-free slide needs no annotation file")
    if not file.annotations:
        kinds = _counted(s.kind for s in file.skipped)
        return error("no area", f"none of its {len(every)} annotations encloses an area ({kinds}); {outline_rule}")
    tumor_areas = [a for a in file.annotations if is_tumor(a)]
    tumor_points = [s for s in file.skipped if is_tumor(s)]
    if not tumor_areas and tumor_points:
        kinds = _counted(s.kind for s in tumor_points)
        return error("tumor without area", f"its tumor annotations enclose no area ({kinds}); {outline_rule}. "
                                           f"Its areas are of the {words} {held(file.annotations)}")
    if not tumor_areas:
        return error("no tumor class", f"no {word} in it means tumor: it holds the {words} {held(every)}; "
                                       f"tumor {words} are {', '.join(tumor_classes)}")
    if _repaired_union(a.geometry for a in tumor_areas).is_empty:
        return error("collinear", f"its {len(tumor_areas)} tumor outline{'s' if len(tumor_areas) != 1 else ''} "
                                  "enclose no area (their vertices lie on one line)")
    return error("cut out", f"its tumor outlines lie entirely inside its exclusion {words} "
                            f"({', '.join(exclude_classes)}), which leaves no tumor")


def file_tumor_geometry(
    file: AnnotationFile,
    *,
    tumor_classes: Sequence[str] | None = None,
    exclude_classes: Sequence[str] | None = None,
) -> MultiPolygon:
    """The tumor area of a read annotation file, level-0 pixels; never empty.

    Parameters
    ----------
    tumor_classes
        Labels that mean tumor.  Default: ``ASAP_TUMOR_GROUPS`` for XML,
        ``GEOJSON_TUMOR_CLASSES`` for GeoJSON.
    exclude_classes
        Labels cut out of the tumor.  Default: ``ASAP_EXCLUDE_GROUPS`` for
        XML, none for GeoJSON.

    Returns
    -------
    MultiPolygon
        Valid and not empty.

    Raises
    ------
    NoTumorAreaError
        When the file outlines no tumor (SPEC: never a silently empty truth): it
        holds no annotations, none enclosing an area, none of a tumor group or
        class (the message names those it holds), or its tumor is all cut out.
        A tumor-free slide is one without an annotation file.
    """
    is_xml = file.format == "xml"
    if tumor_classes is None:
        tumor_classes = ASAP_TUMOR_GROUPS if is_xml else GEOJSON_TUMOR_CLASSES
    if exclude_classes is None:
        exclude_classes = ASAP_EXCLUDE_GROUPS if is_xml else ()
    geometry = tumor_geometry(file.annotations, tumor_classes=tumor_classes, exclude_classes=exclude_classes)
    if geometry.is_empty:
        raise _why_no_tumor(file, tumor_classes=tumor_classes, exclude_classes=exclude_classes)
    return geometry


def load_tumor_geometry(
    path: str | Path,
    *,
    tumor_classes: Sequence[str] | None = None,
    exclude_classes: Sequence[str] | None = None,
) -> MultiPolygon:
    """The tumor area of an annotation file, level-0 pixels: :func:`file_tumor_geometry` of
    :func:`read_annotation_file`; raises :class:`NoTumorAreaError` rather than return an empty area."""
    return file_tumor_geometry(read_annotation_file(path), tumor_classes=tumor_classes,
                               exclude_classes=exclude_classes)


# --------------------------------------------------------------------------- writers


def _polygons(polygons: Iterable[BaseGeometry] | BaseGeometry) -> list[Polygon]:
    items = [polygons] if isinstance(polygons, BaseGeometry) else list(polygons)
    result: list[Polygon] = []
    for item in items:
        result.extend(_area_parts(item))
    return result


def _xy(ring: Any) -> list[tuple[float, float]]:
    """Ring coordinates without the closing repeat (ASAP stores open rings)."""
    coords = [(float(x), float(y)) for x, y, *_ in ring.coords]
    return coords[:-1] if len(coords) > 1 and coords[0] == coords[-1] else coords


#: The colours ASAP draws annotations and their groups in when none is given.
_ASAP_ANNOTATION_COLOR = "#F4FA58"
_ASAP_GROUP_COLOR = "#64FE2E"


def asap_xml(annotations: Iterable[Annotation], *, colors: Mapping[str, str] | None = None) -> bytes:
    """ASAP XML of labelled annotations, level-0 pixel coordinates: a group per label.

    Each polygon of an annotation becomes an ASAP annotation of the group
    named by its label (a MultiPolygon's parts are named ``"<name> part <i>"``);
    ASAP has no holes, so each hole becomes an annotation ``"<...> hole <k>"``
    of the first exclusion group (``_2``), which :func:`load_tumor_geometry`
    cuts out again.  Coordinates are written with ``repr``, so reading them
    back gives the same floats.  ``colors`` maps a label to ``"#RRGGBB"``.

    >>> text = asap_xml([Annotation("Region 1", "Not tumor", shapely.box(0, 0, 4, 4))], colors={"Not tumor": "#00A000"})
    >>> b'PartOfGroup="Not tumor" Color="#00A000"' in text
    True
    """
    colors = colors or {}
    hole_group = ASAP_EXCLUDE_GROUPS[0]
    root = ET.Element("ASAP_Annotations")
    elements = ET.SubElement(root, "Annotations")
    groups: dict[str, str] = {}

    def add(name: str, group: str, coords: list[tuple[float, float]]) -> None:
        color = colors.get(group, _ASAP_ANNOTATION_COLOR)
        groups.setdefault(group, colors.get(group, _ASAP_GROUP_COLOR))
        element = ET.SubElement(elements, "Annotation", Name=name, Type="Polygon", PartOfGroup=group, Color=color)
        coordinates = ET.SubElement(element, "Coordinates")
        for order, (x, y) in enumerate(coords):
            ET.SubElement(coordinates, "Coordinate", Order=str(order), X=repr(x), Y=repr(y))

    for annotation in annotations:
        parts = _polygons(annotation.geometry)
        for number, polygon in enumerate(parts):
            name = annotation.name if len(parts) == 1 else f"{annotation.name} part {number}"
            add(name, annotation.label, _xy(polygon.exterior))
            # Each hole right after its polygon, as ASAP users read them.
            for hole_number, hole in enumerate(polygon.interiors):
                add(f"{name} hole {hole_number}", hole_group, _xy(hole))
    table = ET.SubElement(root, "AnnotationGroups")
    for name, color in groups.items():
        element = ET.SubElement(table, "Group", Name=name, PartOfGroup="None", Color=color)
        ET.SubElement(element, "Attributes")
    ET.indent(root)
    out = io.BytesIO()
    ET.ElementTree(root).write(out, encoding="utf-8", xml_declaration=True)
    return out.getvalue()


def write_asap_xml(polygons: Iterable[BaseGeometry] | BaseGeometry, path: str | Path, *, group: str = "Tumor") -> None:
    """Write polygons as ASAP XML, level-0 pixel coordinates (:func:`asap_xml`, every polygon in ``group``).

    Each exterior becomes an annotation ``"Annotation <i>"`` of ``group``; each
    hole an annotation of the exclusion group ``_2``.
    """
    items = [Annotation(f"Annotation {number}", group, polygon) for number, polygon in enumerate(_polygons(polygons))]
    Path(path).write_bytes(asap_xml(items))


def _exact_geometry(geometry: Polygon | MultiPolygon) -> dict[str, Any]:
    """A GeoJSON geometry whose coordinates are plain floats (JSON writes them with ``repr``: exact)."""
    mapped = dict(mapping(geometry))

    def rings(polygon: Any) -> list[list[list[float]]]:
        return [[[float(x), float(y)] for x, y, *_ in ring] for ring in polygon]

    if isinstance(geometry, MultiPolygon):
        mapped["coordinates"] = [rings(polygon) for polygon in mapped["coordinates"]]
    else:
        mapped["coordinates"] = rings(mapped["coordinates"])
    return mapped


def geojson(
    annotations: Sequence[Annotation],
    *,
    colors: Mapping[str, Sequence[int]] | None = None,
    properties: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of labelled annotations as QuPath imports it (level-0 pixels).

    One Feature per annotation (a Polygon with its holes, or a MultiPolygon)
    with ``properties`` ``objectType`` "annotation", ``name`` and
    ``classification`` ``{"name": label, "color": [r, g, b]}`` (the colour from
    ``colors``, when it names the label), plus ``properties[i]`` of the
    annotation when given (QuPath keeps a ``measurements`` object of numbers).

    >>> document = geojson([Annotation("Region 1", "Tumor", shapely.box(0, 0, 4, 4))], colors={"Tumor": (200, 0, 0)})
    >>> document["features"][0]["properties"]["classification"]
    {'name': 'Tumor', 'color': [200, 0, 0]}
    """
    if properties is not None and len(properties) != len(annotations):
        raise ValueError(f"{len(properties)} property sets for {len(annotations)} annotations")
    colors = colors or {}
    features = []
    for i, annotation in enumerate(annotations):
        classification: dict[str, Any] = {"name": annotation.label}
        if annotation.label in colors:
            classification["color"] = [int(c) for c in colors[annotation.label]]
        features.append({
            "type": "Feature",
            "geometry": _exact_geometry(annotation.geometry),
            "properties": {"objectType": "annotation", "name": annotation.name, "classification": classification,
                           **(properties[i] if properties is not None else {})},
        })
    return {"type": "FeatureCollection", "features": features}


def write_geojson(
    polygons: Iterable[BaseGeometry] | BaseGeometry,
    path: str | Path,
    *,
    classification: str = "Tumor",
    id_namespace: str | None = None,
) -> None:
    """Write polygons as a QuPath-style GeoJSON FeatureCollection.

    One Feature per Polygon (holes kept) with
    ``properties.classification.name = classification``; JSON writes floats
    with ``repr``, so coordinates read back exactly.  With ``id_namespace``,
    each feature also gets what QuPath writes for an annotation: a UUID (derived
    from the namespace and its index, so the file is deterministic), a name
    "Annotation i" and the class colour.
    """
    features = []
    for i, polygon in enumerate(_polygons(polygons)):
        feature: dict[str, Any] = {
            "type": "Feature",
            "geometry": _exact_geometry(polygon),
            "properties": {"objectType": "annotation", "classification": {"name": classification}},
        }
        if id_namespace is not None:
            feature["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sua:{id_namespace}:{i}"))
            feature["properties"]["name"] = f"Annotation {i}"
            feature["properties"]["classification"]["color"] = [200, 0, 0]
            feature["properties"]["isLocked"] = False
        features.append(feature)
    Path(path).write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")


def _wkt(geometry: Polygon | MultiPolygon) -> str:
    """WKT with every coordinate written by ``repr`` (shapely's writer rounds the last digit away)."""

    def rings(polygon: Polygon) -> str:
        return ", ".join("(" + ", ".join(f"{x!r} {y!r}" for x, y in ((float(x), float(y)) for x, y, *_ in ring.coords))
                         + ")" for ring in (polygon.exterior, *polygon.interiors))

    if isinstance(geometry, MultiPolygon):
        return "MULTIPOLYGON (" + ", ".join(f"({rings(p)})" for p in geometry.geoms) + ")"
    return f"POLYGON ({rings(geometry)})"


def annotations_csv(annotations: Sequence[Annotation], *, columns: Sequence[Mapping[str, Any]] | None = None) -> str:
    """A CSV table of labelled annotations, one row each, that :func:`read_csv` reads back exactly.

    Columns: ``name``, ``classification``, the keys of ``columns[i]`` (in order
    of first appearance; a row without one leaves it empty), and last
    ``geometry``, the outline as WKT in level-0 pixels (coordinates written
    with ``repr``).

    >>> print(annotations_csv([Annotation("Region 1", "Unsure", shapely.box(0, 0, 1, 1))], columns=[{"score": 0.5}]))
    name,classification,score,geometry
    Region 1,Unsure,0.5,"POLYGON ((1.0 0.0, 1.0 1.0, 0.0 1.0, 0.0 0.0, 1.0 0.0))"
    <BLANKLINE>
    """
    if columns is not None and len(columns) != len(annotations):
        raise ValueError(f"{len(columns)} column sets for {len(annotations)} annotations")
    extra = list(dict.fromkeys(key for row in columns or () for key in row))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["name", "classification", *extra, "geometry"])
    for i, annotation in enumerate(annotations):
        values = columns[i] if columns is not None else {}
        writer.writerow([annotation.name, annotation.label, *(values.get(key, "") for key in extra),
                         _wkt(annotation.geometry)])
    return out.getvalue()


# --------------------------------------------------------------------------- rasterisation


def _first_centre_at_or_after(value: np.ndarray, step: float) -> np.ndarray:
    """Smallest integer k with (k + 0.5) * step >= value, exactly.

    The division can be off by one ulp; one correction step each way against
    the multiplied centre (the quantity the rule is stated in) makes it exact.
    """
    k = np.ceil(value / step - 0.5)
    k -= ((k - 0.5) * step >= value).astype(k.dtype)
    k += ((k + 0.5) * step < value).astype(k.dtype)
    return k


def rasterize(geometry: BaseGeometry, *, shape: tuple[int, int], downsample: float) -> np.ndarray:
    """Rasterise polygons (holes respected) onto a heatmap grid.

    Grid pixel (r, c) at downsample ``d`` is True when its centre
    ((c + 0.5) d, (r + 0.5) d), in level-0 coordinates, lies inside
    ``geometry``.  A centre exactly on an edge follows the half-open
    (top-left) convention, so that two polygons sharing an edge never both
    claim a pixel.

    Scan-line even-odd fill: each ring edge is crossed with the centre rows it
    spans (vectorised over all edges), crossings are sorted per row and paired,
    and each pair fills the columns whose centres lie in [x_in, x_out).  Cost
    is O(crossings log crossings + H W), independent of the area's shape.

    Parameters
    ----------
    geometry
        Polygon, MultiPolygon or a collection; invalid input is repaired and
        overlapping parts merged first (even-odd needs disjoint parts).
    shape
        (H, W) of the grid.
    downsample
        ``d``, the grid's downsample relative to level 0.

    Returns
    -------
    np.ndarray
        bool, shape (H, W).

    >>> rasterize(shapely.box(0, 0, 64, 32), shape=(2, 3), downsample=32).astype(int)
    array([[1, 1, 0],
           [0, 0, 0]])
    """
    height, width = int(shape[0]), int(shape[1])
    d = float(downsample)
    if not d > 0 or not np.isfinite(d):
        raise ValueError(f"downsample must be a positive number, got {downsample!r}")
    if height < 0 or width < 0:
        raise ValueError(f"shape must be non-negative, got {shape!r}")
    polygons = valid_multipolygon(geometry).geoms
    rings = [np.asarray(ring.coords, dtype=np.float64)[:, :2] for p in polygons for ring in (p.exterior, *p.interiors)]
    out_diff = np.zeros((height, width + 1), dtype=np.int8)
    rings = [ring for ring in rings if len(ring) >= 2]
    if not rings or height == 0 or width == 0:
        return np.zeros((height, width), dtype=bool)
    start = np.concatenate([ring[:-1] for ring in rings])
    end = np.concatenate([ring[1:] for ring in rings])
    x0, y0, x1, y1 = start[:, 0], start[:, 1], end[:, 0], end[:, 1]
    # Rows whose centre y is in [min(y0, y1), max(y0, y1)): half-open, so a
    # vertex on a centre line counts once and horizontal edges never.
    first = np.clip(_first_centre_at_or_after(np.minimum(y0, y1), d), 0, height).astype(np.int64)
    stop = np.clip(_first_centre_at_or_after(np.maximum(y0, y1), d), 0, height).astype(np.int64)
    counts = np.maximum(stop - first, 0)
    total = int(counts.sum())
    if total == 0:
        return np.zeros((height, width), dtype=bool)
    edge = np.repeat(np.arange(len(x0)), counts)
    offsets = np.cumsum(counts) - counts
    row = first[edge] + (np.arange(total) - offsets[edge])
    centre_y = (row + 0.5) * d
    ex0, ey0, ex1, ey1 = x0[edge], y0[edge], x1[edge], y1[edge]
    x = ex0 + (centre_y - ey0) * (ex1 - ex0) / (ey1 - ey0)
    order = np.lexsort((x, row))
    row, x = row[order], x[order]
    # Closed rings cross every centre line an even number of times, so
    # consecutive sorted crossings pair up row by row.
    row_in, x_in, x_out = row[0::2], x[0::2], x[1::2]
    col_in = np.clip(_first_centre_at_or_after(x_in, d), 0, width).astype(np.int64)
    col_out = np.clip(_first_centre_at_or_after(x_out, d), 0, width).astype(np.int64)
    np.add.at(out_diff, (row_in, col_in), 1)
    np.add.at(out_diff, (row_in, col_out), -1)
    # Spans of one row are disjoint, so the running sum is 0 or 1 and int8 is safe.
    return np.cumsum(out_diff, axis=1, dtype=np.int8)[:, :width] > 0


def mask_to_polygons(mask: np.ndarray, *, downsample: float) -> list[Polygon]:
    """Outline a binary mask as polygons along pixel edges, level-0 coordinates.

    Pixel (r, c) of a mask at downsample ``d`` covers
    [c d, (c + 1) d) x [r d, (r + 1) d); the polygons are the union of the
    covered squares (built from row runs, merged with a unary union), so
    ``rasterize(union(polygons), shape=mask.shape, downsample=d)`` gives the
    mask back exactly.  8-connected diagonal neighbours touch at a corner
    and come out as separate polygons.

    Parameters
    ----------
    mask
        (H, W), non-zero = inside.

    Returns
    -------
    list[Polygon]
        Valid, non-overlapping polygons (holes as interiors), collinear
        vertices removed.
    """
    binary = np.asarray(mask) != 0
    if binary.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {binary.shape}")
    d = float(downsample)
    if not d > 0 or not np.isfinite(d):
        raise ValueError(f"downsample must be a positive number, got {downsample!r}")
    if not binary.any():
        return []
    padded = np.zeros((binary.shape[0], binary.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = binary
    change = np.diff(padded, axis=1)
    run_rows, run_starts = np.nonzero(change == 1)
    _, run_stops = np.nonzero(change == -1)
    # Stack runs that repeat exactly on consecutive rows into one rectangle:
    # blocky masks then give far fewer boxes to the union.
    boxes = _stacked_runs(run_rows, run_starts, run_stops)
    squares = shapely.box(boxes[:, 1] * d, boxes[:, 0] * d, boxes[:, 2] * d, boxes[:, 3] * d)
    union = shapely.union_all(squares)
    union = shapely.simplify(union, 0.0)
    return _area_parts(union)


def _stacked_runs(rows: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Row runs (row, start, stop) merged vertically into (top, left, right, bottom) boxes."""
    order = np.lexsort((rows, stops, starts))
    rows, starts, stops = rows[order], starts[order], stops[order]
    # A new box begins where the span changes or the row is not the next one.
    new = np.ones(len(rows), dtype=bool)
    new[1:] = (starts[1:] != starts[:-1]) | (stops[1:] != stops[:-1]) | (rows[1:] != rows[:-1] + 1)
    group = np.cumsum(new) - 1
    first = np.flatnonzero(new)
    bottom = np.zeros(len(first), dtype=np.int64)
    np.maximum.at(bottom, group, rows + 1)
    return np.stack([rows[first], starts[first], stops[first], bottom], axis=1).astype(np.float64)
