"""Human-in-the-loop review queue: store (SQLite / PostgreSQL), claims, versions, events,
priorities, the batch runner and export. Start with :class:`Queue`. ``queue auto`` runs any
engine of the automatic-engine registry (:mod:`SpineLabelLib.auto.base`)."""
from .api import Queue
from .model import CASE_STATES, ClaimError, QueueError, StoreSchemaError
from .priorities import Strategy, register_strategy
from .store import Store, open_store, register_store

__all__ = ["Queue", "CASE_STATES",
           "ClaimError", "QueueError", "StoreSchemaError", "Strategy", "register_strategy", "Store", "open_store",
           "register_store"]
