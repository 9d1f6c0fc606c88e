"""What the Slicer panel shows and runs, without Qt: SpineLabelLib.slicer.review (queue
table, vertebra status/confidence, attributes, engine options) and SpineLabelLib.slicer.jobs
(background jobs with progress and cancel), and the panel's queue workflow on Slicer's real
MRML (slicer-core): init -> queue auto (cancelled, then resumed) -> next -> scene -> edit ->
submit -> approve."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import slicer  # slicer-core: required, never skipped

from SpineLabelLib import labels
from SpineLabelLib.edit import EDITS, LabelState
from SpineLabelLib.errors import SpineLabelInputError
from SpineLabelLib.image import Image
from SpineLabelLib.queue import Queue
from SpineLabelLib.queue.batch import run_auto
from SpineLabelLib.queue.model import CaseRecord, VertebraRecord
from SpineLabelLib.slicer import mrml, review
from SpineLabelLib.slicer.jobs import Cancelled, Job
from SpineLabelLib.synthetic import make_phantom
from SpineLabelLib.verse.layout import write_case

L1, L2, L3 = labels.value_of("L1"), labels.value_of("L2"), labels.value_of("L3")


def _mask(values_by_slab, shape=(6, 6, 9)):
    arr = np.zeros(shape, dtype=np.uint8)
    for k, v in enumerate(values_by_slab):
        arr[1:5, 1:5, 3 * k:3 * k + 2] = v
    return Image(arr, np.diag([2.0, 2.0, 2.0, 1.0]), "test")


# -- review helpers ---------------------------------------------------------------------------
def test_case_rows_show_status_priority_claims_and_confidence():
    now = 1000.0
    cases = [CaseRecord("a", "a", "a_ct.nii.gz", status="automatic", priority=2, min_confidence=0.4567, qa_flags=3),
             CaseRecord("b", "b", "b_ct.nii.gz", status="in progress", assignee="alice", claim_expires=now + 60),
             CaseRecord("c", "c", "c_ct.nii.gz", status="in progress", assignee="bob", claim_expires=now - 1),
             CaseRecord("d", "d", None, status="flagged", comment="no CT")]
    rows = review.case_rows(cases, now)
    assert [r["case_id"] for r in rows] == ["a", "b", "c", "d"]
    assert all(len(r["cells"]) == len(review.CASE_COLUMNS) for r in rows)
    assert rows[0]["cells"] == ("a", "automatic", "2", "-", "0.46", "3", "")
    assert rows[1]["cells"][3] == "alice"
    assert rows[2]["cells"][3] == "bob (lease expired)"
    assert rows[3]["cells"][1:] == ("flagged", "0", "-", "-", "0", "no CT")
    summary = review.queue_summary(cases, now)
    assert summary == "4 case(s): automatic 1, in progress 2, flagged 1; claimed: b by alice"


def test_vertebra_status_from_records_engine_confidence_and_unsaved_edits():
    saved = _mask([L1, L2, L3])
    records = [VertebraRecord("x", L1, "verified", 0.9), VertebraRecord("x", L2, "automatic", 0.3)]
    status = review.vertebra_status(saved, saved, records)
    assert status == {L1: ("verified", 0.9), L2: ("automatic", 0.3), L3: ("-", None)}
    # L2 grows into the background in the scene: only it is an unsaved edit
    scene = saved.with_array(saved.array.copy())
    scene.array[0, 0, 3] = L2
    assert review.changed_labels(scene, saved) == [L2]
    assert review.vertebra_status(scene, saved, records)[L2] == (review.UNSAVED, None)
    assert review.vertebra_status(scene, saved, records)[L1] == ("verified", 0.9)
    # a deleted label is a change too (it is gone from the scene, so only changed_labels names it)
    gone = saved.with_array(np.where(saved.array == L3, 0, saved.array).astype(np.uint8))
    assert review.changed_labels(gone, saved) == [L3]
    assert L3 not in review.vertebra_status(gone, saved, records)
    # an engine result: its confidence, with the default status
    assert review.vertebra_status(saved, saved, confidence={L1: 0.8}, default_status="automatic") == {
        L1: ("automatic", 0.8), L2: ("automatic", None), L3: ("automatic", None)}
    # another grid: every label differs
    other = _mask([L1, L2, L3], shape=(6, 6, 10))
    assert review.changed_labels(other, saved) == [L1, L2, L3]


def test_reviewer_attributes_round_trip():
    assert review.attribute_values(None) == {"fracture_grade": None, "implant": False, "transitional": False,
                                             "in_fov": True}
    rec = VertebraRecord("x", L1, fracture_grade=2, implant=True, transitional=None, in_fov=False)
    assert review.attribute_values(rec) == {"fracture_grade": 2, "implant": True, "transitional": False, "in_fov": False}
    assert review.attributes_to_save(None, True, False, True) == {"implant": True, "transitional": False, "in_fov": True}
    assert review.attributes_to_save(3, 0, 1, 1)["fracture_grade"] == 3
    with pytest.raises(SpineLabelInputError, match="Genant"):
        review.attributes_to_save(4, False, False, True)
    assert [v for v, _ in review.GENANT_GRADES] == [None, 0, 1, 2, 3]


def test_engine_options_name_the_path_each_engine_needs():
    assert review.engine_path_option("classical") is None
    assert review.engine_options("classical", "/ignored") == {}
    assert review.engine_path_option("monai") == "checkpoint"
    with pytest.raises(SpineLabelInputError, match="checkpoint"):
        review.engine_options("monai", "  ")
    assert review.engine_options("monai", "/models/spine") == {"checkpoint": "/models/spine"}
    assert review.engine_options("reference", "/labels") == {"folder": "/labels"}
    assert review.engine_options("totalsegmentator") == {}
    with pytest.raises(SpineLabelInputError, match="unknown engine"):
        review.engine_options("nope")
    assert review.engine_features("monai") == ["monai"] and review.engine_features("default") == []
    assert review.store_features("postgresql://u@h/db") == ["team"] and review.store_features(None) == []
    assert review.store_url("  ") is None and review.store_url(" sqlite:///x ") == "sqlite:///x"
    assert review.parse_options(["spacing=2.5", "device=cpu", "fast=true", "name=a=b"]) == {
        "spacing": 2.5, "device": "cpu", "fast": True, "name": "a=b"}
    with pytest.raises(SpineLabelInputError, match="KEY=VALUE"):
        review.parse_options(["spacing"])


# -- jobs ---------------------------------------------------------------------------------------
def test_job_reports_progress_and_result():
    seen = threading.Event()
    go = threading.Event()

    def work(job):
        job.progress(0.25, "first")
        seen.set()
        go.wait(10)
        job.step(3, 4, "case-3")
        return 42

    job = Job("work", work).start()
    assert seen.wait(10)
    assert job.state() == (0.25, "first") and not job.finished
    go.set()
    assert job.wait(10)
    assert job.result == 42 and job.error is None and not job.cancelled
    assert job.state() == (0.75, "3/4 case-3")


def test_job_cancel_stops_at_the_next_progress_report():
    started = threading.Event()
    calls = []

    def work(job):
        started.set()
        while True:
            calls.append(1)
            job.progress(None, "looping")

    job = Job("loop", work)
    job.start()
    assert started.wait(10)
    assert job.cancel()
    assert job.wait(10)
    assert job.cancelled and isinstance(job.error, Cancelled) and job.result is None
    # not cancellable: cancel() refuses and progress never raises
    job = Job("atomic", lambda j: (j.progress(0.5), j.progress(1.0)) and "done", cancellable=False)
    assert job.cancel() is False
    assert job.start().wait(10) and job.result == "done" and job.error is None


def test_job_hands_errors_to_the_main_thread():
    job = Job("bad", lambda j: 1 / 0).start()
    assert job.wait(10)
    assert isinstance(job.error, ZeroDivisionError) and not job.cancelled


# -- the panel's queue workflow on real MRML --------------------------------------------------------
@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """A dataset of two CT-only cases and a reference-label folder for the reference engine."""
    root = tmp_path_factory.mktemp("panel")
    ds, ref = root / "dataset", root / "reference"
    phantoms = {}
    for n, first in enumerate(("T12", "L1")):
        ph = make_phantom(first=first, last="L5", spacing=(3.0, 3.0, 3.0), seed=n)
        write_case(ds, f"p{n}", ph.ct, snapshot=False)
        write_case(ref, f"p{n}", ph.ct, ph.mask, ph.centroids_ijk, snapshot=False)
        phantoms[f"p{n}"] = ph
    return ds, ref, phantoms


def test_queue_workflow_through_the_scene(datasets):
    ds, ref, phantoms = datasets
    queue, report = Queue.init(ds, user="lead")
    text = review.init_report_text(report, queue.store.url)
    assert text.startswith("2 case(s) added")
    queue.close()

    # queue auto in a job, cancelled after the first case: that one stays recorded, the other new
    def auto(job):
        with review.open_queue(ds) as q:
            return run_auto(q, "reference", {"folder": str(ref)}, progress=lambda d, t, n: (job.cancel(), job.step(d, t, n)))

    job = Job("queue auto", auto).start()
    assert job.wait(60) and job.cancelled, job.error
    with review.open_queue(ds) as q:
        states = sorted(c.status for c in q.store.list_cases())
        assert states == ["automatic", "new"]
        report = run_auto(q, "reference", {"folder": str(ref)})  # resumes with the case still new
        assert len(report.done) == 1 and "1 case(s) proposed by reference" in review.auto_report_text(report, "reference")

    queue = Queue(ds)
    try:
        case = queue.next("alice")
        assert case is not None and case.assignee == "alice"
        rows = review.case_rows(queue.store.list_cases(), queue.store.now())
        assert [r["cells"][3] for r in rows if r["case_id"] == case.case_id] == ["alice"]
        data = review.read_queue_case(queue, case.case_id)
        truth = phantoms[data.case.subject]
        assert np.array_equal(data.mask.array, truth.mask.array)

        # into the scene, as the panel's Logic.addCase does, and back out through Slicer's export
        scene = slicer.vtkMRMLScene()
        volume = mrml.image_to_volume_node(data.ct, scene, "ct")
        segmentation = mrml.labelmap_to_segmentation_node(data.mask, scene, name="vertebrae", reference_volume_node=volume)
        exported = mrml.segmentation_node_to_labelmap(segmentation, volume)
        assert review.changed_labels(exported, data.mask) == []
        status = review.vertebra_status(exported, data.mask, data.records)
        assert {s for s, _ in status.values()} == {"automatic"} and {c for _, c in status.values()} == {1.0}

        # an edit in the scene is an unsaved change until submitted
        last = labels.sort_anatomical(int(v) for v in np.unique(exported.array) if labels.is_vertebra(int(v)))[-1]
        edited = EDITS["delete"](LabelState(exported, dict(data.centroids_ijk)), value=last)
        mrml.labelmap_to_segmentation_node(edited.mask, scene, node=segmentation, reference_volume_node=volume)
        scene_mask = mrml.segmentation_node_to_labelmap(segmentation, volume)
        assert review.changed_labels(scene_mask, data.mask) == [last]
        with pytest.raises(Exception, match="claimed by alice"):
            queue.submit(case.case_id, "bob", scene_mask)
        n = queue.submit(case.case_id, "alice", scene_mask, edited.centroids_ijk, detail={"client": "slicer"})
        assert n == 2 and queue.case(case.case_id).status == "corrected"
        records = queue.store.vertebrae(case.case_id)
        assert last not in [r.label for r in records]
        assert review.vertebra_status(scene_mask, scene_mask, records)  # all known again
        queue.set_attributes(case.case_id, records[0].label, "bob", **review.attributes_to_save(2, True, False, True))
        assert queue.approve(case.case_id, "bob") == 2
        records = queue.store.vertebrae(case.case_id)
        assert {s for s, _ in review.vertebra_status(scene_mask, scene_mask, records).values()} == {"verified"}
        assert review.attribute_values(records[0]) == {"fracture_grade": 2, "implant": True, "transitional": False,
                                                       "in_fov": True}
        assert "approved 1" in review.queue_summary(queue.store.list_cases(), queue.store.now())
    finally:
        queue.close()
