"""`make bench`: every benchmark with its target; exits 1 when a target is missed."""

import sys

from bench import api, probers


def main() -> int:
    results = {"api": api.run(), "probers": probers.run()}
    missed = [name for name, ok in results.items() if not ok]
    print("targets missed: " + ", ".join(missed) if missed else "all targets met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
