"""Stripe events about payouts: registered with the webhook endpoint's dispatcher."""
