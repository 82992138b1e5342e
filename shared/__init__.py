"""What the controller and the agents both import: wire messages, subjects, settings, logging."""

from importlib.metadata import PackageNotFoundError, version


def _package_version() -> str:
    """pyproject.toml's version, as the installed distribution records it (the only place it
    is written); `unknown` when the code runs from a tree that was never installed."""
    try:
        return version("mailprobe")
    except PackageNotFoundError:
        return "unknown"


__version__ = _package_version()
