"""Core of the union member card platform: app factory, config, db, auth, audit, errors, money."""


def create_app(config: dict | None = None):
    """Build the Flask app (imported lazily so models can import core without the whole app)."""
    from core.app import create_app as _create_app

    return _create_app(config)
