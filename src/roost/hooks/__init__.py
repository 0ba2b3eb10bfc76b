"""Durable event consumers (webhooks): Roost POSTs each matching event of its rooms to an HTTP endpoint,
at least once, in seq order per room, signed, with the consumer's per-room cursor stored in the same engine
as the messages (docs/integration.md, "Durable event consumers"; the rules are R-HOOK-* in docs/protocol.md).

One job per module: ``signing`` (the HMAC header, for Roost and for receivers), ``filters`` (which rooms and
events a consumer takes), ``backoff`` (the retry delays), ``registry`` (records, statuses and cursors in the
Directory), ``deliverer`` (one consumer's delivery loop, on the node holding its lease), ``supervisor`` (per
node: who holds which consumer's lease, starting and stopping deliverers), ``manage`` (what the HTTP API and
the CLI do: create, list, delete, resume, rewind).
"""
