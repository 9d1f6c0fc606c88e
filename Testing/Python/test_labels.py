"""The VerSe label table and the TotalSegmentator mapping."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from SpineLabelLib import labels

from conftest import DATA


def test_values_names_and_order_follow_verse():
    names = [lab.name for lab in labels.LABELS]
    assert names[:7] == [f"C{n}" for n in range(1, 8)]
    assert names[7:19] == [f"T{n}" for n in range(1, 13)]
    assert names[19:] == ["T13", "L1", "L2", "L3", "L4", "L5", "L6", "sacrum", "coccyx"]
    assert labels.value_of("C1") == 1 and labels.value_of("T1") == 8 and labels.value_of("T12") == 19
    assert labels.value_of("L1") == 20 and labels.value_of("L5") == 24 and labels.value_of("L6") == 25
    assert labels.value_of("sacrum") == 26 and labels.value_of("coccyx") == 27 and labels.value_of("T13") == 28
    assert labels.sort_anatomical([20, 28, 19, 26, 25, 24]) == [19, 28, 20, 24, 25, 26]
    assert labels.label("l3").value == 22 and labels.label("22").name == "L3"
    with pytest.raises(KeyError):
        labels.label(33)
    with pytest.raises(KeyError):
        labels.label("T14")


def test_snomed_codes_as_specified():
    code = {lab.name: lab.snomed_code for lab in labels.LABELS}
    assert [code[f"C{n}"] for n in range(1, 8)] == ["14806007", "39976000", "113205007", "5329002", "36978003", "36054005", "87391001"]
    assert [code[f"T{n}"] for n in range(1, 13)] == [
        "64864005", "53733008", "1626008", "73071006", "56401006", "45296009",
        "62487009", "11068009", "82687006", "7610001", "12989004", "23215003"]
    assert [code[f"L{n}"] for n in range(1, 6)] == ["66794005", "14293000", "36470004", "11994002", "49668003"]
    assert code["sacrum"] == "54735007"
    assert code["T13"] == code["L6"] == "51282000"


def test_colours_are_distinct_between_neighbours():
    seq = labels.LABELS
    assert len({lab.color for lab in seq}) == len(seq)
    for a, b in zip(seq, seq[1:]):
        assert np.abs(np.subtract(a.color, b.color)).sum() > 60, (a.name, b.name)


def test_classify_and_neighbours():
    got = labels.classify_values([0, 1, 20, 28, 41, 50, 101, 33])
    assert got == {"vertebrae": [1, 20, 28], "subregions": [41, 50], "discs": [101], "unknown": [33]}
    assert labels.neighbours(20) == (19, 21)
    assert labels.neighbours(28) == (19, 20)
    assert labels.neighbours(20, present=[19, 28, 20, 21]) == (28, 21)
    assert labels.neighbours(1) == (None, 2)


def test_totalseg_mapping_on_real_outputs():
    ts = np.asanyarray(nib.load(str(DATA / "totalseg_example" / "seg_totalseg_labels.nii.gz")).dataobj)
    verse = labels.totalseg_to_verse(ts)
    assert verse.shape == ts.shape
    assert set(np.unique(verse)) == {0, 18, 19, 20, 21, 22, 23, 24, 26}  # T11..L5 and sacrum (+S1)
    assert np.array_equal(verse == 26, np.isin(ts, [25, 26]))  # S1 joins the sacrum
    assert np.array_equal(verse == 20, ts == 31)  # L1
    # every TS vertebra id maps; every non-vertebra structure (organs, ribs) maps to background
    assert not np.any(verse[(ts > 0) & ((ts < 25) | (ts > 50))])
    lidc = np.asanyarray(nib.load(str(DATA / "lidc0001_chest" / "seg_totalseg_labels.nii.gz")).dataobj)
    names = {labels.name_of(v) for v in np.unique(labels.totalseg_to_verse(lidc)) if v}
    assert {"C5", "T1", "T12", "L1"} <= names
    # the structures.csv shipped with the data agrees with our table
    rows = (DATA / "lidc0001_chest" / "structures.csv").read_text().lower()
    assert "vertebrae_t12" in rows
