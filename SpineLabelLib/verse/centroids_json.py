"""VerSe centroid JSON files: read onto an image's voxel grid, write from it.

File format (see ../shared/docs/verse-format.md)::

    [{"direction": ["P", "I", "R"]},
     {"label": 20, "X": 75.1, "Y": 35.0, "Z": 22.6}, ...]

* ``direction`` holds nibabel axis codes of the array that X, Y, Z index (along array axes
  0, 1, 2). Published files use the image's own grid. When the codes differ from the
  image's, the coordinates index the image *reoriented* to those codes (exact
  permutation/flip of the voxel array, as :func:`SpineLabelLib.image.reorient` does); they
  are mapped back exactly, a flipped axis of length n taking x to n - 1 - x.
* Legacy challenge files have no direction entry and give millimetres on a 1 mm isotropic
  grid in a fixed orientation: VerSe'19 ``*_ctd.json`` axes I-P-L, VerSe'20
  ``*_iso-ctd.json`` axes P-I-R. See :func:`legacy_grid` for the exact grid assumed.

In memory, centroids are ``centroids_ijk``: ``dict[int, np.ndarray]`` mapping a VerSe label
value to a (3,) float voxel index (i, j, k) on the grid of the image passed in.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import labels
from ..errors import SpineLabelInputError
from ..fileio import write_json_atomic
from ..image import Image, grid_with_spacing, reoriented_grid, transform_indices

#: Axis codes of the 1 mm grids used by the old challenge files (no direction entry).
LEGACY_AXCODES = {"verse19": ("I", "P", "L"), "verse20": ("P", "I", "R")}

#: A centroid further than this outside the image box (world mm) means the JSON does not
#: belong to the image. 20 mm is the identification threshold of the VerSe evaluation.
FAR_OUTSIDE_MM = 20.0


@dataclass
class CentroidCheck:
    """Result of parsing a centroid JSON against an image, with every problem found."""

    centroids_ijk: dict[int, np.ndarray] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    direction: tuple[str, str, str] | None = None  # the file's codes; None for legacy files
    legacy: str | None = None  # "verse19" / "verse20" when the file was read as legacy mm


# ----------------------------------------------------------------------------------
# grids the coordinates refer to
# ----------------------------------------------------------------------------------
def legacy_grid(image: Image, legacy: str) -> np.ndarray:
    """Affine of the 1 mm grid that legacy challenge millimetre coordinates index.

    Assumed grid (the challenge pages only say "1 mm isotropic, I-P-L" for 2019 and
    "1 mm, origin at anterior-superior-left (P-I-R codes)" for 2020):

    1. the image is reoriented exactly to the legacy axis codes (I-P-L for VerSe'19,
       P-I-R for VerSe'20), as :func:`SpineLabelLib.image.reorient` does;
    2. that grid is resampled to 1 mm keeping the outer corner of voxel (0, 0, 0) and the
       axis directions (:func:`SpineLabelLib.image.grid_with_spacing`); a coordinate c is
       the (fractional) voxel index on it, so "origin at A-S-L" is the volume's corner.

    Why this grid: the public VerSe utilities (``anjany/verse``, ``utils/data_utilities.py``)
    make the isotropic image with ``resample_nib`` (nibabel ``rescale_affine``, which keeps
    the volume's centre); for a field of view of whole millimetres that is exactly this
    corner-preserving grid (otherwise they differ by under 0.5 mm). Their
    ``rescale_centroids`` helper instead scales indices about voxel 0's centre
    (``c = index * spacing``), inconsistent with their own resampling by (spacing - 1) / 2 mm
    per axis (1 mm for 3 mm slices, nothing for 1 mm data); we follow the image grid.
    Returns the voxel->RAS affine of the 1 mm grid.
    """
    if legacy not in LEGACY_AXCODES:
        raise ValueError(f"legacy must be one of {sorted(LEGACY_AXCODES)}, got {legacy!r}")
    shape, affine, _ = reoriented_grid(image.shape, image.affine, LEGACY_AXCODES[legacy])
    return grid_with_spacing((shape, affine), 1.0)[1]


def guess_legacy(path: str | os.PathLike) -> str:
    """``verse20`` for ``*iso-ctd.json`` (2020 challenge), else ``verse19``."""
    return "verse20" if Path(path).name.lower().endswith("iso-ctd.json") else "verse19"


# ----------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------
def check_centroids(path: str | os.PathLike, image: Image, legacy: str | None = None) -> CentroidCheck:
    """Parse a centroid JSON onto ``image``'s voxel grid (i, j, k), collecting EVERY problem.

    Never raises for bad content (only returns errors/warnings), so a validator can list
    them all; :func:`read_centroids` is the raising front end. ``legacy`` ("verse19" or
    "verse20") chooses the grid of files without a direction entry; by default it is
    inferred from the file name (:func:`guess_legacy`). A direction entry always wins.
    """
    path = Path(path)
    out = CentroidCheck()
    entries = _load_json_list(path, out)
    if entries is None:
        return out
    direction, points = _split_entries(entries, out)
    if direction is False or (out.errors and not points):  # nothing can be placed
        return out
    if direction is None:
        out.legacy = legacy or guess_legacy(path)
        if out.legacy not in LEGACY_AXCODES:
            raise ValueError(f"legacy must be one of {sorted(LEGACY_AXCODES)}, got {legacy!r}")
        source_affine = legacy_grid(image, out.legacy)
        out.warnings.append(
            f"no direction entry: read as {out.legacy} challenge millimetres on a 1 mm "
            f"{'-'.join(LEGACY_AXCODES[out.legacy])} grid"
        )
    else:
        out.direction = direction
        source_affine = None if direction == tuple(image.axcodes) else reoriented_grid(image.shape, image.affine, direction)[1]
    for value, xyz in points.items():
        ijk = np.asarray(xyz, dtype=np.float64)
        if source_affine is not None:
            ijk = transform_indices(ijk, source_affine, image.affine)
        out.centroids_ijk[value] = ijk
    _check_inside(path, image, out)
    return out


def read_centroids(path: str | os.PathLike, image: Image, legacy: str | None = None) -> dict[int, np.ndarray]:
    """Read a VerSe centroid JSON as ``centroids_ijk``: label -> voxel (i, j, k) on ``image``'s grid.

    Raises :class:`SpineLabelInputError` naming the file (and the image, for a JSON that
    does not fit it) listing all problems; non-vertebra labels (subregions 40-50, discs
    100+) and NaN entries are skipped, the former with a warning.
    """
    result = check_centroids(path, image, legacy)
    if result.errors:
        raise SpineLabelInputError(path, "; ".join(result.errors))
    for message in result.warnings:
        warnings.warn(f"{path}: {message}", stacklevel=2)
    return result.centroids_ijk


def _load_json_list(path: Path, out: CentroidCheck) -> list | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        out.errors.append("does not exist")
        return None
    except (OSError, UnicodeDecodeError) as exc:
        out.errors.append(f"cannot be read ({type(exc).__name__}: {exc})")
        return None
    try:
        data = json.loads(text)  # Python's json accepts the NaN that VerSe files contain
    except json.JSONDecodeError as exc:
        out.errors.append(f"is not valid JSON ({exc})")
        return None
    if not isinstance(data, list):
        out.errors.append(f"must hold a JSON list of centroid entries, found a {type(data).__name__}")
        return None
    return data


def _split_entries(entries: list, out: CentroidCheck):
    """The direction codes (None: absent, False: invalid) and label -> [X, Y, Z] of usable entries."""
    direction = None
    points: dict[int, list[float]] = {}
    for n, entry in enumerate(entries):
        where = f"entry {n}"
        if not isinstance(entry, dict):
            out.errors.append(f"{where} is a {type(entry).__name__}, not an object")
            continue
        if "direction" in entry:
            if direction is not None:
                out.errors.append(f"{where}: a second direction entry")
                continue
            direction = _parse_direction(entry["direction"], where, out)
            continue
        missing = [k for k in ("label", "X", "Y", "Z") if k not in entry]
        if missing:
            out.errors.append(f"{where} lacks {', '.join(missing)}")
            continue
        value = _parse_label(entry["label"], where, out)
        coords = [_parse_coordinate(entry[k], f"{where} {k}", out) for k in ("X", "Y", "Z")]
        if value is None or any(c is False for c in coords):
            continue
        if any(c is None for c in coords):  # NaN: an absent vertebra, as in VerSe files
            continue
        if not labels.is_vertebra(value):
            if value in labels.SUBREGION_VALUES or value >= labels.DISC_VALUE_MIN:
                out.warnings.append(f"label {value} (subregion/disc, not a vertebra) skipped")
            else:
                out.errors.append(f"label {value} is not a VerSe vertebra label (valid: 1-28)")
            continue
        if value in points:
            out.errors.append(f"label {value} ({labels.name_of(value)}) appears more than once")
            continue
        points[value] = coords  # type: ignore[assignment]
    return direction, points


def _parse_direction(codes, where: str, out: CentroidCheck):
    import nibabel.orientations as nio

    try:
        codes = tuple(str(c).upper() for c in codes)
        if len(codes) != 3:
            raise ValueError("needs 3 codes")
        ornt = nio.axcodes2ornt(codes)
        if np.any(np.isnan(ornt)) or len({int(a) for a in ornt[:, 0]}) != 3:
            raise ValueError("codes do not name three different axes")
    except (TypeError, ValueError) as exc:
        out.errors.append(f"{where}: direction {codes!r} is not a valid set of nibabel axis codes ({exc})")
        return False  # an invalid direction: the coordinates cannot be placed; not legacy either
    return codes


def _parse_label(value, where: str, out: CentroidCheck) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value != int(value):
        out.errors.append(f"{where}: label {value!r} is not an integer")
        return None
    return int(value)


def _parse_coordinate(value, where: str, out: CentroidCheck):
    """A float, None for NaN (absent vertebra), False for garbage (error recorded)."""
    if isinstance(value, str) and value.strip().lower() == "nan":
        return None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        out.errors.append(f"{where}: {value!r} is not a number")
        return False
    if math.isnan(value):
        return None
    if not math.isfinite(value):
        out.errors.append(f"{where}: {value!r} is not finite")
        return False
    return float(value)


def _check_inside(path: Path, image: Image, out: CentroidCheck) -> None:
    """Error for centroids far outside the image box: the JSON belongs to another image."""
    far = []
    for value, ijk in out.centroids_ijk.items():
        distance = distance_outside_grid_mm(image, ijk)
        if distance > FAR_OUTSIDE_MM:
            far.append(f"{labels.name_of(value)} {distance:.0f} mm")
        elif distance > 0:
            out.warnings.append(f"{labels.name_of(value)} lies {distance:.1f} mm outside the image grid")
    if far:
        hint = "its direction entry is wrong" if out.direction else "it is not a legacy file of that kind"
        out.errors.append(
            f"centroids lie far outside the image grid {image.shape} of {image.source} "
            f"({', '.join(far)}): the JSON does not belong to this image, or {hint}"
        )


def centroids_to_world(grid: Image, centroids_ijk: dict, what: str = "centroids") -> dict[int, np.ndarray]:
    """Vertebra centroids, voxel (i, j, k) on ``grid`` -> RAS mm. NaN entries and
    non-vertebra values are skipped (as VerSe readers do); a malformed point raises."""
    out: dict[int, np.ndarray] = {}
    for value, ijk in centroids_ijk.items():
        ijk = np.asarray(ijk, dtype=np.float64)
        if ijk.shape != (3,):
            raise SpineLabelInputError(grid.source, f"{what}: centroid of label {value} has shape {ijk.shape}, expected (3,)")
        if labels.is_vertebra(int(value)) and np.all(np.isfinite(ijk)):
            out[int(value)] = grid.index_to_world(ijk)
    return out


def distance_outside_grid_mm(image: Image, ijk) -> float:
    """World distance (mm) from voxel index (i, j, k) to the image's box (0 when inside).

    The box spans the voxels' outer faces: index -0.5 to n - 0.5 along each axis.
    """
    ijk = np.asarray(ijk, dtype=np.float64)
    clamped = np.clip(ijk, -0.5, np.asarray(image.shape) - 0.5)
    return float(np.linalg.norm(image.index_to_world(ijk) - image.index_to_world(clamped)))


# ----------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------
def centroids_to_json(centroids_ijk: dict[int, np.ndarray], image: Image) -> list:
    """The VerSe JSON structure for ``centroids_ijk`` (voxel (i, j, k) on ``image``'s grid).

    Direction entry = the image's own axis codes; entries in anatomical order; coordinates
    rounded to one decimal as VerSe does. Raises ``ValueError`` for non-vertebra labels or
    non-finite coordinates (a programming error, not a bad file).
    """
    data: list = [{"direction": list(image.axcodes)}]
    for value in labels.sort_anatomical(_checked_labels(centroids_ijk)):
        ijk = np.asarray(centroids_ijk[value], dtype=np.float64).reshape(-1)
        if ijk.shape != (3,) or not np.all(np.isfinite(ijk)):
            raise ValueError(f"centroid of label {value} must be 3 finite voxel indices, got {ijk}")
        data.append({"label": int(value), "X": round(float(ijk[0]), 1), "Y": round(float(ijk[1]), 1),
                     "Z": round(float(ijk[2]), 1)})
    return data


def _checked_labels(centroids_ijk) -> list[int]:
    values = []
    for value in centroids_ijk:
        if not labels.is_vertebra(int(value)):
            raise ValueError(f"{value} is not a VerSe vertebra label (valid: 1-28); cannot write it as a centroid")
        values.append(int(value))
    return values


def write_centroids(path: str | os.PathLike, centroids_ijk: dict[int, np.ndarray], image: Image,
                    overwrite: bool = False) -> Path:
    """Write ``centroids_ijk`` (voxel (i, j, k) on ``image``'s grid) as a VerSe JSON, atomically.

    Never replaces an existing file unless ``overwrite`` (``OutputExistsError``).
    """
    return write_json_atomic(path, centroids_to_json(centroids_ijk, image), overwrite)
