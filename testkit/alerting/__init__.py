"""What notices are sent to: a mail relay and HTTPS receivers of the channels' contracts."""
