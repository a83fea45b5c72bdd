"""The Jupyter server extension: authoritative check, strikes, escalation, pages, API."""

from .app import ColabGuardApp

__all__ = ["ColabGuardApp"]
