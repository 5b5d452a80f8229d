"""A gunicorn worker killed with SIGKILL in the middle of an aid batch it was running in-process, on
PostgreSQL: the master starts a new worker, the stopped batch is resumed through the API, and every line
is paid exactly once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session

from cards import service as cards
from core.auth import Actor
from core.db import db
from core.models import Role
from payments import ledger
from payments.disbursement import service as disbursement
from payments.disbursement.models import ProgramKind, PursePolicy
from tests import factories as f
from tests.conftest import ENV_REDIS_URL
from tests.faults.conftest import forget_redis_keys, own_app

ROOT = Path(__file__).resolve().parents[2]
LINES = 30
CHUNK = 3
HELD_LINE = 11  # in the fourth chunk: three chunks are paid and committed when the worker dies in the fourth
SECRET_KEY = "worker-killed-secret"
DATA_KEY = "worker-killed-data-key-long-enough"


def amount_of(n: int) -> int:
    return 1_000 + n


@pytest.fixture(scope="module")
def aid_world(tmp_path_factory, fault_database):
    """Thirty members with cards, a funded aid program, and a finance maker and approver with API tokens."""
    with own_app(tmp_path_factory, fault_database, "killed", SECRET_KEY=SECRET_KEY, DATA_KEY=DATA_KEY) as app:
        cipher = app.extensions["cipher"]
        with app.app_context():
            s = db.session
            federation = f.union(s, f"宁夏总工会{f.next_id()}", None, "640000")
            city = f.union(s, "银川市总工会", federation, "640100")
            ids = [f.unique_id_number("640104") for _ in range(LINES)]
            card_ids = []
            for n, id_number in enumerate(ids):
                member = f.member(s, cipher, city, f"会员{n}", id_number=id_number)
                card_ids.append(cards.issue_card(s, cipher, f.PLATFORM, member.public_id, prefix="880064").public_id)
            maker, approver = f.user(s, Role.FINANCE_MAKER), f.user(s, Role.FINANCE_APPROVER)
            program = disbursement.create_program(s, Actor.of(maker), name="送温暖", kind=ProgramKind.HARDSHIP_AID,
                                                  purse=PursePolicy.GENERAL, union_id=federation.public_id)
            funding = disbursement.create_funding(s, Actor.of(maker), program.public_id, amount=1_000_000,
                                                  currency="CNY", reference="BANK-1")
            disbursement.approve_funding(s, Actor.of(approver), funding.public_id)
            return {"ids": ids, "cards": card_ids, "program": program.public_id,
                    "maker": f.bearer(s, maker), "approver": f.bearer(s, approver)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def children(pid: int) -> set[int]:
    """The live processes whose parent is `pid`."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so read after its closing parenthesis.
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.add(int(entry.name))
    return found


def wait_for(what, condition, timeout: float = 30.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def gunicorn(fault_database, tmp_path):
    """gunicorn with one worker on the fault tests' database; batches run in a thread of the worker."""
    port = free_port()
    prefix = f"ucfault:{uuid.uuid4().hex[:8]}:"
    env = {**os.environ, "DATABASE_URL": fault_database, "REDIS_URL": ENV_REDIS_URL, "REDIS_PREFIX": prefix,
           "SECRET_KEY": SECRET_KEY, "DATA_KEY": DATA_KEY,
           "JOBS_MODE": "thread", "DISBURSEMENT_CHUNK": str(CHUNK), "UPLOAD_FOLDER": str(tmp_path / "uploads"),
           "PASSWORD_HASH_TIME_COST": "1", "PASSWORD_HASH_MEMORY_KIB": "1024", "STATS_REFRESH_AFTER": "0"}
    log = (tmp_path / "gunicorn.log").open("wb")
    master = subprocess.Popen([sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
                               "--threads", "4", "--timeout", "60", "wsgi:app"],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def healthy():
        assert master.poll() is None, (tmp_path / "gunicorn.log").read_text()
        try:
            return requests.get(f"{url}/healthz", timeout=5).status_code == 200
        except requests.RequestException:  # refused, or queued while the worker boots
            return False

    try:
        wait_for("gunicorn to answer", healthy, timeout=60, every=0.2)
        yield {"url": url, "master": master, "healthy": healthy}
    finally:
        master.send_signal(signal.SIGINT)  # quick shutdown
        try:
            master.wait(timeout=15)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait()
        log.close()
        forget_redis_keys(prefix)


def batch_row(engine, batch_id: str):
    with engine.connect() as conn:
        return conn.execute(text("SELECT id, status, done_lines, failed_lines, done_amount, cursor "
                                 "FROM disbursements WHERE public_id = :b"), {"b": batch_id}).one()


def entries_per_card(engine, card_ids: list[str]) -> list[int]:
    with Session(engine) as s:
        counts = dict(s.execute(select(ledger.Account.code, func.count(ledger.Entry.id))
                                .join(ledger.Entry, ledger.Entry.account_id == ledger.Account.id)
                                .where(ledger.Account.code.in_([cards.general_account(c) for c in card_ids]))
                                .group_by(ledger.Account.code)).all())
    return [counts.get(cards.general_account(c), 0) for c in card_ids]


def test_a_gunicorn_worker_killed_mid_batch_is_replaced_and_the_resumed_batch_pays_every_line_exactly_once(
        fault_database, aid_world, gunicorn):
    """The worker dies with a chunk's transaction open (its ledger credits written, its lines not yet marked):
    that chunk is not kept, the chunks before it are; a resume while the run might still be alive is refused;
    once the run has stopped moving for the stale window, a resume on the new worker pays the rest, once."""
    url, master = gunicorn["url"], gunicorn["master"]
    engine = create_engine(fault_database)
    try:
        csv = "id_number,amount,note\n" + "".join(f"{i},{amount_of(n)},\n" for n, i in enumerate(aid_world["ids"]))
        created = requests.post(f"{url}/api/v1/disbursements", headers=aid_world["maker"], timeout=30,
                                data={"program_id": aid_world["program"]}, files={"file": ("b.csv", csv.encode())})
        assert created.status_code == 201, created.text
        batch_id = created.json()["id"]
        batch_pk = batch_row(engine, batch_id).id

        # Another session holds one line of the fourth chunk, so the run stops inside that chunk's transaction.
        holder = engine.connect()
        held = holder.begin()
        holder.execute(text("SELECT id FROM disbursement_lines WHERE disbursement_id = :b AND line_no = "
                            "(SELECT line_no FROM disbursement_lines WHERE disbursement_id = :b "
                            "ORDER BY line_no OFFSET :n LIMIT 1) FOR UPDATE"), {"b": batch_pk, "n": HELD_LINE - 1})
        approved = requests.post(f"{url}/api/v1/disbursements/{batch_id}/approve", headers=aid_world["approver"],
                                 timeout=30)
        assert approved.status_code == 200, approved.text

        def stuck_backend():
            with engine.connect() as conn:
                return conn.scalar(text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = "
                    "'Lock' AND state = 'active' AND query LIKE '%UPDATE disbursement_lines SET status = ''done''%'"))

        backend = wait_for("the run to reach the held line", stuck_backend)
        assert batch_row(engine, batch_id).done_lines == 3 * CHUNK
        workers = children(master.pid)
        assert len(workers) == 1
        (worker,) = workers
        os.kill(worker, signal.SIGKILL)
        wait_for("the worker to die", lambda: worker not in children(master.pid))
        held.rollback()
        holder.close()

        def backend_gone():
            with engine.connect() as conn:
                return not conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": backend})

        wait_for("the dead worker's database session to end", backend_gone)
        row = batch_row(engine, batch_id)
        assert (row.status, row.done_lines, row.cursor) == ("running", 3 * CHUNK, 3 * CHUNK)
        paid = entries_per_card(engine, aid_world["cards"])
        assert paid == [1] * (3 * CHUNK) + [0] * (LINES - 3 * CHUNK)  # the open chunk left nothing behind

        # The master has started a new worker, and it serves.
        wait_for("a new worker", lambda: children(master.pid) - {worker})
        wait_for("the new worker to answer", gunicorn["healthy"], timeout=60, every=0.2)
        too_soon = requests.post(f"{url}/api/v1/disbursements/{batch_id}/resume", headers=aid_world["maker"],
                                 timeout=30)
        assert too_soon.status_code == 409 and too_soon.json()["error"] == "batch_not_stalled", too_soon.text

        # The stale window passes with no progress (its last progress moved back by that much).
        with engine.begin() as conn:
            conn.execute(text("UPDATE disbursements SET progressed_at = progressed_at - :quiet WHERE id = :b"),
                         {"quiet": disbursement.STALE_AFTER + disbursement.STALE_AFTER / 5, "b": batch_pk})
        resumed = requests.post(f"{url}/api/v1/disbursements/{batch_id}/resume", headers=aid_world["maker"],
                                timeout=30)
        assert resumed.status_code == 202, resumed.text

        def finished():
            body = requests.get(f"{url}/api/v1/disbursements/{batch_id}", headers=aid_world["maker"],
                                timeout=10).json()
            return body if body["status"] not in ("approved", "running") else None

        done = wait_for("the resumed batch to finish", finished, timeout=60, every=0.1)
        assert (done["status"], done["done_lines"], done["failed_lines"]) == ("completed", LINES, 0), done
        row = batch_row(engine, batch_id)
        assert row.done_amount == sum(amount_of(n) for n in range(LINES))
        assert entries_per_card(engine, aid_world["cards"]) == [1] * LINES
        with Session(engine) as s:
            for n, card_id in enumerate(aid_world["cards"]):
                assert ledger.balance(s, cards.general_account(card_id)).posted == amount_of(n)
            assert ledger.balance(s, disbursement.reserve_account(batch_id)).posted == 0
            chunks = s.scalar(select(func.count()).select_from(ledger.Transaction)
                              .where(ledger.Transaction.reference == batch_id,
                                     ledger.Transaction.kind == "disbursement"))
            assert chunks == LINES // CHUNK
            report = ledger.verify(s)
            assert report.ok, report.problems
    finally:
        engine.dispose()
