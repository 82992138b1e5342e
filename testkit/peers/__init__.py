"""Small protocol servers on loopback for tests: real sockets, scripted just enough."""
