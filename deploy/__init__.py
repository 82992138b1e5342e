"""Operator tooling for deploy/ (NATS users and permissions); not part of the installed package."""
