"""Import every domain's models so Base.metadata knows the whole schema (Alembic, tests)."""

import core.models  # noqa: F401
import members.models  # noqa: F401
import cards.models  # noqa: F401
import payments.ledger.models  # noqa: F401
import merchants.models  # noqa: F401
import payments.models  # noqa: F401
import payments.disbursement.models  # noqa: F401
import payments.topups.models  # noqa: F401
import benefits.models  # noqa: F401
import payments.checkout.models  # noqa: F401
import payments.settlement.models  # noqa: F401
import payments.payouts.models  # noqa: F401
import payments.reconciliation.models  # noqa: F401
import stats.models  # noqa: F401
