"""Who may do what: organizations, users, customers, passwords and tokens, and the throttle on
logins to mailprobe itself."""
