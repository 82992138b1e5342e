"""The probe agent: pulls its country's check jobs, runs them, publishes results."""
