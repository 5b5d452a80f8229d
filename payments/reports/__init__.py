"""Finance reports read from the ledger and the payment records: nothing here moves money."""
