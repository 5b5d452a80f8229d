"""Request counts and latencies for monitoring, served at /metrics in the Prometheus text format.

Each worker process counts in memory and adds its counts to a shared hash (Redis, or this process when there is
no Redis) at most once per FLUSH_SECONDS, so a scrape sees every worker's requests at the cost of one pipelined
Redis call a second per worker, not one per request. Counts a worker had not yet added when it died are lost;
counters only ever grow, as Prometheus expects.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections import Counter

from flask import Response, current_app, g, request
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import text

from core.db import db
from core.errors import NotFound
from core.redis import StoreUnavailable

FLUSH_SECONDS = 1.0
# After Redis failed to take the counts, wait this long before trying again: a Redis that stops answering must not
# cost a request its timeout every second.
RETRY_SECONDS = 30.0
# Upper bounds of the latency histogram, in seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HASH = "metrics:http"
SEP = "\x1f"  # between the parts of a field name; no endpoint, method or status holds it


class RequestMetrics:
    """One process's counts not yet added to the shared hash."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: Counter = Counter()
        self._seconds: Counter = Counter()
        self._next_flush = clock() + FLUSH_SECONDS

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Count one request and the time it took."""
        le = next((str(b) for b in BUCKETS if seconds <= b), "+Inf")
        with self._lock:
            self._counts[SEP.join(("count", endpoint, method, str(status)))] += 1
            self._counts[SEP.join(("bucket", endpoint, le))] += 1
            self._seconds[SEP.join(("sum", endpoint))] += seconds

    def flush(self, store, *, force: bool = False) -> None:
        """Add what was counted since the last flush to the shared hash (kept for the next try if that fails)."""
        now = self._clock()
        if not force and now < self._next_flush:
            return
        with self._lock:
            counts, seconds = self._counts, self._seconds
            self._counts, self._seconds, self._next_flush = Counter(), Counter(), now + FLUSH_SECONDS
        if not counts and not seconds:
            return
        try:
            store.add_to_hash(HASH, dict(counts), dict(seconds))
        except StoreUnavailable:
            with self._lock:
                self._counts.update(counts)
                self._seconds.update(seconds)
                self._next_flush = now + RETRY_SECONDS


recorder = RequestMetrics()
request_log = logging.getLogger("unioncard.request")


def start_request() -> None:
    """Note when the request began."""
    g.started = time.perf_counter()


def finish_request(response):
    """Count the request under its route (the rule, never the raw path, so ids do not multiply the series) and
    write its log line."""
    started = g.get("started")
    if started is None or request.path == "/metrics":
        return response
    seconds = time.perf_counter() - started
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    recorder.observe(route, request.method, response.status_code, seconds)
    # After the answer has gone out, so the caller never waits for the counts to reach Redis.
    store = current_app.extensions["kv"]
    response.call_on_close(lambda: recorder.flush(store))
    if current_app.config["LOG_REQUESTS"]:
        request_log.info("%s %s %s %.1fms", request.method, request.path, response.status_code, seconds * 1000,
                         extra={"method": request.method, "path": request.path, "route": route,
                                "status": response.status_code, "duration_ms": round(seconds * 1000, 1),
                                "user": _user_id()})
    return response


def _user_id() -> int | None:
    """The signed-in user's id, read without the database (the request's transaction may have failed)."""
    actor = g.get("actor")
    if actor is not None:
        return actor.user_id
    user = g.get("user")
    if user is None:
        return None
    state = sa_inspect(user, raiseerr=False)
    if state is None:
        return getattr(user, "id", None)
    return state.identity[0] if state.identity else None


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(shared: dict[str, str], gauges: dict[str, float]) -> str:
    """Write the shared counts and the gauges in the Prometheus text exposition format."""
    lines = ["# HELP unioncard_http_requests_total Requests answered, by route, method and status.",
             "# TYPE unioncard_http_requests_total counter"]
    buckets: dict[str, Counter] = {}
    sums: dict[str, float] = {}
    for field, raw in sorted(shared.items()):
        kind, *parts = field.split(SEP)
        if kind == "count" and len(parts) == 3:
            endpoint, method, status = parts
            lines.append(f'unioncard_http_requests_total{{route="{_escape(endpoint)}",method="{method}",'
                         f'status="{status}"}} {int(float(raw))}')
        elif kind == "bucket" and len(parts) == 2:
            buckets.setdefault(parts[0], Counter())[parts[1]] += int(float(raw))
        elif kind == "sum" and len(parts) == 1:
            sums[parts[0]] = float(raw)
    lines += ["# HELP unioncard_http_request_duration_seconds Time to answer, by route.",
              "# TYPE unioncard_http_request_duration_seconds histogram"]
    for endpoint in sorted(buckets):
        label, running = _escape(endpoint), 0
        for bound in [*map(str, BUCKETS), "+Inf"]:
            running += buckets[endpoint][bound]
            lines.append(f'unioncard_http_request_duration_seconds_bucket{{route="{label}",le="{bound}"}} {running}')
        lines.append(f'unioncard_http_request_duration_seconds_sum{{route="{label}"}} {sums.get(endpoint, 0.0):.6f}')
        lines.append(f'unioncard_http_request_duration_seconds_count{{route="{label}"}} {running}')
    for name, (help_text, value) in sorted(gauges.items()):
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value:g}"]
    return "\n".join(lines) + "\n"


def add_gauge(app, name: str, help_text: str, read) -> None:
    """Let a domain report a figure of its own at each scrape: `read(session)` returns a number or None."""
    app.extensions.setdefault("metric_gauges", {})[name] = (help_text, read)


def _gauges(store) -> dict[str, tuple[str, float]]:
    """What the platform looks like now: its database, Redis, the job queue, and what the domains add."""
    gauges = {}
    began = time.perf_counter()
    try:
        db.session.execute(text("SELECT 1"))
        up = 1.0
    except Exception:  # any driver error means the same here: the database does not answer
        db.session.rollback()
        up = 0.0
    gauges["unioncard_database_up"] = ("1 when the database answers.", up)
    gauges["unioncard_database_ping_seconds"] = ("Time the database took to answer SELECT 1.",
                                                 time.perf_counter() - began)
    if store.kind == "redis":
        gauges["unioncard_redis_up"] = ("1 when Redis answers.", 1.0 if store.ping() else 0.0)
    jobs = current_app.extensions.get("jobs")
    if jobs is not None and getattr(jobs, "mode", None) == "rq":
        try:
            gauges["unioncard_jobs_queued"] = ("Background jobs waiting for an RQ worker.", float(len(jobs.queue())))
        except Exception:  # Redis down: the redis gauge says so
            pass
    if up:
        for name, (help_text, read) in current_app.extensions.get("metric_gauges", {}).items():
            value = read(db.session)
            if value is not None:
                gauges[name] = (help_text, float(value))
    return gauges


def metrics() -> Response:
    """Serve the counts of every worker and the gauges to a scraper holding METRICS_TOKEN."""
    token = current_app.config.get("METRICS_TOKEN") or ""
    offered = request.headers.get("Authorization", "")
    if not token or not hmac.compare_digest(offered.encode(), f"Bearer {token}".encode()):
        raise NotFound("Not found.")
    store = current_app.extensions["kv"]
    recorder.flush(store, force=True)
    try:
        shared = store.read_hash(HASH)
    except StoreUnavailable:
        shared = {}
    body = render(shared, _gauges(store))
    return Response(body, content_type="text/plain; version=0.0.4; charset=utf-8")


metrics.allowed_roles = None
