"""Mail the agents' receivers took (issue 83): the arrivals kept, and the heartbeat verdict."""
