"""The application factory: configuration, extensions, blueprints, commands and error handling."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from flask import Flask
from flask_babel import get_locale
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from core import cli as core_cli
from core import web
from core.api import Api, health
from core.auth import configure_password_hashing
from core.api import blp as core_api
from core.config import load_config
from core.crypto import FieldCipher
from core.db import db
from core.errors import register_error_handlers
from core.i18n import babel, remember_locale, select_locale
from core.jobs import jobs
from core import metrics
from core.logs import configure_logging
from core.money import format_amount
from core.i18n import local_time
from core.redis import make_store
from core.views import bp as core_pages

csrf = CSRFProtect()
ROOT = Path(__file__).resolve().parent.parent


def create_app(config: dict | None = None) -> Flask:
    """Build the app; `config` overrides what the environment says."""
    app = Flask(__name__, instance_path=str(ROOT / "instance"))
    app.config.update(load_config(app.instance_path, config))
    configure_logging(app.config["LOG_FORMAT"])
    configure_password_hashing(app.config["PASSWORD_HASH_TIME_COST"], app.config["PASSWORD_HASH_MEMORY_KIB"])
    Path(app.config["UPLOAD_FOLDER"]).mkdir(parents=True, exist_ok=True)
    if app.config.get("TRUSTED_PROXIES"):
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=int(app.config["TRUSTED_PROXIES"]), x_proto=1)

    db.init_app(app)
    app.extensions["kv"] = make_store(app.config["REDIS_URL"], app.config["REDIS_PREFIX"])
    app.extensions["cipher"] = FieldCipher(app.config["DATA_KEY"])
    jobs.init_app(app)
    babel.init_app(app, locale_selector=select_locale,
                   default_translation_directories=str(ROOT / "core" / "translations"))
    app.jinja_env.globals.update(get_locale=get_locale, today=dt.date.today, args_with=web.args_with,
                                 money=format_amount)
    app.jinja_env.filters["local"] = local_time
    web.login_manager.init_app(app)
    csrf.init_app(app)

    app.before_request(metrics.start_request)
    app.before_request(web.before_request)
    app.after_request(web.after_request)
    app.after_request(metrics.finish_request)
    app.after_request(remember_locale)

    api = Api(app, spec_kwargs={"components": {"securitySchemes": {
        "bearerAuth": {"type": "http", "scheme": "bearer"}}}})
    _register_domains(app, api)
    api.document_errors()
    api.document_idempotency()
    app.add_url_rule("/healthz", "healthz", health)
    app.add_url_rule("/metrics", "metrics", metrics.metrics)
    csrf.exempt("core.api.health")
    register_error_handlers(app)
    core_cli.register(app)
    return app


def _register_domains(app: Flask, api: Api) -> None:
    """Mount every domain's API blueprint, pages and commands (the one place that knows them all)."""
    from benefits import api as benefits_api
    from benefits import views as benefits_pages
    from cards import api as cards_api
    from cards import views as cards_pages
    from members import api as members_api
    from members import cli as members_cli
    from members import views as members_pages
    from merchants import api as merchants_api
    from merchants import views as merchants_pages
    from payments import api as payments_api
    from payments import cli as payments_cli
    from payments import webhooks as payments_webhooks
    from payments.topups import api as topups_api
    from payments.topups import views as topups_pages
    # Imported for what importing it does: it registers the top-ups' Stripe event handlers.
    from payments.topups import webhooks as topups_webhooks  # noqa: F401
    from payments.disbursement import api as disbursement_api
    from payments.disbursement import cli as disbursement_cli
    from payments.disbursement import views as disbursement_pages
    from payments.checkout import api as checkout_api
    from payments.checkout import views as checkout_pages
    from payments.settlement import api as settlement_api
    from payments.settlement import cli as settlement_cli
    from payments.settlement import views as settlement_pages
    from payments.payouts import api as payouts_api
    from payments.payouts import cli as payouts_cli
    from payments.payouts import views as payouts_pages
    # Imported for what importing it does: it registers the payouts' Stripe event handlers.
    from payments.payouts import webhooks as payouts_webhooks  # noqa: F401
    from payments.reconciliation import api as reconciliation_api
    from payments.reconciliation import views as reconciliation_pages
    from payments.reports import api as reports_api
    from payments.reports import views as reports_pages
    from stats import api as stats_api
    from stats import cli as stats_cli
    from stats import service as stats_service
    from stats import views as stats_pages

    for blueprint in (core_api, members_api.blp, cards_api.blp, merchants_api.blp, benefits_api.blp,
                      payments_api.blp, payments_webhooks.blp, disbursement_api.blp, topups_api.blp,
                      checkout_api.blp, settlement_api.blp, payouts_api.blp, reconciliation_api.blp,
                      reports_api.blp, stats_api.blp):
        api.register_blueprint(blueprint)
        # API calls authenticate with bearer tokens, never with the session cookie: no CSRF to guard.
        csrf.exempt(blueprint)
    app.register_blueprint(core_pages)
    app.register_blueprint(members_pages.bp)
    app.register_blueprint(cards_pages.bp)
    app.register_blueprint(merchants_pages.bp)
    app.register_blueprint(benefits_pages.bp)
    app.register_blueprint(disbursement_pages.bp)
    app.register_blueprint(topups_pages.bp)
    app.register_blueprint(checkout_pages.bp)
    for pages in (settlement_pages, payouts_pages, reconciliation_pages, reports_pages, stats_pages):
        app.register_blueprint(pages.bp)
    app.cli.add_command(members_cli.cli)
    payments_cli.register(app)
    disbursement_cli.register(app)
    settlement_cli.register(app)
    payouts_cli.register(app)
    stats_cli.register(app)
    metrics.add_gauge(app, "unioncard_console_figures_age_seconds",
                      "Seconds since the union console's figures were refreshed.", stats_service.figures_age_seconds)
    disbursement_api.document(api)
    from core import demo

    app.cli.add_command(demo.demo_command)
