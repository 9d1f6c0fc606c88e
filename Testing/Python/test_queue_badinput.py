"""A dataset with broken cases: clear messages per case, the rest keeps working."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from queue_fixtures import make_dataset
from SpineLabelLib.image import Image, save_nifti
from SpineLabelLib.queue import Queue, QueueError


def test_broken_cases_are_flagged_and_the_rest_works(tmp_path):
    dataset, reference, _ = make_dataset(tmp_path, 3)
    # missing image: a mask without its CT
    der = dataset / "derivatives" / "sub-lost"
    der.mkdir(parents=True)
    save_nifti(Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)), der / "sub-lost_seg-vert_msk.nii.gz")
    # duplicate subject id: the same subject under the old challenge naming
    old = dataset / "old" / "case0"
    old.mkdir(parents=True)
    shutil.copy(dataset / "rawdata" / "sub-case0" / "sub-case0_ct.nii.gz", old / "case0.nii.gz")
    # mask on the wrong grid
    ct_path = dataset / "rawdata" / "sub-case1" / "sub-case1_ct.nii.gz"
    wrong = dataset / "derivatives" / "sub-case1"
    wrong.mkdir(parents=True)
    save_nifti(Image(np.zeros((5, 5, 5), np.uint8), np.eye(4)), wrong / "sub-case1_seg-vert_msk.nii.gz")
    q, report = Queue.init(dataset)
    assert "no CT image" in report.problems["sub-lost"]
    assert "also used by" in report.problems["sub-case0"] and "also used by" in report.problems["old/case0"]
    assert "grid" in report.problems["sub-case1"] and str(wrong) in report.problems["sub-case1"]
    assert "sub-case2" not in report.problems
    auto = __import__("SpineLabelLib.queue.batch", fromlist=["run_auto"]).run_auto(q, "reference", {"folder": str(reference)})
    assert auto.done == ["sub-case2"]
    assert q.next("alice").case_id == "sub-case2"
    assert q.next("bob") is None  # flagged cases wait for a person
    assert set(q.status()["flagged"]) == {"sub-lost", "sub-case0", "old/case0", "sub-case1"}



def test_read_only_dataset(tmp_path):
    dataset, _, _ = make_dataset(tmp_path, 1, with_reference=False)
    q, _ = Queue.init(dataset)
    q.close()
    store = dataset / ".spinelabel" / "queue.sqlite"
    # A read-only store (as root, permissions do not stop writes, so open it read-only by URL mode)
    os.chmod(dataset, 0o555)
    try:
        if os.geteuid() != 0:
            with pytest.raises(QueueError, match="read-only|cannot create"):
                Queue.init(tmp_path / "dataset", versions_dir=None, store=f"sqlite:///{tmp_path}/dataset/new/q.sqlite")
    finally:
        os.chmod(dataset, 0o755)
    ro = Queue(dataset, f"sqlite:///{store}")
    ro.store.conn.execute("PRAGMA query_only = ON")  # the store behaves as on a read-only medium
    with pytest.raises(QueueError, match="read-only"):
        ro.next("alice")
    assert ro.status()["states"]["new"] == 1  # reading still works
