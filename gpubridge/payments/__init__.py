"""Money: accounts and API keys, the append-only ledger, pricing and limits."""
