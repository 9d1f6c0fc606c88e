"""Small real versions of the concurrency and crash targets (full size: benchmarks/)."""
from __future__ import annotations

from queue_checks import run_concurrency, run_crashes
from queue_fixtures import make_tiny_dataset, postgres_server, store_url  # noqa: F401
from SpineLabelLib.queue import Queue


def test_parallel_annotators_never_share_a_case(tmp_path, store_url):
    dataset = make_tiny_dataset(tmp_path / "ds", 40)
    Queue.init(dataset, store_url)[0].close()
    result = run_concurrency(dataset, store_url, processes=4, cycles=8)
    assert result["cycles_done"] == 32
    assert result["double_claims"] == 0 and result["lost_events"] == 0 and result["lost_versions"] == 0


def test_sigkill_during_save_and_approve(tmp_path, store_url):
    dataset = make_tiny_dataset(tmp_path / "ds", 1)
    q, _ = Queue.init(dataset, store_url)
    q.close()
    result = run_crashes(dataset, store_url, "sub-t00000", runs=4, seed=1, max_delay_s=1.0)
    assert result["problems"] == []
    assert result["runs_with_reported_saves"] >= 1  # the kills did land mid-work
