"""``queue auto``: run an automatic engine on every new case, resumably, in parallel.

Workers (local processes, or a Dask distributed cluster given its scheduler address) load
a CT, run the engine, write the proposal as version files and run the QA checks; the
calling process records each finished case in the store, one transaction per case. A case
is "done" only when recorded, so an interrupted run resumes with the cases still new, and
two overlapping runs never record one case twice (the store refuses a proposal for a case
that is no longer new). With Dask the dataset folder must be visible to the workers at the
same path (a shared file system).
"""
from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field

from . import model as M
from .model import QueueError, VertebraRecord


@dataclass
class AutoReport:
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # case id -> message
    skipped: list[str] = field(default_factory=list)  # no longer new when its result arrived
    seconds: float = 0.0


def auto_job(dataset: str, versions_dir: str, case_id: str, ct_path: str, engine: str, options: dict) -> dict:
    """Worker side: segment one case and write its version files. Never touches the store."""
    from pathlib import Path

    from ..image import load_image
    from .api import vertebra_records
    from ..auto.base import get_engine
    from .versions import write_version_files

    start = time.perf_counter()
    try:
        eng = get_engine(engine, **options)
        ct = load_image(Path(dataset) / ct_path)
        result = eng.run(ct)
        ct.require_same_grid(result.mask, what=f"{engine} engine mask")
        records = vertebra_records(case_id, ct, result.mask, result.centroids_ijk, result.confidence, M.V_AUTOMATIC)
        mask_file, ctd_file = write_version_files(versions_dir, case_id, "auto", result.mask, result.centroids_ijk)
        return {"case_id": case_id, "ok": True, "mask_file": mask_file, "centroids_file": ctd_file,
                "records": [asdict(r) for r in records], "engine": result.engine or engine,
                "model_version": result.model_version, "seconds": time.perf_counter() - start}
    except Exception as exc:  # reported per case; the run goes on with the others
        return {"case_id": case_id, "ok": False, "error": f"{type(exc).__name__}: {exc}"}


def run_auto(queue, engine: str, options: dict | None = None, workers: int = 1, scheduler: str | None = None,
             progress=None, user: str = "auto", limit: int | None = None) -> AutoReport:
    """Propose labels for every case that is still ``new``. ``scheduler``: a Dask scheduler
    address (``tcp://host:8786``) to run on a cluster; otherwise ``workers`` local processes
    (1: in this process). ``progress(done, total, case_id)`` is called per finished case."""
    from ..auto.base import get_engine

    options = dict(options or {})
    get_engine(engine, **options).check_available()  # fail fast on a bad engine or options, before any work
    todo = [c for c in queue.store.list_cases(M.NEW) if c.ct_path]
    if limit is not None:
        todo = todo[:limit]
    report = AutoReport()
    start = time.perf_counter()
    args = [(str(queue.dataset), str(queue.versions_dir), c.case_id, c.ct_path, engine, options) for c in todo]

    def record(result: dict) -> None:
        case_id = result["case_id"]
        if not result["ok"]:
            report.failed[case_id] = result["error"]
            queue.store.log(M.Event(case_id, None, user, "auto-failed", {"error": result["error"], "engine": engine}))
        else:
            try:
                queue.record_automatic(case_id, user, result["mask_file"], result["centroids_file"],
                                       [VertebraRecord(**r) for r in result["records"]], result["engine"],
                                       result["model_version"], result["seconds"])
                report.done.append(case_id)
            except QueueError:
                report.skipped.append(case_id)
        if callable(progress):
            progress(len(report.done) + len(report.failed) + len(report.skipped), len(todo), case_id)

    if scheduler:
        try:
            from distributed import Client, as_completed as dask_completed
        except ImportError as exc:
            raise QueueError(f"--scheduler needs dask.distributed (pip install 'dask[distributed]'): {exc}") from None
        try:
            client = Client(scheduler, timeout=30)
        except OSError as exc:
            raise QueueError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        try:
            futures = [client.submit(auto_job, *a, pure=False, key=f"spinelabel-auto-{a[2]}-{time.time_ns()}")
                       for a in args]
            for future in dask_completed(futures):
                record(future.result())
        finally:
            client.close()
    elif workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(auto_job, *a) for a in args]
            for future in as_completed(futures):
                record(future.result())
    else:
        for a in args:
            record(auto_job(*a))
    report.seconds = time.perf_counter() - start
    return report
