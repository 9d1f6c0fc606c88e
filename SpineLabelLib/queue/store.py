"""The queue store interface and its registry.

A store keeps cases, vertebrae, label versions (pointers to files), claims and the event
log of one dataset. Every method that changes something is one transaction that also
appends its event, so the log can never miss a change that happened.

Backends register a URL scheme here::

    register_store("sqlite", SQLiteStore.from_url)      # queue/sqlite_store.py
    register_store("postgresql", PostgresStore.from_url) # queue/postgres_store.py

Adding a backend is one new module with a :class:`Store` subclass and one
``register_store`` line (plus its import in :data:`BACKEND_MODULES`).
"""
from __future__ import annotations

import abc
import importlib
import os
from pathlib import Path
from typing import Callable

from .model import CaseRecord, Event, QueueError, VersionRecord, VertebraRecord

#: Modules that register the built-in backends when imported.
BACKEND_MODULES = ("SpineLabelLib.queue.sqlite_store", "SpineLabelLib.queue.postgres_store")

_OPENERS: dict[str, Callable[..., "Store"]] = {}

#: Where the embedded store lives inside a dataset folder (a dot folder: dataset scans skip it).
WORK_DIR = ".spinelabel"
SQLITE_NAME = "queue.sqlite"


def register_store(scheme: str, opener: Callable[..., "Store"]) -> None:
    """Make ``opener(url, create=False)`` handle store URLs ``scheme://...``."""
    _OPENERS[scheme] = opener


def default_store_url(dataset: str | os.PathLike) -> str:
    """The embedded SQLite store of a dataset: ``sqlite:///DATASET/.spinelabel/queue.sqlite``."""
    return "sqlite:///" + str((Path(dataset).resolve() / WORK_DIR / SQLITE_NAME))


def open_store(url: str, create: bool = False) -> "Store":
    """Open a store by URL (``sqlite:///abs/path.sqlite``, ``postgresql://user@host/db``).

    ``create``: allow creating the SQLite file (``queue init``); otherwise a missing store
    is an error naming it."""
    for module in BACKEND_MODULES:
        importlib.import_module(module)
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""
    if scheme == "postgres":
        scheme = "postgresql"
    if scheme not in _OPENERS:
        raise QueueError(f"store URL {url!r}: unknown scheme {scheme!r} (known: {', '.join(sorted(_OPENERS))})")
    return _OPENERS[scheme](url, create=create)


class Store(abc.ABC):
    """What the queue needs from a backend. Times are epoch seconds of the store's clock."""

    url: str

    # -- lifecycle -------------------------------------------------------------------
    @abc.abstractmethod
    def create(self, dataset: str, versions_dir: str) -> None:
        """Create the schema (idempotent) and record the dataset and versions folders."""

    @abc.abstractmethod
    def meta(self) -> dict[str, str]:
        """Stored settings: schema_version, dataset, versions_dir. Refuses a newer schema."""

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def now(self) -> float:
        """The store's clock (the database server's for a shared store, so leases agree)."""

    # -- cases -----------------------------------------------------------------------
    @abc.abstractmethod
    def add_cases(self, cases: list[CaseRecord], user: str) -> list[str]:
        """Insert the cases not yet in the store (with an ``add`` event each); return their ids."""

    @abc.abstractmethod
    def get_case(self, case_id: str) -> CaseRecord: ...

    @abc.abstractmethod
    def list_cases(self, status: str | None = None) -> list[CaseRecord]: ...

    @abc.abstractmethod
    def vertebrae(self, case_id: str) -> list[VertebraRecord]: ...

    # -- claims ----------------------------------------------------------------------
    @abc.abstractmethod
    def claim_next(self, user: str, statuses: tuple[str, ...], order_by: str, lease_s: float) -> CaseRecord | None:
        """Claim the first claimable case in ``order_by`` order for ``user`` (the user's own
        active claim first). Never hands one case to two users."""

    @abc.abstractmethod
    def claim(self, case_id: str, user: str, lease_s: float, take_over: bool = False) -> CaseRecord: ...

    @abc.abstractmethod
    def renew(self, case_id: str, user: str, lease_s: float) -> CaseRecord: ...

    @abc.abstractmethod
    def release(self, case_id: str, user: str) -> None: ...

    # -- versions and states -----------------------------------------------------------
    @abc.abstractmethod
    def add_version(self, case_id: str, user: str, *, mask_file: str, centroids_file: str | None, source: str,
                    vertebrae: list[VertebraRecord], status: str, event: Event,
                    engine: str | None = None, model_version: str | None = None,
                    expect_status: tuple[str, ...] | None = None) -> int:
        """Record a saved version (its files must already be complete on disk) as the
        case's current one, replace the vertebra records (keeping reviewer attributes of
        labels that persist), set the case status and log ``event``; return its number."""

    @abc.abstractmethod
    def versions(self, case_id: str) -> list[VersionRecord]: ...

    @abc.abstractmethod
    def approve(self, case_id: str, user: str, version: int, event: Event) -> None:
        """Mark ``version`` (which must still be current) approved and its vertebrae verified."""

    @abc.abstractmethod
    def set_status(self, case_id: str, user: str, status: str, comment: str | None, event: Event,
                   allowed_from: tuple[str, ...] | None = None) -> None: ...

    @abc.abstractmethod
    def set_priority(self, case_id: str, user: str, priority: int) -> None: ...

    @abc.abstractmethod
    def set_attributes(self, case_id: str, label: int, user: str, attributes: dict) -> None: ...

    # -- the log ---------------------------------------------------------------------
    @abc.abstractmethod
    def log(self, event: Event) -> None:
        """Append an event that goes with no state change (e.g. an edit not yet saved)."""

    @abc.abstractmethod
    def events(self, case_id: str | None = None) -> list[Event]: ...
