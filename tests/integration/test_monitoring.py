"""Monitoring: /healthz, one log line per request (JSON with its request id when asked), and /metrics."""

import io
import json
import logging
import re
import uuid

import pytest

from core import metrics
from core.logs import JsonFormatter, RequestIdFilter
from core.redis import MemoryStore, RedisStore, StoreUnavailable

TOKEN = "scrape-token-for-tests"


@pytest.fixture
def scraping(app, monkeypatch):
    monkeypatch.setitem(app.config, "METRICS_TOKEN", TOKEN)
    return {"Authorization": f"Bearer {TOKEN}"}


def series(body: str) -> dict[str, float]:
    """The samples of a Prometheus text page, keyed by name and labels."""
    found = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            found[key] = float(value)
    return found


def requests_total(samples: dict[str, float], route: str, method: str, status: int) -> float:
    return samples.get(f'unioncard_http_requests_total{{route="{route}",method="{method}",status="{status}"}}', 0)


@pytest.fixture
def json_log(app):
    """Capture the app's log records as the JSON handler would write them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)


def test_every_request_writes_one_json_line_with_its_request_id_route_status_and_time(client, json_log):
    client.get("/api/v1/members/mem_doesnotexist", headers={"X-Request-Id": "req-0123456789abcdef"})
    lines = [line for line in json_log() if line["logger"] == "unioncard.request"]
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == "req-0123456789abcdef"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/api/v1/members/mem_doesnotexist", 401)
    assert line["route"] == "/api/v1/members/<member_id>"
    assert line["level"] == "INFO" and line["duration_ms"] >= 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["time"])


def test_a_request_without_an_id_gets_one_and_the_log_and_the_answer_agree(client, json_log):
    response = client.get("/healthz")
    line = next(line for line in json_log() if line["logger"] == "unioncard.request")
    assert re.fullmatch(r"[0-9a-f]{32}", line["request_id"])
    assert response.headers["X-Request-Id"] == line["request_id"]


def test_a_json_log_line_masks_an_id_number_in_the_path(client, json_log):
    from core.logs import install_pii_filter, wrap_handler_formatters

    install_pii_filter()
    wrap_handler_formatters(logging.getLogger())
    stream = logging.getLogger().handlers[-1].stream
    client.get("/api/v1/members/640104198001011234")
    written = stream.getvalue()
    assert "640104198001011234" not in written
    assert "6401**********1234" in written


def test_log_lines_outside_a_request_say_so(json_log):
    logging.getLogger("unioncard.test").warning("batch %s resumed", "bat_1")
    line = json_log()[-1]
    assert line["message"] == "batch bat_1 resumed" and line["request_id"] == "-" and line["level"] == "WARNING"


def test_a_traceback_goes_into_the_json_line(json_log):
    try:
        raise ValueError("broken")
    except ValueError:
        logging.getLogger("unioncard.test").exception("it failed")
    line = json_log()[-1]
    assert "ValueError: broken" in line["exception"]


def test_metrics_are_not_served_without_the_scrape_token(client, app, scraping):
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 404
    assert client.get("/metrics", headers=scraping).status_code == 200


def test_metrics_are_not_served_at_all_when_no_token_is_set(client, app, monkeypatch):
    monkeypatch.setitem(app.config, "METRICS_TOKEN", "")
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404


def test_metrics_count_requests_by_route_method_and_status(client, scraping):
    before = series(client.get("/metrics", headers=scraping).get_data(as_text=True))
    for _ in range(3):
        assert client.get("/healthz").status_code in (200, 503)
    status = client.get("/healthz").status_code
    client.get("/api/v1/members/mem_a")
    client.get("/api/v1/members/mem_b")
    page = client.get("/metrics", headers=scraping)
    assert page.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    after = series(page.get_data(as_text=True))
    assert requests_total(after, "/healthz", "GET", status) - requests_total(before, "/healthz", "GET", status) == 4
    # Two member ids are one route: ids never multiply the series.
    route = "/api/v1/members/<member_id>"
    assert requests_total(after, route, "GET", 401) - requests_total(before, route, "GET", 401) == 2
    assert not any("mem_a" in key for key in after)
    # The scrape itself is not counted.
    assert not any('route="/metrics"' in key for key in after)


def test_the_latency_histogram_is_cumulative_and_ends_at_the_count(client, scraping):
    for _ in range(5):
        client.get("/healthz")
    samples = series(client.get("/metrics", headers=scraping).get_data(as_text=True))
    bounds = [*map(str, metrics.BUCKETS), "+Inf"]
    counts = [samples[f'unioncard_http_request_duration_seconds_bucket{{route="/healthz",le="{b}"}}'] for b in bounds]
    assert counts == sorted(counts)
    assert counts[-1] == samples['unioncard_http_request_duration_seconds_count{route="/healthz"}'] >= 5
    assert samples['unioncard_http_request_duration_seconds_sum{route="/healthz"}'] > 0


def test_the_gauges_say_the_database_answers_and_how_old_the_console_figures_are(client, session, scraping):
    from stats import service as stats

    stats.refresh(session)
    session.commit()
    samples = series(client.get("/metrics", headers=scraping).get_data(as_text=True))
    assert samples["unioncard_database_up"] == 1
    assert 0 <= samples["unioncard_console_figures_age_seconds"] < 60


def test_two_workers_counts_add_up_in_redis(redis_url):
    store = RedisStore(redis_url, prefix=f"uctest:metrics:{uuid.uuid4().hex[:8]}:")
    first, second = metrics.RequestMetrics(), metrics.RequestMetrics()
    for _ in range(3):
        first.observe("/api/v1/payments", "POST", 201, 0.02)
    second.observe("/api/v1/payments", "POST", 201, 0.3)
    second.observe("/api/v1/payments", "POST", 409, 7.0)
    first.flush(store, force=True)
    second.flush(store, force=True)
    samples = series(metrics.render(store.read_hash(metrics.HASH), {}))
    assert requests_total(samples, "/api/v1/payments", "POST", 201) == 4
    assert requests_total(samples, "/api/v1/payments", "POST", 409) == 1
    bucket = 'unioncard_http_request_duration_seconds_bucket{{route="/api/v1/payments",le="{}"}}'
    assert samples[bucket.format("0.025")] == 3
    assert samples[bucket.format("0.5")] == 4
    assert samples[bucket.format("5.0")] == 4
    assert samples[bucket.format("+Inf")] == 5
    assert samples['unioncard_http_request_duration_seconds_sum{route="/api/v1/payments"}'] == pytest.approx(7.36)
    store.client.delete(store._k(metrics.HASH))


def test_a_flush_waits_a_second_and_keeps_what_redis_did_not_take():
    now = [100.0]
    recorder = metrics.RequestMetrics(clock=lambda: now[0])
    store = MemoryStore()
    path = 'unioncard_http_requests_total{route="/healthz",method="GET",status="200"}'
    recorder.observe("/healthz", "GET", 200, 0.001)
    recorder.flush(store)
    assert store.read_hash(metrics.HASH) == {}
    now[0] += metrics.FLUSH_SECONDS
    recorder.flush(store)
    assert series(metrics.render(store.read_hash(metrics.HASH), {}))[path] == 1
    # Redis does not take the counts: they are kept, and the next try waits RETRY_SECONDS, not one second.
    recorder.observe("/healthz", "GET", 200, 0.001)
    now[0] += metrics.FLUSH_SECONDS
    calls = []

    class Down(MemoryStore):
        def add_to_hash(self, *args):
            calls.append(args)
            raise StoreUnavailable("down")

    down = Down()
    recorder.flush(down)
    now[0] += metrics.FLUSH_SECONDS
    recorder.flush(down)
    assert len(calls) == 1
    now[0] += metrics.RETRY_SECONDS
    recorder.flush(store)
    assert series(metrics.render(store.read_hash(metrics.HASH), {}))[path] == 2


def test_metrics_still_answer_with_redis_down(app, client, scraping, monkeypatch):
    monkeypatch.setitem(app.extensions, "kv", RedisStore("redis://127.0.0.1:1/0"))
    page = client.get("/metrics", headers=scraping)
    assert page.status_code == 200
    samples = series(page.get_data(as_text=True))
    assert samples["unioncard_redis_up"] == 0 and samples["unioncard_database_up"] == 1


def test_route_labels_are_escaped():
    body = metrics.render({metrics.SEP.join(("count", 'a"b\\c', "GET", "200")): "1"}, {})
    assert 'route="a\\"b\\\\c"' in body
