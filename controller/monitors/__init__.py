"""The monitor: its kinds, its typed view and store, its validation, and the one write path."""
