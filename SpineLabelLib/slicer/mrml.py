"""MRML bridge: Slicer nodes <-> SpineLabelLib types, with exact geometry.

Runs inside 3D Slicer and on Slicer's MRML libraries without Qt (the ``slicer-core``
wheel); it imports ``slicer`` and ``vtk`` when this module is imported, which
``import SpineLabelLib`` never does.

Geometry conventions
--------------------
* A volume node keeps voxels in a ``vtkImageData`` whose memory runs i fastest, then j,
  then k: as a numpy array that is shape ``(k, j, i)``. :class:`~SpineLabelLib.image.Image`
  holds ``(i, j, k)``. The conversion is a transpose, never a resampling.
* A volume node's ``IJKToRAS`` matrix maps voxel indices to the RAS mm coordinates of its
  parent transform's space. ``Image.affine`` maps voxel indices to *world* RAS mm. By
  default the functions here compose linear parent transforms into (or out of) the
  affine, so what the library sees is what Slicer displays; a non-linear transform is an
  error (it has no affine), harden it first.
* Markups control points are world RAS mm; centroid dicts hold ``{VerSe value: (i, j, k)}``
  on the grid of an Image, as everywhere in SpineLabelLib.

Segmentations
-------------
One segment per vertebra, named with the VerSe name (``C1`` ... ``L6``, ``T13``,
``sacrum``, ``coccyx``), coloured with the VerSe colour, and tagged with a SNOMED CT
terminology entry in Slicer's serialized format (see :func:`terminology_entry`). Import
and export go through Slicer's own ``vtkSlicerSegmentationsModuleLogic`` labelmap import
and export (the same code as the Segmentations module), with a colour table built from
:mod:`SpineLabelLib.labels` mapping segment names to VerSe values.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Iterable, Mapping

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from .. import labels
from ..errors import SpineLabelError, SpineLabelInputError
from ..image import Image, apply_affine

#: Name of the colour table node holding the VerSe label table.
VERSE_COLOR_TABLE_NAME = "VerSe vertebrae"
#: Terminology context of the entries written by :func:`terminology_entry`: the DICOM
#: master list, whose "Anatomical Structure" category holds the vertebra codes (CID 7151).
TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
CATEGORY_ANATOMICAL_STRUCTURE = ("SCT", "123037004", "Anatomical Structure")
#: Node attribute that marks a segmentation node as holding VerSe vertebra segments.
VERSE_ATTRIBUTE = "SpineLabel.VerSe"

# numpy dtypes VTK stores without surprises; others are converted (exactly) or refused.
_VTK_SAFE = {np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.float32, np.float64)}


# ----------------------------------------------------------------------------------
# matrices and transforms
# ----------------------------------------------------------------------------------
def vtk_matrix(affine) -> "vtk.vtkMatrix4x4":
    """4x4 numpy array -> ``vtkMatrix4x4``."""
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"expected a 4x4 matrix, got shape {affine.shape}")
    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(affine[r, c]))
    return m


def numpy_matrix(matrix: "vtk.vtkMatrix4x4") -> np.ndarray:
    """``vtkMatrix4x4`` -> 4x4 float64 numpy array."""
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=np.float64)


def node_to_world(node) -> np.ndarray:
    """4x4 matrix from a transformable node's local coordinates to world RAS.

    The identity when the node has no parent transform. Raises :class:`SpineLabelError`
    when the chain of parent transforms is not linear.
    """
    parent = node.GetParentTransformNode()
    if parent is None:
        return np.eye(4)
    m = vtk.vtkMatrix4x4()
    if not slicer.vtkMRMLTransformNode.GetMatrixTransformBetweenNodes(parent, None, m):
        raise SpineLabelError(
            f"{node.GetName()}: is under the non-linear transform {parent.GetName()!r}; "
            "harden the transform first (Data module: right-click > Harden transform)"
        )
    return numpy_matrix(m)


# ----------------------------------------------------------------------------------
# volumes
# ----------------------------------------------------------------------------------
def _vtk_storable(array: np.ndarray, source) -> np.ndarray:
    """The array in a dtype VTK stores exactly (bool -> uint8, int64 -> int32 if it fits...)."""
    dtype = array.dtype
    if dtype in _VTK_SAFE:
        return array
    if dtype == np.bool_:
        return array.astype(np.uint8)
    if dtype == np.float16:
        return array.astype(np.float32)
    if np.issubdtype(dtype, np.integer):
        lo, hi = (int(array.min()), int(array.max())) if array.size else (0, 0)
        for cand in (np.int16, np.int32) if lo < 0 else (np.uint8, np.uint16, np.int32, np.uint32):
            info = np.iinfo(cand)
            if info.min <= lo and hi <= info.max:
                return array.astype(cand)
        raise SpineLabelInputError(source, f"holds {dtype} values {lo}..{hi} that no 32-bit VTK voxel type stores exactly")
    raise SpineLabelInputError(source, f"voxel type {dtype} cannot be stored in a Slicer volume")


def image_to_vtk(image: Image) -> "vtk.vtkImageData":
    """The voxels of ``image`` as a ``vtkImageData`` (origin 0, spacing 1, i fastest).

    Geometry lives in the volume node's IJKToRAS matrix, not in the image data.
    """
    array = _vtk_storable(image.array, image.source)
    flat = np.ascontiguousarray(array.transpose(2, 1, 0)).ravel()  # (k, j, i) memory: i fastest
    scalars = numpy_support.numpy_to_vtk(flat, deep=True, array_type=numpy_support.get_vtk_array_type(flat.dtype))
    scalars.SetName("ImageScalars")
    data = vtk.vtkImageData()
    data.SetDimensions(*image.shape)
    data.GetPointData().SetScalars(scalars)
    return data


def image_to_volume_node(image: Image, scene, name: str | None = None, node=None, labelmap: bool = False):
    """Put ``image`` into a volume node (a new one in ``scene``, or ``node``), exactly.

    Voxel values and dtype are kept (bool and 64-bit integers are stored in the smallest
    exact VTK type). When ``node`` sits under a linear transform, its IJKToRAS is set so
    that the node's *world* geometry equals ``image.affine``. A new node is a
    ``vtkMRMLLabelMapVolumeNode`` when ``labelmap`` is true, else a scalar volume; no
    display node is created (call ``node.CreateDefaultDisplayNodes()`` in the GUI).
    """
    if node is None:
        cls = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
        node = scene.AddNewNodeByClass(cls, name or _default_name(image))
    elif name:
        node.SetName(name)
    local = np.linalg.inv(node_to_world(node)) @ image.affine
    node.SetIJKToRASMatrix(vtk_matrix(local))
    node.SetAndObserveImageData(image_to_vtk(image))
    return node


def _default_name(image: Image) -> str:
    if not image.source:
        return "volume"
    name = str(image.source).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".nii.gz", ".seg.nrrd", ".nii", ".nrrd", ".mha", ".mhd"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def volume_node_to_image(node, world: bool = True) -> Image:
    """A volume node's voxels and geometry as an :class:`Image` (a copy of the voxels).

    ``world=True`` (default) composes the node's linear parent transforms into the affine
    (the geometry Slicer displays); ``world=False`` gives the node's own IJKToRAS.
    """
    data = node.GetImageData()
    name = node.GetName()
    if data is None or data.GetPointData() is None or data.GetPointData().GetScalars() is None:
        raise SpineLabelInputError(name, "volume node has no voxels")
    if data.GetNumberOfScalarComponents() != 1:
        raise SpineLabelInputError(name, f"has {data.GetNumberOfScalarComponents()} components per voxel; expected a scalar volume")
    dims = data.GetDimensions()
    array = numpy_support.vtk_to_numpy(data.GetPointData().GetScalars())
    array = np.array(array.reshape(dims[::-1]).transpose(2, 1, 0))  # (k, j, i) memory -> (i, j, k) copy
    ijk_to_ras = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(ijk_to_ras)
    affine = numpy_matrix(ijk_to_ras)
    extent_start = np.array(data.GetExtent()[::2], dtype=np.float64)
    if np.any(extent_start):  # voxel (0,0,0) of the array is index extent_start of the node
        affine[:3, 3] = apply_affine(affine, extent_start)
    if world:
        affine = node_to_world(node) @ affine
    return Image(array, affine, source=name)


def world_to_ijk(volume_node, ras) -> np.ndarray:
    """World RAS mm (shape (3,) or (N, 3)) -> fractional voxel indices (i, j, k) of
    ``volume_node``, respecting its linear parent transforms."""
    affine = node_to_world(volume_node) @ _ijk_to_ras(volume_node)
    return apply_affine(np.linalg.inv(affine), ras)


def ijk_to_world(volume_node, ijk) -> np.ndarray:
    """Voxel indices (i, j, k) of ``volume_node`` -> world RAS mm (parent transforms respected)."""
    return apply_affine(node_to_world(volume_node) @ _ijk_to_ras(volume_node), ijk)


def _ijk_to_ras(volume_node) -> np.ndarray:
    m = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(m)
    return numpy_matrix(m)


# ----------------------------------------------------------------------------------
# terminology and colours
# ----------------------------------------------------------------------------------
def terminology_entry(value_or_name: int | str) -> str:
    """Slicer's serialized terminology entry for a VerSe vertebra.

    Format (``vtkSlicerTerminologiesModuleLogic::SerializeTerminologyEntry``)::

        context~SCT^123037004^Anatomical Structure~SCT^<code>^<meaning>~^^~anatomic context~^^~^^

    with the SNOMED CT code and meaning of :mod:`SpineLabelLib.labels` (T13, L6 and the
    coccyx carry the generic vertebra code; their names tell them apart).
    """
    lab = labels.label(value_or_name)
    parts = [TERMINOLOGY_CONTEXT, _coded(CATEGORY_ANATOMICAL_STRUCTURE),
             _coded((labels.SNOMED_SCHEME, lab.snomed_code, lab.snomed_meaning)), "^^", ANATOMIC_CONTEXT, "^^", "^^"]
    return "~".join(parts)


def _coded(triple: tuple[str, str, str]) -> str:
    for text in triple:
        if any(sep in text for sep in "~^|"):
            raise ValueError(f"terminology text {text!r} contains a separator (~, ^ or |)")
    scheme, code, meaning = triple
    return f"{scheme}^{code}^{meaning}"


def parse_terminology_entry(entry: str) -> dict:
    """Split a serialized terminology entry into its parts.

    Returns ``{"context", "category", "type", "type_modifier", "anatomic_context",
    "region", "region_modifier"}``; each coded part is a ``(scheme, code, meaning)``
    tuple. Raises ValueError for a string that is not a 7-part entry.
    """
    parts = entry.split("~")
    if len(parts) != 7:
        raise ValueError(f"not a terminology entry (expected 7 '~'-separated parts): {entry!r}")

    def coded(text: str):
        fields = text.split("^")
        if len(fields) != 3:
            raise ValueError(f"not a coded entry (scheme^code^meaning): {text!r}")
        return tuple(fields)

    return {
        "context": parts[0], "category": coded(parts[1]), "type": coded(parts[2]),
        "type_modifier": coded(parts[3]), "anatomic_context": parts[4],
        "region": coded(parts[5]), "region_modifier": coded(parts[6]),
    }


def verse_color_table_node(scene):
    """The scene's VerSe colour table node (created on first use, then reused).

    Index = VerSe value, colour name = VerSe name, colour = VerSe colour; indices that are
    not VerSe values are left undefined. The colours carry no terminology: Slicer's
    labelmap export matches segments to a table with terminology by terminology code, and
    T13, L6 and the coccyx share the generic vertebra code, so only names are unambiguous.
    """
    existing = scene.GetFirstNodeByName(VERSE_COLOR_TABLE_NAME)
    if existing is not None and existing.IsA("vtkMRMLColorTableNode"):
        return existing
    table = scene.AddNewNodeByClass("vtkMRMLColorTableNode", VERSE_COLOR_TABLE_NAME)
    fill_verse_color_table(table)
    return table


def fill_verse_color_table(table, names: Mapping[int, str] | None = None, terminology: bool = False) -> None:
    """Fill a ``vtkMRMLColorTableNode`` with the VerSe table.

    ``names`` overrides the colour name of some values (used to export segments whose
    names differ from the canonical spelling, e.g. ``"Sacrum"``). ``terminology=True``
    also sets each colour's SNOMED terminology (Slicer >= 5.8); never use such a table for
    export (see :func:`verse_color_table_node`).
    """
    names = dict(names or {})
    table.SetTypeToUser()
    size = max(labels.VERSE_VALUES) + 1
    table.SetNumberOfColors(size)
    table.SetColor(0, "background", 0.0, 0.0, 0.0, 0.0)
    for value in range(1, size):
        if value not in labels.VERSE_VALUES:
            table.SetColor(value, "", 0.0, 0.0, 0.0, 0.0)
            table.SetColorDefined(value, False)
    for lab in labels.LABELS:
        r, g, b = lab.color_float
        table.SetColor(lab.value, names.get(lab.value, lab.name), r, g, b, 1.0)
        if terminology and hasattr(table, "SetTerminology"):
            table.SetTerminology(lab.value, *CATEGORY_ANATOMICAL_STRUCTURE, labels.SNOMED_SCHEME, lab.snomed_code, lab.snomed_meaning)


def color_table_text() -> str:
    """The VerSe table in Slicer's colour table file format (``.ctbl``/``.txt``):
    one ``value name R G B A`` line per vertebra (0-255)."""
    lines = ["# VerSe vertebra labels (generated from SpineLabelLib.labels; do not edit)",
             "# value name R G B A", "0 background 0 0 0 0"]
    for lab in sorted(labels.LABELS, key=lambda lab: lab.value):
        lines.append(f"{lab.value} {lab.name} {lab.color[0]} {lab.color[1]} {lab.color[2]} 255")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------
# segmentations
# ----------------------------------------------------------------------------------
def vertebra_values(mask: Image) -> list[int]:
    """VerSe vertebra values present in ``mask`` (anatomical order).

    Raises :class:`SpineLabelInputError` for values that are no label at all; subregion
    (40-50) and disc (100+) values are not vertebrae and are left out with a warning.
    """
    from ..verse.layout import mask_value_problems

    errors, _ = mask_value_problems(mask)
    if errors:
        raise SpineLabelInputError(mask.source, "; ".join(errors))
    kinds = labels.classify_values(np.unique(mask.array).astype(np.int64))
    other = kinds["subregions"] + kinds["discs"]
    if other:
        warnings.warn(f"{mask.source}: values {other[:10]} are subregions/discs, not vertebrae; left out of the segmentation")
    return labels.sort_anatomical(kinds["vertebrae"])


def labelmap_to_segmentation_node(mask: Image, scene, node=None, name: str = "Vertebrae", reference_volume_node=None):
    """A segmentation node with one segment per vertebra of the VerSe labelmap ``mask``.

    The voxels go through Slicer's own labelmap import
    (``vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode``) on
    ``mask``'s grid; segments are named with VerSe names, coloured with VerSe colours and
    tagged with SNOMED terminology, in anatomical order (head first). An existing
    ``node`` loses all its segments first. The reference geometry is
    ``reference_volume_node`` when given (e.g. the CT), else the mask's grid. Returns the
    node; :func:`segment_ids_by_value` maps values to segment IDs.
    """
    values = vertebra_values(mask)
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentation = node.GetSegmentation()
    segmentation.RemoveAllSegments()
    array = np.where(np.isin(mask.array, values), mask.array, 0).astype(labels.mask_dtype(values), copy=False)
    temp = image_to_volume_node(Image(array, mask.affine, mask.source), scene, "__SpineLabel_import__", labelmap=True)
    table = scene.AddNewNodeByClass("vtkMRMLColorTableNode", "__SpineLabel_import_colors__")
    display = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeDisplayNode")
    try:
        fill_verse_color_table(table)
        display.SetAndObserveColorNodeID(table.GetID())
        temp.SetAndObserveDisplayNodeID(display.GetID())
        reference = reference_volume_node if reference_volume_node is not None else temp
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference)
        if values and not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(temp, node, ""):
            raise SpineLabelError(f"{mask.source}: Slicer's labelmap import into segmentation {node.GetName()!r} failed")
    finally:
        for helper in (temp, display, table):
            scene.RemoveNode(helper)
    if reference_volume_node is not None:
        node.SetNodeReferenceID(node.GetReferenceImageGeometryReferenceRole(), reference_volume_node.GetID())
    _describe_segments(node, values)
    node.SetAttribute(VERSE_ATTRIBUTE, "1")
    return node


def _describe_segments(node, values: Iterable[int]) -> None:
    """Name, colour, terminology and order of imported segments (matched by label value)."""
    segmentation = node.GetSegmentation()
    by_value = {}
    for seg_id in segmentation.GetSegmentIDs():
        segment = segmentation.GetSegment(seg_id)
        by_value[int(segment.GetLabelValue())] = seg_id
    missing = [v for v in values if v not in by_value]
    if missing:
        raise SpineLabelError(f"Slicer's import produced no segment for {[labels.name_of(v) for v in missing]}")
    for index, value in enumerate(values):
        lab = labels.label(value)
        seg_id = by_value[value]
        segment = segmentation.GetSegment(seg_id)
        segment.SetName(lab.name)
        segment.SetColor(*lab.color_float)
        segment.SetTag(segment.GetTerminologyEntryTagName(), terminology_entry(value))
        segment.SetTag(VERSE_ATTRIBUTE + ".Value", str(value))
        segmentation.SetSegmentIndex(seg_id, index)


def segment_tag(segment, tag: str) -> str | None:
    """A segment's tag value, or None when the segment has no such tag."""
    value = vtk.reference("")
    return str(value) if segment.GetTag(tag, value) else None


def segment_value(segment) -> int:
    """VerSe value of a segment, from its name (``"L1"``, ``"sacrum"``, case-insensitive).

    Raises :class:`SpineLabelInputError` naming the segment when the name is no VerSe name.
    """
    name = segment.GetName()
    try:
        return labels.value_of(name)
    except KeyError:
        valid = ", ".join(lab.name for lab in labels.LABELS)
        raise SpineLabelInputError(name, f"segment name is not a VerSe vertebra name ({valid})") from None


def segment_ids_by_value(node) -> dict[int, str]:
    """``{VerSe value: segment ID}`` of a segmentation node's vertebra segments.

    Segments whose names are not VerSe names are ignored here; two segments with the same
    vertebra name are an error.
    """
    out: dict[int, str] = {}
    segmentation = node.GetSegmentation()
    for seg_id in segmentation.GetSegmentIDs():
        segment = segmentation.GetSegment(seg_id)
        try:
            value = labels.value_of(segment.GetName())
        except KeyError:
            continue
        if value in out:
            raise SpineLabelInputError(node.GetName(), f"has two segments named {labels.name_of(value)}")
        out[value] = seg_id
    return out


@contextlib.contextmanager
def _temporary_nodes(scene):
    """Remove every node added to ``scene`` inside the block (helper volumes, their
    display and colour nodes), also when the block raises."""
    before = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
    try:
        yield
    finally:
        added = [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]
        for extra in [n for n in added if n.GetID() not in before]:
            if scene.IsNodePresent(extra):
                scene.RemoveNode(extra)


def segmentation_node_to_labelmap(node, reference_volume_node, world: bool = True) -> Image:
    """Export a segmentation's vertebra segments as a VerSe labelmap on the grid of
    ``reference_volume_node`` (typically the CT), through Slicer's own
    ``ExportSegmentsToLabelmapNode`` with a VerSe colour table (segment name -> value).

    Every segment must carry a VerSe name (an error names the first that does not).
    Where segments overlap, Slicer's export order decides (later segments win); use
    :func:`overlapping_segments` to find such voxels first. The Image's affine is the
    reference volume's world geometry (``world=True``) or its IJKToRAS.
    """
    scene = node.GetScene()
    if scene is None:
        raise SpineLabelError(f"{node.GetName()}: segmentation node is not in a scene")
    segmentation = node.GetSegmentation()
    seg_ids = list(segmentation.GetSegmentIDs())
    names = {}
    for seg_id in seg_ids:
        segment = segmentation.GetSegment(seg_id)
        value = segment_value(segment)
        if value in names:
            raise SpineLabelInputError(node.GetName(), f"has two segments named {labels.name_of(value)}")
        names[value] = segment.GetName()
    reference = volume_node_to_image(reference_volume_node, world=world)
    if not seg_ids:
        return reference.with_array(np.zeros(reference.shape, np.uint8), source=node.GetName())
    ids = vtk.vtkStringArray()
    for seg_id in seg_ids:
        ids.InsertNextValue(seg_id)
    with _temporary_nodes(scene):
        out = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__SpineLabel_export__")
        table = scene.AddNewNodeByClass("vtkMRMLColorTableNode", "__SpineLabel_export_colors__")
        fill_verse_color_table(table, names)
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            node, ids, out, reference_volume_node, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY, table
        )
        if not ok:
            raise SpineLabelError(f"{node.GetName()}: Slicer's labelmap export failed")
        exported = volume_node_to_image(out, world=False)
    if exported.shape != reference.shape:
        raise SpineLabelError(f"{node.GetName()}: export grid {exported.shape} differs from the reference {reference.shape}")
    values = sorted(names)
    return reference.with_array(exported.array.astype(labels.mask_dtype(values), copy=False), source=node.GetName())


def overlapping_segments(node, reference_volume_node) -> dict[tuple[str, str], int]:
    """Voxel counts where two vertebra segments overlap on the reference grid.

    A VerSe mask holds one label per voxel, so overlaps must be resolved before export.
    Each segment is exported on its own (Slicer's export), so this costs one export per
    segment; returns ``{(name_a, name_b): voxels}`` for the pairs that overlap.
    """
    scene = node.GetScene()
    masks = {}
    for value, seg_id in segment_ids_by_value(node).items():
        ids = vtk.vtkStringArray()
        ids.InsertNextValue(seg_id)
        with _temporary_nodes(scene):
            out = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__SpineLabel_overlap__")
            if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                node, ids, out, reference_volume_node, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY
            ):
                raise SpineLabelError(f"{node.GetName()}: Slicer's labelmap export of {labels.name_of(value)} failed")
            masks[value] = volume_node_to_image(out, world=False).array != 0
    ordered = labels.sort_anatomical(masks)
    found = {}
    for a_index, a in enumerate(ordered):
        for b in ordered[a_index + 1:]:
            count = int(np.count_nonzero(masks[a] & masks[b]))
            if count:
                found[(labels.name_of(a), labels.name_of(b))] = count
    return found


# ----------------------------------------------------------------------------------
# markups
# ----------------------------------------------------------------------------------
def centroids_to_markups(centroids_ijk: Mapping[int, Iterable[float]], grid: Image, scene, node=None, name: str = "Centroids"):
    """A point list with one control point per centroid, labelled with the VerSe name.

    ``centroids_ijk`` holds ``{VerSe value: (i, j, k)}`` on ``grid`` (an Image or anything
    with ``affine``); positions are set in world RAS mm (the node's parent transforms are
    respected). An existing ``node`` loses its points first. Points are in anatomical
    order, head first.
    """
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    node.RemoveAllControlPoints()
    for value in labels.sort_anatomical(centroids_ijk):
        ijk = np.asarray(centroids_ijk[value], dtype=np.float64)
        if ijk.shape != (3,) or not np.all(np.isfinite(ijk)):
            raise ValueError(f"centroid of {labels.name_of(value)} is not a finite (i, j, k): {ijk}")
        ras = apply_affine(grid.affine, ijk)
        index = node.AddControlPointWorld([float(x) for x in ras], labels.name_of(value))
        node.SetNthControlPointDescription(index, f"VerSe {value}")
    node.SetAttribute(VERSE_ATTRIBUTE, "1")
    return node


def markups_to_centroids(node, grid: Image) -> dict[int, np.ndarray]:
    """``{VerSe value: (i, j, k)}`` on ``grid`` from a point list labelled with VerSe names.

    Uses world positions (parent transforms respected). A point whose label is not a VerSe
    name, or two points with the same name, are errors naming the point.
    """
    inverse = np.linalg.inv(grid.affine)
    out: dict[int, np.ndarray] = {}
    for index in range(node.GetNumberOfControlPoints()):
        point_label = node.GetNthControlPointLabel(index)
        try:
            value = labels.value_of(point_label)
        except KeyError:
            raise SpineLabelInputError(
                f"{node.GetName()} point {index + 1}", f"label {point_label!r} is not a VerSe vertebra name"
            ) from None
        if value in out:
            raise SpineLabelInputError(node.GetName(), f"has two points labelled {labels.name_of(value)}")
        ras = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(index, ras)
        out[value] = apply_affine(inverse, np.asarray(ras, dtype=np.float64))
    return out


# ----------------------------------------------------------------------------------
# oriented image data (Segment Editor effects)
# ----------------------------------------------------------------------------------
def image_to_oriented_image_data(image: Image, node=None) -> "slicer.vtkOrientedImageData":
    """``image`` as a ``vtkOrientedImageData`` in the local coordinates of ``node``.

    Segment Editor effects hand labelmaps to Slicer in the segmentation node's coordinate
    system: pass the segmentation node so that its linear parent transforms are taken out
    (``image.affine`` is world RAS). Voxels are copied, not resampled.
    """
    oriented = slicer.vtkOrientedImageData()
    oriented.ShallowCopy(image_to_vtk(image))
    local = image.affine if node is None else np.linalg.inv(node_to_world(node)) @ image.affine
    oriented.SetImageToWorldMatrix(vtk_matrix(local))
    return oriented
