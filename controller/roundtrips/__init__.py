"""Round-trip monitors that mail only their own mailbox: send caps, delivery record and back-off."""
