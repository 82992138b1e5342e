"""DMARC and TLS-RPT reports for the tests: as providers send them, as attackers send them."""
