"""Web Push to offline devices (RFC 8030, VAPID RFC 8292, payload encryption RFC 8291): a user who is mentioned
or sent a direct message while no connection of theirs is open anywhere gets a notification on each device
they registered (docs/protocol.md, "Web Push"; the rules are R-PUSH-*).

One job per module: ``subscriptions`` (the per-user device registry and the dispatcher's cursors, in the
Directory), ``vapid`` (the server's VAPID key pair, made once and shared by every node), ``online`` (which users
have a connection open on some node, across nodes, through the bus), ``sender`` (encrypt and POST one
notification, classify the answer), ``dispatcher`` (on the one node holding the lease: read the events from
the store after durable cursors and push them at least once).
"""
