"""What ``roost chaos`` can run on and what it can do to it: names the CLI offers without importing the runner."""

from __future__ import annotations

__all__ = ["BACKENDS", "DISK_BACKENDS", "FAULTS"]

FAULTS = ("kill9", "drop", "pause", "slow", "broker", "clusternode", "partition", "cut", "powerloss", "diskfull")
"""``kill9``/``pause``: a Roost node. ``drop``/``slow``: clients' connections. ``broker``: ``kill -9`` of one
engine process the runner started (Redis, NATS, PostgreSQL), restarted after a while. ``clusternode``: ``kill
-9`` of one node of a Redis Cluster or NATS cluster, restarted on its own data (the run waits until the
cluster is whole again). ``partition``/``cut``: one node's links to its engines (each through a TCP proxy the
runner controls) are blackholed (nothing flows, nothing is refused) or cut (reset, new connections refused)
for a while. ``powerloss``: every process of the stack is killed at once and what the disk had not made
durable is dropped (``roost.chaos.powerfs``). ``diskfull``: the stack's disk refuses every write that needs
space for a while; then whatever stopped for it is started again (an operator's restart)."""
BACKENDS = ("embedded", "redis", "nats", "pg-redis", "redis-cluster", "nats-cluster", "kafka")
DISK_BACKENDS = ("embedded", "redis", "nats", "pg-redis")
"""Where the runner owns every process that writes the data, so ``powerloss`` and ``diskfull`` can apply."""
