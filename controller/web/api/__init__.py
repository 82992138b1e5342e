"""The HTTP API: one module per resource, with schemas, guards and errors beside them."""
