"""The queue workflow on both stores (SQLite file and a real PostgreSQL server)."""
from __future__ import annotations

import sqlite3
import time

import numpy as np
import pytest

from queue_fixtures import make_dataset, postgres_server, store_url  # noqa: F401  (fixtures)
from SpineLabelLib.image import load_image
from SpineLabelLib.queue import ClaimError, Queue, QueueError, StoreSchemaError
from SpineLabelLib.queue.batch import run_auto


@pytest.fixture
def auto_queue(tmp_path, store_url):
    dataset, reference, phantoms = make_dataset(tmp_path, 3)
    q, report = Queue.init(dataset, store_url)
    assert sorted(report.added) == ["sub-case0", "sub-case1", "sub-case2"] and not report.problems
    done = run_auto(q, "reference", {"folder": str(reference)})
    assert sorted(done.done) == sorted(report.added) and not done.failed
    return q, phantoms, reference


def test_auto_then_claims_never_collide(auto_queue):
    q, phantoms, _ = auto_queue
    assert q.status()["states"]["automatic"] == 3
    a = q.next("alice")
    assert q.next("alice").case_id == a.case_id  # your own claim first: no hoarding
    b = q.next("bob")
    c = q.next("carol")
    assert len({a.case_id, b.case_id, c.case_id}) == 3
    assert q.next("dave") is None
    with pytest.raises(ClaimError, match="claimed by alice"):
        q.claim(a.case_id, "bob")
    with pytest.raises(ClaimError, match="not stale"):
        q.claim(a.case_id, "reviewer", take_over=True)


def test_stale_claim_taken_over_and_renewed(auto_queue):
    q, _, _ = auto_queue
    a = q.next("alice", lease_s=0.2)
    time.sleep(0.3)
    taken = q.claim(a.case_id, "reviewer", take_over=True)
    assert taken.assignee == "reviewer"
    kinds = [e.kind for e in q.store.events(a.case_id)]
    assert kinds[-1] == "takeover"
    with pytest.raises(ClaimError):
        q.renew(a.case_id, "alice")
    before = q.case(a.case_id).claim_expires
    q.renew(a.case_id, "reviewer", lease_s=3600)
    assert q.case(a.case_id).claim_expires > before


def test_submit_approve_revert_history(auto_queue, tmp_path):
    q, phantoms, _ = auto_queue
    case = q.next("alice")
    mask, ctd = q.labels(case.case_id)
    edited = mask.array.copy()
    edited[edited == 20] = 0  # the annotator deleted L1
    n = q.submit(case.case_id, "alice", mask.with_array(edited), clicks=3)
    assert n == 2 and q.case(case.case_id).status == "corrected"
    verts = {v.label: v for v in q.store.vertebrae(case.case_id)}
    assert 20 not in verts and verts[21].status == "automatic"
    assert any(f["kind"] == "gap" for f in verts[19].qa)  # QA sees the hole left by the deletion
    with pytest.raises(QueueError, match="no version 7"):
        q.revert(case.case_id, 7, "bob")
    n3 = q.revert(case.case_id, 1, "bob")
    assert n3 == 3
    assert np.array_equal(q.labels(case.case_id)[0].array, mask.array)
    assert q.approve(case.case_id, "bob", seconds=12) == 3
    c = q.case(case.case_id)
    assert c.status == "approved" and c.approved_version == 3
    der = load_image(q.dataset / c.mask_path)
    assert np.array_equal(der.array, mask.array)
    assert (q.dataset / c.snapshot_path).exists() and (q.dataset / c.centroids_path).exists()
    assert all(v.status == "verified" for v in q.store.vertebrae(case.case_id))
    versions, events = q.history(case.case_id)
    assert [v.source for v in versions] == ["auto", "submit", "revert"]
    assert [e.kind for e in events] == ["add", "auto", "claim", "submit", "revert", "approve"]
    submit = events[3]
    assert submit.user == "alice" and submit.clicks == 3 and submit.seconds is not None and submit.version == 2
    assert events[1].engine == "reference" and events[1].model_version == "reference-labels"
    with pytest.raises(QueueError, match="approved"):
        q.submit(case.case_id, "alice", mask)
    effort = q.status()["effort"]
    assert effort["alice"]["submit"] == 1 and effort["bob"]["approve"] == 1 and effort["alice"]["clicks"] == 3


def test_edit_session_logs_each_step(auto_queue):
    q, _, _ = auto_queue
    case = q.next("alice")
    session = q.edit_session(case.case_id, "alice")
    session.apply("shift", start=22, direction="up")  # L3 and above move up one level
    session.undo()
    session.apply("delete", value=21)
    n = q.save_session(case.case_id, "alice", session)
    kinds = [e.kind for e in q.store.events(case.case_id)]
    assert kinds[-4:] == ["edit", "undo", "edit", "edit"]  # two edits, one undo, then the save
    mask, _ = q.labels(case.case_id, n)
    assert 21 not in np.unique(mask.array)


def test_flag_review_role_and_priority(auto_queue):
    q, _, _ = auto_queue
    ids = [c.case_id for c in q.store.list_cases()]
    q.flag(ids[0], "alice", "motion artefact")
    with pytest.raises(QueueError, match="comment"):
        q.flag(ids[1], "alice", "  ")
    q.store.set_priority(ids[2], "lead", 5)
    assert q.next("alice", strategy="sequential").case_id == ids[2]  # people's priority first
    assert q.next("bob", role="review") is None
    assert q.status()["flagged"] == {ids[0]: "motion artefact"}


def test_strategies_order(auto_queue):
    q, _, _ = auto_queue
    ids = [c.case_id for c in q.store.list_cases()]
    run = q.store._run
    # make case 1 the most doubtful one
    run("UPDATE cases SET qa_flags = 0, min_confidence = 0.9")
    run(f"UPDATE cases SET min_confidence = 0.2 WHERE case_id = '{ids[1]}'")
    assert q.next("u1").case_id == ids[1]
    assert q.next("u2", strategy="sequential").case_id == ids[0]
    with pytest.raises(QueueError, match="unknown priority strategy"):
        q.next("u3", strategy="nope")


def test_newer_schema_is_refused(tmp_path):
    dataset, _, _ = make_dataset(tmp_path, 1, with_reference=False)
    q, _ = Queue.init(dataset)
    path = q.store.path
    q.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreSchemaError, match="schema version 99 is newer"):
        Queue(dataset)


def test_newer_schema_refused_on_postgres(tmp_path, postgres_server):
    dataset, _, _ = make_dataset(tmp_path, 1, with_reference=False)
    url = postgres_server.new_database()
    q, _ = Queue.init(dataset, url)
    q.store._run("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreSchemaError, match="newer"):
        Queue(dataset, url)


def test_missing_store_and_bad_url(tmp_path):
    dataset, _, _ = make_dataset(tmp_path, 1, with_reference=False)
    with pytest.raises(QueueError, match="queue init"):
        Queue(dataset)
    with pytest.raises(QueueError, match="unknown scheme"):
        Queue(dataset, "mysql://x")
    with pytest.raises(QueueError, match="cannot connect"):
        Queue(dataset, "postgresql://nobody@/nodb?host=/nonexistent")
