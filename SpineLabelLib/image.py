"""The image type: a voxel array indexed (i, j, k) with a 4x4 affine to RAS millimetres.

This is the only module that knows how files store geometry. Everything else in
SpineLabelLib receives an :class:`Image` (or an array on an Image's grid) and never has to
think about LPS versus RAS, (k, j, i) versus (i, j, k), or qform versus sform.

Conventions
-----------
* ``Image.array[i, j, k]`` is the voxel at index (i, j, k), the nibabel convention.
* ``Image.affine`` maps homogeneous voxel indices (i, j, k, 1) to RAS world coordinates in
  mm (+x towards the patient's Right, +y Anterior, +z Superior). Voxel centres sit at
  integer indices.
* SimpleITK and NRRD/MHA/DICOM use LPS and arrays in (k, j, i) order; conversions live in
  :func:`from_sitk` / :func:`to_sitk` only.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import SpineLabelInputError
from .fileio import atomic_output

#: RAS <-> LPS: negate the first two world axes.
_LPS_FLIP = np.diag([-1.0, -1.0, 1.0])

NIFTI_SUFFIXES = (".nii", ".nii.gz")
SITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")


@dataclass(eq=False)
class Image:
    """A 3D voxel array indexed (i, j, k) plus its voxel-to-RAS-mm affine.

    ``source`` names the file the image came from (used in error messages only).
    """

    array: np.ndarray
    affine: np.ndarray
    source: str | None = None

    def __post_init__(self):
        self.array = np.asarray(self.array)
        self.affine = np.array(self.affine, dtype=np.float64)
        validate_geometry(self.array.shape, self.affine, self.source)

    # -- geometry -------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.array.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size in mm along i, j, k (the norms of the affine's columns)."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def direction(self) -> np.ndarray:
        """3x3 matrix whose columns are the RAS unit vectors of the i, j, k axes."""
        return self.affine[:3, :3] / self.spacing

    @property
    def origin(self) -> np.ndarray:
        """RAS mm position of the centre of voxel (0, 0, 0)."""
        return self.affine[:3, 3].copy()

    @property
    def axcodes(self) -> tuple[str, str, str]:
        """nibabel axis codes: the direction in which each index increases, e.g. ('L','A','S')."""
        return axcodes_of(self.affine)

    def index_to_world(self, ijk) -> np.ndarray:
        """Voxel indices (i, j, k) (shape (3,) or (N, 3), may be fractional) -> RAS mm."""
        return apply_affine(self.affine, ijk)

    def world_to_index(self, ras) -> np.ndarray:
        """RAS mm (shape (3,) or (N, 3)) -> fractional voxel indices (i, j, k)."""
        return apply_affine(np.linalg.inv(self.affine), ras)

    def same_grid(self, other: "Image", atol_mm: float = 1e-4) -> bool:
        """True if ``other`` has the same shape and an affine equal within ``atol_mm``."""
        return self.shape == other.shape and np.allclose(self.affine, other.affine, atol=atol_mm, rtol=0)

    def require_same_grid(self, other: "Image", what: str = "mask", atol_mm: float = 1e-3) -> None:
        """Raise naming ``other.source`` if ``other`` is not on this image's grid."""
        if self.shape != other.shape:
            raise SpineLabelInputError(
                other.source,
                f"{what} grid {other.shape} differs from the image grid {self.shape} of {self.source}",
            )
        worst = float(np.max(np.abs(self.affine - other.affine)))
        if worst > atol_mm:
            raise SpineLabelInputError(
                other.source,
                f"{what} affine differs from the image affine of {self.source} by up to {worst:.4g} mm "
                f"({'/'.join(other.axcodes)} vs {'/'.join(self.axcodes)})",
            )

    def with_array(self, array: np.ndarray, source: str | None = None) -> "Image":
        """A new Image on this grid holding ``array`` (same (i, j, k) shape required)."""
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise ValueError(f"array shape {array.shape} does not match the grid {self.shape}")
        return Image(array, self.affine.copy(), source if source is not None else self.source)

    def crop(self, box: tuple[slice, slice, slice]) -> "Image":
        """The sub-volume ``box`` (slices along i, j, k; steps of 1), every voxel kept where
        it was in the world: the affine's origin moves to the box's first voxel."""
        if any(sl.step not in (None, 1) for sl in box):
            raise ValueError(f"crop {box}: only steps of 1 keep the voxel size")
        return Image(self.array[box].copy(), self.crop_affine(box), f"{self.source} cropped" if self.source else None)

    def crop_affine(self, box: tuple[slice, slice, slice]) -> np.ndarray:
        """The affine (voxel (i, j, k) -> RAS mm) of the sub-volume ``box`` (slices along i,
        j, k): this image's, its origin moved to the box's first voxel. What :meth:`crop`
        gives its copy, for code that works on ``array[box]`` views without copying."""
        affine = self.affine.copy()
        affine[:3, 3] = self.index_to_world([sl.indices(n)[0] for sl, n in zip(box, self.shape)])
        return affine

    def __repr__(self) -> str:
        sp = "x".join(f"{s:.3g}" for s in self.spacing)
        return (
            f"Image(shape={self.shape}, spacing={sp} mm, axcodes={''.join(self.axcodes)}, "
            f"dtype={self.array.dtype}, source={self.source!r})"
        )


# ----------------------------------------------------------------------------------
# geometry helpers
# ----------------------------------------------------------------------------------
def apply_affine(affine: np.ndarray, points) -> np.ndarray:
    """Apply a 4x4 affine to points of shape (3,) or (N, 3)."""
    pts = np.asarray(points, dtype=np.float64)
    out = pts @ affine[:3, :3].T + affine[:3, 3]
    return out


def axcodes_of(affine: np.ndarray) -> tuple[str, str, str]:
    import nibabel as nib

    return tuple(nib.aff2axcodes(affine))  # type: ignore[return-value]


def validate_geometry(shape: Sequence[int], affine: np.ndarray, source: str | None = None) -> None:
    """Reject arrays that are not 3D and affines that are not a valid voxel-to-mm map."""
    if len(shape) != 3:
        dims = f"{len(shape)}D"
        raise SpineLabelInputError(source, f"is {dims} (shape {tuple(shape)}); a CT volume or mask must be 3D")
    if min(shape) < 1:
        raise SpineLabelInputError(source, f"has an empty dimension (shape {tuple(shape)})")
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise SpineLabelInputError(source, "has a missing or non-finite voxel-to-world affine")
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if np.any(spacing <= 1e-6):
        raise SpineLabelInputError(source, f"has zero voxel spacing {tuple(np.round(spacing, 6))}")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-9 * np.prod(spacing):
        raise SpineLabelInputError(source, "has a degenerate (singular) voxel-to-world affine")


def transform_indices(ijk, from_affine: np.ndarray, to_affine: np.ndarray) -> np.ndarray:
    """Map voxel indices (i, j, k) of one grid to the fractional indices of another grid.

    The world position is preserved exactly: for a grid that only flips an axis of length
    n, index x maps to n - 1 - x.
    """
    return apply_affine(np.linalg.inv(to_affine) @ from_affine, ijk)


# ----------------------------------------------------------------------------------
# reorientation and resampling
# ----------------------------------------------------------------------------------
def reoriented_grid(shape: Sequence[int], affine: np.ndarray, axcodes: Sequence[str]):
    """Shape, affine and nibabel orientation transform of a grid reoriented to ``axcodes``.

    Only the grid is computed (no voxel data moves); :func:`reorient` applies the same
    transform to the voxels. Voxel centres keep their world positions exactly.
    """
    import nibabel.orientations as nio

    transform = nio.ornt_transform(nio.io_orientation(affine), nio.axcodes2ornt(tuple(axcodes)))
    new_affine = np.asarray(affine, dtype=np.float64) @ nio.inv_ornt_aff(transform, tuple(shape))
    # row r of ``transform`` names the output axis (and flip) of input axis r
    new_shape = [0, 0, 0]
    for in_axis, (out_axis, _flip) in enumerate(transform):
        new_shape[int(out_axis)] = int(shape[in_axis])
    return tuple(new_shape), new_affine, transform


def reorient(image: Image, axcodes: Sequence[str] = ("R", "A", "S")) -> Image:
    """Permute/flip the voxel array to the closest orientation ``axcodes``, exactly.

    No interpolation happens: every voxel keeps its value and its world position (the
    affine is updated accordingly); an oblique affine stays oblique.
    """
    import nibabel.orientations as nio

    _, affine, transform = reoriented_grid(image.shape, image.affine, axcodes)
    array = nio.apply_orientation(image.array, transform)
    return Image(np.ascontiguousarray(array), affine, image.source)


def resample_to_grid(
    image: Image,
    shape: Sequence[int],
    affine: np.ndarray,
    order: int = 1,
    fill: float | None = None,
) -> Image:
    """Resample ``image`` onto the grid (shape, affine) in world coordinates.

    ``order=0`` (nearest neighbour) must be used for label maps; ``fill`` is the value
    outside the input (default: the array's minimum for order > 0 — air for CT — and 0 for
    labels).
    """
    from scipy import ndimage

    affine = np.asarray(affine, dtype=np.float64)
    validate_geometry(tuple(shape), affine, image.source)
    out_to_in = np.linalg.inv(image.affine) @ affine
    if fill is None:
        fill = 0 if order == 0 else float(image.array.min())
    src = image.array
    if order > 0 and not np.issubdtype(src.dtype, np.floating):
        src = src.astype(np.float32)
    if _is_exact_index_map(out_to_in):  # permutation/flip/shift: copy voxels, no interpolation
        out = _resample_by_index(src, out_to_in, tuple(int(s) for s in shape), fill)
    else:
        out = ndimage.affine_transform(
            src,
            out_to_in[:3, :3],
            offset=out_to_in[:3, 3],
            output_shape=tuple(int(s) for s in shape),
            order=order,
            mode="constant",
            cval=fill,
            prefilter=order > 1,
        )
    if order == 0:
        out = out.astype(image.array.dtype, copy=False)
    return Image(out, affine.copy(), image.source)


def _is_exact_index_map(m: np.ndarray, tol: float = 1e-6) -> bool:
    """True if the 4x4 index map is a signed permutation with integer offsets."""
    lin = m[:3, :3]
    r = np.round(lin)
    if not np.allclose(lin, r, atol=tol) or not np.allclose(np.abs(r).sum(axis=0), 1):
        return False
    if not np.allclose(np.abs(r).sum(axis=1), 1):
        return False
    return np.allclose(m[:3, 3], np.round(m[:3, 3]), atol=tol)


def _resample_by_index(src: np.ndarray, out_to_in: np.ndarray, shape, fill) -> np.ndarray:
    """Exact resampling for signed-permutation + integer-shift maps (no interpolation)."""
    grids = np.indices(shape, sparse=True)
    m = np.round(out_to_in).astype(np.int64)
    idx = [sum(m[r, c] * grids[c] for c in range(3)) + m[r, 3] for r in range(3)]
    inside = np.ones(shape, dtype=bool)
    for r in range(3):
        inside &= (idx[r] >= 0) & (idx[r] < src.shape[r])
    out = np.full(shape, fill, dtype=src.dtype)
    clipped = [np.clip(np.broadcast_to(idx[r], shape), 0, src.shape[r] - 1) for r in range(3)]
    out[inside] = src[clipped[0][inside], clipped[1][inside], clipped[2][inside]]
    return out


def map_to_grid_exactly(image: Image, reference: Image, what: str = "mask") -> Image:
    """Put ``image`` on ``reference``'s grid when that needs no interpolation, else refuse.

    A mask saved in another orientation of the same voxel lattice (e.g. LAS versus the LPS
    of the DICOM it was made from) is the same data: its voxels are copied exactly. Any
    other difference (spacing, shift by a fraction of a voxel, rotation, other extent) is
    an error naming both files, because nearest-neighbour resampling would silently move
    label boundaries.
    """
    if image.same_grid(reference, atol_mm=1e-3):
        return Image(image.array, reference.affine.copy(), image.source)
    out_to_in = np.linalg.inv(image.affine) @ reference.affine
    exact = _is_exact_index_map(out_to_in, tol=1e-4)
    if exact:
        corners = np.array([[0, 0, 0], np.asarray(reference.shape) - 1], dtype=float)
        mapped = np.rint(apply_affine(out_to_in, corners))
        covers = np.all(np.sort(mapped, axis=0) == [[0, 0, 0], np.asarray(image.shape) - 1])
        if covers:
            return resample_to_grid(image, reference.shape, reference.affine, order=0)
    reference.require_same_grid(image, what)  # raises with the precise difference
    return image  # unreachable: require_same_grid raised


def grid_with_spacing(
    grid: "Image | tuple[Sequence[int], np.ndarray]", spacing: Sequence[float] | float
) -> tuple[tuple[int, int, int], np.ndarray]:
    """A grid with the same directions and field of view as ``grid`` and a new voxel size.

    ``grid`` is an Image or a ``(shape, affine)`` pair. The outer corner of voxel
    (0, 0, 0) stays where it was, so the new grid covers the same box (rounded to whole
    voxels).
    """
    shape_in, affine_in = (grid.shape, grid.affine) if isinstance(grid, Image) else grid
    affine_in = np.asarray(affine_in, dtype=np.float64)
    new_sp = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (3,))
    if np.any(new_sp <= 0):
        raise ValueError(f"spacing must be positive, got {tuple(new_sp)}")
    old_sp = np.linalg.norm(affine_in[:3, :3], axis=0)
    direction = affine_in[:3, :3] / old_sp
    extent = np.asarray(shape_in) * old_sp
    shape = tuple(int(max(1, round(e / s))) for e, s in zip(extent, new_sp))
    corner = affine_in[:3, 3] - direction @ (old_sp / 2)
    affine = np.eye(4)
    affine[:3, :3] = direction * new_sp
    affine[:3, 3] = corner + direction @ (new_sp / 2)
    return shape, affine  # type: ignore[return-value]


def resample_to_spacing(image: Image, spacing: Sequence[float] | float, order: int = 1) -> Image:
    """Resample to a new voxel size, keeping orientation and field of view (see grid_with_spacing)."""
    shape, affine = grid_with_spacing(image, spacing)
    return resample_to_grid(image, shape, affine, order=order)


# ----------------------------------------------------------------------------------
# nibabel and SimpleITK
# ----------------------------------------------------------------------------------
def from_nibabel(nii, source: str | None = None) -> Image:
    """nibabel spatial image -> Image. Reads the data now (so corrupt files fail here)."""
    source = source or (str(nii.get_filename()) if nii.get_filename() else None)
    array = np.asanyarray(nii.dataobj)
    array = _squeeze_to_3d(array, source)
    return Image(array, nii.affine, source)


def to_nibabel(image: Image, dtype=None):
    """Image -> ``nibabel.Nifti1Image`` with sform and qform both set (code 1, scanner)."""
    import nibabel as nib

    array = image.array if dtype is None else image.array.astype(dtype)
    nii = nib.Nifti1Image(array, image.affine)
    nii.set_sform(image.affine, code=1)
    nii.set_qform(image.affine, code=1)
    nii.header.set_xyzt_units("mm", "sec")
    return nii


def from_sitk(sitk_image, source: str | None = None) -> Image:
    """SimpleITK image (LPS, array (k, j, i)) -> Image (RAS, array (i, j, k))."""
    import SimpleITK as sitk

    if sitk_image.GetDimension() != 3:
        raise SpineLabelInputError(source, f"is {sitk_image.GetDimension()}D; a CT volume or mask must be 3D")
    if sitk_image.GetNumberOfComponentsPerPixel() != 1:
        raise SpineLabelInputError(source, "has vector/multi-component voxels; expected a scalar volume")
    array_kji = sitk.GetArrayFromImage(sitk_image)
    array = np.ascontiguousarray(array_kji.transpose(2, 1, 0))
    spacing = np.asarray(sitk_image.GetSpacing(), dtype=np.float64)
    if np.any(spacing <= 0):
        raise SpineLabelInputError(source, f"has non-positive voxel spacing {tuple(spacing)}")
    direction_lps = np.asarray(sitk_image.GetDirection(), dtype=np.float64).reshape(3, 3)
    origin_lps = np.asarray(sitk_image.GetOrigin(), dtype=np.float64)
    affine = np.eye(4)
    affine[:3, :3] = _LPS_FLIP @ direction_lps * spacing
    affine[:3, 3] = _LPS_FLIP @ origin_lps
    return Image(array, affine, source)


def to_sitk(image: Image):
    """Image -> SimpleITK image (LPS origin/direction; array transposed to (k, j, i))."""
    import SimpleITK as sitk

    out = sitk.GetImageFromArray(np.ascontiguousarray(image.array.transpose(2, 1, 0)))
    out.SetSpacing(tuple(float(s) for s in image.spacing))
    out.SetDirection(tuple(float(v) for v in (_LPS_FLIP @ image.direction).ravel()))
    out.SetOrigin(tuple(float(v) for v in _LPS_FLIP @ image.origin))
    return out


def _squeeze_to_3d(array: np.ndarray, source: str | None) -> np.ndarray:
    if array.ndim > 3 and all(n == 1 for n in array.shape[3:]):
        array = array.reshape(array.shape[:3])
    if array.ndim != 3:
        raise SpineLabelInputError(source, f"is {array.ndim}D (shape {array.shape}); a CT volume or mask must be 3D")
    return array


# ----------------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------------
def _suffix_kind(path: Path) -> str:
    name = path.name.lower()
    if any(name.endswith(s) for s in NIFTI_SUFFIXES):
        return "nifti"
    if any(name.endswith(s) for s in SITK_SUFFIXES):
        return "sitk"
    if name.endswith(".dcm"):
        return "dicom-file"
    return "unknown"


def load_image(path: str | os.PathLike, series_uid: str | None = None) -> Image:
    """Load a 3D image from NIfTI, NRRD, MHA/MHD or a DICOM series folder.

    Errors name the file: missing, unreadable or truncated files, 2D/4D data, zero
    spacing. A folder is read as a DICOM series (``series_uid`` picks one when the folder
    holds several; otherwise the series with most slices is used, with a warning).
    """
    p = Path(path)
    if not p.exists():
        raise SpineLabelInputError(p, "does not exist")
    if p.is_dir():
        return load_dicom_series(p, series_uid)
    kind = _suffix_kind(p)
    if kind == "dicom-file":
        return load_dicom_series(p.parent, series_uid)
    try:
        if kind == "nifti":
            import nibabel as nib

            _check_raw_nifti_spacing(p)
            return from_nibabel(nib.load(str(p)), str(p))
        import SimpleITK as sitk

        return from_sitk(sitk.ReadImage(str(p)), str(p))
    except SpineLabelInputError:
        raise
    except Exception as exc:  # nibabel/zlib/ITK raise many types for corrupt data
        raise SpineLabelInputError(p, f"cannot be read as an image ({type(exc).__name__}: {exc})") from exc


def _check_raw_nifti_spacing(path: Path) -> None:
    """Reject zero/negative voxel sizes before nibabel silently "fixes" them to 1 mm.

    nibabel replaces a zero pixdim by 1 while loading (with only a log message), which
    would give a wrong geometry; when the affine comes from pixdim (no sform) we refuse.
    """
    import nibabel as nib
    from nibabel.openers import ImageOpener

    with ImageOpener(str(path)) as fh:
        raw = nib.Nifti1Header.from_fileobj(fh, check=False)
    if int(raw["sform_code"]) > 0:
        return  # the sform gives the geometry; validate_geometry checks it
    pixdim = np.asarray(raw["pixdim"][1:4], dtype=float)
    if np.any(pixdim <= 0) or not np.all(np.isfinite(pixdim)):
        raise SpineLabelInputError(path, f"has zero or negative voxel spacing in its header (pixdim {tuple(pixdim.tolist())})")


def load_dicom_series(folder: str | os.PathLike, series_uid: str | None = None) -> Image:
    """Read one DICOM series from ``folder`` (slices sorted by position by GDCM)."""
    import SimpleITK as sitk

    folder = Path(folder)
    reader = sitk.ImageSeriesReader()
    series = list(reader.GetGDCMSeriesIDs(str(folder)) or [])
    if not series:
        raise SpineLabelInputError(folder, "contains no readable DICOM series")
    if series_uid is not None:
        if series_uid not in series:
            raise SpineLabelInputError(folder, f"has no DICOM series {series_uid}; found {', '.join(series)}")
        chosen = series_uid
    else:
        files_per = {uid: reader.GetGDCMSeriesFileNames(str(folder), uid) for uid in series}
        chosen = max(series, key=lambda uid: len(files_per[uid]))
        if len(series) > 1:
            warnings.warn(f"{folder}: {len(series)} DICOM series found; using {chosen} ({len(files_per[chosen])} files)")
    files = reader.GetGDCMSeriesFileNames(str(folder), chosen)
    if len(files) < 2:
        raise SpineLabelInputError(folder, f"DICOM series {chosen} has {len(files)} slice(s); a 3D volume needs several")
    reader.SetFileNames(files)
    try:
        sitk_image = reader.Execute()
    except Exception as exc:
        raise SpineLabelInputError(folder, f"DICOM series {chosen} cannot be read ({exc})") from exc
    return from_sitk(sitk_image, str(folder))


def save_nifti(image: Image, path: str | os.PathLike, overwrite: bool = False, dtype=None) -> Path:
    """Write ``image`` as NIfTI (.nii or .nii.gz) atomically; never overwrites unless asked."""
    import nibabel as nib

    path = Path(path)
    if _suffix_kind(path) != "nifti":
        raise ValueError(f"{path}: save_nifti writes .nii or .nii.gz files only")
    with atomic_output(path, overwrite) as tmp:
        nib.save(to_nibabel(image, dtype), str(tmp))
    return path


def window_hu(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """CT values in HU -> float32 in 0..1 on the window [low, high] (clipped outside)."""
    out = (np.asarray(values, dtype=np.float32) - np.float32(low)) / np.float32(high - low)
    return np.clip(out, 0.0, 1.0, out=out)


def check_ct_intensities(image: Image) -> list[str]:
    """Warnings (possibly none) when the values do not look like CT Hounsfield units."""
    arr = image.array
    name = image.source or "image"
    problems = []
    if not np.issubdtype(arr.dtype, np.number):
        return [f"{name}: voxel type {arr.dtype} is not numeric"]
    sample = arr[:: max(1, arr.shape[0] // 64), :: max(1, arr.shape[1] // 64), :: max(1, arr.shape[2] // 64)]
    lo, hi = float(np.min(sample)), float(np.max(sample))
    if hi - lo < 200:
        problems.append(f"{name}: intensity range {lo:.4g}..{hi:.4g} is too narrow for CT in HU")
    elif lo >= 0 and hi > 1500:
        problems.append(
            f"{name}: no negative values (min {lo:.4g}); this looks like unrescaled CT "
            "(raw stored values without RescaleIntercept) rather than Hounsfield units"
        )
    elif hi < 300:
        problems.append(f"{name}: maximum {hi:.4g} is below bone density; is this CT in HU?")
    return problems
