"""Payouts to merchants: Stripe Connect transfers or the bank transfer file, their status, and failures."""
