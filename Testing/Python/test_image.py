"""Geometry-exactness of the Image type, its loaders and its reorient/resample helpers.

Every check that a geometry is right compares against nibabel or SimpleITK reading the
file themselves, never against our own reader alone.
"""
from __future__ import annotations

import gzip
import shutil

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from SpineLabelLib.errors import OutputExistsError, SpineLabelInputError
from SpineLabelLib.image import (
    Image,
    check_ct_intensities,
    from_sitk,
    grid_with_spacing,
    load_image,
    reorient,
    resample_to_grid,
    resample_to_spacing,
    save_nifti,
    to_sitk,
    transform_indices,
)

from conftest import DATA, oblique_affine

ORIENTATIONS = ["RAS", "LAS", "LPS", "PIR", "ASL", "IPL"]


def random_image(shape=(7, 9, 11), spacing=(0.8, 1.1, 2.5), seed=0) -> Image:
    rng = np.random.default_rng(seed)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (-12.5, 30.25, 100.0)
    return Image(rng.integers(-1000, 2000, size=shape, dtype=np.int16), affine, "random")


@pytest.mark.parametrize("codes", ORIENTATIONS)
def test_reorient_keeps_every_voxel_at_its_world_position(codes):
    img = random_image()
    out = reorient(img, tuple(codes))
    assert "".join(out.axcodes) == codes
    # every voxel of the output sits at the same world point as the input voxel with the same value
    ijk_out = np.argwhere(np.ones(out.shape, bool))
    ijk_in = np.rint(transform_indices(ijk_out, out.affine, img.affine)).astype(int)
    assert np.allclose(transform_indices(ijk_out, out.affine, img.affine), ijk_in, atol=1e-9)
    assert np.array_equal(out.array[tuple(ijk_out.T)], img.array[tuple(ijk_in.T)])
    back = reorient(out, img.axcodes)
    assert np.array_equal(back.array, img.array)
    assert np.allclose(back.affine, img.affine, atol=1e-9)


@pytest.mark.parametrize("codes", ORIENTATIONS)
def test_crop_keeps_every_voxel_at_its_world_position(codes):
    img = reorient(random_image(), codes)
    img = Image(img.array, img.affine @ oblique_affine((1.0, 1.0, 1.0), (4.0, -2.0, 7.0)), "random")
    box = (slice(1, 5), slice(None), slice(3, -2))
    sub = img.crop(box)
    assert sub.shape == img.array[box].shape
    np.testing.assert_array_equal(sub.array, img.array[box])
    for ijk in ((0, 0, 0), (3, 8, 5), (2, 4, 1)):
        np.testing.assert_allclose(sub.index_to_world(ijk), img.index_to_world(np.add(ijk, (1, 0, 3))), atol=1e-9)
    with pytest.raises(ValueError, match="steps of 1"):
        img.crop((slice(None, None, 2), slice(None), slice(None)))


def test_flipped_axis_maps_x_to_n_minus_1_minus_x():
    img = random_image(shape=(5, 4, 3))
    flipped = reorient(img, ("L", "A", "S"))  # flip i only
    for x in range(5):
        mapped = transform_indices([x, 2, 1], img.affine, flipped.affine)
        assert np.allclose(mapped, [5 - 1 - x, 2, 1])
        assert flipped.array[5 - 1 - x, 2, 1] == img.array[x, 2, 1]


@pytest.mark.parametrize("codes", ORIENTATIONS + ["oblique"])
def test_nifti_round_trip_checked_with_nibabel(tmp_path, codes):
    img = random_image()
    if codes == "oblique":
        img = Image(img.array, oblique_affine(img.spacing, origin=img.origin), "oblique")
    else:
        img = reorient(img, tuple(codes))
    path = save_nifti(img, tmp_path / f"x_{codes}.nii.gz")
    nii = nib.load(str(path))
    assert np.array_equal(np.asanyarray(nii.dataobj), img.array)
    assert np.allclose(nii.affine, img.affine, atol=1e-4, rtol=0)
    # sform and qform agree, so readers that prefer either (ITK uses the qform) see one geometry
    assert np.allclose(nii.get_qform(), nii.get_sform(), atol=1e-4)
    again = load_image(path)
    assert np.array_equal(again.array, img.array)
    assert np.allclose(again.affine, img.affine, atol=1e-4, rtol=0)


@pytest.mark.parametrize("codes", ["RAS", "LPS", "PIR", "oblique"])
def test_sitk_conversion_agrees_with_sitk_physical_points(codes):
    img = random_image()
    img = Image(img.array, oblique_affine(img.spacing, img.origin), "o") if codes == "oblique" else reorient(img, tuple(codes))
    s = to_sitk(img)
    last = tuple(n - 1 for n in img.shape)
    for ijk in [(0, 0, 0), last, (last[0] // 2, 1, last[2])]:
        lps = np.array(s.TransformIndexToPhysicalPoint(tuple(int(v) for v in ijk)))
        ras = img.index_to_world(ijk)
        assert np.allclose(lps * [-1, -1, 1], ras, atol=1e-6)
        assert s[tuple(int(v) for v in ijk)] == img.array[ijk]
    back = from_sitk(s)
    assert np.array_equal(back.array, img.array)
    assert np.allclose(back.affine, img.affine, atol=1e-9)


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_nrrd_and_mha_load_with_sitk_geometry(tmp_path, suffix):
    img = reorient(random_image(), ("P", "I", "R"))
    path = tmp_path / f"x{suffix}"
    sitk.WriteImage(to_sitk(img), str(path))
    loaded = load_image(path)
    assert np.array_equal(loaded.array, img.array)
    assert np.allclose(loaded.affine, img.affine, atol=1e-5)


def test_real_nrrd_matches_its_segmentation_grid():
    ct = load_image(DATA / "slicerio_chest" / "CTChest4.nrrd")
    seg = sitk.ReadImage(str(DATA / "slicerio_chest" / "Segmentation.seg.nrrd"))
    # The .seg.nrrd is a (possibly cropped) labelmap in the same world: its origin must be a
    # voxel centre of the CT grid, and its axes parallel to the CT's.
    seg_origin_ras = np.array(seg.GetOrigin()) * [-1, -1, 1]
    ijk = ct.world_to_index(seg_origin_ras)
    assert np.allclose(ijk, np.rint(ijk), atol=1e-3)
    assert len(ct.shape) == 3 and np.all(ct.spacing > 0)


def test_dicom_series_has_the_geometry_of_its_reference_segmentation():
    dicom = load_image(DATA / "totalseg_example" / "dicom")
    ref = nib.load(str(DATA / "totalseg_example" / "dicom_seg_totalseg_labels.nii.gz"))
    assert dicom.shape == ref.shape
    as_ref = reorient(dicom, nib.aff2axcodes(ref.affine))
    assert np.allclose(as_ref.affine, ref.affine, atol=1e-3)
    # content check: voxels TotalSegmentator called vertebra (T11 = 33, T12 = 32) are bone
    seg = np.asanyarray(ref.dataobj)
    vert = np.isin(seg, [32, 33])
    assert vert.sum() > 1000
    assert np.median(as_ref.array[vert]) > 150
    assert np.median(as_ref.array[seg == 0]) < 0
    # a single .dcm file path loads the same series
    one = load_image(next((DATA / "totalseg_example" / "dicom").glob("*.dcm")))
    assert np.array_equal(one.array, dicom.array)


def test_resample_exact_for_permutations_and_consistent_for_spacing():
    img = random_image()
    target = reorient(img, ("A", "S", "L"))
    res = resample_to_grid(img, target.shape, target.affine, order=0)
    assert np.array_equal(res.array, target.array)
    # a smooth ramp in world x resampled to 1 mm keeps its values at the same world points
    shape = (20, 16, 12)
    aff = np.diag([0.7, 0.9, 2.5, 1.0])
    aff[:3, 3] = (3, -4, 5)
    ijk = np.indices(shape).reshape(3, -1).T
    ras = Image(np.zeros(shape), aff).index_to_world(ijk)
    ramp = Image((2 * ras[:, 0] + ras[:, 2]).reshape(shape), aff)
    out = resample_to_spacing(ramp, 1.0, order=1)
    assert np.allclose(out.spacing, 1.0)
    out_ijk = np.indices(out.shape).reshape(3, -1).T
    out_ras = out.index_to_world(out_ijk)
    inside = np.all((ramp.world_to_index(out_ras) >= 0) & (ramp.world_to_index(out_ras) <= np.array(shape) - 1), axis=1)
    expected = 2 * out_ras[:, 0] + out_ras[:, 2]
    assert np.allclose(out.array.reshape(-1)[inside], expected[inside], atol=1e-4)


def test_grid_with_spacing_keeps_the_outer_box():
    img = random_image(shape=(10, 10, 10), spacing=(1.0, 1.0, 3.0))
    shape, affine = grid_with_spacing(img, 0.5)
    assert shape == (20, 20, 60)
    corner_old = img.index_to_world([-0.5, -0.5, -0.5])
    corner_new = Image(np.zeros(shape, np.uint8), affine).index_to_world([-0.5, -0.5, -0.5])
    assert np.allclose(corner_new, corner_old)
    far_old = img.index_to_world(np.array(img.shape) - 0.5)
    far_new = Image(np.zeros(shape, np.uint8), affine).index_to_world(np.array(shape) - 0.5)
    assert np.allclose(far_new, far_old)


# ---------------------------------------------------------------------------------- bad input
def test_2d_and_4d_and_zero_spacing_are_rejected_naming_the_file(tmp_path):
    p2 = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((5, 5), np.int16), np.eye(4)), str(p2))
    with pytest.raises(SpineLabelInputError, match=r"flat\.nii\.gz.*2D"):
        load_image(p2)
    p4 = tmp_path / "time.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5, 3), np.int16), np.eye(4)), str(p4))
    with pytest.raises(SpineLabelInputError, match=r"time\.nii\.gz.*4D"):
        load_image(p4)
    # a trailing singleton 4th dimension is a 3D volume, not an error
    p41 = tmp_path / "single.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5, 1), np.int16), np.eye(4)), str(p41))
    assert load_image(p41).shape == (5, 5, 5)
    p0 = tmp_path / "zero.nii.gz"
    zero = nib.Nifti1Image(np.zeros((5, 5, 5), np.int16), None)
    zero.header["pixdim"][1:4] = [1.0, 0.0, 1.0]  # a header nibabel itself would refuse to build
    zero.header.set_sform(None, code=0)
    zero.header.set_qform(None, code=0)
    zero.to_filename(str(p0))
    with pytest.raises(SpineLabelInputError, match=r"zero\.nii\.gz.*(zero|degenerate)"):
        load_image(p0)


def test_truncated_and_missing_files_give_clear_errors(tmp_path):
    good = save_nifti(random_image(shape=(40, 40, 40)), tmp_path / "ct.nii.gz")
    data = good.read_bytes()
    bad = tmp_path / "cut.nii.gz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(SpineLabelInputError, match=r"cut\.nii\.gz.*cannot be read"):
        load_image(bad)
    with pytest.raises(SpineLabelInputError, match=r"nothere\.nii\.gz.*does not exist"):
        load_image(tmp_path / "nothere.nii.gz")
    junk = tmp_path / "junk.nrrd"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(SpineLabelInputError, match="junk.nrrd"):
        load_image(junk)
    empty_dir = tmp_path / "nodicom"
    empty_dir.mkdir()
    with pytest.raises(SpineLabelInputError, match="no readable DICOM"):
        load_image(empty_dir)


def test_save_never_overwrites_unless_asked_and_leaves_no_partial_file(tmp_path):
    img = random_image()
    path = save_nifti(img, tmp_path / "a.nii.gz")
    before = path.read_bytes()
    with pytest.raises(OutputExistsError):
        save_nifti(img.with_array(img.array * 0), path)
    assert path.read_bytes() == before
    save_nifti(img.with_array(img.array * 0), path, overwrite=True)
    assert not np.any(nib.load(str(path)).get_fdata())
    # a write that fails half-way leaves neither a partial target nor a temporary file
    with pytest.raises(Exception):
        save_nifti(Image(np.zeros((3, 3, 3), dtype=object), np.eye(4)), tmp_path / "b.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz"]


def test_mask_on_another_grid_is_named():
    img = random_image()
    other = Image(np.zeros(img.shape, np.uint8), img.affine + np.diag([0, 0, 0.01, 0]), "mask.nii.gz")
    with pytest.raises(SpineLabelInputError, match=r"mask\.nii\.gz.*affine differs"):
        img.require_same_grid(other)
    smaller = Image(np.zeros((3, 3, 3), np.uint8), img.affine, "small.nii.gz")
    with pytest.raises(SpineLabelInputError, match=r"small\.nii\.gz.*grid"):
        img.require_same_grid(smaller)


def test_ct_intensity_warnings():
    real = load_image(DATA / "totalseg_example" / "ct.nii.gz")
    assert check_ct_intensities(real) == []
    unrescaled = real.with_array(np.clip(real.array + 1024, 0, None))  # stored values, no intercept
    assert any("unrescaled" in w for w in check_ct_intensities(unrescaled))
    normalised = real.with_array((real.array.astype(np.float32) + 1024) / 4000)
    assert check_ct_intensities(normalised)


def test_gzip_roundtrip_of_real_ct_is_bit_exact(tmp_path):
    src = DATA / "totalseg_example" / "ct.nii.gz"
    ct = load_image(src)
    out = save_nifti(ct, tmp_path / "ct.nii.gz")
    ref = nib.load(str(src))
    back = nib.load(str(out))
    assert np.array_equal(np.asanyarray(back.dataobj), np.asanyarray(ref.dataobj))
    assert np.allclose(back.affine, ref.affine, atol=1e-4)
    with gzip.open(out) as fh:  # a valid complete gzip stream
        shutil.copyfileobj(fh, open(tmp_path / "raw.nii", "wb"))
