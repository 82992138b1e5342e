"""The controller: HTTP API, scheduler, ingester and alerter (`python -m controller`)."""
