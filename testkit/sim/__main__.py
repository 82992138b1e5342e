"""`python -m testkit.sim`: see testkit.sim.cli."""

import sys

from testkit.sim.cli import run

sys.exit(0 if run(sys.argv[1:]) else 1)
