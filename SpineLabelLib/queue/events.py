"""Summaries of the event log: throughput and effort per annotator (``queue status``)."""
from __future__ import annotations

from collections import Counter

from .model import CASE_STATES, CaseRecord, Event

_WORK = ("submit", "edit", "approve", "flag", "revert")


def summarise(cases: list[CaseRecord], events: list[Event], now: float, days: float = 7.0) -> dict:
    counts = Counter(c.status for c in cases)
    since = now - days * 86400.0
    recent = [e for e in events if e.at >= since]
    per_user: dict[str, dict] = {}
    for e in events:
        if e.kind not in _WORK:
            continue
        u = per_user.setdefault(e.user, {"seconds": 0.0, "clicks": 0, "submit": 0, "edit": 0, "approve": 0,
                                         "flag": 0, "revert": 0})
        u[e.kind] += 1
        u["seconds"] += e.seconds or 0.0
        u["clicks"] += e.clicks or 0
    return {
        "cases": len(cases),
        "states": {s: counts.get(s, 0) for s in CASE_STATES},
        "flagged": {c.case_id: c.comment for c in cases if c.status == "flagged"},
        "claimed": {c.case_id: c.assignee for c in cases if c.assignee and (c.claim_expires or 0) > now},
        "throughput_per_day": {
            "days": days,
            "approved": sum(e.kind == "approve" for e in recent) / days,
            "submitted": sum(e.kind in ("submit", "edit") for e in recent) / days,
            "automatic": sum(e.kind == "auto" for e in recent) / days,
        },
        "effort": per_user,
    }
