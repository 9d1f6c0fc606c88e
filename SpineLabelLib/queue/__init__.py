"""Human-in-the-loop review queue: store (SQLite / PostgreSQL), claims, versions, events,
priorities, the batch runner and export. Start with :class:`Queue`."""
from .api import Queue
from .engines import EngineResult, ReferenceEngine, make_engine, register_engine
from .model import CASE_STATES, ClaimError, QueueError, StoreSchemaError
from .priorities import Strategy, register_strategy
from .store import Store, open_store, register_store

__all__ = ["Queue", "EngineResult", "ReferenceEngine", "make_engine", "register_engine", "CASE_STATES",
           "ClaimError", "QueueError", "StoreSchemaError", "Strategy", "register_strategy", "Store", "open_store",
           "register_store"]
