"""Label-sequence edits: each one a single undoable step, refusals explained."""
from __future__ import annotations

import numpy as np
import pytest

from SpineLabelLib import labels
from SpineLabelLib.edit import EditError, EditSession, LabelState, delete, insert, merge, relabel, remove, shift, split
from SpineLabelLib.image import Image

V = labels.value_of


def column(names, gap=2):
    """Vertebrae as 4-voxel slabs stacked head (high k) to feet on a 1 mm RAS grid."""
    k = (4 + gap) * len(names) + 2
    arr = np.zeros((6, 6, k), dtype=np.uint8)
    centroids = {}
    for n, name in enumerate(names):
        top = k - 1 - n * (4 + gap)
        arr[1:5, 1:5, top - 4:top] = V(name)
        centroids[V(name)] = np.array([2.5, 2.5, top - 2.5])
    return LabelState(Image(arr, np.eye(4)), centroids)


def names(state):
    return [labels.name_of(v) for v in state.present()]


def test_shift_down_cascade_and_up():
    s = column(["T11", "T12", "L1", "L2", "sacrum"])
    out = shift(s, V("T12"), "down")
    assert names(out) == ["T11", "L1", "L2", "L3", "sacrum"]
    assert np.array_equal(out.mask.array == V("L1"), s.mask.array == V("T12"))  # same voxels, new label
    assert np.allclose(out.centroids_ijk[V("L1")], s.centroids_ijk[V("T12")])
    assert names(shift(s, V("L1"), "up")) == ["T10", "T11", "T12", "L2", "sacrum"]
    with pytest.raises(EditError, match="anchor"):
        shift(s, V("sacrum"))
    with pytest.raises(EditError, match="sacrum"):
        shift(column(["L4", "L5", "sacrum"]), V("L4"))


def test_insert_and_remove_t13_l6():
    s = column(["T12", "L1", "L2", "L3", "L4", "L5", "sacrum"])
    t13 = insert(s, labels.T13, "below")
    assert names(t13) == ["T12", "T13", "L1", "L2", "L3", "L4", "sacrum"]
    assert names(remove(t13, labels.T13, "below")) == names(s)
    above = insert(s, labels.T13, "above")
    assert names(above) == ["T13", "L1", "L2", "L3", "L4", "L5", "sacrum"]
    l6 = insert(s, labels.L6, "above")
    assert names(l6) == ["L1", "L2", "L3", "L4", "L5", "L6", "sacrum"]
    assert names(remove(l6, labels.L6, "above")) == names(s)
    with pytest.raises(EditError, match="sacrum does not shift"):
        insert(s, labels.L6, "below")
    with pytest.raises(EditError, match="already present"):
        insert(t13, labels.T13)


def test_relabel_merge_split_delete():
    s = column(["T12", "L1", "L2"], gap=0)
    with pytest.raises(EditError, match="already used; merge"):
        relabel(s, V("L1"), V("L2"))
    assert names(relabel(s, V("L2"), V("L3"))) == ["T12", "L1", "L3"]
    merged = merge(s, V("L1"), V("L2"))
    assert names(merged) == ["T12", "L1"]
    assert (merged.mask.array == V("L1")).sum() == (s.mask.array == V("L1")).sum() + (s.mask.array == V("L2")).sum()
    cut_k = s.centroids_ijk[V("L1")][2]
    parts = split(merged, V("L1"), V("L2"), point_ras=(0, 0, cut_k - 2.5), normal_ras=(0, 0, -1))
    assert names(parts) == ["T12", "L1", "L2"]
    assert parts.centroids_ijk[V("L2")][2] < parts.centroids_ijk[V("L1")][2]
    with pytest.raises(EditError, match="does not cut"):
        split(s, V("L1"), V("L3"), point_ras=(0, 0, 100))
    gone = delete(s, V("L1"))
    assert names(gone) == ["T12", "L2"] and V("L1") not in gone.centroids_ijk


def test_session_undo_redo_and_events():
    heard = []
    session = EditSession(column(["T11", "T12", "L1"]), heard.append)
    original = session.state.mask.array.copy()
    session.apply("shift", start=V("T12"), direction="down")
    session.apply("delete", value=V("T11"))
    session.undo()
    assert names(session.state) == ["T11", "L1", "L2"]
    session.undo()
    assert np.array_equal(session.state.mask.array, original)
    session.redo()
    assert names(session.state) == ["T11", "L1", "L2"]
    assert [r.op for r in heard] == ["shift", "delete", "undo", "undo", "redo"]
    assert heard[0].params == {"start": V("T12"), "direction": "down"}
    with pytest.raises(EditError, match="unknown edit"):
        session.apply("explode")
