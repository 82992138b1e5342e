"""The AlertSite-compatible API: its location table, a pure mapping and its routes."""
