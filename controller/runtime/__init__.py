"""The controller process: the roles `serve` runs, the NATS pipeline they share, and the metrics."""
