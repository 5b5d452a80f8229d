"""Daily settlement with merchants: what each merchant is owed for a business day, moved towards payout."""
