"""Commands: `settle --date`."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Add the settlement commands to the app's CLI."""
