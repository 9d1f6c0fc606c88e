"""The embedded store: one SQLite file (by default ``DATASET/.spinelabel/queue.sqlite``).

WAL journal (readers never block the writer), ``synchronous=FULL`` (a committed save
survives even a power cut), ``BEGIN IMMEDIATE`` transactions (one writer at a time; the
others wait up to :data:`BUSY_TIMEOUT_S`). Fine for one machine and a handful of
processes; a team on several machines uses PostgreSQL (SQLite over a network file system
is not safe).
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path
from urllib.parse import unquote

from .model import QueueError, StoreSchemaError
from .sql import SQLStore
from .store import register_store

BUSY_TIMEOUT_S = 60.0


class SQLiteStore(SQLStore):
    serial_pk = "INTEGER PRIMARY KEY AUTOINCREMENT"

    def __init__(self, path: str | os.PathLike, create: bool = False):
        self.path = Path(path)
        self.url = "sqlite:///" + str(self.path)
        if not create and not self.path.exists():
            raise QueueError(f"{self.path}: no queue store here; run 'spinelabel queue init DATASET' first")
        if create:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise QueueError(f"{self.path.parent}: cannot create the queue store folder ({exc.strerror}); "
                                 "give a writable location with --store sqlite:///PATH") from None
        try:
            self.conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                        check_same_thread=False)
            self.conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            self.conn.execute("PRAGMA synchronous = FULL")
            self.conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            raise StoreSchemaError(f"{self.path}: cannot open as a SQLite queue store ({exc})") from None
        if mode.lower() != "wal" and os.access(self.path, os.W_OK):
            raise QueueError(f"{self.path}: SQLite refused WAL mode ({mode}); is it on a network file system?")

    @classmethod
    def from_url(cls, url: str, create: bool = False) -> "SQLiteStore":
        rest = url.split("://", 1)[1]
        # sqlite:////abs/path and sqlite:///abs/path both name /abs/path; sqlite:///rel names ./rel
        path = unquote(rest[1:] if rest.startswith("/") else rest)
        return cls(path, create=create)

    def now(self) -> float:
        return time.time()

    @contextlib.contextmanager
    def _transaction(self):
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise _explain(self.path, exc) from None
        try:
            yield self.conn.execute
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                self.conn.execute("ROLLBACK")
                raise _explain(self.path, exc) from None

    def _run(self, sql, params=()):
        return self.conn.execute(sql, params)

    def close(self) -> None:
        self.conn.close()


def _explain(path: Path, exc: sqlite3.OperationalError) -> QueueError:
    text = str(exc)
    if "readonly" in text or "read-only" in text:
        return QueueError(f"{path}: the queue store is read-only ({text}); nothing was changed")
    if "locked" in text or "busy" in text:
        return QueueError(f"{path}: the queue store stayed locked by another process for {BUSY_TIMEOUT_S:.0f} s")
    return QueueError(f"{path}: {text}")


register_store("sqlite", SQLiteStore.from_url)
