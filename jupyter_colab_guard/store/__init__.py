"""Durable strike store (SQLite by default, any SQLAlchemy URL)."""

from .store import StoreError, StrikeEvent, StrikeStore

__all__ = ["StoreError", "StrikeEvent", "StrikeStore"]
