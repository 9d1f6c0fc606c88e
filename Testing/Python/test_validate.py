"""Dataset validation: a clean dataset passes; every kind of problem is reported, per file,
without stopping at the first and without changing any file."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from SpineLabelLib.errors import SpineLabelInputError
from SpineLabelLib.image import Image
from SpineLabelLib.verse.layout import write_case
from SpineLabelLib.verse.validate import Problem, validate_dataset

SHAPE = (16, 20, 24)


def phantom(seed=0) -> tuple[Image, Image]:
    """A random int16 CT (RAS, 1x1x2 mm) with L1 and L2 blocks in the mask."""
    rng = np.random.default_rng(seed)
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    affine[:3, 3] = (-8.0, 40.0, -300.0)
    ct = Image(rng.integers(-1024, 2000, size=SHAPE).astype(np.int16), affine, "ct")
    mask = np.zeros(SHAPE, np.uint8)
    mask[3:13, 4:16, 2:10] = 20
    mask[3:13, 4:16, 12:22] = 21
    return ct, ct.with_array(mask, "mask")


CENTROIDS = {20: np.array([8.0, 10.0, 6.0]), 21: np.array([8.0, 10.0, 17.0])}


def old_case(root, name, ct_array=None, ct_affine=None, mask_array=None, mask_affine=None, ctd=None, png=True):
    """A case in the 2019 challenge naming written with plain nibabel (any content allowed)."""
    ct, mask = phantom()
    folder = root / name
    folder.mkdir(parents=True)
    if ct_array is not False:
        nib.save(nib.Nifti1Image(ct.array if ct_array is None else ct_array,
                                 ct.affine if ct_affine is None else ct_affine), str(folder / f"{name}.nii.gz"))
    if mask_array is not False:
        nib.save(nib.Nifti1Image(mask.array if mask_array is None else mask_array,
                                 mask.affine if mask_affine is None else mask_affine), str(folder / f"{name}_seg.nii.gz"))
    if ctd is not False:
        entries = ctd if ctd is not None else [{"direction": ["R", "A", "S"]}] + [
            {"label": v, "X": float(c[0]), "Y": float(c[1]), "Z": float(c[2])} for v, c in CENTROIDS.items()]
        (folder / f"{name}_ctd.json").write_text(entries if isinstance(entries, str) else json.dumps(entries))
    if png:
        from PIL import Image as PILImage

        PILImage.fromarray(np.zeros((4, 4, 3), np.uint8)).save(folder / f"{name}_snapshot.png")
    return folder


def problems_of(problems: list[Problem], fragment: str) -> list[Problem]:
    return [p for p in problems if fragment in p.path]


def has(problems, fragment, severity, message) -> bool:
    return any(p.severity == severity and message in p.message for p in problems_of(problems, fragment))


def test_clean_written_dataset_has_no_problem(tmp_path):
    ct, mask = phantom()
    write_case(tmp_path, "verse001", ct, mask, CENTROIDS)  # with snapshot
    write_case(tmp_path, "verse002", ct, mask)  # computed body centroids
    old_case(tmp_path / "old", "verse003")
    calls = []
    assert validate_dataset(tmp_path, progress=lambda *a: calls.append(a)) == []
    assert [c[:2] for c in calls] == [(1, 3), (2, 3), (3, 3)]


def test_every_problem_is_reported_per_file(tmp_path):
    ct, mask = phantom()
    root = tmp_path / "ds"
    old_case(root, "good")
    # unreadable / wrong-dimension / degenerate images
    cut = old_case(root, "cut")
    data = (cut / "cut_seg.nii.gz").read_bytes()
    (cut / "cut_seg.nii.gz").write_bytes(data[: len(data) // 2])
    old_case(root, "flat", ct_array=ct.array[:, :, 0])
    old_case(root, "time", ct_array=np.stack([ct.array] * 3, axis=-1))
    zero = old_case(root, "zero")
    img = nib.Nifti1Image(ct.array, None)
    img.header["pixdim"][1:4] = [1.0, 0.0, 1.0]
    img.header.set_sform(None, code=0)
    img.header.set_qform(None, code=0)
    img.to_filename(str(zero / "zero.nii.gz"))
    # grid, labels, several problems in one mask file
    old_case(root, "shifted", mask_affine=mask.affine + np.diag([0, 0, 0.3, 0]))
    old_case(root, "many", mask_array=np.where(mask.array == 21, 33, mask.array).astype(np.float32) + 0.5 * (mask.array == 20))
    # centroid files
    old_case(root, "malformed", ctd='[{"label": 20, "X": ')
    old_case(root, "mismatch", ctd=[{"direction": ["R", "A", "S"]}, {"label": 20, "X": 300.0, "Y": 10.0, "Z": 6.0}])
    old_case(root, "offmask", ctd=[{"direction": ["R", "A", "S"]},
                                   {"label": 20, "X": 8.0, "Y": 10.0, "Z": 0.0},   # 2 slices below L1: 4 mm, warning
                                   {"label": 21, "X": 8.0, "Y": 1.0, "Z": 6.0},    # inside L1, far from L2
                                   {"label": 22, "X": 8.0, "Y": 10.0, "Z": 12.0}])  # L3 not in the mask
    old_case(root, "dup", ctd=[{"direction": ["R", "A", "S"]}, {"label": 20, "X": 8, "Y": 10, "Z": 6},
                               {"label": 20, "X": 8, "Y": 10, "Z": 7}, {"label": 33, "X": 1, "Y": 1, "Z": 1}])
    # missing / orphan / extra files
    old_case(root, "nomask", mask_array=False, ctd=False)
    old_case(root, "noimage", ct_array=False)
    old_case(root, "nosnap", png=False)
    badpng = old_case(root, "badpng")
    (badpng / "badpng_snapshot.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    old_case(root, "notct", ct_array=(ct.array > 0).astype(np.float32))
    (root / "notes.txt").write_text("hello")
    (root / "good" / ".good.nii.gz.abc.tmp.nii.gz").write_bytes(b"")

    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    problems = validate_dataset(root)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before  # nothing touched
    text = "\n".join(map(str, problems))

    assert problems_of(problems, "/good/good") == [], text
    assert has(problems, "cut_seg.nii.gz", "error", "cannot be read")
    assert has(problems, "flat.nii.gz", "error", "2D")
    assert has(problems, "time.nii.gz", "error", "4D")
    assert has(problems, "zero.nii.gz", "error", "zero")
    assert has(problems, "shifted_seg.nii.gz", "error", "affine differs")
    many = problems_of(problems, "many_seg.nii.gz")
    assert any("non-integer" in p.message for p in many) and any("[33]" in p.message for p in many), text
    assert has(problems, "malformed_ctd.json", "error", "not valid JSON")
    assert has(problems, "mismatch_ctd.json", "error", "far outside")
    assert any("mismatch.nii.gz" in p.message for p in problems_of(problems, "mismatch_ctd.json"))  # names the image
    assert has(problems, "offmask_ctd.json", "warning", "centroid L1 lies outside its vertebra's mask, 4.0 mm")
    assert has(problems, "offmask_ctd.json", "error", "centroid L2 lies outside its vertebra's mask")
    assert has(problems, "offmask_ctd.json", "error", "no vertebra L3")
    dup = [p.message for p in problems_of(problems, "dup_ctd.json")]
    assert any("more than once" in m for m in dup) and any("33" in m for m in dup), dup
    assert has(problems, "nomask.nii.gz", "error", "no vertebra mask")
    assert has(problems, "noimage_seg.nii.gz", "error", "no CT image")
    assert has(problems, "noimage_ctd.json", "error", "no CT image")
    assert has(problems, "nosnap.nii.gz", "warning", "no snapshot")
    assert has(problems, "badpng_snapshot.png", "error", "not a readable PNG")
    assert has(problems, "notct.nii.gz", "warning", "too narrow for CT")
    assert has(problems, "notes.txt", "warning", "not a VerSe file name")
    assert has(problems, ".tmp.nii.gz", "warning", "temporary file")
    for p in problems:
        assert p.severity in ("error", "warning") and p.message and p.path


def test_empty_or_missing_root(tmp_path):
    problems = validate_dataset(tmp_path)
    assert len(problems) == 1 and problems[0].severity == "error" and "no VerSe case" in problems[0].message
    with pytest.raises(SpineLabelInputError, match="does not exist"):
        validate_dataset(tmp_path / "nothere")
