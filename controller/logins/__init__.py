"""Logins to the accounts monitors watch: the back-off that never locks them out and the cap per
organization and account."""
