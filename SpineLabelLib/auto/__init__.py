"""Automatic engines behind one interface (see base.py): ``classical`` (weight-free,
default), ``monai`` (a trained checkpoint), ``totalsegmentator`` (when installed), and
training (train.py). One-call API: ``SpineLabelLib.auto.segment.segment(INPUT, OUT)``."""
from .base import DEFAULT_ENGINE, Engine, EngineResult, EngineUnavailableError, engine_names, get_engine, register_engine

__all__ = ["DEFAULT_ENGINE", "Engine", "EngineResult", "EngineUnavailableError", "engine_names", "get_engine",
           "register_engine"]
