"""Reconciliation: external statements (Stripe, the bank) matched against payouts and fundings."""
