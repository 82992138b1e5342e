"""Monitor secrets: encrypted at rest, sealed to the country that runs the check."""
