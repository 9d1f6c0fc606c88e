"""One SQL implementation of :class:`~.store.Store` shared by SQLite and PostgreSQL.

The schema and every statement are the same for both backends, so they behave the same;
a backend subclass only supplies a connection, a transaction that takes the right locks,
its placeholder style and its clock. Statements are written with ``?`` placeholders.

Concurrency: every change runs in one transaction together with its event. SQLite
serialises writers (``BEGIN IMMEDIATE``); PostgreSQL locks the case row (``FOR UPDATE``)
and ``next`` skips rows other sessions are claiming (``FOR UPDATE SKIP LOCKED``). Claims
are also guarded by a conditional UPDATE, so two users can never hold one case.
"""
from __future__ import annotations

import json
from dataclasses import asdict, fields

from .model import (
    APPROVED, CORRECTED, IN_PROGRESS, SCHEMA_VERSION, V_VERIFIED, CaseRecord, ClaimError, Event,
    QueueError, StoreSchemaError, UnknownCaseError, VersionRecord, VertebraRecord,
)
from .store import Store

_CASE_COLS = [f.name for f in fields(CaseRecord)]
_VERT_COLS = [f.name for f in fields(VertebraRecord)]
_VERSION_COLS = [f.name for f in fields(VersionRecord)]
_EVENT_COLS = [f.name for f in fields(Event) if f.name != "id"]


def schema(serial_pk: str) -> list[str]:
    """CREATE statements (idempotent). ``serial_pk``: the backend's auto-increment key type."""
    return [
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE IF NOT EXISTS cases (
            case_id TEXT PRIMARY KEY, subject TEXT NOT NULL, ct_path TEXT, status TEXT NOT NULL,
            current_version INTEGER, approved_version INTEGER, assignee TEXT,
            claim_expires DOUBLE PRECISION, claimed_at DOUBLE PRECISION, priority INTEGER NOT NULL DEFAULT 0,
            min_confidence DOUBLE PRECISION, qa_flags INTEGER NOT NULL DEFAULT 0, comment TEXT,
            updated DOUBLE PRECISION, mask_path TEXT, centroids_path TEXT, snapshot_path TEXT)""",
        "CREATE INDEX IF NOT EXISTS cases_status ON cases (status)",
        "CREATE INDEX IF NOT EXISTS cases_assignee ON cases (assignee)",
        """CREATE TABLE IF NOT EXISTS vertebrae (
            case_id TEXT NOT NULL REFERENCES cases (case_id), label INTEGER NOT NULL, status TEXT NOT NULL,
            confidence DOUBLE PRECISION, qa TEXT NOT NULL, fracture_grade INTEGER, implant INTEGER,
            transitional INTEGER, in_fov INTEGER, PRIMARY KEY (case_id, label))""",
        """CREATE TABLE IF NOT EXISTS versions (
            case_id TEXT NOT NULL REFERENCES cases (case_id), n INTEGER NOT NULL, mask_file TEXT NOT NULL,
            centroids_file TEXT, created DOUBLE PRECISION NOT NULL, "user" TEXT NOT NULL, source TEXT NOT NULL,
            engine TEXT, model_version TEXT, PRIMARY KEY (case_id, n))""",
        f"""CREATE TABLE IF NOT EXISTS events (
            id {serial_pk}, case_id TEXT, at DOUBLE PRECISION NOT NULL, "user" TEXT NOT NULL, kind TEXT NOT NULL,
            detail TEXT NOT NULL, seconds DOUBLE PRECISION, clicks INTEGER, engine TEXT, model_version TEXT,
            version INTEGER)""",
        "CREATE INDEX IF NOT EXISTS events_case ON events (case_id)",
    ]


def _q(col: str) -> str:
    return '"user"' if col == "user" else col  # "user" is reserved in PostgreSQL


def _bool(v):
    return None if v is None else bool(v)


class SQLStore(Store):
    """Backend-independent SQL; subclasses implement :meth:`_transaction`, :meth:`_execute`."""

    serial_pk = "INTEGER PRIMARY KEY AUTOINCREMENT"
    lock_row = ""  # appended to a SELECT of one case row inside a transaction
    lock_skip = ""  # appended to the SELECT of ``next``

    # -- backend hooks -----------------------------------------------------------------
    def _transaction(self):  # context manager yielding an executor ``run(sql, params) -> cursor``
        raise NotImplementedError

    def _run(self, sql: str, params=()):  # autocommit read
        raise NotImplementedError

    # -- helpers -------------------------------------------------------------------------
    def _one(self, run, sql, params=()):
        row = run(sql, params).fetchone()
        return row

    def _case_from_row(self, row) -> CaseRecord:
        return CaseRecord(**dict(zip(_CASE_COLS, row)))

    def _load_case(self, run, case_id: str, lock: bool = False) -> CaseRecord:
        row = self._one(run, f"SELECT {', '.join(_CASE_COLS)} FROM cases WHERE case_id = ?"
                        + (self.lock_row if lock else ""), (case_id,))
        if row is None:
            raise UnknownCaseError(f"case {case_id!r} is not in the queue (see 'spinelabel queue status')")
        return self._case_from_row(row)

    def _insert_event(self, run, event: Event) -> None:
        values = asdict(event)
        values["detail"] = json.dumps(values["detail"], sort_keys=True, default=str)
        run(f"INSERT INTO events ({', '.join(map(_q, _EVENT_COLS))}) VALUES ({', '.join('?' * len(_EVENT_COLS))})",
            tuple(values[c] for c in _EVENT_COLS))

    # -- lifecycle ---------------------------------------------------------------------
    def create(self, dataset: str, versions_dir: str) -> None:
        with self._transaction() as run:
            for statement in schema(self.serial_pk):
                run(statement)
            existing = dict(run("SELECT key, value FROM meta").fetchall())
            self._check_schema(existing)
            for key, value in (("schema_version", str(SCHEMA_VERSION)), ("dataset", dataset),
                               ("versions_dir", versions_dir)):
                if key not in existing:
                    run("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))

    def _check_schema(self, meta: dict) -> None:
        version = meta.get("schema_version")
        if version is not None and int(version) > SCHEMA_VERSION:
            raise StoreSchemaError(
                f"{self.url}: store schema version {version} is newer than this SpineLabel understands "
                f"({SCHEMA_VERSION}); upgrade SpineLabel to use it (the store was not changed)")

    def meta(self) -> dict[str, str]:
        try:
            rows = self._run("SELECT key, value FROM meta").fetchall()
        except Exception as exc:  # no meta table: not a queue store (or never initialised)
            raise StoreSchemaError(f"{self.url}: not a SpineLabel queue store ({exc}); run 'spinelabel queue init'") from None
        meta = dict(rows)
        if "schema_version" not in meta:
            raise StoreSchemaError(f"{self.url}: not a SpineLabel queue store (no schema version); run 'spinelabel queue init'")
        self._check_schema(meta)
        return meta

    # -- cases ---------------------------------------------------------------------------
    def add_cases(self, cases: list[CaseRecord], user: str) -> list[str]:
        added = []
        with self._transaction() as run:
            now = self.now()
            have = {r[0] for r in run("SELECT case_id FROM cases").fetchall()}
            for case in cases:
                if case.case_id in have:
                    continue
                case.updated = now
                values = asdict(case)
                run(f"INSERT INTO cases ({', '.join(_CASE_COLS)}) VALUES ({', '.join('?' * len(_CASE_COLS))})",
                    tuple(values[c] for c in _CASE_COLS))
                self._insert_event(run, Event(case.case_id, now, user, "add",
                                              {"status": case.status, "comment": case.comment}))
                added.append(case.case_id)
        return added

    def get_case(self, case_id: str) -> CaseRecord:
        return self._load_case(self._run, case_id)

    def list_cases(self, status: str | None = None) -> list[CaseRecord]:
        sql = f"SELECT {', '.join(_CASE_COLS)} FROM cases"
        rows = (self._run(sql + " WHERE status = ? ORDER BY case_id", (status,)) if status
                else self._run(sql + " ORDER BY case_id")).fetchall()
        return [self._case_from_row(r) for r in rows]

    def vertebrae(self, case_id: str) -> list[VertebraRecord]:
        rows = self._run(f"SELECT {', '.join(_VERT_COLS)} FROM vertebrae WHERE case_id = ? ORDER BY label",
                         (case_id,)).fetchall()
        out = []
        for row in rows:
            d = dict(zip(_VERT_COLS, row))
            d["qa"] = json.loads(d["qa"])
            for key in ("implant", "transitional", "in_fov"):
                d[key] = _bool(d[key])
            out.append(VertebraRecord(**d))
        return out

    # -- claims --------------------------------------------------------------------------
    def claim_next(self, user, statuses, order_by, lease_s):
        marks = ", ".join("?" * len(statuses))
        with self._transaction() as run:
            now = self.now()
            # The user's own unexpired claim comes first: nobody hoards cases by calling next.
            row = self._one(run, f"SELECT case_id FROM cases WHERE assignee = ? AND claim_expires > ? "
                                 f"AND status IN ({marks}) ORDER BY case_id LIMIT 1", (user, now, *statuses))
            if row is None:
                row = self._one(run, f"SELECT case_id FROM cases WHERE status IN ({marks}) AND "
                                     f"(assignee IS NULL OR claim_expires IS NULL OR claim_expires <= ?) "
                                     f"ORDER BY priority DESC, {order_by}, case_id LIMIT 1{self.lock_skip}",
                                (*statuses, now))
            if row is None:
                return None
            return self._claim_in(run, row[0], user, lease_s, now, take_over=False, kind="claim")

    def _claim_in(self, run, case_id, user, lease_s, now, take_over, kind):
        case = self._load_case(run, case_id, lock=True)
        if case.status == APPROVED:
            raise ClaimError(f"case {case_id}: already approved; nothing to claim")
        if case.claimed_by_other(user, now):
            if not take_over:
                raise ClaimError(f"case {case_id}: claimed by {case.assignee} until "
                                 f"{_clock(case.claim_expires)}; not yours")
            if case.claim_expires > now:
                raise ClaimError(f"case {case_id}: the claim of {case.assignee} is not stale (it runs until "
                                 f"{_clock(case.claim_expires)}); it can be taken over once it has expired")
        previous = case.assignee if case.assignee != user and case.claim_expires is not None else None
        # Reviewers claim corrected cases without changing their state; annotation starts work.
        status = case.status if case.status in (CORRECTED,) else IN_PROGRESS
        cur = run("UPDATE cases SET assignee = ?, claim_expires = ?, claimed_at = ?, status = ?, updated = ? "
                  "WHERE case_id = ? AND (assignee IS NULL OR assignee = ? OR claim_expires IS NULL "
                  "OR claim_expires <= ?)", (user, now + lease_s, now, status, now, case_id, user, now))
        if cur.rowcount != 1:  # someone else got it between our read and this write
            raise ClaimError(f"case {case_id}: claimed by someone else a moment ago")
        if previous:
            kind = "takeover"
        self._insert_event(run, Event(case_id, now, user, kind, {"lease_s": lease_s, "from_status": case.status,
                                                                 "previous_assignee": previous}))
        case.assignee, case.claim_expires, case.claimed_at, case.status = user, now + lease_s, now, status
        return case

    def claim(self, case_id, user, lease_s, take_over=False):
        with self._transaction() as run:
            return self._claim_in(run, case_id, user, lease_s, self.now(), take_over, "claim")

    def renew(self, case_id, user, lease_s):
        with self._transaction() as run:
            now = self.now()
            case = self._load_case(run, case_id, lock=True)
            if case.assignee != user or case.claim_expires is None:
                raise ClaimError(f"case {case_id}: {user} holds no claim on it (assignee: {case.assignee or 'nobody'})")
            run("UPDATE cases SET claim_expires = ?, updated = ? WHERE case_id = ?", (now + lease_s, now, case_id))
            self._insert_event(run, Event(case_id, now, user, "renew", {"lease_s": lease_s}))
            case.claim_expires = now + lease_s
            return case

    def release(self, case_id, user):
        with self._transaction() as run:
            now = self.now()
            case = self._load_case(run, case_id, lock=True)
            if case.assignee != user:
                raise ClaimError(f"case {case_id}: {user} holds no claim on it (assignee: {case.assignee or 'nobody'})")
            run("UPDATE cases SET assignee = NULL, claim_expires = NULL, updated = ? WHERE case_id = ?", (now, case_id))
            self._insert_event(run, Event(case_id, now, user, "release", {}))

    # -- versions and states ---------------------------------------------------------------
    def add_version(self, case_id, user, *, mask_file, centroids_file, source, vertebrae, status, event,
                    engine=None, model_version=None, expect_status=None):
        with self._transaction() as run:
            now = self.now()
            case = self._load_case(run, case_id, lock=True)
            if case.claimed_by_other(user, now):
                raise ClaimError(f"case {case_id}: claimed by {case.assignee} until {_clock(case.claim_expires)}; "
                                 f"{user} cannot save it")
            if expect_status is not None and case.status not in expect_status:
                raise QueueError(f"case {case_id}: is {case.status!r}, expected one of {', '.join(expect_status)}")
            n = (self._one(run, "SELECT MAX(n) FROM versions WHERE case_id = ?", (case_id,))[0] or 0) + 1
            run(f"INSERT INTO versions ({', '.join(map(_q, _VERSION_COLS))}) VALUES ({', '.join('?' * len(_VERSION_COLS))})",
                (case_id, n, mask_file, centroids_file, now, user, source, engine, model_version))
            old = {v.label: v for v in self._vertebrae_in(run, case_id)}
            run("DELETE FROM vertebrae WHERE case_id = ?", (case_id,))
            for v in vertebrae:
                prev = old.get(v.label)
                for key in ("fracture_grade", "implant", "transitional", "in_fov"):
                    if getattr(v, key) is None and prev is not None:  # reviewer attributes persist
                        setattr(v, key, getattr(prev, key))
                run(f"INSERT INTO vertebrae ({', '.join(_VERT_COLS)}) VALUES ({', '.join('?' * len(_VERT_COLS))})",
                    (case_id, int(v.label), v.status, v.confidence, json.dumps(v.qa), v.fracture_grade,
                     _int(v.implant), _int(v.transitional), _int(v.in_fov)))
            confidences = [v.confidence for v in vertebrae if v.confidence is not None]
            n_flags = sum(len(v.qa) for v in vertebrae)
            keep_claim = status == IN_PROGRESS  # an intermediate save keeps the annotator's claim
            run("UPDATE cases SET current_version = ?, status = ?, min_confidence = ?, qa_flags = ?, updated = ?"
                + ("" if keep_claim else ", assignee = NULL, claim_expires = NULL") + " WHERE case_id = ?",
                (n, status, min(confidences) if confidences else None, n_flags, now, case_id))
            event.at, event.version, event.case_id, event.user = now, n, case_id, user
            self._insert_event(run, event)
            return n

    def _vertebrae_in(self, run, case_id):
        rows = run(f"SELECT {', '.join(_VERT_COLS)} FROM vertebrae WHERE case_id = ?", (case_id,)).fetchall()
        return [VertebraRecord(**{**dict(zip(_VERT_COLS, r)), "qa": []}) for r in rows]

    def versions(self, case_id):
        rows = self._run(f"SELECT {', '.join(map(_q, _VERSION_COLS))} FROM versions WHERE case_id = ? ORDER BY n",
                         (case_id,)).fetchall()
        return [VersionRecord(**dict(zip(_VERSION_COLS, r))) for r in rows]

    def approve(self, case_id, user, version, event):
        with self._transaction() as run:
            now = self.now()
            case = self._load_case(run, case_id, lock=True)
            if case.claimed_by_other(user, now):
                raise ClaimError(f"case {case_id}: claimed by {case.assignee} until {_clock(case.claim_expires)}; "
                                 f"{user} cannot approve it now")
            if case.current_version != version:
                raise QueueError(f"case {case_id}: version {case.current_version} was saved while version {version} "
                                 "was being approved; review the new version")
            run("UPDATE cases SET status = ?, approved_version = ?, assignee = NULL, claim_expires = NULL, "
                "comment = NULL, updated = ? WHERE case_id = ?", (APPROVED, version, now, case_id))
            run("UPDATE vertebrae SET status = ? WHERE case_id = ?", (V_VERIFIED, case_id))
            event.at, event.version, event.case_id, event.user = now, version, case_id, user
            self._insert_event(run, event)

    def set_status(self, case_id, user, status, comment, event, allowed_from=None):
        with self._transaction() as run:
            now = self.now()
            case = self._load_case(run, case_id, lock=True)
            if case.claimed_by_other(user, now):
                raise ClaimError(f"case {case_id}: claimed by {case.assignee} until {_clock(case.claim_expires)}")
            if allowed_from is not None and case.status not in allowed_from:
                raise QueueError(f"case {case_id}: is {case.status!r}; this needs one of: {', '.join(allowed_from)}")
            run("UPDATE cases SET status = ?, comment = ?, assignee = NULL, claim_expires = NULL, updated = ? "
                "WHERE case_id = ?", (status, comment, now, case_id))
            event.at, event.case_id, event.user = now, case_id, user
            event.detail = {**event.detail, "from_status": case.status}
            self._insert_event(run, event)

    def set_priority(self, case_id, user, priority):
        with self._transaction() as run:
            now = self.now()
            self._load_case(run, case_id, lock=True)
            run("UPDATE cases SET priority = ?, updated = ? WHERE case_id = ?", (int(priority), now, case_id))
            self._insert_event(run, Event(case_id, now, user, "priority", {"priority": int(priority)}))

    def set_attributes(self, case_id, label, user, attributes):
        cols = [k for k in ("fracture_grade", "implant", "transitional", "in_fov") if k in attributes]
        if not cols:
            raise QueueError("no attribute given (fracture_grade, implant, transitional, in_fov)")
        with self._transaction() as run:
            now = self.now()
            self._load_case(run, case_id, lock=True)
            cur = run(f"UPDATE vertebrae SET {', '.join(c + ' = ?' for c in cols)} WHERE case_id = ? AND label = ?",
                      (*[_int(attributes[c]) for c in cols], case_id, int(label)))
            if cur.rowcount != 1:
                raise QueueError(f"case {case_id}: has no vertebra with label {label} in its current version")
            self._insert_event(run, Event(case_id, now, user, "attributes", {"label": int(label), **attributes}))

    # -- the log -------------------------------------------------------------------------
    def log(self, event):
        with self._transaction() as run:
            if event.at is None:
                event.at = self.now()
            self._insert_event(run, event)

    def events(self, case_id=None):
        cols = ", ".join(["id"] + [_q(c) for c in _EVENT_COLS])
        rows = (self._run(f"SELECT {cols} FROM events WHERE case_id = ? ORDER BY id", (case_id,)) if case_id
                else self._run(f"SELECT {cols} FROM events ORDER BY id")).fetchall()
        out = []
        for row in rows:
            d = dict(zip(["id"] + _EVENT_COLS, row))
            d["detail"] = json.loads(d["detail"])
            out.append(Event(**d))
        return out


def _int(v):
    return None if v is None else int(v)


def _clock(t: float | None) -> str:
    import time

    return "?" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))

