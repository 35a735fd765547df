"""Drawn shapes <-> a Microscopy Bulk Simple Annotations instance (highdicom).

Shapes arrive in the pixel coordinates of a slide's full-resolution image and are stored in the
slide's frame of reference (3D, millimetres on the slide), so they apply to every level of the
pyramid; reading maps them back to that image's pixels. One annotation group per (kind, label).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

ANN_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.91.1"
# PS3.16: what is annotated stays generic (tissue); the label says what the pathologist meant.
CATEGORY = Code("91723000", "SCT", "Anatomical structure")
PROPERTY = Code("85756007", "SCT", "Tissue")
LENGTH = Code("410668003", "SCT", "Length")
AREA = Code("42798000", "SCT", "Area")
MICROMETRE = Code("um", "UCUM", "micrometer")
SQUARE_MILLIMETRE = Code("mm2", "UCUM", "square millimeter")
GRAPHIC_TYPES = {
    "point": "POINT",
    "line": "POLYLINE",
    "rectangle": "RECTANGLE",
    "polygon": "POLYGON",
}
KINDS = {graphic: kind for kind, graphic in GRAPHIC_TYPES.items()}
MAX_SHAPES = 5000
MAX_POLYGON_POINTS = 5000
MAX_LABEL = 64  # LO


class ShapeError(ValueError):
    """A drawn shape that cannot be stored; the message says which and why."""


@dataclass(frozen=True)
class Shape:
    kind: str  # point | line | rectangle | polygon
    label: str
    points: tuple[tuple[float, float], ...]  # full-resolution pixels (column, row)


def shapes_from_json(items: object, width: int, height: int) -> list[Shape]:
    """Validate the viewer's shapes: known kinds, the right number of points, inside the image."""
    if not isinstance(items, list) or len(items) > MAX_SHAPES:
        raise ShapeError(f"annotations must be a list of at most {MAX_SHAPES} shapes")
    wanted = {
        "point": (1, 1),
        "line": (2, 2),
        "rectangle": (2, 2),
        "polygon": (3, MAX_POLYGON_POINTS),
    }
    shapes = []
    for n, item in enumerate(items, start=1):
        if not isinstance(item, dict) or item.get("kind") not in wanted:
            raise ShapeError(f"shape {n}: kind must be one of {', '.join(wanted)}")
        label = str(item.get("label") or item["kind"]).strip()
        if len(label) > MAX_LABEL or any(c in label for c in "\\\r\n"):
            raise ShapeError(f"shape {n}: label must be one line of at most {MAX_LABEL} characters")
        points = item.get("points")
        try:
            xy = tuple((float(x), float(y)) for x, y in points)
        except (TypeError, ValueError):
            raise ShapeError(f"shape {n}: points must be [[x, y], ...] numbers") from None
        if item["kind"] == "polygon":
            xy = _open_outline(xy)
        low, high = wanted[item["kind"]]
        if not low <= len(xy) <= high:
            count = str(low) if low == high else f"{low} to {high}"
            raise ShapeError(f"shape {n}: a {item['kind']} has {count} point(s)")
        if not all(0 <= x <= width and 0 <= y <= height for x, y in xy):
            raise ShapeError(f"shape {n}: points must lie within the {width} x {height} image")
        shapes.append(Shape(item["kind"], label, xy))
    return shapes


def build(
    image: Dataset,
    shapes: list[Shape],
    creator: str,
    series_uid: str | None,
    instance_number: int,
) -> Dataset:
    """The annotation instance for ``shapes`` drawn on ``image`` (a VOLUME instance's header)."""
    to_slide = hd.spatial.ImageToReferenceTransformer.for_image(image, for_total_pixel_matrix=True)
    groups = []
    for number, ((kind, label), members) in enumerate(_grouped(shapes), start=1):
        graphic = [to_slide(_outline(s)) for s in members]
        groups.append(
            hd.ann.AnnotationGroup(
                number=number,
                uid=generate_uid(),
                label=label,
                annotated_property_category=CATEGORY,
                annotated_property_type=PROPERTY,
                graphic_type=GRAPHIC_TYPES[kind],
                graphic_data=graphic,
                algorithm_type="MANUAL",
                measurements=_measurements(kind, graphic),
            )
        )
    return hd.ann.MicroscopyBulkSimpleAnnotations(
        source_images=[image],
        annotation_coordinate_type="3D",
        annotation_groups=groups,
        series_instance_uid=series_uid or generate_uid(),
        series_number=900,
        sop_instance_uid=generate_uid(),
        instance_number=instance_number,
        manufacturer="Tessera",
        manufacturer_model_name="Tessera slide viewer",
        software_versions="1",
        device_serial_number="none",
        content_description="Annotations drawn in the slide viewer",
        content_creator_name=f"{creator}^",  # a user name is one name component
        content_label="ANNOTATIONS",
    )


def read(annotations: Dataset, image: Dataset) -> list[dict]:
    """The shapes of a stored annotation instance, in ``image``'s full-resolution pixels."""
    ann = hd.ann.MicroscopyBulkSimpleAnnotations.from_dataset(annotations)
    to_pixels = hd.spatial.ReferenceToImageTransformer.for_image(image, for_total_pixel_matrix=True)
    shapes = []
    for group in ann.get_annotation_groups():
        kind = KINDS.get(group.graphic_type.value)
        if kind is None:
            continue  # drawn elsewhere (polygons, ellipses): not editable here
        for coordinates in group.get_graphic_data(coordinate_type="3D"):
            xy = to_pixels(np.asarray(coordinates))[:, :2]
            points = [xy[0], xy[2]] if kind == "rectangle" else list(xy)
            shapes.append(
                {
                    "kind": kind,
                    "label": group.label,
                    "points": [[round(float(x), 2), round(float(y), 2)] for x, y in points],
                }
            )
    return shapes


def creator(ds: Dataset) -> str:
    """The user name a set was saved under."""
    name = ds.get("ContentCreatorName")
    return name.family_name if name else ""


def saved_at(ds: Dataset) -> datetime:
    stamp = f"{ds.get('ContentDate', '')}{str(ds.get('ContentTime', '')).split('.')[0]}"
    try:
        return datetime.strptime(stamp, "%Y%m%d%H%M%S")
    except ValueError:
        return datetime.min


def _open_outline(points: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
    """A freehand outline without repeated points, nor the closing point a hand draws back to
    the start: an annotation polygon closes itself, and may not repeat its first point."""
    kept: list[tuple[float, float]] = []
    for point in points:
        if not kept or point != kept[-1]:
            kept.append(point)
    while len(kept) > 1 and kept[-1] == kept[0]:
        kept.pop()
    return tuple(kept)


def _grouped(shapes: Iterable[Shape]) -> list[tuple[tuple[str, str], list[Shape]]]:
    groups: dict[tuple[str, str], list[Shape]] = {}
    for shape in shapes:
        groups.setdefault((shape.kind, shape.label), []).append(shape)
    return list(groups.items())


def _outline(shape: Shape) -> np.ndarray:
    if shape.kind == "rectangle":  # the four corners, as RECTANGLE wants them
        (x0, y0), (x1, y1) = shape.points
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=float)
    return np.array(shape.points, dtype=float)


def _measurements(kind: str, shapes: list[np.ndarray]) -> list[hd.ann.Measurements] | None:
    """Lines get their length in micrometres, regions their area in square millimetres (slide
    coordinates are millimetres); points get nothing."""
    if kind == "line":
        lengths = np.array([float(np.linalg.norm(s[1] - s[0])) * 1000 for s in shapes])
        return [hd.ann.Measurements(name=LENGTH, values=lengths, unit=MICROMETRE)]
    if kind in ("rectangle", "polygon"):
        areas = np.array([_area(s) for s in shapes])
        return [hd.ann.Measurements(name=AREA, values=areas, unit=SQUARE_MILLIMETRE)]
    return None


def _area(outline: np.ndarray) -> float:
    """Shoelace area of a closed outline on the slide plane (x, y in mm)."""
    x, y = outline[:, 0], outline[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)
