"""A worker killed with SIGKILL in the middle of a batch, on PostgreSQL: the resumed run pays every line once."""

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cards import service as cards
from core.auth import Actor
from core.models import Role
from payments import ledger
from payments.disbursement import service
from payments.disbursement.models import BatchStatus, ProgramKind, PursePolicy
from tests import factories as f
from tests.payments.conftest import csv_file

ROOT = Path(__file__).resolve().parents[2]
LINES = 30


@pytest.fixture
def approved_batch(postgres, engine, app, cipher):
    with Session(engine, expire_on_commit=False) as s:
        fed = f.union(s, f"断电测试总工会{uuid.uuid4().hex[:8]}", None, "640000")
        city = f.union(s, "银川市总工会", fed, "640100")
        people = [f.member(s, cipher, city, f"会员{i}") for i in range(LINES)]
        card_list = []
        for m in people:
            card = cards.issue_card(s, cipher, f.PLATFORM, m.public_id, prefix="880064")
            card_list.append(card)
        maker, approver = Actor.of(f.user(s, Role.FINANCE_MAKER)), Actor.of(f.user(s, Role.FINANCE_APPROVER))
        prg = service.create_program(s, maker, name="送温暖", kind=ProgramKind.HARDSHIP_AID, purse=PursePolicy.GENERAL,
                                     union_id=fed.public_id)
        funding = service.create_funding(s, maker, prg.public_id, amount=10_000_000, currency="CNY", reference="r")
        service.approve_funding(s, approver, funding.public_id)
        ids = [cipher.decrypt(m.id_number_enc, "member.id_number") for m in people]
        batch = service.create_batch_from_csv(s, cipher, maker, prg.public_id,
                                              csv_file([f"{i},{1000 + n}," for n, i in enumerate(ids)]), "b.csv",
                                              max_lines=1000)
        service.approve_batch(s, approver, batch.public_id, second_approval_above=10**12)
        return {"batch": batch.public_id, "cards": [c.public_id for c in card_list], "program": prg}


def progress(engine, batch_id):
    with Session(engine) as s:
        batch = service.get_batch(s, batch_id)
        return batch.status, batch.done_lines


def test_kill_9_of_the_worker_mid_batch_then_resume_pays_every_line_exactly_once(engine, database_url,
                                                                               approved_batch):
    batch_id = approved_batch["batch"]
    env = {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": "crash-test", "DATA_KEY": "crash-test-data-key",
           "DISBURSEMENT_CHUNK": "3", "DISBURSEMENT_CHUNK_PAUSE": "0.5", "REDIS_URL": ""}
    worker = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "disbursement", "run", batch_id],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, done = progress(engine, batch_id)
        if done >= 6:
            break
        assert worker.poll() is None, worker.stdout.read().decode()
        time.sleep(0.05)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    status, done = progress(engine, batch_id)
    assert status == BatchStatus.RUNNING and 6 <= done < LINES, (status, done)

    # The schedule's `disbursement resume-stalled` leaves a batch alone while its run may still be alive ...
    resume = [sys.executable, "-m", "flask", "--app", "wsgi", "disbursement", "resume-stalled"]
    quiet = subprocess.run(resume, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True)
    assert "no stalled batches" in quiet.stdout and progress(engine, batch_id)[1] == done
    # ... and goes on with it once it has made no progress for longer than that.
    with Session(engine) as s:
        batch = service.get_batch(s, batch_id)
        batch.progressed_at -= service.STALE_AFTER + dt.timedelta(seconds=1)
        s.commit()
    resumed = subprocess.run(resume, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True)
    assert f"{batch_id}: completed, {LINES} paid, 0 failed" in resumed.stdout, resumed.stdout + resumed.stderr

    with Session(engine, expire_on_commit=False) as s:
        finished = service.get_batch(s, batch_id)
        assert (finished.status, finished.done_lines, finished.failed_lines) == (BatchStatus.COMPLETED, LINES, 0)
        assert finished.done_amount == sum(1000 + n for n in range(LINES))
        for n, card_id in enumerate(approved_batch["cards"]):
            code = cards.general_account(card_id)
            entries = s.scalar(select(func.count(ledger.Entry.id)).join(ledger.Account).where(ledger.Account.code == code))
            assert entries == 1 and ledger.balance(s, code).posted == 1000 + n
        assert ledger.balance(s, service.reserve_account(batch_id)).posted == 0
        assert ledger.verify(s).ok
