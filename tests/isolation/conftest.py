"""Tests of the network namespaces the agent self-check tests run agents in (testkit/netns.py)."""

from testkit.netns import netns as netns
