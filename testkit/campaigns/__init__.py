"""The campaigns that `make soak`/`make bench` run in full against their targets and `make test`
runs short (tests/soak, tests/ha, tests/e2e): their rigs, faults and figures."""
