"""A live server on its own database and headless Chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from core import create_app
from core.auth import create_user
from core.db import db
from core.models import Role
from tests.conftest import ENV_REDIS_URL, scratch_database, skip_or_fail

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "browser-pass-2026"


@pytest.fixture(scope="session")
def live_server(tmp_path_factory):
    """Serve the app on a free local port, on a database of its own, with a reviewer account."""
    with scratch_database(tmp_path_factory, "uc_e2e") as url:
        instance = tmp_path_factory.mktemp("e2e-instance")
        app = create_app({"INSTANCE_PATH": str(instance), "DATABASE_URL": url, "REDIS_URL": ENV_REDIS_URL,
                          "REDIS_PREFIX": f"uce2e:{uuid.uuid4().hex[:8]}:", "UPLOAD_FOLDER": str(instance / "up"),
                          "SECRET_KEY": "e2e-secret", "DATA_KEY": "e2e-data-key", "JOBS_MODE": "thread",
                          "PASSWORD_HASH_TIME_COST": 1, "PASSWORD_HASH_MEMORY_KIB": 1024})
        with app.app_context():
            create_user(db.session, username="e2e-reviewer", password=PASSWORD, role=Role.MERCHANT_REVIEWER,
                        display_name="审核员")
            db.session.commit()
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            with app.app_context():
                db.engine.dispose()


@pytest.fixture(scope="session")
def chromium():
    """Launch Debian's Chromium headless (Playwright cannot download a browser here)."""
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        skip_or_fail(f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()


@pytest.fixture
def page(chromium, request):
    """A fresh phone-sized browser page; its screenshot is kept as a test artefact."""
    context = chromium.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN")
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    yield pg
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}-last.png"), full_page=True)
    context.close()


def shot(page, name: str) -> None:
    """Save a screenshot of the page as a test artefact."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
