"""Centroid JSON: write/read round trips checked against nibabel, other directions, legacy
millimetre files, and every kind of bad file."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from SpineLabelLib.errors import OutputExistsError, SpineLabelInputError
from SpineLabelLib.image import Image, reorient, save_nifti
from SpineLabelLib.verse.centroids_json import (
    centroids_to_json,
    check_centroids,
    legacy_grid,
    read_centroids,
    write_centroids,
)

from conftest import oblique_affine

ORIENTATIONS = ["RAS", "LAS", "LPS", "PIR", "ASL", "IPL"]


def image_in(codes: str | None, shape=(20, 24, 30), spacing=(0.8, 1.2, 2.5), source="ct.nii.gz") -> Image:
    """An image with the given axis codes (None: oblique), built by exact reorientation."""
    if codes is None:
        return Image(np.zeros(shape, np.int16), oblique_affine(spacing, (-40.0, 12.5, 300.0)), source)
    base = np.diag([*spacing, 1.0])
    base[:3, 3] = (-40.0, 12.5, 300.0)
    img = reorient(Image(np.zeros(shape, np.int16), base, source), tuple(codes))
    assert "".join(img.axcodes) == codes
    return img


def sample_centroids(img: Image) -> dict[int, np.ndarray]:
    n = np.asarray(img.shape, dtype=float)
    return {20: n * 0.3 + 0.17, 21: n * 0.5 - 0.23, 28: n * 0.7 + 0.04, 19: n * 0.1}


@pytest.mark.parametrize("codes", ORIENTATIONS + [None])
def test_write_then_read_and_world_points_checked_with_nibabel(tmp_path, codes):
    img = image_in(codes)
    ctd = sample_centroids(img)
    nii_path = save_nifti(img, tmp_path / "ct.nii.gz")
    json_path = write_centroids(tmp_path / "ctd.json", ctd, img)

    # our reader: same voxels within the one-decimal rounding
    back = read_centroids(json_path, img)
    assert set(back) == set(ctd)
    for v in ctd:
        assert np.allclose(back[v], ctd[v], atol=0.05 + 1e-9)

    # independent check: plain json + the affine nibabel reads from the file
    raw = json.loads(json_path.read_text())
    assert raw[0] == {"direction": list(nib.aff2axcodes(nib.load(str(nii_path)).affine))}
    assert [e["label"] for e in raw[1:]] == [19, 28, 20, 21]  # anatomical order: T12, T13, L1, L2
    affine = nib.load(str(nii_path)).affine
    tolerance = 0.05 * np.linalg.norm(img.spacing) + 1e-4
    for entry in raw[1:]:
        world = nib.affines.apply_affine(affine, [entry["X"], entry["Y"], entry["Z"]])
        assert np.linalg.norm(world - img.index_to_world(ctd[entry["label"]])) <= tolerance
        assert all(round(entry[k], 1) == entry[k] for k in "XYZ")


def test_direction_other_than_the_image_maps_exactly_with_n_minus_1_flip(tmp_path):
    img = image_in("LAS", shape=(4, 5, 6), spacing=(1.0, 2.0, 3.0))
    path = tmp_path / "ctd.json"
    # PIR array of an LAS image: axis0 = P (image j flipped), axis1 = I (k flipped), axis2 = R (i flipped)
    path.write_text(json.dumps([{"direction": ["P", "I", "R"]}, {"label": 20, "X": 1.5, "Y": 2.0, "Z": 0.5}]))
    ijk = read_centroids(path, img)[20]
    assert np.allclose(ijk, [4 - 1 - 0.5, 5 - 1 - 1.5, 6 - 1 - 2.0])
    # and the world point equals the one the reoriented image gives to (X, Y, Z)
    pir = reorient(img, ("P", "I", "R"))
    assert np.allclose(img.index_to_world(ijk), pir.index_to_world([1.5, 2.0, 0.5]))


@pytest.mark.parametrize("codes", ORIENTATIONS + [None])
def test_direction_in_any_orientation_reads_to_the_same_world_point(tmp_path, codes):
    img = image_in(codes, shape=(9, 11, 13), spacing=(1.0, 0.7, 2.0))
    ijk = np.array([2.5, 7.25, 4.0])
    for json_codes in ORIENTATIONS:
        other = reorient(img, tuple(json_codes))
        xyz = np.round(other.world_to_index(img.index_to_world(ijk)), 6)
        path = tmp_path / f"{json_codes}.json"
        path.write_text(json.dumps([{"direction": list(json_codes)}, {"label": 3, "X": xyz[0], "Y": xyz[1], "Z": xyz[2]}]))
        assert np.allclose(read_centroids(path, img)[3], ijk, atol=1e-5), json_codes


def test_legacy_verse19_ipl_millimetres(tmp_path):
    # RAS image, spacing (2, 1, 3): the I-P-L grid flips all axes and permutes k, j, i
    img = Image(np.zeros((10, 20, 30), np.int16), np.diag([2.0, 1.0, 3.0, 1.0]), "verse004.nii.gz")
    path = tmp_path / "verse004_ctd.json"
    path.write_text(json.dumps([{"label": 1, "X": 30.0, "Y": 5.0, "Z": 4.0}, {"label": 2, "X": "nan", "Y": 1, "Z": 1}]))
    with pytest.warns(UserWarning, match="verse19"):
        ctd = read_centroids(path, img)
    # 1 mm grid keeping the outer corner: reoriented index v = (c + 0.5) / spacing - 0.5, then flipped:
    # X along I (spacing 3): k = 29 - (30.5/3 - 0.5); Y along P (1 mm): j = 19 - 5; Z along L (2): i = 9 - (4.5/2 - 0.5)
    assert set(ctd) == {1}
    assert np.allclose(ctd[1], [9 - 1.75, 14.0, 29 - (30.5 / 3 - 0.5)])
    # in world terms: z of voxel k is 3k; the I axis starts at the top face z = 87 + 1.5, so X=30 is z = 88.5 - 30.5
    assert np.isclose(img.index_to_world(ctd[1])[2], 88.5 - 30.5)


def test_legacy_verse20_pir_millimetres_inferred_from_iso_ctd_name(tmp_path):
    # LPS image, spacing (1, 1, 2): P-I-R keeps j, flips k and i
    affine = np.diag([-1.0, -1.0, 2.0, 1.0])
    affine[:3, 3] = (50.0, 60.0, -100.0)
    img = Image(np.zeros((8, 6, 10), np.int16), affine, "verse512_CT-iso.nii.gz")
    path = tmp_path / "verse512_CT-iso_iso-ctd.json"
    path.write_text(json.dumps([{"label": 22, "X": 3.0, "Y": 8.0, "Z": 2.0}]))
    with pytest.warns(UserWarning, match="verse20"):
        ctd = read_centroids(path, img)
    # X along P = j (1 mm, unflipped); Y along I = k flipped (2 mm): 9 - (8.5/2 - 0.5); Z along R = i flipped (1 mm)
    assert np.allclose(ctd[22], [8 - 1 - 2.0, 3.0, 10 - 1 - (8.5 / 2 - 0.5)])
    # the same file forced to the 2019 convention lands elsewhere
    with pytest.warns(UserWarning, match="verse19"):
        assert not np.allclose(read_centroids(path, img, legacy="verse19")[22], ctd[22])


def test_legacy_grid_is_unit_spaced_and_keeps_the_reoriented_outer_corner():
    img = image_in(None, shape=(7, 8, 9), spacing=(0.5, 1.5, 3.0))
    for legacy, codes in (("verse19", "IPL"), ("verse20", "PIR")):
        grid = legacy_grid(img, legacy)
        reoriented = reorient(img, tuple(codes))
        assert np.allclose(np.linalg.norm(grid[:3, :3], axis=0), 1.0)
        assert np.allclose(grid[:3, :3], reoriented.direction)  # same axis directions, 1 mm steps
        corner = reoriented.index_to_world([-0.5, -0.5, -0.5])
        assert np.allclose(grid[:3, :3] @ [-0.5, -0.5, -0.5] + grid[:3, 3], corner)


def test_write_refuses_to_overwrite_and_writes_atomically(tmp_path):
    img = image_in("RAS")
    path = write_centroids(tmp_path / "c.json", {20: np.array([1.0, 2.0, 3.0])}, img)
    before = path.read_text()
    with pytest.raises(OutputExistsError):
        write_centroids(path, {21: np.array([4.0, 5.0, 6.0])}, img)
    assert path.read_text() == before
    write_centroids(path, {21: np.array([4.0, 5.0, 6.0])}, img, overwrite=True)
    assert json.loads(path.read_text())[1]["label"] == 21
    with pytest.raises(ValueError, match="33"):
        write_centroids(tmp_path / "bad.json", {33: np.zeros(3)}, img)
    with pytest.raises(ValueError, match="finite"):
        centroids_to_json({20: np.array([np.nan, 1, 2])}, img)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json"]


def _write(tmp_path, name, content) -> str:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_bad_files_raise_naming_the_file(tmp_path):
    img = image_in("RAS", source="the_ct.nii.gz")
    d = {"direction": ["R", "A", "S"]}
    cases = {
        "broken.json": ("[{\"label\": 20, ", "not valid JSON"),
        "object.json": ({"label": 20}, "JSON list"),
        "nolabel.json": ([d, {"X": 1, "Y": 2, "Z": 3}], "lacks label"),
        "noz.json": ([d, {"label": 20, "X": 1, "Y": 2}], "lacks Z"),
        "badlabel.json": ([d, {"label": 33, "X": 1, "Y": 2, "Z": 3}], "33 is not a VerSe"),
        "strlabel.json": ([d, {"label": "L1", "X": 1, "Y": 2, "Z": 3}], "not an integer"),
        "dup.json": ([d, {"label": 20, "X": 1, "Y": 2, "Z": 3}, {"label": 20, "X": 2, "Y": 2, "Z": 3}], "more than once"),
        "baddir.json": ([{"direction": ["X", "Y", "Z"]}, {"label": 20, "X": 1, "Y": 2, "Z": 3}], "axis codes"),
        "text.json": ([d, {"label": 20, "X": "one", "Y": 2, "Z": 3}], "not a number"),
        "far.json": ([d, {"label": 20, "X": 500, "Y": 2, "Z": 3}], r"far outside.*the_ct\.nii\.gz"),
    }
    for name, (content, message) in cases.items():
        path = _write(tmp_path, name, content)
        with pytest.raises(SpineLabelInputError, match=name.replace(".", r"\.") + ".*" + message):
            read_centroids(path, img)
    with pytest.raises(SpineLabelInputError, match="missing.json.*does not exist"):
        read_centroids(tmp_path / "missing.json", img)


def test_check_collects_every_problem(tmp_path):
    img = image_in("RAS")
    path = _write(tmp_path, "many.json", [
        {"direction": ["R", "A", "S"]},
        {"label": 33, "X": 1, "Y": 2, "Z": 3},
        {"label": 20, "X": 1, "Y": 2, "Z": 3},
        {"label": 20, "X": 1, "Y": 2, "Z": 3},
        {"label": 21, "X": 900, "Y": 2, "Z": 3},
        {"label": 22, "Y": 2, "Z": 3},
    ])
    result = check_centroids(path, img)
    text = " | ".join(result.errors)
    assert len(result.errors) == 4, text
    for part in ("33", "more than once", "far outside", "lacks X"):
        assert part in text


def test_subregion_disc_and_nan_entries_are_skipped_not_fatal(tmp_path):
    img = image_in("RAS")
    path = _write(tmp_path, "extra.json", '[{"direction": ["R", "A", "S"]}, {"label": 41, "X": 1, "Y": 2, "Z": 3},'
                                          ' {"label": 120, "X": 1, "Y": 2, "Z": 3}, {"label": 24, "X": NaN, "Y": NaN, "Z": NaN},'
                                          ' {"label": 23, "X": 1.5, "Y": 2, "Z": 3}]')
    with pytest.warns(UserWarning, match="41.*skipped"):
        ctd = read_centroids(path, img)
    assert list(ctd) == [23]
    assert np.allclose(ctd[23], [1.5, 2, 3])


def test_slightly_outside_is_a_warning_far_outside_an_error(tmp_path):
    img = image_in("RAS", shape=(10, 10, 10), spacing=(1.0, 1.0, 1.0))
    near = _write(tmp_path, "near.json", [{"direction": ["R", "A", "S"]}, {"label": 20, "X": 12.0, "Y": 5, "Z": 5}])
    with pytest.warns(UserWarning, match="outside the image grid"):
        assert np.allclose(read_centroids(near, img)[20], [12, 5, 5])
    far = _write(tmp_path, "farther.json", [{"direction": ["R", "A", "S"]}, {"label": 20, "X": 35.0, "Y": 5, "Z": 5}])
    with pytest.raises(SpineLabelInputError, match="far outside"):
        read_centroids(far, img)
