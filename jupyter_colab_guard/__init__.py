"""Acceptable-use enforcement for hosted Jupyter."""

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict[str, object]]:
    """Entry point of the Jupyter server extension (``ColabGuardApp``)."""
    from .server.app import ColabGuardApp

    return [{"module": "jupyter_colab_guard", "app": ColabGuardApp}]
