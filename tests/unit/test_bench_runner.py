"""The benchmark runner's table: figures reported as JSON lines, ratios to pgbench and to a benchmark's own
baseline, targets judged, failures shown as rows. No timing is asserted."""

import importlib.util
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.append(str(BENCH))

import _support  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
runner = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(runner)


def row(bench="ledger", *, figure, value, unit, **fields):
    return {**_support.figure(figure, value, unit, **fields), "bench": bench}


@pytest.mark.parametrize(("target", "value", "ratio", "met"), [
    (">= 1,000/s", 1000, None, True),
    (">= 1,000/s", 999.9, None, False),
    ("< 10 ms", 9.99, None, True),
    ("< 10 ms", 10, None, False),
    ("<= 60", 60, None, True),
    ("> 1 (scales with clients)", 1.5, None, True),
    ("ratio >= 0.8", 5, 0.85, True),
    ("ratio >= 0.8", 5000, 0.79, False),
    ("ratio >= 0.8", 5000, None, False),
    (">= 1,000/s; ratio >= 0.8", 1200, 0.9, True),
    (">= 1,000/s; ratio >= 0.8", 1200, 0.7, False),
    (">= 1,000/s; ratio >= 0.8", 900, 0.9, False),
    ("< 300", math.nan, None, False),
    ("-", 5, None, None),
    ("500k cards in < 5 min", 10, None, None),
    ("flat as files grow (streamed)", 3, 0.5, None),
])
def test_a_target_is_judged_on_the_value_or_on_the_ratio(target, value, ratio, met):
    assert _support.meets(target, value, ratio) is met


def test_a_figure_with_its_own_baseline_gets_value_over_baseline_unless_it_says_otherwise():
    made = _support.figure("import", 3000, "rows/s", baseline=60_000, baseline_label="COPY")
    assert made["ratio"] == pytest.approx(0.05)
    assert made["baseline_label"] == "COPY" and made["met"] is None
    assert _support.figure("x", 12, "ms", baseline=600, ratio=50)["ratio"] == 50
    assert _support.figure("x", 12, "ms")["ratio"] is None


def test_a_figure_says_whether_its_target_is_met_and_a_given_verdict_wins():
    assert _support.figure("hot", 900, "payments/s", "ratio >= 0.8", baseline=1000)["met"] is True
    assert _support.figure("hot", 700, "payments/s", "ratio >= 0.8", baseline=1000)["met"] is False
    assert _support.figure("cards", 1000, "cards/s", "500k cards in < 5 min", met=1000 * 300 >= 500_000)["met"] \
        is False


def test_report_appends_a_json_line_to_the_file_the_runner_names(tmp_path, monkeypatch):
    results = tmp_path / "results.jsonl"
    monkeypatch.setenv(_support.RESULTS_ENV, str(results))
    first = _support.report("codes", 1500, "codes/s", ">= 1,000/s")
    _support.report("会员导入", 12.5, "s", "< 300")
    lines = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()]
    assert lines == [first, lines[1]]
    assert lines[0]["met"] is True and lines[1]["figure"] == "会员导入" and lines[1]["met"] is True


def test_report_writes_nothing_when_no_file_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv(_support.RESULTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert _support.report("codes", 1, "codes/s")["value"] == 1.0
    assert list(tmp_path.iterdir()) == []


def test_a_knob_reads_its_variable_or_the_quick_or_full_default(monkeypatch):
    monkeypatch.delenv("BENCH_TEST_SIZE", raising=False)
    monkeypatch.setattr(_support, "QUICK", False)
    assert _support.knob("BENCH_TEST_SIZE", 500_000, 20_000) == 500_000
    monkeypatch.setattr(_support, "QUICK", True)
    assert _support.knob("BENCH_TEST_SIZE", 500_000, 20_000) == 20_000
    monkeypatch.setenv("BENCH_TEST_SIZE", "2.5")
    assert _support.knob("BENCH_TEST_SIZE", 8, 2, float) == 2.5


def test_a_throughput_is_divided_by_the_runs_pgbench_tps_and_a_latency_is_not():
    assert runner.is_throughput("payments/s") and runner.is_throughput("tps")
    assert not runner.is_throughput("ms") and not runner.is_throughput("s")
    rate = runner.cells(row(figure="payments", value=1500, unit="payments/s", target=">= 1,000/s"), 750)
    assert rate == ("ledger", "payments", "1,500 payments/s", "2.00", "", "", ">= 1,000/s", "yes")
    latency = runner.cells(row(bench="console", figure="overview p95", value=12.345, unit="ms", target="< 1,000",
                               baseline=2469, baseline_label="the live queries"), 750)
    assert latency == ("console", "overview p95", "12.3 ms", "", "2,469 ms (the live queries)", "0.00500", "< 1,000",
                       "yes")


@pytest.mark.parametrize(("value", "number", "ratio"), [
    (1945.27, "1,945", "1,945"), (85.24, "85.2", "85.2"), (1.0, "1", "1.00"), (0.02714, "0.03", "0.0271"),
    (0.00098, "0.00098", "0.000980"), (11.0, "11", "11.0"), (None, "", ""), (math.nan, "", ""),
])
def test_numbers_and_ratios_are_shown_to_a_sensible_precision(value, number, ratio):
    assert runner.number(value) == number and runner.ratio(value) == ratio


def test_without_a_pgbench_figure_no_ratio_to_it_is_shown():
    cells = runner.cells(row(figure="payments", value=1500, unit="payments/s"), None)
    assert cells[3] == "" and cells[7] == ""


def test_a_failed_benchmark_is_a_row_saying_failed():
    failed = runner.failure("checkout", "exit status 1: wrk not found")
    assert runner.cells(failed, 750) == ("checkout", "FAILED: exit status 1: wrk not found", "", "", "", "", "",
                                         "FAILED")
    said = runner.summary([row(figure="a", value=5, unit="ms", target="< 10"),
                           row(figure="b", value=15, unit="ms", target="< 10"), failed])
    assert said == "targets met: 1 of 2; not met:\n  ledger: b\nFAILED: checkout"


def test_the_tables_have_a_row_per_figure_under_one_heading():
    rows = [row(bench="baseline", figure="pgbench tps", value=812.4, unit="tps"),
            row(figure="transfers | distinct", value=2400, unit="transfers/s", target=">= 2,000/s"),
            runner.failure("reconcile", "reported no figures")]
    text = runner.text_table(rows, 812.4).splitlines()
    assert len(text) == 2 + len(rows)
    assert text[0].split() == ["bench", "figure", "value", "÷", "pgbench", "tps", "own", "baseline", "÷", "own",
                               "baseline", "target", "met"]
    assert text[3].split()[-1] == "yes" and "2.95" in text[3]
    assert text[0].index("figure") == text[3].index("transfers") == text[4].index("FAILED: reported")
    assert text[0].index("target") == text[3].index(">= 2,000/s")
    markdown = runner.markdown_table(rows, 812.4).splitlines()
    assert len(markdown) == 2 + len(rows)
    assert markdown[3] == "| ledger | transfers \\| distinct | 2,400 transfers/s | 2.95 |  |  | >= 2,000/s | yes |"
    assert markdown[4].endswith("| FAILED |")
    assert "812 tps" in runner.heading(812.4, runner.PGBENCH, quick=False)
    assert "QUICK" in runner.heading(812.4, runner.PGBENCH_QUICK, quick=True)
    assert "FAILED" in runner.heading(None, runner.PGBENCH, quick=False)


def test_the_benchmarks_are_every_script_but_the_runner_and_the_data_generator():
    names = [p.stem for p in runner.benchmarks()]
    assert "ledger" in names and "checkout" in names
    assert "run" not in names and "seed_scale" not in names and "_support" not in names
    assert [p.stem for p in runner.benchmarks(["ledger.py", "codes"])] == ["codes", "ledger"]
    with pytest.raises(SystemExit, match="no such benchmark: nope"):
        runner.benchmarks(["nope"])


def script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "fake.py"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


@pytest.fixture
def env():
    return {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(BENCH)}


def test_a_benchmark_runs_apart_and_its_reported_figures_and_output_are_kept(tmp_path, env):
    bench = script(tmp_path, """
        from _support import report
        print("detailed figures")
        report("things", 2000, "things/s", ">= 1,000/s")
    """)
    rows, seconds = runner.run_one(bench, tmp_path, env, timeout=60, echo=False)
    assert [(r["bench"], r["figure"], r["value"], r["met"]) for r in rows] == [("fake", "things", 2000.0, True)]
    assert (tmp_path / "fake.log").read_text() == "detailed figures\n"
    assert seconds > 0 and not (tmp_path / "fake.jsonl").exists()


def test_a_benchmark_that_exits_non_zero_keeps_its_figures_and_adds_a_failed_row(tmp_path, env):
    bench = script(tmp_path, """
        import sys
        from _support import report
        report("things", 5, "things/s")
        sys.exit("wrk not found: apt-get install wrk")
    """)
    rows, _ = runner.run_one(bench, tmp_path, env, timeout=60, echo=False)
    assert rows[0]["figure"] == "things"
    assert rows[1]["failed"] and rows[1]["figure"] == "FAILED: exit status 1: wrk not found: apt-get install wrk"


def test_a_benchmark_that_reports_nothing_has_failed(tmp_path, env):
    rows, _ = runner.run_one(script(tmp_path, "print('no figures')\n"), tmp_path, env, timeout=60, echo=False)
    assert [r["figure"] for r in rows] == ["FAILED: reported no figures"]


def test_a_benchmark_past_its_time_is_interrupted_and_fails(tmp_path, env):
    bench = script(tmp_path, """
        import time
        try:
            time.sleep(60)
        finally:
            print("cleaned up")
    """)
    rows, seconds = runner.run_one(bench, tmp_path, env, timeout=1, echo=False)
    assert [r["figure"] for r in rows] == ["FAILED: timed out after 1s"]
    assert seconds < 30 and "cleaned up" in (tmp_path / "fake.log").read_text()


def test_a_failure_is_told_by_its_exception_line_not_by_the_trailing_hint():
    output = ["Traceback (most recent call last):", '  File "bench/reconcile.py", line 9, in <module>',
              "sqlalchemy.exc.OperationalError: (psycopg.OperationalError) connection failed", "[SQL: SELECT 1]",
              "(Background on this error at: https://sqlalche.me/e/21/e3q8)", ""]
    assert runner.cause(output) == "sqlalchemy.exc.OperationalError: (psycopg.OperationalError) connection failed"
    assert runner.cause(["set up in 3 s", "gunicorn did not come up:", "  [ERROR] boot failed  "]) == \
        "[ERROR] boot failed"
    assert runner.cause([]) == ""


def test_a_failed_baseline_is_told_by_the_last_line_pgbench_wrote_or_by_the_exception():
    refused = subprocess.CalledProcessError(1, ["pgbench"], stderr=b"pgbench: error: connection refused\n"
                                                                  b"pgbench: error: could not create connection\n")
    assert runner.error_line(refused) == "pgbench: error: could not create connection"
    assert runner.error_line(RuntimeError("connection failed\n[SQL: SELECT 1]")) == "connection failed"
    assert runner.error_line(SystemExit("pgbench not found: apt-get install postgresql-client")) == \
        "pgbench not found: apt-get install postgresql-client"
    assert runner.error_line(KeyError()) == "KeyError"
