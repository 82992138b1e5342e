"""What the controller and the agents both import: wire messages, subjects, settings, logging."""

__version__ = "0.1.0"
