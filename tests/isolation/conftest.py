"""Tests of the network namespaces the agent self-check tests run agents in (tests/netns.py)."""

from tests.netns import netns as netns
