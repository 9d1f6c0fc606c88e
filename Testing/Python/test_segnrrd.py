"""Slicer .seg.nrrd files: segments are mapped by name/terminology, never by raw value."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from SpineLabelLib.convert import load_mask_for
from SpineLabelLib.errors import SpineLabelInputError
from SpineLabelLib.image import Image, load_image, to_sitk
from SpineLabelLib.segnrrd import SegmentInfo, verse_value_of_segment

from conftest import DATA

CHEST = DATA / "slicerio_chest"


def write_seg_nrrd(path, array, segments, affine=None):
    """A minimal Slicer-style .seg.nrrd: (name, stored value, tags) per segment, one layer."""
    img = to_sitk(Image(array.astype(np.uint8), np.diag([2.0, 2.0, 3.0, 1.0]) if affine is None else affine))
    for n, (name, value, tags) in enumerate(segments):
        img.SetMetaData(f"Segment{n}_Name", name)
        img.SetMetaData(f"Segment{n}_LabelValue", str(value))
        img.SetMetaData(f"Segment{n}_Layer", "0")
        img.SetMetaData(f"Segment{n}_ID", f"Segment_{n + 1}")
        img.SetMetaData(f"Segment{n}_Tags", tags)
    sitk.WriteImage(img, str(path))
    return path


@pytest.mark.parametrize(
    "name, codes, expected",
    [("L1", (), 20), ("vertebrae_T12", (), 19), ("T13 vertebra", (), 28), ("Vertebra L6", (), 25),
     ("Sacrum", (), 26), ("S1", (), 26), ("Segment_3", ("66794005",), 20), ("my bone", ("51282000",), None),
     ("ribs", ("113197003",), None), ("thoracic vertebral column", (), None)],
)
def test_segment_meaning(name, codes, expected):
    assert verse_value_of_segment(SegmentInfo(0, name, 1, 0, codes)) == expected


def test_seg_nrrd_values_are_mapped_by_segment_not_by_number(tmp_path):
    arr = np.zeros((6, 6, 6), np.uint8)
    arr[1:3] = 1  # segment 1 is "L2"
    arr[3:5] = 2  # segment 2 is "L1" (by SNOMED code only)
    tags = "TerminologyEntry:Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure~SCT^66794005^L1 vertebra~^^~^^"
    path = write_seg_nrrd(tmp_path / "s.seg.nrrd", arr, [("L2", 1, ""), ("Segment_2", 2, tags)])
    ct = Image(np.zeros((6, 6, 6), np.int16), np.diag([2.0, 2.0, 3.0, 1.0]))
    mask = load_mask_for(ct, path)
    assert set(np.unique(mask.array)) == {0, 20, 21}
    assert np.all(mask.array[1:3] == 21) and np.all(mask.array[3:5] == 20)


def test_real_slicer_segmentation_of_regions_is_refused_by_name():
    ct = load_image(CHEST / "CTChest4.nrrd")
    with pytest.raises(SpineLabelInputError, match=r"Segmentation\.seg\.nrrd.*'ribs'.*not single VerSe vertebrae"):
        load_mask_for(ct, CHEST / "Segmentation.seg.nrrd")
    with pytest.raises(SpineLabelInputError, match=r"SegmentationOverlapping\.seg\.nrrd"):
        load_mask_for(ct, CHEST / "SegmentationOverlapping.seg.nrrd")


def test_duplicate_and_undescribed_segments(tmp_path):
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[0] = 1
    arr[1] = 2
    ct = Image(np.zeros((4, 4, 4), np.int16), np.diag([2.0, 2.0, 3.0, 1.0]))
    twice = write_seg_nrrd(tmp_path / "twice.seg.nrrd", arr, [("L1", 1, ""), ("vertebrae_L1", 2, "")])
    with pytest.raises(SpineLabelInputError, match="both stand for L1"):
        load_mask_for(ct, twice)
    arr[2] = 5
    loose = write_seg_nrrd(tmp_path / "loose.seg.nrrd", arr, [("L1", 1, ""), ("L2", 2, "")])
    with pytest.raises(SpineLabelInputError, match=r"voxel values \[5\]"):
        load_mask_for(ct, loose)
