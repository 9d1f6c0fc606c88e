"""The VerSe label table: values, names, anatomical order, colours, SNOMED CT codes,
and the mapping from TotalSegmentator v2 label ids.

VerSe values (see ../shared/docs/verse-format.md): 1-7 C1-C7, 8-19 T1-T12, 20-24 L1-L5,
25 L6, 26 sacrum, 27 coccyx, 28 T13. Values 40-50 (subregions) and 100+ (discs) occur in
related tooling: they are recognised as "non-vertebra" values, never as vertebrae.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np


@dataclass(frozen=True)
class VertebraLabel:
    value: int  # VerSe label value in masks and centroid JSON
    name: str  # "C1", ..., "T13", "L6", "sacrum", "coccyx"
    order: int  # anatomical rank, head (0) to feet
    region: str  # "cervical" | "thoracic" | "lumbar" | "sacral" | "coccygeal"
    color: tuple[int, int, int]  # RGB 0-255
    snomed_code: str  # SNOMED CT concept id (Slicer terminology "Anatomic Region"/type)
    snomed_meaning: str

    @property
    def color_float(self) -> tuple[float, float, float]:
        return tuple(c / 255.0 for c in self.color)  # type: ignore[return-value]


_C_SNOMED = ["14806007", "39976000", "113205007", "5329002", "36978003", "36054005", "87391001"]
_T_SNOMED = [
    "64864005", "53733008", "1626008", "73071006", "56401006", "45296009",
    "62487009", "11068009", "82687006", "7610001", "12989004", "23215003",
]
_L_SNOMED = ["66794005", "14293000", "36470004", "11994002", "49668003"]
SNOMED_SACRUM = "54735007"
SNOMED_GENERIC_VERTEBRA = "51282000"  # "Bone structure of vertebra": T13, L6, coccyx
SNOMED_SCHEME = "SCT"

# One hue family per region so a glance at a snapshot shows the region; neighbours within a
# region alternate in lightness so adjacent vertebrae are always distinguishable.
_REGION_PALETTE = {
    "cervical": [(255, 99, 71), (255, 215, 0), (220, 20, 60), (255, 165, 0), (240, 128, 128), (255, 69, 0), (255, 127, 80)],
    "thoracic": [
        (65, 105, 225), (0, 191, 255), (30, 144, 255), (100, 149, 237), (0, 206, 209), (70, 130, 180),
        (135, 206, 250), (0, 139, 139), (72, 61, 139), (123, 104, 238), (95, 158, 160), (176, 196, 222),
    ],
    "lumbar": [(50, 205, 50), (154, 205, 50), (34, 139, 34), (124, 252, 0), (0, 250, 154)],
}


def _build_table() -> list[VertebraLabel]:
    rows: list[VertebraLabel] = []

    def add(value, name, region, color, code, meaning):
        rows.append(VertebraLabel(value, name, len(rows), region, color, code, meaning))

    for n in range(1, 8):
        add(n, f"C{n}", "cervical", _REGION_PALETTE["cervical"][n - 1], _C_SNOMED[n - 1], f"C{n} vertebra")
    for n in range(1, 13):
        add(7 + n, f"T{n}", "thoracic", _REGION_PALETTE["thoracic"][n - 1], _T_SNOMED[n - 1], f"T{n} vertebra")
    add(28, "T13", "thoracic", (255, 0, 255), SNOMED_GENERIC_VERTEBRA, "Vertebra (T13, supernumerary thoracic)")
    for n in range(1, 6):
        add(19 + n, f"L{n}", "lumbar", _REGION_PALETTE["lumbar"][n - 1], _L_SNOMED[n - 1], f"L{n} vertebra")
    add(25, "L6", "lumbar", (255, 20, 147), SNOMED_GENERIC_VERTEBRA, "Vertebra (L6, transitional lumbar)")
    add(26, "sacrum", "sacral", (222, 184, 135), SNOMED_SACRUM, "Sacrum")
    add(27, "coccyx", "coccygeal", (160, 82, 45), SNOMED_GENERIC_VERTEBRA, "Vertebra (coccyx)")
    return rows


#: All VerSe labels in anatomical order, head to feet.
LABELS: tuple[VertebraLabel, ...] = tuple(_build_table())
BY_VALUE: dict[int, VertebraLabel] = {lab.value: lab for lab in LABELS}
BY_NAME: dict[str, VertebraLabel] = {lab.name.upper(): lab for lab in LABELS}
VERSE_VALUES: frozenset[int] = frozenset(BY_VALUE)
#: Values used for subregions (40-50) and discs (100+) by related tools: not vertebrae.
SUBREGION_VALUES: frozenset[int] = frozenset(range(40, 51))
DISC_VALUE_MIN = 100

T12, T13, L1, L5, L6, SACRUM, COCCYX = 19, 28, 20, 24, 25, 26, 27


def label(value_or_name: int | str) -> VertebraLabel:
    """Look up a label by VerSe value (20) or name ("L1", case-insensitive)."""
    if isinstance(value_or_name, str):
        key = value_or_name.strip().upper()
        if key in BY_NAME:
            return BY_NAME[key]
        if key.isdigit():
            value_or_name = int(key)
        else:
            raise KeyError(f"unknown vertebra name {value_or_name!r}")
    try:
        return BY_VALUE[int(value_or_name)]
    except KeyError:
        raise KeyError(f"{value_or_name} is not a VerSe vertebra label (valid: 1-28)") from None


def name_of(value: int) -> str:
    return label(value).name


def value_of(name: str) -> int:
    return label(name).value


def is_vertebra(value: int) -> bool:
    return int(value) in VERSE_VALUES


def order_of(value: int) -> int:
    """Anatomical rank (head to feet); T13 sorts between T12 and L1, L6 between L5 and sacrum."""
    return label(value).order


def sort_anatomical(values: Iterable[int]) -> list[int]:
    return sorted((int(v) for v in values), key=order_of)


def classify_values(values: Iterable[int]) -> dict[str, list[int]]:
    """Split mask values into ``vertebrae``, ``subregions``, ``discs`` and ``unknown`` (0 ignored)."""
    out: dict[str, list[int]] = {"vertebrae": [], "subregions": [], "discs": [], "unknown": []}
    for v in sorted(int(x) for x in values):
        if v == 0:
            continue
        if v in VERSE_VALUES:
            out["vertebrae"].append(v)
        elif v in SUBREGION_VALUES:
            out["subregions"].append(v)
        elif v >= DISC_VALUE_MIN:
            out["discs"].append(v)
        else:
            out["unknown"].append(v)
    return out


def neighbours(value: int, present: Iterable[int] | None = None) -> tuple[int | None, int | None]:
    """The labels directly above and below ``value`` in anatomical order.

    Without ``present``, the standard sequence is used (T13 and L6 are skipped unless
    ``value`` is one of them); with ``present``, only labels in it count.
    """
    if present is None:
        seq = [lab.value for lab in LABELS if lab.value not in (T13, L6) or lab.value == value]
    else:
        seq = sort_anatomical(set(present) | {value})
    idx = seq.index(value)
    return (seq[idx - 1] if idx > 0 else None, seq[idx + 1] if idx + 1 < len(seq) else None)


# ----------------------------------------------------------------------------------
# TotalSegmentator v2
# ----------------------------------------------------------------------------------
#: TotalSegmentator v2 ("total" task) label id -> VerSe value. S1 (26) joins the sacrum.
TOTALSEG_V2_TO_VERSE: dict[int, int] = {
    25: SACRUM, 26: SACRUM,
    27: 24, 28: 23, 29: 22, 30: 21, 31: 20,  # L5..L1
    **{32 + n: 19 - n for n in range(12)},  # 32 T12 .. 43 T1
    **{44 + n: 7 - n for n in range(7)},  # 44 C7 .. 50 C1
}


def totalseg_to_verse(ts_labelmap: np.ndarray) -> np.ndarray:
    """Map a TotalSegmentator v2 label array to VerSe values (non-vertebra structures -> 0).

    Works on any array shape and keeps it (no axis reordering).
    """
    lut = np.zeros(max(256, int(ts_labelmap.max()) + 1), dtype=np.uint8)
    for ts, verse in TOTALSEG_V2_TO_VERSE.items():
        lut[ts] = verse
    return lut[np.asarray(ts_labelmap).astype(np.int64, copy=False)]


def mask_dtype(values: Iterable[int]) -> np.dtype:
    """Smallest integer dtype that stores ``values`` (uint8 for VerSe masks, int16 with discs)."""
    top = max((int(v) for v in values), default=0)
    return np.dtype(np.uint8) if top < 256 else np.dtype(np.int16)
