"""The MRML bridge on Slicer's real MRML and segmentation libraries (the slicer-core wheel).

These tests must run in CI: a missing slicer-core is an import error here (collection
fails), never a skip. Geometry is checked against independent code paths: Slicer's own
NRRD writer read back by SimpleITK, Slicer's own NIfTI reader, Slicer's own labelmap
import/export and terminology serializer.
"""
from __future__ import annotations

import numpy as np
import pytest
import slicer  # slicer-core: required, never skipped
import vtk

from conftest import DATA, ROOT, oblique_affine
from SpineLabelLib import labels
from SpineLabelLib.errors import SpineLabelError, SpineLabelInputError
from SpineLabelLib.image import Image, load_image, map_to_grid_exactly, reorient, save_nifti
from SpineLabelLib.slicer import mrml
from SpineLabelLib.synthetic import make_phantom

TS = DATA / "totalseg_example"


@pytest.fixture(scope="module")
def real_case():
    """The real abdominal CT (RAS, 122x101x112, int32) and its TotalSegmentator vertebrae in VerSe values."""
    ct = load_image(TS / "ct.nii.gz")
    ts = load_image(TS / "seg_totalseg_labels.nii.gz")
    mask = ts.with_array(labels.totalseg_to_verse(ts.array), source="totalseg->verse")
    assert set(np.unique(mask.array)) == {0, 18, 19, 20, 21, 22, 23, 24, 26}
    return ct, mask


def geometry(name: str, ct: Image, mask: Image) -> tuple[Image, Image]:
    """The same real data in another storage geometry: LAS / LPS (exact reorientations of
    the voxel lattice) or an oblique affine (rotated, shifted)."""
    if name == "RAS":
        return ct, mask
    if name in ("LAS", "LPS", "PIR"):
        return reorient(ct, tuple(name)), reorient(mask, tuple(name))
    if name == "oblique":
        affine = oblique_affine((3.0, 2.5, 3.5), origin=(-110.5, 37.25, 12.0), degrees=23.0)
        return Image(ct.array, affine, "oblique ct"), Image(mask.array, affine, "oblique mask")
    raise ValueError(name)


@pytest.fixture
def scene():
    return slicer.vtkMRMLScene()


def test_slicer_core_provides_the_classes_the_bridge_uses():
    for cls in ("vtkMRMLScene", "vtkMRMLScalarVolumeNode", "vtkMRMLLabelMapVolumeNode", "vtkMRMLSegmentationNode",
                "vtkSegmentation", "vtkSegment", "vtkOrientedImageData", "vtkSlicerSegmentationsModuleLogic",
                "vtkMRMLMarkupsFiducialNode", "vtkMRMLColorTableNode", "vtkMRMLTransformNode",
                "vtkSlicerTerminologiesModuleLogic", "vtkMRMLVolumeArchetypeStorageNode"):
        assert hasattr(slicer, cls), cls


# ----------------------------------------------------------------------------------
# volumes
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("geom", ["RAS", "LAS", "LPS", "PIR", "oblique"])
def test_volume_round_trip_is_exact(real_case, scene, geom):
    ct, _ = geometry(geom, *real_case)
    node = mrml.image_to_volume_node(ct, scene, "ct")
    # IJKToRAS is the affine; the vtkImageData has origin 0 / spacing 1 and i-fastest memory
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    np.testing.assert_allclose(mrml.numpy_matrix(m), ct.affine, rtol=0, atol=1e-9)
    data = node.GetImageData()
    assert data.GetDimensions() == ct.shape
    rng = np.random.default_rng(1)
    for ijk in rng.integers(0, ct.shape, size=(50, 3)):
        assert data.GetScalarComponentAsDouble(*(int(x) for x in ijk), 0) == ct.array[tuple(ijk)]
    back = mrml.volume_node_to_image(node)
    assert back.array.dtype == ct.array.dtype and back.shape == ct.shape
    assert np.array_equal(back.array, ct.array)
    np.testing.assert_allclose(back.affine, ct.affine, rtol=0, atol=1e-9)
    # Slicer's own RAS->IJK agrees with the bridge
    node.GetRASToIJKMatrix(m)
    np.testing.assert_allclose(mrml.numpy_matrix(m), np.linalg.inv(ct.affine), rtol=0, atol=1e-9)


@pytest.mark.parametrize("geom", ["LPS", "oblique"])
def test_volume_node_written_by_slicer_reads_back_identically(real_case, scene, tmp_path, geom):
    """Slicer's NRRD writer (LPS on disk) read by SimpleITK gives the same Image: the
    IJKToRAS the bridge sets means what the library's affine means."""
    ct, _ = geometry(geom, *real_case)
    node = mrml.image_to_volume_node(ct, scene, "ct")
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(tmp_path / "ct.nrrd"))
    assert storage.WriteData(node)
    written = load_image(tmp_path / "ct.nrrd")
    assert np.array_equal(written.array, ct.array)
    np.testing.assert_allclose(written.affine, ct.affine, rtol=0, atol=1e-6)


@pytest.mark.parametrize("geom", ["LAS", "oblique"])
def test_volume_read_by_slicer_matches_load_image(real_case, scene, tmp_path, geom):
    ct, _ = geometry(geom, *real_case)
    save_nifti(ct, tmp_path / "ct.nii.gz")
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(tmp_path / "ct.nii.gz"))
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "read")
    assert storage.ReadData(node)
    image = mrml.volume_node_to_image(node)
    # Slicer's reader may store the slices in another order of the same lattice (LAS is
    # read as LAI): same voxels at the same world positions, which is what must agree.
    # ITK's NIfTI reader goes through the float32 header: geometry agrees to 1e-4 mm.
    on_grid = map_to_grid_exactly(image, ct, "Slicer-read volume")
    assert np.array_equal(on_grid.array, ct.array)
    corners = np.array([[0, 0, 0], np.asarray(image.shape) - 1.0])
    world = image.index_to_world(corners)
    np.testing.assert_allclose(ct.world_to_index(world), np.round(ct.world_to_index(world)), atol=1e-4)


def test_voxel_types_are_kept_or_stored_exactly(scene):
    affine = np.diag([0.5, 0.7, 2.0, 1.0])
    for dtype in (np.uint8, np.int16, np.uint16, np.int32, np.float32, np.float64):
        arr = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype) if np.issubdtype(dtype, np.signedinteger) or \
            np.issubdtype(dtype, np.floating) else np.arange(24, dtype=dtype).reshape(2, 3, 4)
        back = mrml.volume_node_to_image(mrml.image_to_volume_node(Image(arr, affine), scene))
        assert back.array.dtype == dtype and np.array_equal(back.array, arr)
    big = np.arange(24, dtype=np.int64).reshape(2, 3, 4) * 1000
    back = mrml.volume_node_to_image(mrml.image_to_volume_node(Image(big, affine), scene))
    assert back.array.dtype == np.uint16 and np.array_equal(back.array, big)
    mask = np.zeros((2, 3, 4), bool)
    mask[1, 2, 3] = True
    back = mrml.volume_node_to_image(mrml.image_to_volume_node(Image(mask, affine), scene))
    assert back.array.dtype == np.uint8 and np.array_equal(back.array, mask)
    with pytest.raises(SpineLabelInputError, match="no 32-bit VTK voxel type"):
        mrml.image_to_volume_node(Image(big * 10**8, affine, "huge.nii"), scene)


def test_extent_not_starting_at_zero_shifts_the_origin(scene):
    """A vtkImageData whose extent starts at (2, 3, 4) (e.g. after cropping) holds voxel
    index (2, 3, 4) of the node first: the Image origin is that voxel's position."""
    node = mrml.image_to_volume_node(Image(np.arange(60, dtype=np.int16).reshape(3, 4, 5), oblique_affine((1, 2, 3))), scene)
    data = node.GetImageData()
    data.SetExtent(2, 4, 3, 6, 4, 8)
    image = mrml.volume_node_to_image(node)
    np.testing.assert_allclose(image.origin, mrml.ijk_to_world(node, [2, 3, 4]), atol=1e-9)
    np.testing.assert_allclose(image.affine[:3, :3], oblique_affine((1, 2, 3))[:3, :3], atol=1e-12)


def test_linear_parent_transforms_are_respected(real_case, scene):
    ct, _ = geometry("oblique", *real_case)
    node = mrml.image_to_volume_node(ct, scene, "ct")
    to_parent = np.eye(4)
    to_parent[:3, :3] = oblique_affine((1, 1, 1), degrees=-31.0)[:3, :3]
    to_parent[:3, 3] = (5.0, -7.5, 30.0)
    outer = np.eye(4)
    outer[:3, 3] = (0.0, 100.0, 0.0)
    t_inner = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "inner")
    t_outer = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "outer")
    t_inner.SetMatrixTransformToParent(mrml.vtk_matrix(to_parent))
    t_outer.SetMatrixTransformToParent(mrml.vtk_matrix(outer))
    t_inner.SetAndObserveTransformNodeID(t_outer.GetID())
    node.SetAndObserveTransformNodeID(t_inner.GetID())
    world = outer @ to_parent @ ct.affine
    np.testing.assert_allclose(mrml.volume_node_to_image(node).affine, world, atol=1e-9)
    np.testing.assert_allclose(mrml.volume_node_to_image(node, world=False).affine, ct.affine, atol=1e-9)
    ijk = np.array([[10.0, 20.5, 30.0], [0, 0, 0]])
    ras = ijk @ world[:3, :3].T + world[:3, 3]
    np.testing.assert_allclose(mrml.ijk_to_world(node, ijk), ras, atol=1e-9)
    np.testing.assert_allclose(mrml.world_to_ijk(node, ras), ijk, atol=1e-9)
    # writing an Image into a transformed node gives the node that world geometry
    mrml.image_to_volume_node(ct, scene, node=node)
    np.testing.assert_allclose(mrml.volume_node_to_image(node).affine, ct.affine, atol=1e-9)


def test_non_linear_transform_is_refused(scene):
    node = mrml.image_to_volume_node(Image(np.zeros((3, 3, 3), np.int16), np.eye(4)), scene, "warped")
    tps = vtk.vtkThinPlateSplineTransform()
    src, dst = vtk.vtkPoints(), vtk.vtkPoints()
    for p, q in (((0, 0, 0), (0, 0, 1)), ((10, 0, 0), (10, 1, 0)), ((0, 10, 0), (0, 10, 0)), ((0, 0, 10), (1, 0, 10))):
        src.InsertNextPoint(p)
        dst.InsertNextPoint(q)
    tps.SetSourceLandmarks(src)
    tps.SetTargetLandmarks(dst)
    tnode = scene.AddNewNodeByClass("vtkMRMLTransformNode", "bend")
    tnode.SetAndObserveTransformToParent(tps)
    node.SetAndObserveTransformNodeID(tnode.GetID())
    with pytest.raises(SpineLabelError, match="non-linear transform 'bend'.*harden"):
        mrml.volume_node_to_image(node)


# ----------------------------------------------------------------------------------
# segmentations
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("geom", ["RAS", "LAS", "LPS", "oblique"])
def test_segmentation_round_trip_through_slicer_export_is_exact(real_case, scene, geom):
    """Real CT + TotalSegmentator vertebrae mapped to VerSe: labelmap -> segmentation node
    (Slicer's import) -> Slicer's ExportSegmentsToLabelmapNode with the CT as reference
    volume -> the same labelmap, voxel for voxel."""
    ct, mask = geometry(geom, *real_case)
    ct_node = mrml.image_to_volume_node(ct, scene, "ct")
    seg_node = mrml.labelmap_to_segmentation_node(mask, scene, reference_volume_node=ct_node)
    nodes_before = scene.GetNumberOfNodes()
    exported = mrml.segmentation_node_to_labelmap(seg_node, ct_node)
    assert scene.GetNumberOfNodes() == nodes_before
    assert exported.shape == mask.shape
    assert exported.array.dtype == np.uint8
    assert np.array_equal(exported.array, mask.array)
    np.testing.assert_allclose(exported.affine, ct.affine, rtol=0, atol=1e-9)
    # helper nodes are gone; the scene holds what the user would see
    names = [scene.GetNthNode(i).GetName() for i in range(scene.GetNumberOfNodes())]
    assert not [n for n in names if n and n.startswith("__SpineLabel")]


def test_segmentation_from_reoriented_mask_exports_on_the_ct_grid(real_case, scene):
    """A mask stored in another orientation of the CT's lattice (LAS vs RAS): Slicer's
    export with the CT as reference volume puts it back on the CT grid exactly."""
    ct, mask = real_case
    ct_node = mrml.image_to_volume_node(ct, scene, "ct")
    seg_node = mrml.labelmap_to_segmentation_node(reorient(mask, ("L", "P", "S")), scene)
    exported = mrml.segmentation_node_to_labelmap(seg_node, ct_node)
    assert np.array_equal(exported.array, mask.array)


def test_segments_are_named_coloured_and_coded_like_verse(scene):
    phantom = make_phantom(first="T11", last="sacrum", t13=True, l6=True, spacing=(2, 2, 2), axcodes="PIR",
                           oblique_deg=12, noise_hu=0)
    ct_node = mrml.image_to_volume_node(phantom.ct, scene, "ct")
    seg_node = mrml.labelmap_to_segmentation_node(phantom.mask, scene, reference_volume_node=ct_node)
    segmentation = seg_node.GetSegmentation()
    names = [segmentation.GetSegment(i).GetName() for i in segmentation.GetSegmentIDs()]
    present = labels.sort_anatomical(set(np.unique(phantom.mask.array)) - {0})
    assert names == [labels.name_of(v) for v in present]  # anatomical order, T13 and L6 in place
    assert names[names.index("T12") + 1] == "T13" and names[names.index("L5") + 1] == "L6"
    assert names[-1] == "sacrum"
    assert seg_node.GetNodeReferenceID(seg_node.GetReferenceImageGeometryReferenceRole()) == ct_node.GetID()
    terminology = slicer.vtkSlicerTerminologiesModuleLogic
    for value, seg_id in mrml.segment_ids_by_value(seg_node).items():
        lab = labels.label(value)
        segment = segmentation.GetSegment(seg_id)
        np.testing.assert_allclose(segment.GetColor(), lab.color_float, atol=1e-6)
        entry = mrml.segment_tag(segment, segment.GetTerminologyEntryTagName())
        # Slicer's own serializer builds the identical string from the parts
        assert entry == terminology.SerializeTerminologyEntry(
            mrml.TERMINOLOGY_CONTEXT, "123037004", "SCT", "Anatomical Structure",
            lab.snomed_code, "SCT", lab.snomed_meaning, "", "", "",
            mrml.ANATOMIC_CONTEXT, "", "", "", "", "", "")
        parsed = slicer.vtkSlicerTerminologyEntry()
        assert terminology.DeserializeTerminologyEntry(entry, parsed)
        assert parsed.GetTypeObject().GetCodeValue() == lab.snomed_code
        assert parsed.GetTypeObject().GetCodingSchemeDesignator() == "SCT"
        assert parsed.GetCategoryObject().GetCodeValue() == "123037004"
        assert mrml.parse_terminology_entry(entry)["type"] == ("SCT", lab.snomed_code, lab.snomed_meaning)
    assert mrml.parse_terminology_entry(mrml.terminology_entry("L1"))["type"] == ("SCT", "66794005", "L1 vertebra")
    exported = mrml.segmentation_node_to_labelmap(seg_node, ct_node)
    assert np.array_equal(exported.array, phantom.mask.array)


def test_export_after_editing_segments_in_slicer(real_case, scene):
    """What an annotator does in Slicer shows up in the export: a renamed segment changes
    its value, a new segment added from a binary labelmap gets its VerSe value, a deleted
    segment disappears; a segment with a non-VerSe name is refused by name."""
    ct, mask = real_case
    ct_node = mrml.image_to_volume_node(ct, scene, "ct")
    seg_node = mrml.labelmap_to_segmentation_node(mask, scene, reference_volume_node=ct_node)
    segmentation = seg_node.GetSegmentation()
    ids = mrml.segment_ids_by_value(seg_node)
    segmentation.GetSegment(ids[24]).SetName("L6")  # L5 -> L6 (25)
    segmentation.GetSegment(ids[26]).SetName("Sacrum")  # spelling variant of the same label
    segmentation.RemoveSegment(ids[18])  # T11 deleted
    # a new segment from Slicer's own binary-labelmap import (a box on the CT grid)
    box = np.zeros(ct.shape, np.uint8)
    box[5:9, 6:10, 2:5] = 1
    box_node = mrml.image_to_volume_node(ct.with_array(box), scene, "box", labelmap=True)
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(box_node, seg_node, "")
    new_id = segmentation.GetSegmentIDs()[-1]
    segmentation.GetSegment(new_id).SetName("C3")
    exported = mrml.segmentation_node_to_labelmap(seg_node, ct_node)
    expected = mask.array.copy()
    expected[expected == 24] = 25
    expected[expected == 18] = 0
    expected[box == 1] = 3
    assert np.array_equal(exported.array, expected)
    segmentation.GetSegment(new_id).SetName("Segment_1")
    with pytest.raises(SpineLabelInputError, match="Segment_1: segment name is not a VerSe vertebra name"):
        mrml.segmentation_node_to_labelmap(seg_node, ct_node)


def test_overlapping_segments_are_reported(real_case, scene):
    ct, mask = real_case
    ct_node = mrml.image_to_volume_node(ct, scene, "ct")
    seg_node = mrml.labelmap_to_segmentation_node(mask, scene, reference_volume_node=ct_node)
    assert mrml.overlapping_segments(seg_node, ct_node) == {}
    # paint L1 voxels into L2 as well (separate segment data, as the Segment Editor may do)
    l1 = (mask.array == 20).astype(np.uint8)
    extra = mrml.image_to_volume_node(ct.with_array(l1), scene, "l1copy", labelmap=True)
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(extra, seg_node, "")
    seg_node.GetSegmentation().GetSegment(seg_node.GetSegmentation().GetSegmentIDs()[-1]).SetName("L6")
    assert mrml.overlapping_segments(seg_node, ct_node) == {("L1", "L6"): int(l1.sum())}


def test_existing_segmentation_node_is_replaced_and_empty_mask_gives_no_segments(real_case, scene):
    ct, mask = real_case
    ct_node = mrml.image_to_volume_node(ct, scene, "ct")
    seg_node = mrml.labelmap_to_segmentation_node(mask, scene, reference_volume_node=ct_node)
    only_l3 = mask.with_array(np.where(mask.array == 22, 22, 0).astype(np.uint8))
    same = mrml.labelmap_to_segmentation_node(only_l3, scene, node=seg_node, reference_volume_node=ct_node)
    assert same is seg_node and list(mrml.segment_ids_by_value(seg_node)) == [22]
    assert np.array_equal(mrml.segmentation_node_to_labelmap(seg_node, ct_node).array, only_l3.array)
    empty = mrml.labelmap_to_segmentation_node(mask.with_array(np.zeros(mask.shape, np.uint8)), scene, node=seg_node)
    assert empty.GetSegmentation().GetNumberOfSegments() == 0
    assert not mrml.segmentation_node_to_labelmap(empty, ct_node).array.any()


def test_bad_mask_values_are_refused_and_subregions_left_out(real_case, scene):
    _, mask = real_case
    bad = mask.array.copy()
    bad[0, 0, 0] = 33
    with pytest.raises(SpineLabelInputError, match=r"\[33\]"):
        mrml.labelmap_to_segmentation_node(mask.with_array(bad, source="bad.nii.gz"), scene)
    sub = mask.array.copy()
    sub[0, 0, 0] = 41
    with pytest.warns(UserWarning, match="subregions/discs"):
        node = mrml.labelmap_to_segmentation_node(mask.with_array(sub), scene)
    assert 41 not in mrml.segment_ids_by_value(node) and len(mrml.segment_ids_by_value(node)) == 8


# ----------------------------------------------------------------------------------
# markups
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("geom", ["LAS", "oblique"])
def test_centroids_markups_round_trip(real_case, scene, geom):
    from SpineLabelLib.verse.body import body_centroids

    ct, mask = geometry(geom, *real_case)
    centroids = body_centroids(mask)
    node = mrml.centroids_to_markups(centroids, mask, scene)
    assert [node.GetNthControlPointLabel(i) for i in range(node.GetNumberOfControlPoints())] == \
        [labels.name_of(v) for v in labels.sort_anatomical(centroids)]
    for i in range(node.GetNumberOfControlPoints()):
        value = labels.value_of(node.GetNthControlPointLabel(i))
        ras = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(i, ras)
        np.testing.assert_allclose(ras, mask.index_to_world(centroids[value]), atol=1e-9)
    back = mrml.markups_to_centroids(node, mask)
    assert set(back) == set(centroids)
    for value in centroids:
        np.testing.assert_allclose(back[value], centroids[value], atol=1e-9)
    # the same points on a reoriented grid of the same lattice: indices map n-1-x exactly
    other = reorient(mask, ("R", "P", "I"))
    on_other = mrml.markups_to_centroids(node, other)
    for value in centroids:
        np.testing.assert_allclose(other.index_to_world(on_other[value]), mask.index_to_world(centroids[value]), atol=1e-9)


def test_markups_under_transform_and_bad_labels(scene):
    grid = Image(np.zeros((10, 10, 10), np.uint8), oblique_affine((1.5, 1.5, 2.0), (3, 4, 5)))
    node = mrml.centroids_to_markups({20: (1.0, 2.0, 3.0), 21: (4.5, 5.0, 6.0)}, grid, scene)
    shift = np.eye(4)
    shift[:3, 3] = (10.0, 0.0, -5.0)
    tnode = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    tnode.SetMatrixTransformToParent(mrml.vtk_matrix(shift))
    node.SetAndObserveTransformNodeID(tnode.GetID())  # the points move 10 mm right, 5 mm down
    moved = mrml.markups_to_centroids(node, grid)
    np.testing.assert_allclose(grid.index_to_world(moved[20]), grid.index_to_world([1, 2, 3]) + (10, 0, -5), atol=1e-9)
    node.SetNthControlPointLabel(1, "F-2")
    with pytest.raises(SpineLabelInputError, match="point 2.*'F-2' is not a VerSe vertebra name"):
        mrml.markups_to_centroids(node, grid)
    node.SetNthControlPointLabel(1, "l1")
    with pytest.raises(SpineLabelInputError, match="two points labelled L1"):
        mrml.markups_to_centroids(node, grid)


# ----------------------------------------------------------------------------------
# colour table
# ----------------------------------------------------------------------------------
def test_color_table_node_and_file_agree_with_labels(scene):
    table = mrml.verse_color_table_node(scene)
    assert mrml.verse_color_table_node(scene) is table  # reused, not duplicated
    for lab in labels.LABELS:
        assert table.GetColorName(lab.value) == lab.name
        rgba = [0.0] * 4
        table.GetColor(lab.value, rgba)
        np.testing.assert_allclose(rgba[:3], lab.color_float, atol=1e-6)
    shipped = ROOT / "Resources" / "ColorTables" / "VerSe.ctbl"
    assert shipped.read_text() == mrml.color_table_text(), \
        "Resources/ColorTables/VerSe.ctbl is stale; regenerate it with mrml.color_table_text()"
    rows = [line.split() for line in shipped.read_text().splitlines() if not line.startswith("#")]
    assert {int(r[0]): r[1] for r in rows if r[0] != "0"} == {lab.value: lab.name for lab in labels.LABELS}


def test_oriented_image_data_for_effects_respects_the_segmentation_transform(real_case, scene):
    """What the click effect hands to Slicer: a binary labelmap as vtkOrientedImageData in
    the segmentation node's local coordinates; exported on the CT grid it is exact."""
    ct, mask = real_case
    ct_node = mrml.image_to_volume_node(ct, scene, "ct")
    seg_node = mrml.labelmap_to_segmentation_node(mask, scene, reference_volume_node=ct_node)
    shift = np.eye(4)
    shift[:3, 3] = (6.0, -3.0, 9.0)  # whole voxels of the 3 mm grid: an exact lattice move
    tnode = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    tnode.SetMatrixTransformToParent(mrml.vtk_matrix(shift))
    seg_node.SetAndObserveTransformNodeID(tnode.GetID())
    l2 = (mask.array == 21).astype(np.uint8)
    l2[40:50, 40:50, 40:50] = 1
    oriented = mrml.image_to_oriented_image_data(ct.with_array(l2), seg_node)
    seg_id = mrml.segment_ids_by_value(seg_node)[21]
    assert slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(oriented, seg_node, seg_id)
    seg_node.SetAndObserveTransformNodeID(None)
    exported = mrml.segmentation_node_to_labelmap(seg_node, ct_node)
    # without the transform the voxels sit shift / 3 mm = (2, -1, 3) indices lower; what
    # leaves the reference grid is cut off
    moved = np.zeros(l2.shape, bool)
    moved[:-2, 1:, :-3] = l2[2:, :-1, 3:].astype(bool)
    # where the moved L2 now overlaps a vertebra listed after it (L3...sacrum), the merged
    # export keeps that vertebra (later segments win)
    later = np.isin(mask.array, [22, 23, 24, 26])
    assert np.array_equal(exported.array == 21, moved & ~later)
    assert (moved & later).any()  # the case is really exercised
