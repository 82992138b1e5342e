"""Mail security posture: what each country sees of a monitored server (facts), what it
normally sees (baseline), and findings when that goes wrong (rules); `observe` stores it all."""
