"""Kernel extension: checks every cell before it runs, plus a runtime backstop."""

from .config import KernelGuard
from .errors import ProhibitedCodeError
from .extension import load_ipython_extension, unload_ipython_extension

__all__ = [
    "KernelGuard",
    "ProhibitedCodeError",
    "load_ipython_extension",
    "unload_ipython_extension",
]
