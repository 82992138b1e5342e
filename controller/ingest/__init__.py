"""Results from the RESULTS stream into PostgreSQL: the ingester and the results store."""
