"""The cell analyzer: IPython transformation, libcst facts, compiled rule matching."""

from ..policy.model import Identity
from .analyzer import Analyzer, Session
from .findings import Finding, strongest_action

__all__ = ["Analyzer", "Finding", "Identity", "Session", "strongest_action"]
