"""What the controller tells its operators about itself: the Prometheus metrics (`metrics`).
Below every worker, which call one function here per event; the API serves them."""
