"""VerSe dataset layout: find cases in a folder, read one case, write one case.

Recognised names (see ../shared/docs/verse-format.md):

* VerSe'20 / VerSe'19 restructured release (BIDS-like), optionally below split folders
  such as ``dataset-01training/``::

      rawdata/sub-X/sub-X[_split-S][_dir-D]_ct.nii.gz
      derivatives/sub-X/sub-X[...]_seg-vert_msk.nii.gz
      derivatives/sub-X/sub-X[...]_seg-subreg_ctd.json
      derivatives/sub-X/sub-X[...]_seg-vert_snp.png   (also without the ``sub-`` prefix)

* Old challenge naming, one folder per case (or flat): 2019 ``verse004.nii.gz``,
  ``verse004_seg.nii.gz``, ``verse004_ctd.json``, ``verse004_snapshot.png``; 2020
  ``verse512_CT-iso.nii.gz``, ``..._seg.nii.gz``, ``..._iso-ctd.json`` (also
  ``...-iso-ctd.json``), ``verse512_CT-iso.png`` (``-w.png`` wireframe as a fallback).

Files are matched into a case by their shared stem (the name before ``_ct`` / ``_seg-`` /
``_seg`` / ``_ctd`` ...) within one dataset folder. Images keep their native grid and
orientation on reading and on writing: nothing here reorients or resamples.
"""
from __future__ import annotations

import contextlib
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import labels
from ..errors import OutputExistsError, SpineLabelInputError
from ..fileio import atomic_output
from ..image import Image, load_image, save_nifti
from .centroids_json import centroids_to_json, read_centroids

# ----------------------------------------------------------------------------------
# file name patterns
# ----------------------------------------------------------------------------------
_NII = r"\.nii(?:\.gz)?"
#: BIDS entities other than seg- (e.g. _split-verse033, _dir-ax); values alphanumeric/hyphen.
_ENTITIES = r"(?:_(?!seg-)[A-Za-z]+-[A-Za-z0-9-]+)*"
_BIDS = re.compile(
    rf"^(?P<sub>sub-)?(?P<subject>[A-Za-z0-9-]+?)(?P<entities>{_ENTITIES})_"
    rf"(?P<kind>ct{_NII}|seg-vert_msk{_NII}|seg-subreg_ctd\.json|seg-vert_snp\.png)$"
)
_BIDS_KIND = {"ct": "ct", "seg-vert_msk": "mask", "seg-subreg_ctd": "centroids", "seg-vert_snp": "snapshot"}

#: Old challenge names: (regex, kind, priority); lower priority number wins for a stem.
_OLD = [
    (re.compile(rf"^(?P<stem>.+?)_seg{_NII}$"), "mask", 0),
    (re.compile(r"^(?P<stem>.+?)[_-]iso-ctd\.json$"), "centroids", 0),
    (re.compile(r"^(?P<stem>.+?)_ctd\.json$"), "centroids", 1),
    (re.compile(r"^(?P<stem>.+?)_snapshot\.png$"), "snapshot", 0),
    (re.compile(r"^(?P<stem>.+?)-w\.png$"), "snapshot", 2),  # 2020 wireframe preview: fallback only
    (re.compile(r"^(?P<stem>.+?)\.png$"), "snapshot", 1),
    (re.compile(rf"^(?P<stem>.+?){_NII}$"), "ct", 0),
]

SUBJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
ENTITIES_RE = re.compile(rf"^{_ENTITIES}$")
_DATASET_PARTS = ("rawdata", "derivatives")


@dataclass
class VerseCase:
    """The files of one VerSe case (any may be missing). ``stem`` is the shared file stem
    (``sub-verse004_dir-ax``, ``verse512_CT-iso``); ``split`` the dataset split folder
    (e.g. ``dataset-01training``) when the case sits below one inside the searched root."""

    subject: str
    stem: str
    ct: Path | None
    mask: Path | None
    centroids: Path | None
    snapshot: Path | None
    split: str | None = None

    def files(self) -> list[Path]:
        return [p for p in (self.ct, self.mask, self.centroids, self.snapshot) if p is not None]

    @property
    def name(self) -> str:
        """A readable identifier for messages: ``split/stem`` or ``stem``."""
        return f"{self.split}/{self.stem}" if self.split else self.stem


@dataclass
class _Found:
    """One recognised file while scanning."""

    path: Path
    kind: str  # ct | mask | centroids | snapshot
    subject: str
    stem: str
    group: Path  # the dataset folder (above rawdata/derivatives) or the file's folder
    priority: int = 0


@dataclass
class Scan:
    """Everything found below a root: cases, plus files that fit no case."""

    cases: list[VerseCase] = field(default_factory=list)
    unrecognised: list[Path] = field(default_factory=list)  # names that match no VerSe pattern
    duplicates: list[tuple[Path, Path]] = field(default_factory=list)  # (ignored, kept) per stem/kind
    hidden: list[Path] = field(default_factory=list)  # dot files, e.g. leftover temporary outputs


def classify_name(name: str) -> tuple[str, str, str, int] | None:
    """(kind, subject, stem, priority) for a VerSe file name, or None if it is not one."""
    m = _BIDS.match(name)
    if m:
        kind = _BIDS_KIND[re.sub(rf"{_NII}$|\.json$|\.png$", "", m["kind"])]
        # Released VerSe'19 snapshots lack the "sub-" prefix; other files must carry it.
        if m["sub"] or kind == "snapshot":
            subject = m["subject"]
            return kind, subject, f"sub-{subject}{m['entities']}", 0
    if name.startswith("sub-") or "_seg-" in name:
        return None  # BIDS-style but not one of the four VerSe files (e.g. a subregion mask)
    for pattern, kind, priority in _OLD:
        m = pattern.match(name)
        if m:
            stem = m["stem"]
            return kind, stem.split("_")[0], stem, priority
    return None


def _group_and_split(path: Path, root: Path) -> tuple[Path, str | None]:
    """The folder a file's case lives in, and the split folder name if below ``root``.

    BIDS: the folder holding ``rawdata``/``derivatives``; old naming: the file's folder
    (the case folder), whose parent is the split when it lies below ``root``.
    """
    rel = path.relative_to(root)
    parts = rel.parts[:-1]
    for n, part in enumerate(parts):
        if part in _DATASET_PARTS:
            group = root.joinpath(*parts[:n])
            return group, (parts[n - 1] if n >= 1 else None)
    group = path.parent
    return group, (parts[-2] if len(parts) >= 2 else None)


def scan_dataset(root: str | os.PathLike) -> Scan:
    """Walk ``root`` (a dataset, a split folder or a single case folder) and match files.

    Deterministic: cases sorted by (split, subject, stem). When two files claim the same
    case and role (e.g. ``x.png`` and ``x-w.png``), the preferred one is kept and the other
    listed in ``duplicates``.
    """
    root = Path(root)
    if not root.exists():
        raise SpineLabelInputError(root, "does not exist")
    if not root.is_dir():
        raise SpineLabelInputError(root, "is not a folder")
    scan = Scan()
    chosen: dict[tuple[Path, str], dict[str, _Found]] = {}
    splits: dict[tuple[Path, str], str | None] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink()):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            scan.hidden.append(path)
            continue
        info = classify_name(path.name)
        if info is None:
            scan.unrecognised.append(path)
            continue
        kind, subject, stem, priority = info
        group, split = _group_and_split(path, root)
        key = (group, stem)
        splits.setdefault(key, split)
        found = _Found(path, kind, subject, stem, group, priority)
        slot = chosen.setdefault(key, {})
        previous = slot.get(kind)
        if previous is None:
            slot[kind] = found
        elif priority < previous.priority:
            slot[kind] = found
            scan.duplicates.append((previous.path, path))
        else:
            scan.duplicates.append((path, previous.path))
    for (group, stem), slot in chosen.items():
        any_file = next(iter(slot.values()))
        scan.cases.append(
            VerseCase(
                subject=any_file.subject,
                stem=stem,
                ct=slot["ct"].path if "ct" in slot else None,
                mask=slot["mask"].path if "mask" in slot else None,
                centroids=slot["centroids"].path if "centroids" in slot else None,
                snapshot=slot["snapshot"].path if "snapshot" in slot else None,
                split=splits[(group, stem)],
            )
        )
    scan.cases.sort(key=lambda c: (c.split or "", c.subject, c.stem, str(c.files()[0])))
    return scan


def discover_cases(root: str | os.PathLike) -> list[VerseCase]:
    """All VerSe cases below ``root`` (dataset root, split folder or one case folder).

    Cases may lack files (a CT without mask, a mask without CT): each file present is
    reported in exactly one case. Sorted by (split, subject, stem).
    """
    return scan_dataset(root).cases


# ----------------------------------------------------------------------------------
# paths for writing
# ----------------------------------------------------------------------------------
def check_subject(subject: str) -> str:
    """Validate a subject id (letters, digits, hyphen; e.g. ``verse004``, ``gl003``)."""
    if not isinstance(subject, str) or not SUBJECT_RE.match(subject):
        raise SpineLabelInputError(
            None,
            f"subject id {subject!r} is invalid: use letters, digits and hyphens only (e.g. verse004); "
            "no '_', '/', '.', spaces",
        )
    if subject.lower().startswith("sub-"):
        raise SpineLabelInputError(None, f"subject id {subject!r}: give it without the 'sub-' prefix")
    return subject


def check_entities(entities: str) -> str:
    """Normalise BIDS entities such as ``_dir-ax`` or ``dir-ax_split-s1`` to ``_dir-ax...``."""
    if entities and not entities.startswith("_"):
        entities = "_" + entities
    if not ENTITIES_RE.match(entities):
        raise SpineLabelInputError(
            None, f"entities {entities!r} are invalid: expected e.g. '_dir-ax' or '_split-s1_dir-sag' (no 'seg-')"
        )
    return entities


def case_paths(out_root: str | os.PathLike, subject: str, entities: str = "") -> VerseCase:
    """The BIDS paths of one case under ``out_root`` (nothing is created).

    ``out/rawdata/sub-S/sub-S{entities}_ct.nii.gz`` and, in ``out/derivatives/sub-S/``,
    ``_seg-vert_msk.nii.gz``, ``_seg-subreg_ctd.json``, ``_seg-vert_snp.png``.
    """
    subject = check_subject(subject)
    stem = f"sub-{subject}{check_entities(entities)}"
    out_root = Path(out_root)
    raw = out_root / "rawdata" / f"sub-{subject}"
    der = out_root / "derivatives" / f"sub-{subject}"
    return VerseCase(
        subject=subject,
        stem=stem,
        ct=raw / f"{stem}_ct.nii.gz",
        mask=der / f"{stem}_seg-vert_msk.nii.gz",
        centroids=der / f"{stem}_seg-subreg_ctd.json",
        snapshot=der / f"{stem}_seg-vert_snp.png",
    )


# ----------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------
@dataclass
class CaseData:
    """A loaded case: CT and mask on the same grid, centroids as voxel (i, j, k) on it."""

    case: VerseCase
    ct: Image | None
    mask: Image | None
    centroids_ijk: dict[int, np.ndarray] | None


def mask_value_problems(mask: Image) -> tuple[list[str], list[str]]:
    """(errors, warnings) about a mask's voxel values.

    Errors: non-integer values, values that are neither VerSe vertebrae nor the
    subregion (40-50) / disc (100+) values of related tools. Warnings: subregion/disc
    values present (kept, not vertebrae), no vertebra at all.
    """
    errors: list[str] = []
    notes: list[str] = []
    arr = mask.array
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        return [f"voxel type {arr.dtype} is not a label type"], notes
    values = np.unique(arr)
    if np.issubdtype(values.dtype, np.floating):
        bad = values[~np.isfinite(values) | (values != np.round(values))]
        if bad.size:
            errors.append(f"holds non-integer label values (e.g. {bad[:5].tolist()}); a mask must hold integers")
            values = values[np.isfinite(values) & (values == np.round(values))]
    kinds = labels.classify_values(values.astype(np.int64))
    if kinds["unknown"]:
        errors.append(
            f"holds label values {kinds['unknown'][:10]} that are not VerSe vertebrae (1-28), "
            "subregions (40-50) or discs (100+)"
        )
    other = kinds["subregions"] + kinds["discs"]
    if other:
        notes.append(f"holds non-vertebra values {other[:10]} (subregions/discs); kept as they are, not vertebrae")
    if not kinds["vertebrae"] and not errors:
        notes.append("holds no vertebra label")
    return errors, notes


def load_case(case: VerseCase, require_mask: bool = False) -> CaseData:
    """Load a case's CT, mask and centroids as they are stored (native grid, no reorienting).

    * The mask must lie exactly on the CT grid (``Image.require_same_grid``).
    * Mask values: unknown values (not vertebrae 1-28, subregions 40-50, discs 100+) raise
      :class:`SpineLabelInputError` naming the file. Subregion/disc values are kept
      unchanged (the file is the truth, and a round trip must be exact) with a warning;
      consumers that want vertebrae only select them with ``labels.is_vertebra``.
    * Centroids are read onto the CT grid (the mask grid when there is no CT).
    """
    ct = load_image(case.ct) if case.ct is not None else None
    if require_mask and case.mask is None:
        raise SpineLabelInputError(case.ct or case.stem, "has no vertebra mask (expected *_seg-vert_msk.nii.gz)")
    mask = None
    if case.mask is not None:
        mask = load_image(case.mask)
        if ct is not None:
            ct.require_same_grid(mask)
        errors, notes = mask_value_problems(mask)
        if errors:
            raise SpineLabelInputError(case.mask, "; ".join(errors))
        for note in notes:
            warnings.warn(f"{case.mask}: {note}", stacklevel=2)
    centroids_ijk = None
    grid = ct if ct is not None else mask
    if case.centroids is not None and grid is not None:
        centroids_ijk = read_centroids(case.centroids, grid)
    return CaseData(case, ct, mask, centroids_ijk)


# ----------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------
def ct_dtype(ct: Image) -> np.dtype:
    """int16 when every value is an integer HU within int16 range, else float32."""
    arr = ct.array
    if np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_):
        lo, hi = int(arr.min()), int(arr.max())
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr)):
            return np.dtype(np.float32)
        lo, hi = float(arr.min()), float(arr.max())
    else:
        raise SpineLabelInputError(ct.source, f"voxel type {arr.dtype} is not numeric; cannot write it as CT")
    info = np.iinfo(np.int16)
    return np.dtype(np.int16) if info.min <= lo and hi <= info.max else np.dtype(np.float32)


def write_case(
    out_root: str | os.PathLike,
    subject: str,
    ct: Image,
    mask: Image | None = None,
    centroids_ijk: dict[int, np.ndarray] | None = None,
    snapshot: bool = True,
    overwrite: bool = False,
    entities: str = "",
) -> VerseCase:
    """Write one case in the VerSe'20 BIDS layout under ``out_root``; return its paths.

    * The CT keeps its native grid and orientation (no reorienting); int16 when all values
      are integral HU in range, float32 otherwise. The mask must lie on the CT grid and is
      stored with ``labels.mask_dtype``.
    * Centroids (voxel (i, j, k) on the CT grid) are written when given, else computed
      from the mask with ``verse.body.body_centroids`` (vertebral BODY centres).
    * The snapshot PNG is drawn with ``verse.snapshot.save_snapshot`` when ``snapshot``.
    * All or nothing: if any output exists and not ``overwrite``, ``OutputExistsError``
      is raised before anything is written; every file is first written to a temporary
      file beside its target, and the targets are only replaced once all were written.
    Files of the returned case that were not written are set to None.
    """
    paths = case_paths(out_root, subject, entities)
    if mask is not None:
        ct.require_same_grid(mask)
        errors, _notes = mask_value_problems(mask)
        if errors:
            raise SpineLabelInputError(mask.source, "; ".join(errors))
    if centroids_ijk is None and mask is not None:
        from .body import body_centroids

        vertebrae = [v for v in np.unique(mask.array).astype(np.int64).tolist() if labels.is_vertebra(v)]
        centroids_ijk = body_centroids(mask, labels=vertebrae, ct=ct)
    # Written whenever known, even empty (a mask without vertebrae), so a case is complete.
    ctd_json = centroids_to_json(centroids_ijk, ct) if centroids_ijk is not None else None

    outputs = {"ct": paths.ct, "mask": paths.mask if mask is not None else None,
               "centroids": paths.centroids if ctd_json is not None else None,
               "snapshot": paths.snapshot if snapshot else None}
    if not overwrite:
        for target in outputs.values():
            if target is not None and target.exists():
                raise OutputExistsError(target)

    mask_out = None
    if mask is not None:
        mask_out = mask.array.astype(labels.mask_dtype(np.unique(mask.array).astype(np.int64).tolist()))
    with contextlib.ExitStack() as stack:
        # Enter every atomic output first: each writes to a temporary file, and the targets
        # are renamed into place only when the whole block succeeded.
        tmp = {k: stack.enter_context(atomic_output(p, overwrite)) for k, p in outputs.items() if p is not None}
        save_nifti(ct, tmp["ct"], overwrite=True, dtype=ct_dtype(ct))
        if mask is not None:
            save_nifti(ct.with_array(mask_out), tmp["mask"], overwrite=True)
        if ctd_json is not None:
            import json

            tmp["centroids"].write_text(json.dumps(ctd_json) + "\n", encoding="utf-8")
        if snapshot:
            from .snapshot import save_snapshot

            save_snapshot(tmp["snapshot"], ct, mask, centroids_ijk or {}, overwrite=True)
    return VerseCase(subject=paths.subject, stem=paths.stem, **outputs)
