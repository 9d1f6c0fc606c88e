"""Which case ``next`` hands out: pluggable strategies (active learning by default).

A strategy is an SQL ``ORDER BY`` fragment over the columns of the ``cases`` table that
both backends understand; the store applies it after the people-set ``priority``
(higher first) and before the case id (a stable tie-break). Keeping the choice inside one
indexed query is what keeps ``next`` fast (and atomic) with tens of thousands of cases.

Register another with :func:`register_strategy`.
"""
from __future__ import annotations

from dataclasses import dataclass

from .model import QueueError


@dataclass(frozen=True)
class Strategy:
    name: str
    order_by: str  # SQL fragment over cases columns, e.g. "qa_flags DESC"
    description: str


_STRATEGIES: dict[str, Strategy] = {}


def register_strategy(strategy: Strategy) -> None:
    _STRATEGIES[strategy.name] = strategy


def get_strategy(name: str | None) -> Strategy:
    name = name or DEFAULT_STRATEGY
    try:
        return _STRATEGIES[name]
    except KeyError:
        raise QueueError(f"unknown priority strategy {name!r} (known: {', '.join(sorted(_STRATEGIES))})") from None


def strategies() -> list[str]:
    return sorted(_STRATEGIES)


DEFAULT_STRATEGY = "uncertain"

# Most QA flags first, then lowest engine confidence: the cases where a person's time
# changes the most. A case without any confidence (no machine proposal yet) ranks as if
# confident, after the doubtful proposals.
register_strategy(Strategy("uncertain", "qa_flags DESC, COALESCE(min_confidence, 1.0) ASC",
                           "most QA flags first, then lowest vertebra confidence (active learning)"))
register_strategy(Strategy("confidence", "COALESCE(min_confidence, 1.0) ASC, qa_flags DESC",
                           "lowest vertebra confidence first, then most QA flags"))
register_strategy(Strategy("sequential", "case_id ASC", "in case-id order"))
register_strategy(Strategy("random", "random()", "in random order"))
