"""A live server on its own database and headless Chromium driven by Playwright."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import uuid
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests.conftest import ENV_REDIS_URL, app_of_its_own, scratch_database, skip_or_fail

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "browser-pass-2026"


@contextlib.contextmanager
def serve(tmp_path_factory, name: str, setup=None):
    """Serve an app of its own on a free local port and a scratch database; yield (url, app, setup's result).

    `setup(app)` runs in an app context to create the data. The app binds the process-wide database
    handle and job runner to itself; they are given back afterwards, so later tests are not affected.
    """
    with scratch_database(tmp_path_factory, f"uc_{name}") as url:
        instance = tmp_path_factory.mktemp(f"{name}-instance")
        with app_of_its_own({"INSTANCE_PATH": str(instance), "DATABASE_URL": url, "REDIS_URL": ENV_REDIS_URL,
                             "REDIS_PREFIX": f"uce2e:{uuid.uuid4().hex[:8]}:", "UPLOAD_FOLDER": str(instance / "up"),
                             "SECRET_KEY": f"{name}-secret", "DATA_KEY": f"{name}-data-key", "JOBS_MODE": "thread",
                             "PASSWORD_HASH_TIME_COST": 1, "PASSWORD_HASH_MEMORY_KIB": 1024}) as app:
            facts = None
            if setup is not None:
                with app.app_context():
                    facts = setup(app)
            server = make_server("127.0.0.1", 0, app, threaded=True)
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            try:
                yield f"http://127.0.0.1:{server.server_port}", app, facts
            finally:
                server.shutdown()


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


def sign_in(page, base: str, username: str, password: str = PASSWORD) -> None:
    """Sign in on the login page and wait for the home page."""
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def fits_the_phone(page) -> bool:
    """Tell whether the page reads without scrolling sideways."""
    return page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
