"""Fixtures of the queue tests: a throwaway PostgreSQL server, small synthetic datasets.

The PostgreSQL server is a real one (the Debian ``postgresql`` package's binaries): a
fresh cluster in a temporary folder, listening only on a unix socket, started with
``initdb``/``pg_ctl`` and removed afterwards. As root the server runs as the
``postgres`` user (PostgreSQL refuses to run as root). A missing server fails the tests
loudly: the PostgreSQL store is part of the contract.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest


def _pg_bindir() -> Path:
    for candidate in [os.environ.get("SPINELABEL_PG_BINDIR")] + sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found: install the 'postgresql' package "
                       "or set SPINELABEL_PG_BINDIR")


class PostgresServer:
    def __init__(self):
        self.bindir = _pg_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="spinelabel-pg-"))
        self.data = self.root / "data"
        self.as_user = None
        if os.geteuid() == 0:
            self.as_user = "postgres"
            pwd.getpwnam("postgres")  # raises KeyError when the user is missing
            shutil.chown(self.root, user="postgres")
        self._run([self.bindir / "initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
        self._run([self.bindir / "pg_ctl", "-D", self.data, "-w", "-l", self.root / "log",
                   "-o", f"-k {self.root} -c listen_addresses='' -F -c max_connections=60", "start"])
        self.n = 0

    def _run(self, cmd):
        cmd = [str(c) for c in cmd]
        if self.as_user:
            cmd = ["runuser", "-u", self.as_user, "--"] + cmd
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr or done.stdout}")

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@/{db}?host={self.root}"

    def new_database(self) -> str:
        """A fresh empty database: its URL."""
        import psycopg

        self.n += 1
        name = f"queue{self.n}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self):
        try:
            self._run([self.bindir / "pg_ctl", "-D", self.data, "-m", "immediate", "stop"])
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """Store URL for each backend: the same tests run against both."""
    if request.param == "sqlite":
        return None  # the default: DATASET/.spinelabel/queue.sqlite
    return request.getfixturevalue("postgres_server").new_database()


def make_dataset(root: Path, n: int = 3, with_reference: bool = True, spacing=(3.0, 3.0, 3.0)):
    """A VerSe dataset of ``n`` coarse synthetic CTs (no masks) and, beside it, a reference
    folder with their ground-truth masks (for the reference engine). Returns (dataset, reference, phantoms)."""
    from SpineLabelLib.synthetic import make_phantom
    from SpineLabelLib.verse.layout import write_case

    ranges = [("T10", "L5"), ("T11", "sacrum"), ("L1", "L5"), ("T9", "L3")]
    phantoms = {}
    for i in range(n):
        first, last = ranges[i % len(ranges)]
        p = make_phantom(first=first, last=last, spacing=spacing, seed=i, noise_hu=10.0)
        write_case(root / "dataset", f"case{i}", p.ct, snapshot=False)
        if with_reference:
            write_case(root / "reference", f"case{i}", p.ct, p.mask, p.centroids_ijk, snapshot=False)
        phantoms[f"sub-case{i}"] = p
    return root / "dataset", root / "reference", phantoms


# ----------------------------------------------------------------------------------
# tiny datasets and worker processes for the concurrency and crash checks
# ----------------------------------------------------------------------------------
def make_tiny_dataset(root: Path, n: int) -> Path:
    """``n`` cases with a 12x12x12 CT each (fast to load): for claim/save throughput tests."""
    import numpy as np

    from SpineLabelLib.image import Image
    from SpineLabelLib.verse.layout import write_case

    for i in range(n):
        ct = Image(np.full((12, 12, 12), -100, dtype=np.int16), np.diag([2.0, 2.0, 2.0, 1.0]))
        write_case(root, f"t{i:05d}", ct, snapshot=False)
    return root


def tiny_mask(case_id: str, variant: int):
    """Two vertebrae (T12, L1) as boxes on the tiny grid; ``variant`` moves the boundary."""
    import numpy as np

    from SpineLabelLib.image import Image

    arr = np.zeros((12, 12, 12), dtype=np.uint8)
    cut = 5 + variant % 2
    arr[3:9, 3:9, cut + 1:11] = 19
    arr[3:9, 3:9, 1:cut] = 20
    return Image(arr, np.diag([2.0, 2.0, 2.0, 1.0]), source=f"{case_id}-v{variant}"), {
        19: np.array([5.5, 5.5, (cut + 11) / 2]), 20: np.array([5.5, 5.5, cut / 2])}


def cycle_worker(dataset: str, store: str | None, user: str, cycles: int) -> None:
    """claim -> edit (intermediate save) -> submit, ``cycles`` times; prints one JSON line
    per completed step so the parent knows exactly what was reported done."""
    import json
    import sys

    from SpineLabelLib.queue import Queue

    q = Queue(dataset, store)
    for _ in range(cycles):
        case = q.next(user, strategy="random")
        if case is None:
            break
        print(json.dumps({"claim": case.case_id}), flush=True)
        mask, ctd = tiny_mask(case.case_id, 0)
        n = q.submit(case.case_id, user, mask, ctd, final=False)
        print(json.dumps({"saved": [case.case_id, n]}), flush=True)
        mask, ctd = tiny_mask(case.case_id, 1)
        n = q.submit(case.case_id, user, mask, ctd, final=True)
        print(json.dumps({"saved": [case.case_id, n], "submitted": case.case_id}), flush=True)
    sys.stdout.flush()


def crash_worker(dataset: str, store: str | None, case_id: str, rounds: int) -> None:
    """save -> approve, over and over, on one case with a real snapshot; reports each."""
    import json

    from SpineLabelLib.queue import Queue

    q = Queue(dataset, store)
    print(json.dumps({"ready": True}), flush=True)  # the parent times its kill from here
    for r in range(rounds):
        mask, ctd = tiny_mask(case_id, r)
        n = q.submit(case_id, "crash", mask, ctd)
        print(json.dumps({"saved": n}), flush=True)
        n = q.approve(case_id, "crash")
        print(json.dumps({"approved": n}), flush=True)
        q.flag(case_id, "crash", "re-open for the next round")  # approved cases take no new labels
        q.unflag(case_id, "crash")


if __name__ == "__main__":
    import sys

    kind, *rest = sys.argv[1:]
    store_arg = None if rest[1] == "-" else rest[1]
    if kind == "cycle":
        cycle_worker(rest[0], store_arg, rest[2], int(rest[3]))
    elif kind == "crash":
        crash_worker(rest[0], store_arg, rest[2], int(rest[3]))
