"""Background jobs behind one interface: RQ on Redis, a thread in-process, or inline for tests."""

from __future__ import annotations

import importlib
import logging
import threading

from flask import Flask, current_app, has_app_context

log = logging.getLogger(__name__)
JOB_TIMEOUT = 3600


def _resolve(path: str):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def run_job(path: str, *args) -> None:
    """Run the job function at `path` ("module:function") inside an app context."""
    if has_app_context():
        _resolve(path)(*args)
        return
    from wsgi import app  # a worker process builds the app from the same configuration

    with app.app_context():
        _resolve(path)(*args)


class Jobs:
    """Enqueue work by the dotted path of a function that takes plain arguments."""

    def init_app(self, app: Flask) -> None:
        mode = app.config.get("JOBS_MODE") or ("rq" if app.config.get("REDIS_URL") else "thread")
        if mode not in {"rq", "thread", "sync"}:
            raise ValueError(f"JOBS_MODE must be rq, thread or sync, not {mode!r}")
        app.extensions["jobs"] = self
        self.mode = mode

    def queue(self, name: str = "unioncard"):
        """Return the RQ queue (rq mode only)."""
        from redis import Redis
        from rq import Queue

        conn = Redis.from_url(current_app.config["REDIS_URL"])
        return Queue(name, connection=conn, default_timeout=JOB_TIMEOUT)

    def enqueue(self, path: str, *args, job_id: str | None = None) -> None:
        """Run `path(*args)` in the background (or now, in sync mode)."""
        _resolve(path)  # fail at the call site on a typo, not later in a worker
        if self.mode == "sync":
            run_job(path, *args)
        elif self.mode == "rq":
            self.queue().enqueue(run_job, path, *args, job_id=job_id)
        else:
            app = current_app._get_current_object()

            def target():
                with app.app_context():
                    try:
                        run_job(path, *args)
                    except Exception:
                        log.exception("background job %s failed", path)

            threading.Thread(target=target, name=f"job:{path}", daemon=True).start()


jobs = Jobs()
