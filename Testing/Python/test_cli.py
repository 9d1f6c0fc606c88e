"""The `spinelabel` command end to end on real data: files are read back with nibabel."""
from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from SpineLabelLib.cli import main

from conftest import DATA

TS = DATA / "totalseg_example"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("dataset")
    code = main(["convert", "--ct", str(TS / "ct.nii.gz"), "--mask", str(TS / "seg_totalseg_labels.nii.gz"),
                 "--mask-labels", "totalseg", "--id", "ts001", "--out", str(out)])
    assert code == 0
    return out


def test_convert_writes_the_stable_layout(converted):
    ct = converted / "rawdata" / "sub-ts001" / "sub-ts001_ct.nii.gz"
    der = converted / "derivatives" / "sub-ts001"
    msk = der / "sub-ts001_seg-vert_msk.nii.gz"
    ctd = der / "sub-ts001_seg-subreg_ctd.json"
    snp = der / "sub-ts001_seg-vert_snp.png"
    for path in (ct, msk, ctd, snp):
        assert path.is_file(), path
    src = nib.load(str(TS / "ct.nii.gz"))
    out = nib.load(str(ct))
    assert np.array_equal(np.asanyarray(out.dataobj), np.asanyarray(src.dataobj))
    assert np.allclose(out.affine, src.affine, atol=1e-4)
    mask = np.asanyarray(nib.load(str(msk)).dataobj)
    assert set(np.unique(mask)) == {0, 18, 19, 20, 21, 22, 23, 24, 26}
    entries = json.loads(ctd.read_text())
    assert entries[0] == {"direction": list(nib.aff2axcodes(src.affine))}
    assert [e["label"] for e in entries[1:]] == [18, 19, 20, 21, 22, 23, 24, 26]


def test_convert_refuses_to_overwrite_and_changes_nothing(converted, capsys):
    msk = converted / "derivatives" / "sub-ts001" / "sub-ts001_seg-vert_msk.nii.gz"
    before = msk.read_bytes()
    code, out, err = run(capsys, "convert", "--ct", TS / "ct.nii.gz", "--id", "ts001", "--out", converted)
    assert code == 2 and "already exists" in err
    assert msk.read_bytes() == before


def test_convert_dicom_with_mask_in_another_orientation(tmp_path, capsys):
    code, out, err = run(capsys, "convert", "--ct", TS / "dicom", "--mask", TS / "dicom_seg_totalseg_labels.nii.gz",
                         "--mask-labels", "totalseg", "--id", "dcm1", "--out", tmp_path, "--no-snapshot")
    assert code == 0, err
    ct = nib.load(str(tmp_path / "rawdata" / "sub-dcm1" / "sub-dcm1_ct.nii.gz"))
    msk = nib.load(str(tmp_path / "derivatives" / "sub-dcm1" / "sub-dcm1_seg-vert_msk.nii.gz"))
    ref = nib.load(str(TS / "dicom_seg_totalseg_labels.nii.gz"))
    assert np.allclose(ct.affine, msk.affine, atol=1e-4)
    # same world lattice as the reference segmentation; labels moved with their voxels
    ras = nib.orientations
    t = ras.ornt_transform(ras.io_orientation(msk.affine), ras.io_orientation(ref.affine))
    mask_as_ref = ras.apply_orientation(np.asanyarray(msk.dataobj), t)
    assert np.array_equal(mask_as_ref == 19, np.asanyarray(ref.dataobj) == 32)  # T12
    hu = ras.apply_orientation(np.asanyarray(ct.dataobj), t)
    assert np.median(hu[np.asanyarray(ref.dataobj) == 32]) > 150


@pytest.mark.parametrize(
    "mask, labels_opt, expected",
    [
        (DATA / "lidc0001_chest" / "seg_totalseg_labels.nii.gz", "totalseg", "grid"),
        (TS / "seg_totalseg_labels.nii.gz", "verse", "not VerSe vertebrae"),
    ],
)
def test_convert_bad_masks_are_named(tmp_path, capsys, mask, labels_opt, expected):
    code, out, err = run(capsys, "convert", "--ct", TS / "ct.nii.gz", "--mask", mask, "--mask-labels", labels_opt,
                         "--id", "bad", "--out", tmp_path)
    assert code == 2
    assert mask.name in err and expected in err
    assert not list(tmp_path.rglob("*.nii.gz"))  # nothing half-written


def test_evaluate_case_against_itself_and_json(converted, tmp_path, capsys):
    report = tmp_path / "m.json"
    code, out, err = run(capsys, "evaluate", converted, converted, "--json", report)
    assert code == 0, err
    assert "L1" in out and "mean" in out.lower() and "median" in out.lower()
    data = json.loads(report.read_text())
    case = data["cases"]["sub-ts001"] if "sub-ts001" in data["cases"] else next(iter(data["cases"].values()))
    for key in ("id_rate", "d_mean", "dice_mean", "dice_foreground", "hd_mean", "hd95_mean"):
        assert key in case
    assert case["id_rate"] == 1.0 and case["dice_mean"] == 1.0 and case["hd_mean"] == 0.0
    assert data["mean"]["id_rate"] == 1.0 and data["median"]["dice_mean"] == 1.0


def test_evaluate_detects_a_label_shift(converted, tmp_path, capsys):
    """A prediction whose labels are all one level off (the classic T12/L1 error)."""
    from SpineLabelLib.image import load_image
    from SpineLabelLib.verse.layout import write_case

    ct = load_image(converted / "rawdata" / "sub-ts001" / "sub-ts001_ct.nii.gz")
    gt = load_image(converted / "derivatives" / "sub-ts001" / "sub-ts001_seg-vert_msk.nii.gz")
    shifted = gt.array.copy()
    for v in (18, 19, 20, 21, 22, 23, 24):  # T11..L5 -> T12..L6 (VerSe values are consecutive here)
        shifted[gt.array == v] = v + 1
    write_case(tmp_path, "ts001", ct, gt.with_array(shifted), snapshot=False)
    code, out, err = run(capsys, "evaluate", converted, tmp_path, "--json", tmp_path / "m.json")
    assert code == 0, err
    case = next(iter(json.loads((tmp_path / "m.json").read_text())["cases"].values()))
    assert case["id_rate"] < 0.3
    assert 25 in case["extra_labels"]


def test_validate_clean_and_broken(converted, tmp_path, capsys):
    code, out, err = run(capsys, "validate", converted)
    assert code == 0, out
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(converted, broken)
    msk = broken / "derivatives" / "sub-ts001" / "sub-ts001_seg-vert_msk.nii.gz"
    msk.write_bytes(msk.read_bytes()[:2000])
    code, out, err = run(capsys, "validate", broken)
    assert code == 1
    assert "sub-ts001_seg-vert_msk.nii.gz" in out and "error" in out


def test_snapshot_command(tmp_path, capsys):
    png = tmp_path / "s.png"
    code, out, err = run(capsys, "snapshot", TS / "ct.nii.gz", "--mask", TS / "seg_totalseg_labels.nii.gz",
                         "--mask-labels", "totalseg", "--out", png)
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, err = run(capsys, "snapshot", TS / "ct.nii.gz", "--out", png)
    assert code == 2 and "already exists" in err


def test_demo_runs_end_to_end(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "SpineLabelLib.cli", "demo", "--out", str(tmp_path / "demo")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "snapshot" in proc.stdout
    metrics = json.loads((tmp_path / "demo" / "demo-metrics.json").read_text())
    assert metrics["id_rate"] == 1.0
    assert metrics["dice_mean"] == 1.0
    assert metrics["d_mean"] < 3.0  # body centroids from the written mask vs the phantom's analytic ones
    assert list((tmp_path / "demo" / "dataset").rglob("*_seg-vert_snp.png"))
