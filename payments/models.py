"""What the payments domain keeps outside the ledger: the Stripe events it has received."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import BigIntPK, Base, utcnow


class StripeEvent(Base):
    """A verified Stripe webhook event, kept so that each is processed at most once."""

    __tablename__ = "stripe_events"

    id: Mapped[BigIntPK]
    event_id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Empty for an event of a type nothing handles: received, acknowledged, and ignored.
    processed_at: Mapped[dt.datetime | None]
