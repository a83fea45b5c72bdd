"""Acceptable-use enforcement for hosted Jupyter."""

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict[str, object]]:
    """Entry point of the Jupyter server extension (``ColabGuardApp``)."""
    from .server.app import ColabGuardApp

    return [{"module": "jupyter_colab_guard", "app": ColabGuardApp}]


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext jupyter_colab_guard`` / ``--ext=jupyter_colab_guard``: guard this kernel."""
    from .kernel.extension import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: object) -> None:
    """``%unload_ext``: refused and reported unless ``KernelGuard.allow_unload`` is set."""
    from .kernel.extension import unload_ipython_extension as unload

    unload(ipython)
