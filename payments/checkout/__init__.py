"""Paying at a merchant with a card, the best offer applied, and refunds."""
