"""Reports the world's senders send about a monitored domain: TLS-RPT (RFC 8460) and DMARC
aggregate reports (RFC 7489), received by HTTPS POST or read from a mailbox, parsed
defensively, stored once, counted, and turned into posture findings."""
