"""Every benchmark in one run, and their figures in one table anchored to one baseline.

First pgbench's TPC-B-like transaction on a scratch database of its own (scale 32, 32 clients, 2 threads, 20 s: the
till load bench/checkout.py puts on the app server), the yardstick for every throughput in the table. Then every
bench/*.py in turn (bench/seed_scale.py is the data generator bench/console.py runs, not a benchmark), each a process
of its own so that one failing does not hide the rest. Each prints its detailed figures as it always has, to the
screen and to a log file; each also reports its headline figures (bench/_support.py report()) to a file of JSON lines
the runner names in BENCH_RESULTS. At the end one table: every figure, its value, its ratio to the pgbench tps of
this run when it is a throughput (a unit per second), the benchmark's own baseline and ratio where it has one (value
/ baseline), the target the benchmark sets and whether it is met. A benchmark that fails is a row saying FAILED
and makes the exit status 1; a target not met does not.

Run: DATABASE_URL=postgresql://... REDIS_URL=redis://... .venv/bin/python bench/run.py [--quick] [--only NAME ...]
     [--out FOLDER]
--quick (or BENCH_QUICK=1): every benchmark at small sizes and a 5 s pgbench, end to end in a few minutes; its
figures are not the benchmarks' (the targets are set for the full sizes). The table, the figures as JSON and each
benchmark's log go to --out (default instance/bench/<date-time>/: table.md, results.json, <name>.log).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from _support import figure, pgbench, scratch_database

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
NOT_BENCHMARKS = {"run.py", "seed_scale.py"}
DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
# The baseline: as many clients as bench/checkout.py's tills, on pgbench threads as many as its wrk threads.
PGBENCH = {"scale": 32, "clients": 32, "threads": 2, "seconds": 20}
PGBENCH_QUICK = {"scale": 8, "clients": 32, "threads": 2, "seconds": 5}
TIMEOUT = {False: 3 * 3600, True: 15 * 60}  # seconds one benchmark may take, full and quick
EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b")
COLUMNS = ("bench", "figure", "value", "÷ pgbench tps", "own baseline", "÷ own baseline", "target", "met")


def benchmarks(only: list[str] | None = None) -> list[Path]:
    """The benchmark scripts, by name; `only` keeps those named (with or without .py)."""
    found = sorted(p for p in BENCH.glob("[!_]*.py") if p.name not in NOT_BENCHMARKS)
    if only:
        wanted = {name.removesuffix(".py") for name in only}
        unknown = wanted - {p.stem for p in found}
        if unknown:
            sys.exit(f"no such benchmark: {', '.join(sorted(unknown))} (there are: "
                     f"{', '.join(p.stem for p in found)})")
        found = [p for p in found if p.stem in wanted]
    return found


def is_throughput(unit: str) -> bool:
    """Whether a figure is a rate (payments/s, lines/s, a benchmark's own pgbench tps), measured against the run's
    pgbench transactions per second."""
    return unit.endswith("/s") or unit == "tps"


def failure(bench: str, reason: str) -> dict:
    """The row of a benchmark that did not finish or did not report."""
    return {"bench": bench, "figure": f"FAILED: {reason}", "value": None, "unit": "", "target": "-", "met": None,
            "baseline": None, "baseline_label": "", "ratio": None, "failed": True}


def read_rows(path: Path, bench: str) -> list[dict]:
    """The rows a benchmark reported, tagged with its name."""
    if not path.exists():
        return []
    return [{**json.loads(line), "bench": bench} for line in path.read_text(encoding="utf-8").splitlines() if line]


def number(value: float | None) -> str:
    """A figure as the table shows it: thousands separated, fewer decimals the bigger it is, none for a count."""
    if value is None or not math.isfinite(value):
        return ""
    if abs(value) >= 100 or value == int(value):
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    if abs(value) >= 0.01:
        return f"{value:,.2f}"
    return f"{value:.2g}"


def ratio(value: float | None) -> str:
    """A ratio to three significant figures (0.0271, 1.02, 85.2, 1,210)."""
    if value is None or not math.isfinite(value):
        return ""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:#.3g}".rstrip(".")


def cells(row: dict, tps: float | None) -> tuple[str, ...]:
    """A row's cells: bench, figure, value, ratio to pgbench tps, own baseline, ratio to it, target, met."""
    if row.get("failed"):
        return row["bench"], row["figure"], "", "", "", "", "", "FAILED"
    value, unit = row["value"], row["unit"]
    shown = number(value) + (f" {unit}" if unit else "")
    per_tps = ratio(value / tps) if tps and is_throughput(unit) else ""
    own = ""
    if row.get("baseline") is not None:
        own = f"{number(row['baseline'])} {unit}".rstrip()
        if row.get("baseline_label"):
            own += f" ({row['baseline_label']})"
    met = {True: "yes", False: "NO", None: ""}[row.get("met")]
    return (row["bench"], row["figure"], shown, per_tps, own, ratio(row.get("ratio")), row.get("target") or "-",
            met)


def heading(tps: float | None, settings: dict, quick: bool) -> str:
    """The line above the table: the baseline every throughput in it is divided by."""
    if tps is None:
        said = "pgbench TPC-B-like: FAILED, no ratios to it"
    else:
        said = (f"pgbench TPC-B-like {tps:,.0f} tps (scale {settings['scale']}, {settings['clients']} clients, "
                f"{settings['threads']} threads, {settings['seconds']} s, a scratch database, this run)")
    return said + ("; QUICK: small sizes, not the benchmarks' figures (targets are for the full sizes)" if quick
                   else "")


def text_table(rows: list[dict], tps: float | None) -> str:
    """The table as plain text: columns padded, values right-aligned."""
    body = [cells(row, tps) for row in rows]
    widths = [max(len(r[i]) for r in [COLUMNS, *body]) for i in range(len(COLUMNS))]
    right = {2, 3, 5}

    def line(values):
        return "  ".join(v.rjust(w) if i in right else v.ljust(w)
                         for i, (v, w) in enumerate(zip(values, widths, strict=True))).rstrip()

    return "\n".join([line(COLUMNS), line(["-" * w for w in widths]), *(line(r) for r in body)])


def markdown_table(rows: list[dict], tps: float | None) -> str:
    """The table as Markdown, ready to paste into notes."""

    def line(values):
        return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"

    align = ["---", "---", "---:", "---:", "---:", "---:", "---", "---"]
    return "\n".join([line(COLUMNS), "|" + "|".join(align) + "|", *(line(cells(row, tps)) for row in rows)])


def summary(rows: list[dict]) -> str:
    """How many targets were met, which were not, and which benchmarks failed."""
    judged = [r for r in rows if r.get("met") is not None]
    missed = [f"{r['bench']}: {r['figure']}" for r in judged if not r["met"]]
    failed = sorted({r["bench"] for r in rows if r.get("failed")})
    said = f"targets met: {len(judged) - len(missed)} of {len(judged)}" + ("; not met:" if missed else "")
    said += "".join(f"\n  {line}" for line in missed)
    if failed:
        said += f"\nFAILED: {', '.join(failed)}"
    return said


def cause(output: list[str]) -> str:
    """What a failed benchmark's last lines say went wrong: the exception's line, or else the last line."""
    lines = [line.strip() for line in output if line.strip() and not line.startswith("(Background on this error")]
    return next((line for line in reversed(lines) if EXCEPTION.match(line)), lines[-1] if lines else "")


def error_line(exc: BaseException) -> str:
    """Why a step failed: the last line a program wrote to stderr, or else the exception's first line."""
    stderr = getattr(exc, "stderr", None) or ""
    if isinstance(stderr, bytes):
        stderr = stderr.decode(errors="replace")
    if stderr.strip():
        return stderr.strip().splitlines()[-1]
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def wall(seconds: float) -> str:
    """Seconds as minutes and seconds."""
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def run_one(script: Path, out: Path, env: dict[str, str], timeout: int, echo: bool) -> tuple[list[dict], float]:
    """Run one benchmark as a process of its own, its output copied to the screen and to <name>.log; return its
    rows (a FAILED row added if it exited non-zero, timed out or reported nothing) and its wall time."""
    name = script.stem
    results, log = out / f"{name}.jsonl", out / f"{name}.log"
    results.unlink(missing_ok=True)
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen([sys.executable, "-u", str(script)], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace",
                                env={**env, "BENCH_RESULTS": str(results)})
        tail: list[str] = []

        def copy():
            for line in proc.stdout:
                fh.write(line)
                fh.flush()
                tail[:] = [*tail[-19:], line.rstrip()]
                if echo:
                    sys.stdout.write(line)
                    sys.stdout.flush()

        pump = threading.Thread(target=copy, daemon=True)
        pump.start()
        timed_out = False
        try:
            proc.wait(timeout)
        except KeyboardInterrupt:
            proc.wait(60)  # it had the interrupt too: let it clean up
            raise
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.send_signal(signal.SIGINT)  # lets it drop its scratch database and stop its servers
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        pump.join(10)
    seconds = time.perf_counter() - started
    rows = read_rows(results, name)
    results.unlink(missing_ok=True)
    if timed_out:
        rows.append(failure(name, f"timed out after {wall(timeout)}"))
    elif proc.returncode != 0:
        said = cause(tail)
        rows.append(failure(name, f"exit status {proc.returncode}" + (f": {said[:160]}" if said else "")))
    elif not rows:
        rows.append(failure(name, "reported no figures"))
    return rows, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description="Run every benchmark and print their figures in one table.")
    parser.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK", "") not in ("", "0"),
                        help="small sizes, to try the whole run in a few minutes")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks (e.g. ledger codes)")
    parser.add_argument("--out", type=Path, help="folder for the table, the figures and the logs")
    parser.add_argument("--no-echo", dest="echo", action="store_false",
                        help="write each benchmark's own output only to its log")
    args = parser.parse_args()

    scripts = benchmarks(args.only)
    out = args.out or ROOT / "instance" / "bench" / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DATABASE_URL": os.environ.get("DATABASE_URL") or DATABASE_URL,
           "REDIS_URL": os.environ.get("REDIS_URL") or REDIS_URL, "PYTHONUNBUFFERED": "1"}
    env.pop("BENCH_QUICK", None)
    if args.quick:
        env["BENCH_QUICK"] = "1"
    settings = PGBENCH_QUICK if args.quick else PGBENCH
    began = time.perf_counter()

    print(f"baseline: pgbench TPC-B-like on a scratch database ({settings['seconds']} s) ...", flush=True)
    rows: list[dict] = []
    started = time.perf_counter()
    try:
        with scratch_database(env["DATABASE_URL"], migrated=False) as url:
            tps = pgbench(url, **settings)
        rows.append({**figure(f"pgbench TPC-B-like tps (-s {settings['scale']} -c {settings['clients']} "
                              f"-j {settings['threads']} -T {settings['seconds']})", tps, "tps"),
                     "bench": "baseline"})
        print(f"  {tps:,.0f} tps", flush=True)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the benchmarks still run, with no ratio to pgbench
        tps = None
        said = error_line(exc)
        rows.append(failure("baseline", f"pgbench: {said[:160]}"))
        print(f"  pgbench failed: {said}", flush=True)
    rows.append({**figure("wall time", time.perf_counter() - started, "s"), "bench": "baseline"})

    for script in scripts:
        print(f"\n=== {script.relative_to(ROOT)} ===", flush=True)
        try:
            got, seconds = run_one(script, out, env, TIMEOUT[args.quick], args.echo)
        except KeyboardInterrupt:
            rows.append(failure(script.stem, "interrupted"))
            break
        rows += got
        rows.append({**figure("wall time", seconds, "s"), "bench": script.stem})
        print(f"=== {script.relative_to(ROOT)}: {wall(seconds)}"
              + (", FAILED" if any(r.get("failed") for r in got) else ""), flush=True)
    total = time.perf_counter() - began

    head = heading(tps, settings, args.quick)
    said = summary(rows)
    print()
    print(head)
    print(text_table(rows, tps))
    print(said)
    print(f"total wall time {wall(total)}")
    listed = said.replace("\n  ", "\n- ")
    (out / "table.md").write_text(f"{head}\n\n{markdown_table(rows, tps)}\n\n{listed}\n\ntotal wall time "
                                  f"{wall(total)}\n", encoding="utf-8")
    (out / "results.json").write_text(json.dumps({"pgbench_tps": tps, "pgbench": settings, "quick": args.quick,
                                                  "seconds": total, "rows": rows}, ensure_ascii=False, indent=1),
                                      encoding="utf-8")
    print(f"table: {out / 'table.md'}; figures: {out / 'results.json'}; logs: {out}/<bench>.log")
    return 1 if any(r.get("failed") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
