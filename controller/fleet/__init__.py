"""The agents as the controller sees them: live agents from heartbeats, and their self-checks."""
