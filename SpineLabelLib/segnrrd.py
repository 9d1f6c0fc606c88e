"""Slicer ``.seg.nrrd`` segmentation files as VerSe label masks.

In a ``.seg.nrrd`` the voxel values are arbitrary *segment* numbers: their meaning is in the
header (``SegmentN_Name``, ``SegmentN_LabelValue``, ``SegmentN_Layer``, and the Slicer
terminology entry in ``SegmentN_Tags``). Reading such a file as a plain label image would
turn "segment 1" into C1, so this module maps every segment to a VerSe value by its
terminology code (SNOMED CT, unique for C1–L5 and the sacrum) or by its name ("L1",
"vertebrae_L1", "T13 vertebra", "Sacrum", ...), and refuses segments that are not one
vertebra (ribs, "thoracic vertebral column") with a message naming them.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import labels
from .errors import SpineLabelInputError
from .image import Image, load_image

_NAME_PATTERNS = [
    # "L1", "l1", "T13", "vertebrae_L1" (TotalSegmentator), "L1 vertebra", "Vertebra L1"
    re.compile(r"^(?:vertebra(?:e)?[ _-]*)?(?P<name>[CTL]\d{1,2})(?:[ _-]*vertebra(?:e)?)?$", re.I),
    re.compile(r"^(?P<name>sacrum|s1|coccyx)(?:[ _-]*vertebra)?$", re.I),
]
_SPECIFIC_SNOMED = {
    lab.snomed_code: lab.value for lab in labels.LABELS if lab.snomed_code != labels.SNOMED_GENERIC_VERTEBRA
}


@dataclass(frozen=True)
class SegmentInfo:
    index: int  # N of SegmentN_*
    name: str
    label_value: int  # voxel value in its layer
    layer: int
    snomed_codes: tuple[str, ...]


def is_seg_nrrd(path: str | os.PathLike) -> bool:
    return Path(path).name.lower().endswith(".seg.nrrd")


def read_segments(path: str | os.PathLike) -> list[SegmentInfo]:
    """Segment metadata of a ``.seg.nrrd`` header (no voxel data read)."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except Exception as exc:
        raise SpineLabelInputError(path, f"cannot be read as a segmentation ({exc})") from exc
    meta = {k: reader.GetMetaData(k) for k in reader.GetMetaDataKeys()}
    indices = sorted({int(m.group(1)) for k in meta if (m := re.match(r"Segment(\d+)_", k))})
    segments = []
    for n in indices:
        get = lambda key, default="": meta.get(f"Segment{n}_{key}", default)  # noqa: E731
        try:
            value = int(get("LabelValue", "1"))
            layer = int(get("Layer", "0"))
        except ValueError:
            raise SpineLabelInputError(path, f"segment {n} has a malformed LabelValue/Layer entry") from None
        codes = tuple(re.findall(r"SCT\^(\d+)\^", get("Tags")))
        segments.append(SegmentInfo(n, get("Name").strip(), value, layer, codes))
    if not segments:
        raise SpineLabelInputError(path, "has no segment entries in its header; is it a Slicer .seg.nrrd?")
    return segments


def verse_value_of_segment(segment: SegmentInfo) -> int | None:
    """The VerSe value a segment stands for, or None when it is not one vertebra.

    The name decides when it names a vertebra (T13 and L6 share a generic SNOMED code);
    otherwise a specific SNOMED code of the terminology entry does.
    """
    for pattern in _NAME_PATTERNS:
        m = pattern.match(segment.name)
        if m:
            name = m.group("name").upper()
            name = "SACRUM" if name == "S1" else name
            if name in labels.BY_NAME:
                return labels.BY_NAME[name].value
    for code in segment.snomed_codes:
        if code in _SPECIFIC_SNOMED:
            return _SPECIFIC_SNOMED[code]
    return None


def load_seg_nrrd_as_verse(path: str | os.PathLike) -> Image:
    """Load a ``.seg.nrrd`` as a VerSe instance mask (uint8, the file's own grid).

    Raises naming the file when segments overlap (several layers), when a segment is not a
    single vertebra, or when two segments claim the same vertebra.
    """
    segments = read_segments(path)
    layers = sorted({s.layer for s in segments})
    if len(layers) > 1:
        raise SpineLabelInputError(
            path, f"has overlapping segments ({len(layers)} layers); a VerSe mask needs one label per voxel"
        )
    mapping: dict[int, int] = {}
    refused, claimed = [], {}
    for seg in segments:
        value = verse_value_of_segment(seg)
        if value is None:
            refused.append(f"'{seg.name}' (value {seg.label_value})")
            continue
        if value in claimed:
            raise SpineLabelInputError(
                path, f"segments '{claimed[value]}' and '{seg.name}' both stand for {labels.name_of(value)}"
            )
        claimed[value] = seg.name
        mapping[seg.label_value] = value
    if refused:
        raise SpineLabelInputError(
            path, f"segments {', '.join(refused)} are not single VerSe vertebrae (name them C1…L6, T13, sacrum)"
        )
    raw = load_image(path)
    stored = set(np.unique(raw.array).astype(np.int64).tolist()) - {0}
    unknown = sorted(stored - set(mapping))
    if unknown:
        raise SpineLabelInputError(path, f"holds voxel values {unknown} that no segment of its header describes")
    lut = np.zeros(max(mapping, default=0) + 1, dtype=np.uint8)
    for stored_value, verse_value in mapping.items():
        lut[stored_value] = verse_value
    return raw.with_array(lut[raw.array.astype(np.int64)])
