"""Card payments at the till over HTTP on PostgreSQL + Redis: payments per second and latency under 32 tills.

Made first (not timed): 20,000 members with active cards (the bulk issuance), every card's general purse
funded by one bulk ledger credit, 200 merchants with a store, a cashier and an API token each, and two
published merchant-funded percent-off offers at every store: the merchant's own (8 % off from ¥30, at most
¥30) and one for the everyday family (5 % off, at most ¥20, three times a day per member). Then gunicorn
serves wsgi:app and wrk plays 32 tills sending POST /api/v1/payments, each with a fresh member payment code
issued beforehand through PaymentCodes.issue into Redis, so the timed load is the till's request alone:
once spread over all 200 merchants, once with every payment at one merchant (one store, one payable).
After each run: a payments row for every 201 answer (and otherwise only for requests still in flight when
wrk stopped), no 5xx, the payables hold what the cards were charged, and ledger.verify() is ok.

Baseline, measured in the same run on the same database while the app server is not running: pgbench's
TPC-B-like transaction with as many clients for as long (-c 32 -j 2), a ceiling for small write
transactions from a client that costs nothing. Targets: 1,000 payments/s, the hot merchant >= 0.8 of spread.
Also printed: the CPU each payment cost the app workers, PostgreSQL and wrk, and the share of the machine
other processes took meanwhile (on a shared machine the figures are only comparable when that is near 0).

Run: DATABASE_URL=postgresql://... REDIS_URL=redis://... .venv/bin/python bench/checkout.py [--quick]
Knobs (--quick or BENCH_QUICK=1 for the small sizes after the slash): BENCH_MEMBERS (20000 / 2000),
BENCH_MERCHANTS (200 / 20), BENCH_CLIENTS (32), BENCH_SECONDS (20 / 5), BENCH_WARMUP (5 / 2), BENCH_WORKERS (5),
BENCH_WORKER_CLASS (sync or gthread), BENCH_WORKER_THREADS (1), BENCH_PGBENCH_SCALE (32 / 8), BENCH_PROFILE (a
folder: py-spy, or BENCH_PYSPY, records the workers during each timed run, which slows them; figures from such a
run are not the benchmark's). Needs wrk and pgbench.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import NamedTuple

from _support import insert_members, knob, pgbench_init, pgbench_run, report, scratch_database
from sqlalchemy import text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
SERVER = os.environ.get("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
MEMBERS = knob("BENCH_MEMBERS", 20_000, 2_000)
MERCHANTS = knob("BENCH_MERCHANTS", 200, 20)
CLIENTS = knob("BENCH_CLIENTS", 32, 32)
SECONDS = knob("BENCH_SECONDS", 20, 5)
WARMUP = knob("BENCH_WARMUP", 5, 2)
WORKERS = knob("BENCH_WORKERS", 5, 5)
WORKER_CLASS = os.environ.get("BENCH_WORKER_CLASS", "sync")
WORKER_THREADS = knob("BENCH_WORKER_THREADS", 1, 1)
PGBENCH_SCALE = knob("BENCH_PGBENCH_SCALE", 32, 8)
PROFILE = os.environ.get("BENCH_PROFILE")
WRK_THREADS = 2
SECRET_KEY = "bench-secret-key"
DATA_KEY = "bench-data-key"
PURSE_FUNDS = 1_000_000  # ¥10,000 on every card
CODE_TTL = 3600  # issued well before they are used; the server's own TTL only applies to what it issues
CODES_MARGIN = 2.0  # codes issued for a timed run, over what the warm-up rate says it will use

WRK_SCRIPT = r"""
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local every = tonumber(args[2])
  requests = {}
  local n = 0
  for line in io.lines(args[1]) do
    if n % every == id then
      local token, key, body = line:match("^([^\t]+)\t([^\t]+)\t(.+)$")
      requests[#requests + 1] = wrk.format("POST", "/api/v1/payments", {
        ["Authorization"] = "Bearer " .. token, ["Idempotency-Key"] = key, ["X-Request-Id"] = key,
        ["Content-Type"] = "application/json"}, body)
    end
    n = n + 1
  end
  sent, exhausted, created, statuses, refusals = 0, 0, {}, {}, {}
end

function request()
  sent = sent + 1
  if sent > #requests then
    exhausted = exhausted + 1
    return requests[(sent - 1) % #requests + 1]
  end
  return requests[sent]
end

function response(status, headers, body)
  local s = tostring(status)
  statuses[s] = (statuses[s] or 0) + 1
  if status == 201 then
    created[#created + 1] = headers["X-Request-Id"]
  elseif #refusals < 5 then
    refusals[#refusals + 1] = s .. " " .. (body:gsub("%s+", " "))
  end
end

function done(summary, latency, requests)
  local out = io.open(os.getenv("BENCH_WRK_OUT"), "w")
  local e = summary.errors
  out:write(string.format("duration_us %d\nrequests %d\n", summary.duration, summary.requests))
  out:write(string.format("socket_errors %d\ntimeouts %d\n", e.connect + e.read + e.write, e.timeout))
  out:write(string.format("p50_us %.0f\np99_us %.0f\nmax_us %.0f\n", latency:percentile(50),
                          latency:percentile(99), latency.max))
  for _, t in ipairs(threads) do
    out:write(string.format("sent %d\nexhausted %d\n", t:get("sent"), t:get("exhausted")))
    for s, n in pairs(t:get("statuses")) do out:write(string.format("status %s %d\n", s, n)) end
    for _, k in ipairs(t:get("created")) do out:write("created " .. k .. "\n") end
    for _, r in ipairs(t:get("refusals")) do out:write("refusal " .. r .. "\n") end
  end
  out:close()
end
"""


class Till(NamedTuple):
    store_id: str
    token: str


class Outcome:
    """What wrk saw in one run, per request and in all."""

    def __init__(self, path: Path):
        self.sent = self.exhausted = 0
        self.statuses: dict[int, int] = {}
        self.created: list[str] = []
        self.refusals: list[str] = []
        values = {}
        for line in path.read_text().splitlines():
            name, _, rest = line.partition(" ")
            if name == "sent":
                self.sent += int(rest)
            elif name == "exhausted":
                self.exhausted += int(rest)
            elif name == "status":
                status, n = rest.split()
                self.statuses[int(status)] = self.statuses.get(int(status), 0) + int(n)
            elif name == "created":
                self.created.append(rest)
            elif name == "refusal":
                self.refusals.append(rest)
            else:
                values[name] = float(rest)
        self.seconds = values["duration_us"] / 1e6
        self.answered = sum(self.statuses.values())
        self.ok = self.statuses.get(201, 0)
        self.rate = self.ok / self.seconds
        self.p50_ms, self.p99_ms, self.max_ms = (values[k] / 1000 for k in ("p50_us", "p99_us", "max_us"))
        self.socket_errors, self.timeouts = int(values["socket_errors"]), int(values["timeouts"])
        self.server_errors = sum(n for status, n in self.statuses.items() if status >= 500)


class CpuMeter:
    """CPU seconds over a measurement: the app server, this run's database backends, the load generator (this
    process and its children), every other process, and the whole machine."""

    def __init__(self, database: str, server_pid: int | None = None):
        self.database, self.server_pid = database, server_pid
        self.tick = os.sysconf("SC_CLK_TCK")
        self._before: tuple | None = None

    def _group(self, pid: int, ppid: int, cmdline: str) -> str:
        if self.server_pid is not None and self.server_pid in (pid, ppid):
            return "app"
        if cmdline.startswith("postgres:") and f" {self.database} " in cmdline:
            return "db"
        if os.getpid() in (pid, ppid):
            return "client"
        return "other"

    def _sample(self) -> tuple[dict[int, tuple[str, float]], float, float, float]:
        procs = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{name}/cmdline", "rb") as fh:
                    cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, IndexError):
                continue
            pid = int(name)
            procs[pid] = (self._group(pid, int(fields[1]), cmdline), (int(fields[11]) + int(fields[12])) / self.tick)
        with open("/proc/stat") as fh:
            ticks = [int(v) for v in fh.readline().split()[1:]]
        finished = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (procs, (sum(ticks) - ticks[3] - ticks[4]) / self.tick, finished.ru_utime + finished.ru_stime,
                time.monotonic())

    def start(self) -> None:
        self._before = self._sample()

    def stop(self) -> dict[str, float]:
        """CPU seconds of each group since start() (a process that ended meanwhile counts only as a finished
        child of this one), the machine's busy seconds, and the wall-clock seconds."""
        (before, busy0, finished0, wall0), (after, busy1, finished1, wall1) = self._before, self._sample()
        used = {"app": 0.0, "db": 0.0, "client": finished1 - finished0, "other": 0.0}
        for pid, (group, cpu) in after.items():
            if not (group == "client" and pid != os.getpid()):
                used[group] += cpu - (before[pid][1] if pid in before else 0.0)
        return {**used, "busy": busy1 - busy0, "wall": wall1 - wall0}


@contextlib.contextmanager
def scratch_keys(prefix: str, work: Path):
    """Yield; afterwards delete the run's Redis keys and its working folder."""
    import redis

    try:
        yield
    finally:
        client = redis.Redis.from_url(REDIS, decode_responses=True)
        for key in client.scan_iter(f"{prefix}*", count=10_000):
            client.delete(key)
        client.close()
        shutil.rmtree(work, ignore_errors=True)


def machine_share(used: dict[str, float]) -> tuple[float, float]:
    """How busy the machine was over a measurement, and how much of it went to processes not measured."""
    capacity = used["wall"] * (os.cpu_count() or 1)
    return used["busy"] / capacity, used["other"] / capacity


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_merchants(session, cipher, n: int) -> list:
    """Create n active merchants with a store and an append-only payable each, as approval would."""
    from core.ids import new_public_id
    from merchants.models import Merchant, MerchantCategory, MerchantStatus, SettlementMethod, Store, StoreStatus
    from merchants.validators import uscc_check_char
    from payments import ledger

    made = []
    for i in range(n):
        public = new_public_id("mch")
        name = f"基准商户{i:03d}"
        body = f"9164010{i:09d}A"
        category = MerchantCategory.DINING if i % 2 == 0 else MerchantCategory.SUPERMARKET
        m = Merchant(public_id=public, name=name, uscc=body + uscc_check_char(body), legal_representative="王老板",
                     contact_phone_enc=cipher.encrypt("13900001111", "merchant.contact_phone"),
                     contact_phone_masked="139****1111", category=category, region="640104",
                     address=f"银川市兴庆区解放街{i + 1}号", status=MerchantStatus.ACTIVE,
                     settlement_method=SettlementMethod.BANK, bank_name="宁夏银行", bank_account_name=name,
                     bank_account_enc=cipher.encrypt("6222020200112233", "merchant.bank_account"),
                     bank_account_masked="************2233", payable_account=f"merchant:{public}:payable")
        session.add(m)
        session.add(Store(public_id=new_public_id("sto"), merchant=m, name=f"{name}1号店",
                          address=m.address, status=StoreStatus.OPEN))
        session.flush()
        ledger.open_account(session, m.payable_account, normal_side="credit", allow_negative=True,
                            mode="append_only", owner_kind="merchant", owner_id=public)
        made.append(m)
    session.commit()
    return made


def publish_offers(session, merchants_: list) -> None:
    """Publish each merchant's own 8 % off and a 5 % off for the everyday family, all merchant-funded."""
    from benefits.models import LimitPeriod, Offer, OfferCategory, OfferFunding, OfferKind, OfferStatus
    from core.ids import new_public_id

    now = dt.datetime.now(dt.timezone.utc)

    def offer(**terms) -> Offer:
        public = new_public_id("off")
        return Offer(public_id=public, lineage=public, kind=OfferKind.PERCENT_OFF, funding=OfferFunding.MERCHANT,
                     union_share_bp=0, starts_at=now - dt.timedelta(days=30), status=OfferStatus.PUBLISHED,
                     published_at=now, **terms)

    session.add(offer(category=OfferCategory.EVERYDAY, title="普惠日用九五折", value=500, max_discount=2000,
                      limit_count=3, limit_period=LimitPeriod.DAY))
    for m in merchants_:
        session.add(offer(merchant_id=m.id, title=f"{m.name}会员九二折", value=800, min_spend=3000,
                          max_discount=3000))
    session.commit()


def amounts(rnd: random.Random):
    """Till amounts in fen: log-normal around ¥40, from ¥1 to ¥500."""
    while True:
        yield max(100, min(50_000, int(math.exp(rnd.gauss(math.log(4000), 0.8)))))


def issue_codes(session, codes, holders: list[tuple[str, int]], n: int, rnd: random.Random) -> list[str]:
    """Issue n payment codes, each for a random card, as its member's phone would."""
    from core.auth import Actor
    from core.models import Role

    issued = []
    for _ in range(n):
        card_id, member_id = rnd.choice(holders)
        issued.append(codes.issue(session, Actor(None, "bench-member", Role.MEMBER, member_id=member_id),
                                  card_id).code)
    session.rollback()
    return issued


def write_requests(path: Path, tag: str, tills: list[Till], codes: list[str], rnd: random.Random) -> None:
    """Write one till request per line: token, Idempotency-Key (also the X-Request-Id), JSON body."""
    spend = amounts(rnd)
    with open(path, "w") as fh:
        for n, code in enumerate(codes):
            till = tills[rnd.randrange(len(tills))]
            fh.write(f'{till.token}\t{tag}.{n:07d}\t{{"store_id":"{till.store_id}","amount":{next(spend)},'
                     f'"payment_code":"{code}"}}\n')


def wrk(port: int, requests: Path, seconds: int, work: Path) -> Outcome:
    """Drive the server with CLIENTS connections for `seconds`; return what came back."""
    script, out = work / "till.lua", work / "wrk.out"
    script.write_text(WRK_SCRIPT)
    out.unlink(missing_ok=True)
    subprocess.run(["wrk", "-t", str(WRK_THREADS), "-c", str(CLIENTS), "-d", f"{seconds}s", "--timeout", "60s",
                    "--latency", "-s", str(script), f"http://127.0.0.1:{port}/api/v1/payments",
                    "--", str(requests), str(WRK_THREADS)],
                   check=True, capture_output=True, text=True, env={**os.environ, "BENCH_WRK_OUT": str(out)})
    return Outcome(out)


class AppServer:
    """gunicorn serving wsgi:app on the scratch database, in a process group of its own."""

    def __init__(self, url: str, prefix: str, work: Path):
        self.port = free_port()
        self.log = work / "gunicorn.log"
        gunicorn = Path(sys.executable).parent / "gunicorn"
        env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": REDIS, "REDIS_PREFIX": prefix,
               "SECRET_KEY": SECRET_KEY, "DATA_KEY": DATA_KEY, "UPLOAD_FOLDER": str(work / "uploads")}
        cmd = [str(gunicorn if gunicorn.exists() else shutil.which("gunicorn")), "--bind", f"127.0.0.1:{self.port}",
               "--workers", str(WORKERS), "--worker-class", WORKER_CLASS, "--threads", str(WORKER_THREADS),
               "--timeout", "120", "--backlog", "2048", "wsgi:app"]
        self._log = open(self.log, "w")  # noqa: SIM115 - the server writes to it until stop()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                sys.exit(f"gunicorn did not come up:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()

    def errors(self) -> list[str]:
        """The lines of the server's log that report an error."""
        return [line for line in self.log.read_text(errors="replace").splitlines()
                if " ERROR " in line or "[CRITICAL]" in line or "Traceback" in line]


def profiled(server: AppServer, name: str, seconds: int):
    """Start py-spy on the workers for a timed run when BENCH_PROFILE names a folder; return the process."""
    if not PROFILE:
        return None
    spy = os.environ.get("BENCH_PYSPY") or shutil.which("py-spy")
    folder = Path(PROFILE)
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([spy, "record", "--pid", str(server.proc.pid), "--subprocesses", "--nonblocking",
                             "--rate", "200", "--duration", str(seconds), "--format", "raw",
                             "--output", str(folder / f"{name}.txt")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def settled_keys(session, prefix: str) -> set[str]:
    """The Idempotency-Keys of the run's payments, once requests still in flight at wrk's stop are done."""
    query = text("SELECT idempotency_key FROM payments WHERE idempotency_key LIKE :p")
    seen, since, deadline = None, time.monotonic(), time.monotonic() + 60
    while time.monotonic() < deadline:
        keys = set(session.scalars(query, {"p": prefix + ".%"}))
        session.rollback()
        if keys == seen and time.monotonic() - since > 1.0:
            return keys
        if keys != seen:
            seen, since = keys, time.monotonic()
        time.sleep(0.25)
    raise RuntimeError("payments were still being written a minute after wrk stopped")


def pgbench(url: str) -> tuple[float, dict[str, float]]:
    """Initialise pgbench's tables in the database, run TPC-B-like with CLIENTS clients; return tps and CPU used."""
    pgbench_init(url, PGBENCH_SCALE)
    meter = CpuMeter(make_url(url).database)
    meter.start()
    tps = pgbench_run(url, clients=CLIENTS, threads=WRK_THREADS, seconds=SECONDS)
    return tps, meter.stop()


def main() -> int:
    from cards import service as cards
    from cards.models import Card, CardStatus
    from core import create_app
    from core.auth import Actor, create_user, issue_token
    from core.db import db
    from core.models import Role
    from members import service as members
    from payments import ledger
    from payments.ledger.bulk import MAX_CREDITS
    from sqlalchemy import select, update

    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="uc-checkout-"))
    prefix = f"ucbench:{uuid.uuid4().hex[:8]}:"
    rnd = random.Random(20261125)
    runs: dict[str, Outcome] = {}
    cpu: dict[str, dict[str, float]] = {}
    checks: list[tuple[str, bool, str]] = []
    with scratch_keys(prefix, work), scratch_database(SERVER) as url:
        app = create_app({"DATABASE_URL": url, "REDIS_URL": REDIS, "REDIS_PREFIX": prefix,
                          "INSTANCE_PATH": str(work), "UPLOAD_FOLDER": str(work / "uploads"),
                          "SECRET_KEY": SECRET_KEY, "DATA_KEY": DATA_KEY, "JOBS_MODE": "sync",
                          "PASSWORD_HASH_TIME_COST": 1, "PASSWORD_HASH_MEMORY_KIB": 1024})
        with app.app_context():
            from cards.api import payment_codes

            session, cipher = db.session, app.extensions["cipher"]
            started = time.perf_counter()
            admin = Actor.of(create_user(session, username="bench-admin", password="bench-password",
                                         role=Role.UNION_ADMIN))
            session.commit()
            union = members.create_union(session, admin, name="基准总工会", parent_id=None, region="640000")
            insert_members(session, cipher, union, MEMBERS)
            run = cards.start_bulk_issuance(session, admin, union.public_id)
            run = cards.run_bulk_issuance(session, cipher, run.public_id, prefix="880064", chunk=5000)
            assert run.issued == MEMBERS, run.issued
            activated = dt.datetime.now(dt.timezone.utc)
            session.execute(update(Card).values(status=CardStatus.ACTIVE, activated_at=activated))
            session.commit()
            holders = [tuple(r) for r in session.execute(select(Card.public_id, Card.member_id).order_by(Card.id))]
            ledger.open_account(session, "bench:funding", normal_side="debit", allow_negative=True)
            for first in range(0, len(holders), MAX_CREDITS):
                ledger.post_credits(session, kind="bench_funding", idempotency_key=f"bench:funding:{first}",
                                    source="bench:funding",
                                    credits=[ledger.Credit(cards.general_account(card_id), PURSE_FUNDS)
                                             for card_id, _ in holders[first:first + MAX_CREDITS]])
                session.commit()
            merchants_ = open_merchants(session, cipher, MERCHANTS)
            publish_offers(session, merchants_)
            tills = []
            for n, m in enumerate(merchants_):
                user = create_user(session, username=f"till-{n:03d}", password="bench-password",
                                   role=Role.MERCHANT_CASHIER, merchant_id=m.id)
                plain, _token = issue_token(session, user, 4 * 3600)
                tills.append(Till(m.stores[0].public_id, plain))
            session.commit()
            setup_s = time.perf_counter() - started
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE"))

            print(f"set up in {setup_s:.0f} s: {MEMBERS:,} funded cards, {MERCHANTS} merchants; "
                  f"pgbench (scale {PGBENCH_SCALE}, {CLIENTS} clients, {SECONDS} s) ...", flush=True)
            tps, cpu["pgbench"] = pgbench(url)
            print(f"  pgbench: {tps:,.0f} tps", flush=True)

            size_before = session.scalar(text("SELECT pg_database_size(current_database())"))
            session.rollback()
            base = payment_codes()
            codes = cards.PaymentCodes(base.store, base.key, ttl=CODE_TTL, per_minute=10**9)
            tag = uuid.uuid4().hex[:8]
            server = AppServer(url, prefix, work)
            meter = CpuMeter(make_url(url).database, server.proc.pid)
            try:
                issue_rate = []
                for name, where in (("spread", tills), ("hot", tills[:1])):
                    warm = issue_codes(session, codes, holders, max(1000, 500 * WARMUP), rnd)
                    write_requests(work / "warm.tsv", f"{tag}.{name}.warm", where, warm, rnd)
                    warm_rate = wrk(server.port, work / "warm.tsv", WARMUP, work).rate
                    needed = int(warm_rate * SECONDS * CODES_MARGIN) + 4 * CLIENTS
                    began = time.perf_counter()
                    issued = issue_codes(session, codes, holders, needed, rnd)
                    issue_rate.append(needed / (time.perf_counter() - began))
                    write_requests(work / "run.tsv", f"{tag}.{name}.run", where, issued, rnd)
                    print(f"  {name}: warm-up {warm_rate:,.0f}/s; {needed:,} codes issued; "
                          f"running {SECONDS} s ...", flush=True)
                    spy = profiled(server, name, SECONDS)
                    meter.start()
                    out = runs[name] = wrk(server.port, work / "run.tsv", SECONDS, work)
                    cpu[name] = meter.stop()
                    if spy is not None:
                        spy.wait()
                    keys = settled_keys(session, f"{tag}.{name}.run")
                    created = set(out.created)
                    in_flight = out.sent - out.answered
                    extra = keys - created
                    checks.append((f"{name}: wrk had codes enough", out.exhausted == 0,
                                   f"{out.exhausted} requests past the last code"))
                    checks.append((f"{name}: every 201 has its payments row, no other row but in-flight ones",
                                   len(created) == out.ok and created <= keys and len(extra) <= in_flight,
                                   f"rows {len(keys):,} = 201 answers {out.ok:,} + {len(extra)} still in flight "
                                   f"at the stop (of {in_flight} unanswered)"))
                    checks.append((f"{name}: no 5xx, no other refusal, no socket error",
                                   out.ok == out.answered and out.socket_errors == 0 and out.timeouts == 0,
                                   f"statuses {dict(sorted(out.statuses.items()))}, 5xx {out.server_errors}, "
                                   f"socket errors {out.socket_errors}, timeouts {out.timeouts}"
                                   + (f"; e.g. {out.refusals[0][:300]}" if out.refusals else "")))
                    payables = session.scalar(text(
                        "SELECT -coalesce(sum(e.amount), 0) FROM ledger_entries e JOIN ledger_accounts a "
                        "ON a.id = e.account_id WHERE a.code LIKE :payables"), {"payables": "merchant:%:payable"})
                    charged = session.scalar(text("SELECT coalesce(sum(charged), 0) FROM payments"))
                    checks.append((f"{name}: merchant payables = what cards were charged", payables == charged,
                                   f"¥{payables / 100:,.2f} vs ¥{charged / 100:,.2f}"))
                    verified = ledger.verify(session)
                    session.rollback()
                    checks.append((f"{name}: ledger.verify()", verified.ok,
                                   f"{verified.checked['transactions']:,} transactions, "
                                   f"{verified.checked['entries']:,} entries" + ("" if verified.ok else
                                                                                  f": {verified.problems[:3]}")))
            finally:
                server.stop()
            logged = server.errors()
            checks.append(("server log: no errors", not logged, f"{len(logged)} error lines"
                           + (f", e.g. {logged[0][:300]}" if logged else "")))
            size_after = session.scalar(text("SELECT pg_database_size(current_database())"))
            discounted, paid, discount = session.execute(text(
                "SELECT count(*) FILTER (WHERE discount > 0), count(*), coalesce(sum(discount), 0) "
                "FROM payments")).one()
            session.rollback()
        db.engine.dispose()

    spread, hot = runs["spread"], runs["hot"]
    workers = f"{WORKERS} {WORKER_CLASS}" + (f" x {WORKER_THREADS} threads" if WORKER_CLASS == "gthread" else "")
    print()
    print(f"card payments over HTTP: {CLIENTS} tills (wrk, {WRK_THREADS} threads), {SECONDS} s per run, gunicorn "
          f"{workers} workers, {os.cpu_count()} cores; {MEMBERS:,} cards, {MERCHANTS} merchants")
    print(f"{'figure':<52}{'value':>10}  {'baseline':<22}{'ratio':>7}  target")
    rows = [
        (f"payments/s, spread over {MERCHANTS} merchants", f"{spread.rate:,.0f}", f"{tps:,.0f} pgbench tps",
         f"{spread.rate / tps:.3f}", ">= 1,000/s"),
        ("payments/s, all at one hot merchant", f"{hot.rate:,.0f}", f"{tps:,.0f} pgbench tps",
         f"{hot.rate / tps:.3f}", ">= 1,000/s"),
        ("hot / spread", f"{hot.rate / spread.rate:.2f}", "spread", f"{hot.rate / spread.rate:.3f}", ">= 0.8"),
        ("latency p50, spread, ms", f"{spread.p50_ms:,.1f}", "", "", "-"),
        ("latency p99, spread, ms", f"{spread.p99_ms:,.1f}", "", "", "-"),
        ("latency p50, hot, ms", f"{hot.p50_ms:,.1f}", "", "", "-"),
        ("latency p99, hot, ms", f"{hot.p99_ms:,.1f}", "", "", "-"),
        ("gunicorn workers", workers, "", "", "-"),
        *[(f"CPU ms per payment, {name}: app / PostgreSQL / wrk",
           " / ".join(f"{cpu[name][k] * 1000 / runs[name].answered:.1f}" for k in ("app", "db", "client")), "", "",
           "-") for name in ("spread", "hot")],
        *[(f"machine busy, {name}; of it other processes", f"{busy:.0%}; {other:.0%}", "", "", "other ~0%")
          for name, (busy, other) in ((name, machine_share(cpu[name])) for name in ("spread", "hot", "pgbench"))],
        (f"pgbench TPC-B tps (scale {PGBENCH_SCALE}, -c {CLIENTS} -j {WRK_THREADS} -T {SECONDS})", f"{tps:,.0f}",
         "", "", ""),
        ("payment codes issued /s beforehand (not timed)", f"{min(issue_rate):,.0f}", "", "", ""),
    ]
    for figure, value, baseline, ratio, target in rows:
        print(f"{figure:<52}{value:>10}  {baseline:<22}{ratio:>7}  {target}")
    print(f"(payments {spread.ok:,} spread + {hot.ok:,} hot; an offer applied to {discounted / paid:.0%} of "
          f"all {paid:,} payments, ¥{discount / 100:,.2f} off in all; baseline: pgbench TPC-B-like on the same "
          "database, same run, app server not running)")
    failed = 0
    for label, ok, detail in checks:
        failed += not ok
        print(f"  {'ok  ' if ok else 'FAIL'} {label}: {detail}")
    report(f"card payments over HTTP, spread over {MERCHANTS} merchants ({CLIENTS} tills)", spread.rate,
           "payments/s", ">= 1,000/s")
    report("card payments over HTTP, all at one hot merchant", hot.rate, "payments/s", ">= 1,000/s; ratio >= 0.8",
           baseline=spread.rate, baseline_label="spread")
    for name, out in (("spread", spread), ("hot", hot)):
        report(f"payment latency p50, {name}", out.p50_ms, "ms")
        report(f"payment latency p99, {name}", out.p99_ms, "ms")
    spent = {k: sum(cpu[name][k] for name in ("spread", "hot")) for k in ("app", "db")}
    answered = spread.answered + hot.answered
    report("CPU per payment: app workers", spent["app"] * 1000 / answered, "ms")
    report("CPU per payment: PostgreSQL", spent["db"] * 1000 / answered, "ms")
    report("database growth per payment (tables, indexes, codes' warm-up included)",
           (size_after - size_before) / max(1, paid), "bytes")
    report(f"pgbench TPC-B-like on this database (-s {PGBENCH_SCALE} -c {CLIENTS} -j {WRK_THREADS} -T {SECONDS})",
           tps, "tps")
    report(f"checks: payments rows, payables, ledger.verify(), no 5xx ({len(checks) - failed} of {len(checks)} ok)",
           len(checks) - failed, "", "all pass", met=not failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
