"""What the tests and the benchmarks share: loopback peers, real servers run for them, the
campaigns' rigs. `tests/` and `bench/` import it; it imports neither of them."""
