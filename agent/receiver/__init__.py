"""The agent's SMTP receiver: mail for the receiving monitors' addresses (shared.arrivals)."""
