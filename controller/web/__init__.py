"""Everything served over HTTP: the API, the AlertSite-compatible API, the console and status
pages."""
