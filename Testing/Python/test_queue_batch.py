"""queue auto: local processes, a real local Dask cluster, resuming, per-case failures."""
from __future__ import annotations

import numpy as np

from queue_fixtures import make_dataset
from SpineLabelLib.queue import Queue
from SpineLabelLib.queue.batch import run_auto


def test_auto_on_a_local_dask_cluster_and_resume(tmp_path):
    from distributed import LocalCluster

    dataset, reference, phantoms = make_dataset(tmp_path, 3)
    q, _ = Queue.init(dataset)
    first = run_auto(q, "reference", {"folder": str(reference)}, limit=1)  # an interrupted run
    assert len(first.done) == 1
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        rest = run_auto(q, "reference", {"folder": str(reference)}, scheduler=cluster.scheduler_address)
    assert sorted(rest.done + first.done) == sorted(phantoms) and not rest.failed
    for case_id, p in phantoms.items():
        mask, centroids = q.labels(case_id)
        assert np.array_equal(mask.array, p.mask.array)
        assert q.case(case_id).status == "automatic"
    assert run_auto(q, "reference", {"folder": str(reference)}).done == []  # nothing left


def test_auto_with_local_processes_reports_failures(tmp_path):
    dataset, reference, phantoms = make_dataset(tmp_path, 2)
    (reference / "derivatives" / "sub-case1" / "sub-case1_seg-vert_msk.nii.gz").unlink()
    q, _ = Queue.init(dataset)
    report = run_auto(q, "reference", {"folder": str(reference)}, workers=2)
    assert report.done == ["sub-case0"]
    assert "no reference mask" in report.failed["sub-case1"]
    assert q.case("sub-case1").status == "new"  # retried by the next run
    assert [e.kind for e in q.store.events("sub-case1")][-1] == "auto-failed"


def test_queue_runs_the_automatic_engines_of_the_shared_registry(tmp_path):
    """`queue auto` and `spinelabel segment` draw from one engine registry (SpineLabelLib.auto)."""
    import pytest

    from SpineLabelLib.auto.base import EngineUnavailableError, engine_names

    assert {"classical", "monai", "totalsegmentator", "reference"} <= set(engine_names())
    dataset, reference, phantoms = make_dataset(tmp_path, 1)
    q, _ = Queue.init(dataset)
    with pytest.raises(EngineUnavailableError):  # not installed here: refused before any work
        run_auto(q, "totalsegmentator")
    assert q.case("sub-case0").status == "new"
    report = run_auto(q, "classical")  # the weight-free default engine, for real
    assert report.done == ["sub-case0"] and not report.failed
    event = [e for e in q.store.events("sub-case0") if e.engine][-1]
    assert event.engine == "classical" and "SpineLabelLib" in event.model_version
