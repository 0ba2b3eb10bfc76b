"""KafkaStore: Store + Directory on one Kafka topic (aiokafka). Pair it with a Redis or NATS bus.

Design (docs/kafka.md has the failure cases and what was tested against which broker):

* **One topic, rooms hashed to partitions.** Every record of a room (its creation, membership changes,
  messages, join/leave events, retention trims, read positions) is produced with the room as key to partition
  ``murmur2(room) % partitions``, the Java client's default partitioner. Kafka keeps one order per
  partition, so every record of a room has one order that every reader sees.
* **Every node consumes every partition, in order, from offset 0** (no consumer group, so no rebalance)
  and applies each record with one deterministic function of the log: a room's first ``create`` wins,
  a message whose ``(room, sender, cmid)`` was seen before is a duplicate and skipped, a new one gets
  ``head + 1``. The per-room seq is therefore the same on every node and after every restart: it is a
  function of partition order, not of which node produced the record. The directory (rooms, members)
  is replayed the same way.
* **In memory per room:** epoch, first, head, the offset and timestamp of every kept seq (two int64
  arrays), the idempotency keys of every message ever stored (``(sender, cmid) -> seq, ts, digest``,
  kept after retention trims), the members and their read positions. History is a seek + fetch of
  exactly those offsets (``readers.Readers``), never a scan of the topic.
* **Append** produces with ``acks=all`` and a per-node token in a header, waits for the broker's ack,
  then waits until this node's own consumer has applied that record, which yields the seq (or
  "duplicate", or "conflict"). Two nodes racing the same cmid both produce; the first record in the
  partition wins and the other caller gets that seq with ``duplicate=True``.
* **Reads are linearizable:** ``position``/``read``/directory misses first ask the broker for the
  partitions' end offsets (one coalesced ListOffsets request for all concurrent callers) and wait until
  the consumer has applied up to them, so a node never answers older than an ack another node gave.
* A log that lost records it had acknowledged or shown (the consumer's offset out of range, an end
  offset below what was read, an acked offset holding another record, or ``KafkaLog._verify`` finding the last
  applied record changed), or that lost its beginning (retention), is refused loudly: the store then
  answers every call with ``Unavailable`` (fail-stop; a restart replays what the broker still has).

URL: ``kafka://h1:9092,h2:9092/TOPIC?partitions=8&replicas=3&fetch_wait_ms=5&verify_s=1``. The topic
(default: the ``prefix`` option, else ``roost``) is created on first use with infinite retention and
``cleanup.policy=delete``; its partition count must never change.

Modules, one job each: ``records`` (the topic's value format), ``state`` (the deterministic fold of records
into rooms), ``log`` (produce, consume in order, fence, fail-stop), ``readers`` (history fetches by offset),
``store`` (the ports), ``clients`` (the URL, the error boundary, aiokafka shutdown).
"""

from __future__ import annotations

from .clients import parse_kafka_url
from .store import KafkaStore

__all__ = ["KafkaStore", "parse_kafka_url"]
