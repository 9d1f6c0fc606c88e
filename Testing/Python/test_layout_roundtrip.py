"""VerSe layout: discover, load and write cases; exact round trips checked with nibabel."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from SpineLabelLib import labels
from SpineLabelLib.errors import OutputExistsError, SpineLabelInputError
from SpineLabelLib.image import Image, load_image, reorient
from SpineLabelLib.verse.layout import (
    case_paths,
    ct_dtype,
    discover_cases,
    load_case,
    write_case,
)

from conftest import DATA, oblique_affine

FAMILIES = ["RAS", "LAS", "LPS", "PIR", "ASL", "IPL", "oblique"]


def phantom(codes: str, shape=(18, 22, 26), spacing=(0.9, 1.3, 2.0), seed=0) -> tuple[Image, Image]:
    """A random int16 CT and a mask with three vertebrae (L1-L3) in orientation ``codes``."""
    rng = np.random.default_rng(seed)
    ct = rng.integers(-1024, 2500, size=shape).astype(np.int16)
    mask = np.zeros(shape, np.uint8)
    mask[4:14, 5:17, 2:8] = 20
    mask[4:14, 5:17, 9:16] = 21
    mask[3:15, 4:18, 17:24] = 22
    if codes == "oblique":
        affine = oblique_affine(spacing, (-31.5, 17.25, 402.0), degrees=23.0)
        return Image(ct, affine, "ct"), Image(mask, affine, "mask")
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (-31.5, 17.25, 402.0)
    ct_img = reorient(Image(ct, affine, "ct"), tuple(codes))
    mask_img = reorient(Image(mask, affine, "mask"), tuple(codes))
    assert "".join(ct_img.axcodes) == codes
    return ct_img, mask_img


def nib_read(path):
    """Array and affine as nibabel itself reads them (no SpineLabel code involved)."""
    nii = nib.load(str(path))
    return np.asanyarray(nii.dataobj), nii.affine, nii.get_data_dtype()


def write_source_case(folder, name: str, ct: Image, mask: Image, centroids_ijk) -> None:
    """A case in the old 2019 challenge naming, written with plain nibabel/json."""
    folder.mkdir(parents=True)
    nib.save(nib.Nifti1Image(ct.array, ct.affine), str(folder / f"{name}.nii.gz"))
    nib.save(nib.Nifti1Image(mask.array, mask.affine), str(folder / f"{name}_seg.nii.gz"))
    entries = [{"direction": list(ct.axcodes)}]
    entries += [{"label": v, "X": float(x), "Y": float(y), "Z": float(z)} for v, (x, y, z) in centroids_ijk.items()]
    (folder / f"{name}_ctd.json").write_text(json.dumps(entries))


@pytest.mark.parametrize("family", FAMILIES)
def test_import_export_round_trip_is_exact_by_nibabel(tmp_path, family):
    ct, mask = phantom(family)
    # centroids inside each vertebra, off the voxel centres, on this orientation's grid
    centroids_ijk = {v: np.argwhere(mask.array == v).mean(axis=0) + 0.13 for v in (20, 21, 22)}
    write_source_case(tmp_path / "in" / "verse004", "verse004", ct, mask, centroids_ijk)

    (case,) = discover_cases(tmp_path / "in")
    data = load_case(case, require_mask=True)
    out = write_case(tmp_path / "out", "verse004", data.ct, data.mask, data.centroids_ijk, snapshot=False)

    for src, dst in ((case.ct, out.ct), (case.mask, out.mask)):
        a_src, aff_src, _ = nib_read(src)
        a_dst, aff_dst, dtype = nib_read(dst)
        assert np.array_equal(a_src, a_dst) and a_dst.shape == a_src.shape
        assert np.max(np.abs(aff_src - aff_dst)) < 1e-4
    assert nib_read(out.ct)[2] == np.int16
    assert nib_read(out.mask)[2] == np.uint8
    # centroid JSON: same world points, read independently with json + nibabel
    entries = json.loads(out.centroids.read_text())
    assert entries[0]["direction"] == list(nib.aff2axcodes(nib_read(out.ct)[1]))
    for e in entries[1:]:
        world = nib.affines.apply_affine(nib_read(out.ct)[1], [e["X"], e["Y"], e["Z"]])
        expected = ct.index_to_world(centroids_ijk[e["label"]])
        assert np.linalg.norm(world - expected) <= 0.05 * np.linalg.norm(ct.spacing) + 1e-4
    # and discover/load of the written case gives the same arrays back
    (again,) = discover_cases(tmp_path / "out")
    assert again.ct == out.ct and again.mask == out.mask and again.centroids == out.centroids
    back = load_case(again)
    assert np.array_equal(back.ct.array, ct.array) and np.array_equal(back.mask.array, mask.array)


def test_real_ct_with_totalsegmentator_mask(tmp_path):
    ct = load_image(DATA / "totalseg_example" / "ct.nii.gz")
    ts = load_image(DATA / "totalseg_example" / "seg_totalseg_labels.nii.gz")
    mask = ts.with_array(labels.totalseg_to_verse(ts.array))
    written = write_case(tmp_path, "ts001", ct, mask, entities="_dir-ax")
    assert written.centroids.exists() and written.snapshot.exists()
    assert written.ct == tmp_path / "rawdata" / "sub-ts001" / "sub-ts001_dir-ax_ct.nii.gz"
    (found,) = discover_cases(tmp_path)
    assert (found.ct, found.mask, found.centroids, found.snapshot) == (
        written.ct, written.mask, written.centroids, written.snapshot)
    loaded = load_case(found, require_mask=True)
    assert np.array_equal(loaded.ct.array, ct.array)  # int32 HU on disk -> int16, values identical
    assert np.array_equal(loaded.mask.array, mask.array)
    assert np.allclose(loaded.ct.affine, ct.affine, atol=1e-4)
    present = set(np.unique(mask.array).tolist()) - {0}
    assert set(loaded.centroids_ijk) == present  # computed body centroids, one per vertebra
    for value, ijk in loaded.centroids_ijk.items():  # each lies inside its own vertebra
        assert mask.array[tuple(np.rint(ijk).astype(int))] == value


def test_dicom_series_written_with_its_world_geometry(tmp_path):
    ct = load_image(DATA / "totalseg_example" / "dicom")
    written = write_case(tmp_path, "dcm01", ct, snapshot=False)
    array, affine, dtype = nib_read(written.ct)
    assert dtype == np.int16 and np.array_equal(array, ct.array)
    reference = nib.load(str(DATA / "totalseg_example" / "dicom_seg_totalseg_labels.nii.gz"))
    # same world geometry up to orientation: reorient our file's grid to the reference codes
    as_ref = reorient(Image(array, affine), nib.aff2axcodes(reference.affine))
    assert as_ref.shape == reference.shape
    assert np.max(np.abs(as_ref.affine - reference.affine)) < 1e-3
    assert written.mask is None and written.centroids is None and written.snapshot is None


def _touch(root, *names):
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")


def test_discover_all_naming_schemes(tmp_path):
    _touch(
        tmp_path,
        # VerSe'20 BIDS below a split folder, with split- and dir- entities
        "dataset-01training/rawdata/sub-verse004/sub-verse004_split-verse033_dir-ax_ct.nii.gz",
        "dataset-01training/derivatives/sub-verse004/sub-verse004_split-verse033_dir-ax_seg-vert_msk.nii.gz",
        "dataset-01training/derivatives/sub-verse004/sub-verse004_split-verse033_dir-ax_seg-subreg_ctd.json",
        "dataset-01training/derivatives/sub-verse004/sub-verse004_split-verse033_dir-ax_seg-vert_snp.png",
        "dataset-01training/rawdata/sub-verse004/sub-verse004_split-verse034_dir-sag_ct.nii.gz",
        "dataset-01training/derivatives/sub-verse004/sub-verse004_split-verse034_dir-sag_seg-vert_msk.nii.gz",
        # VerSe'19 BIDS without dir-, snapshot without the sub- prefix as released
        "dataset-verse19test/rawdata/sub-gl003/sub-gl003_ct.nii.gz",
        "dataset-verse19test/derivatives/sub-gl003/sub-gl003_seg-vert_msk.nii.gz",
        "dataset-verse19test/derivatives/sub-gl003/sub-gl003_seg-subreg_ctd.json",
        "dataset-verse19test/derivatives/sub-gl003/gl003_seg-vert_snp.png",
        # 2019 challenge naming
        "verse19/verse012/verse012.nii.gz",
        "verse19/verse012/verse012_seg.nii.gz",
        "verse19/verse012/verse012_ctd.json",
        "verse19/verse012/verse012_snapshot.png",
        # 2020 challenge naming, incl. the -w.png wireframe and a multi-series name
        "02_validation/verse512/verse512_CT-iso.nii.gz",
        "02_validation/verse512/verse512_CT-iso_seg.nii.gz",
        "02_validation/verse512/verse512_CT-iso_iso-ctd.json",
        "02_validation/verse512/verse512_CT-iso.png",
        "02_validation/verse512/verse512_CT-iso-w.png",
        "02_validation/GL124/GL124_CT_ax.nii.gz",
        "02_validation/GL124/GL124_CT_ax_seg.nii.gz",
        "02_validation/GL124/GL124_CT_ax-iso-ctd.json",
        "02_validation/verse400/verse400_verse090_CT-iso.nii.gz",
        "02_validation/verse400/verse400_verse090_CT-iso_seg.nii.gz",
        # noise
        "README.txt",
        "dataset-01training/derivatives/sub-verse004/sub-verse004_split-verse033_dir-ax_seg-subreg_msk.nii.gz",
    )
    cases = discover_cases(tmp_path)
    got = {(c.split, c.subject, c.stem): c for c in cases}
    assert sorted(got, key=str) == sorted([
        ("verse19", "verse012", "verse012"),
        ("02_validation", "GL124", "GL124_CT_ax"),
        ("02_validation", "verse400", "verse400_verse090_CT-iso"),
        ("02_validation", "verse512", "verse512_CT-iso"),
        ("dataset-01training", "verse004", "sub-verse004_split-verse033_dir-ax"),
        ("dataset-01training", "verse004", "sub-verse004_split-verse034_dir-sag"),
        ("dataset-verse19test", "gl003", "sub-gl003"),
    ], key=str)
    full = got[("dataset-01training", "verse004", "sub-verse004_split-verse033_dir-ax")]
    assert full.ct.name.endswith("_ct.nii.gz") and full.mask.name.endswith("_msk.nii.gz")
    assert full.centroids.name.endswith("_ctd.json") and full.snapshot.name.endswith("_snp.png")
    partial = got[("dataset-01training", "verse004", "sub-verse004_split-verse034_dir-sag")]
    assert partial.centroids is None and partial.snapshot is None
    assert got[("dataset-verse19test", "gl003", "sub-gl003")].snapshot.name == "gl003_seg-vert_snp.png"
    assert got[("02_validation", "verse512", "verse512_CT-iso")].snapshot.name == "verse512_CT-iso.png"  # not -w
    assert got[("02_validation", "GL124", "GL124_CT_ax")].centroids.name == "GL124_CT_ax-iso-ctd.json"
    assert got[("verse19", "verse012", "verse012")].centroids.name == "verse012_ctd.json"
    assert cases == discover_cases(tmp_path)  # deterministic
    assert [c.stem for c in cases] == [c.stem for c in sorted(cases, key=lambda c: (c.split or "", c.subject, c.stem))]
    # a single case folder works as a root too
    (single,) = discover_cases(tmp_path / "02_validation" / "verse512")
    assert single.stem == "verse512_CT-iso" and single.mask is not None and single.split is None
    with pytest.raises(SpineLabelInputError, match="does not exist"):
        discover_cases(tmp_path / "nothere")


def test_case_paths_and_subject_validation(tmp_path):
    c = case_paths(tmp_path, "verse004", "dir-ax")
    assert c.ct == tmp_path / "rawdata/sub-verse004/sub-verse004_dir-ax_ct.nii.gz"
    assert c.mask == tmp_path / "derivatives/sub-verse004/sub-verse004_dir-ax_seg-vert_msk.nii.gz"
    assert c.centroids == tmp_path / "derivatives/sub-verse004/sub-verse004_dir-ax_seg-subreg_ctd.json"
    assert c.snapshot == tmp_path / "derivatives/sub-verse004/sub-verse004_dir-ax_seg-vert_snp.png"
    assert case_paths(tmp_path, "gl-003").ct.name == "sub-gl-003_ct.nii.gz"
    for bad in ("verse_004", "a/b", "..", "", "x y", "sub-verse004", "../evil"):
        with pytest.raises(SpineLabelInputError, match="subject id"):
            case_paths(tmp_path, bad)
    with pytest.raises(SpineLabelInputError, match="entities"):
        case_paths(tmp_path, "verse004", "_dir ax")
    assert not any(tmp_path.iterdir())


def test_ct_dtype_choice():
    grid = np.eye(4)
    assert ct_dtype(Image(np.array([[[-1024.0, 3000.0]]]), grid)) == np.int16
    assert ct_dtype(Image(np.array([[[-1024.5, 3000.0]]]), grid)) == np.float32
    assert ct_dtype(Image(np.array([[[-1024, 40000]]], np.int32), grid)) == np.float32
    assert ct_dtype(Image(np.array([[[-1024, 3000]]], np.int32), grid)) == np.int16


def test_existing_outputs_are_never_touched_without_overwrite(tmp_path):
    ct, mask = phantom("LPS")
    first = write_case(tmp_path, "v1", ct, mask, {20: np.array([9.0, 11.0, 5.0])}, snapshot=False)
    before = {p: p.read_bytes() for p in first.files()}
    # only the JSON already exists: nothing else may be written either
    first.ct.unlink()
    first.mask.unlink()
    with pytest.raises(OutputExistsError, match="ctd.json"):
        write_case(tmp_path, "v1", ct, mask, {21: np.array([1.0, 2.0, 3.0])}, snapshot=False)
    assert not first.ct.exists() and not first.mask.exists()
    assert first.centroids.read_bytes() == before[first.centroids]
    rewritten = write_case(tmp_path, "v1", ct, mask, {21: np.array([1.0, 2.0, 3.0])}, snapshot=False, overwrite=True)
    assert json.loads(rewritten.centroids.read_text())[1]["label"] == 21


def test_failed_write_leaves_no_partial_or_temporary_file(tmp_path, monkeypatch):
    ct, mask = phantom("RAS")
    import SpineLabelLib.verse.snapshot as snapshot_module

    def broken(*args, **kwargs):
        raise RuntimeError("disk full while drawing")

    monkeypatch.setattr(snapshot_module, "save_snapshot", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_case(tmp_path, "v2", ct, mask, {20: np.array([9.0, 11.0, 5.0])}, snapshot=True)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    # bad inputs are refused before anything is written
    other = Image(mask.array, mask.affine + np.diag([0, 0, 0.5, 0]), "other_grid_mask.nii.gz")
    with pytest.raises(SpineLabelInputError, match="other_grid_mask"):
        write_case(tmp_path, "v2", ct, other, snapshot=False)
    with pytest.raises(SpineLabelInputError, match=r"bad_mask.*\[33\]"):
        write_case(tmp_path, "v2", ct, mask.with_array(np.where(mask.array == 22, 33, mask.array), "bad_mask"),
                   snapshot=False)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_load_case_rejects_bad_masks_naming_the_file(tmp_path):
    ct, mask = phantom("RAS")
    good = write_case(tmp_path / "good", "v3", ct, mask, {20: np.array([9.0, 11.0, 5.0])}, snapshot=False)

    def case_with_mask(name, mask_array=None, affine=None, raw_bytes=None):
        folder = tmp_path / name
        folder.mkdir()
        (folder / f"{name}.nii.gz").write_bytes(good.ct.read_bytes())
        target = folder / f"{name}_seg.nii.gz"
        if raw_bytes is not None:
            target.write_bytes(raw_bytes)
        else:
            nib.save(nib.Nifti1Image(mask_array, mask.affine if affine is None else affine), str(target))
        (case,) = discover_cases(folder)
        return case

    data = good.mask.read_bytes()
    with pytest.raises(SpineLabelInputError, match=r"cut_seg\.nii\.gz.*cannot be read"):
        load_case(case_with_mask("cut", raw_bytes=data[: len(data) // 2]))
    with pytest.raises(SpineLabelInputError, match=r"wrong33_seg\.nii\.gz.*\[33\]"):
        load_case(case_with_mask("wrong33", np.where(mask.array == 21, 33, mask.array).astype(np.uint8)))
    with pytest.raises(SpineLabelInputError, match=r"shifted_seg\.nii\.gz.*affine differs"):
        load_case(case_with_mask("shifted", mask.array, affine=mask.affine + np.diag([0, 0, 0.2, 0])))
    with pytest.raises(SpineLabelInputError, match=r"small_seg\.nii\.gz.*grid"):
        load_case(case_with_mask("small", mask.array[:-1]))
    with pytest.raises(SpineLabelInputError, match=r"flat_seg\.nii\.gz.*2D"):
        load_case(case_with_mask("flat", mask.array[:, :, 0]))
    with pytest.raises(SpineLabelInputError, match=r"nomask.*no vertebra mask"):
        folder = tmp_path / "nomask"
        folder.mkdir()
        (folder / "nomask.nii.gz").write_bytes(good.ct.read_bytes())
        load_case(discover_cases(folder)[0], require_mask=True)
    # subregion values are kept as stored (with a warning), not silently dropped
    with pytest.warns(UserWarning, match="41"):
        data41 = load_case(case_with_mask("sub41", np.where(mask.array == 22, 41, mask.array).astype(np.uint8)))
    assert 41 in np.unique(data41.mask.array)
    # the good files were never modified by any of this
    assert np.array_equal(nib_read(good.mask)[0], mask.array)


def test_mask_without_vertebrae_gets_an_empty_centroid_file(tmp_path):
    ct, mask = phantom("LAS")
    empty = mask.with_array(np.zeros(mask.shape, np.uint8))
    written = write_case(tmp_path, "v4", ct, empty, snapshot=False)
    assert json.loads(written.centroids.read_text()) == [{"direction": ["L", "A", "S"]}]
    with pytest.warns(UserWarning, match="no vertebra"):
        assert load_case(discover_cases(tmp_path)[0]).centroids_ijk == {}
