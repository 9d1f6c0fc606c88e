"""The shared store for a team: PostgreSQL through a URL (``postgresql://user@host/db``).

Same schema and statements as SQLite (:mod:`.sql`); transactions lock the case row they
change (``SELECT ... FOR UPDATE``), and ``next`` skips rows that another session is
claiming at that moment (``FOR UPDATE SKIP LOCKED``), so annotators on several machines
never receive the same case. Lease times use the database server's clock, so machines
with skewed clocks still agree on when a claim expires. Needs ``psycopg`` (version 3).
"""
from __future__ import annotations

import contextlib

from .model import QueueError
from .sql import SQLStore
from .store import register_store


class PostgresStore(SQLStore):
    serial_pk = "BIGSERIAL PRIMARY KEY"
    lock_row = " FOR UPDATE"
    lock_skip = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, create: bool = False):
        try:
            import psycopg
        except ImportError as exc:  # a missing dependency must say so, not fall back silently
            raise QueueError(f"PostgreSQL store {url}: the 'psycopg' package is not installed "
                             f"(pip install 'psycopg[binary]'): {exc}") from None
        self.url = url
        self._psycopg = psycopg
        try:
            self.conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
        except psycopg.Error as exc:
            raise QueueError(f"PostgreSQL store {_safe(url)}: cannot connect ({str(exc).strip()})") from None

    @classmethod
    def from_url(cls, url: str, create: bool = False) -> "PostgresStore":
        return cls(url, create=create)

    def now(self) -> float:
        return float(self.conn.execute("SELECT extract(epoch from clock_timestamp())").fetchone()[0])

    def _execute(self, sql, params=()):
        return self.conn.execute(sql.replace("?", "%s"), params)

    @contextlib.contextmanager
    def _transaction(self):
        try:
            with self.conn.transaction():
                yield self._execute
        except self._psycopg.errors.ReadOnlySqlTransaction as exc:
            raise QueueError(f"PostgreSQL store {_safe(self.url)}: read-only ({exc})") from None

    def _run(self, sql, params=()):
        return self._execute(sql, params)

    def close(self) -> None:
        self.conn.close()


def _safe(url: str) -> str:
    """The URL without a password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        return f"{scheme}://{cred.split(':', 1)[0]}@{host}"
    return url


register_store("postgresql", PostgresStore.from_url)
