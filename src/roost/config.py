"""Settings and limits, frozen: built once by the CLI (flags, then ``ROOST_*`` environment variables)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Limits", "Settings"]


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int = 16 * 1024
    """A message body over this many bytes (UTF-8) is refused with 4413."""
    max_frame_bytes: int = 64 * 1024
    """A client frame over this many bytes is refused with 4413."""
    max_history_page: int = 500
    """The most messages one history request returns."""
    catchup_page: int = 500
    """The most messages of one catch-up page when a subscription catches up (each page also within
    max_page_bytes)."""
    max_page_bytes: int = 256 * 1024
    """Encoded bytes of the messages of one page (history, catch-up, one room of a sync): a page ends before
    the message that would pass it, but holds at least one; has_more (next for a sync) says more follow."""
    max_sync_bytes: int = 2 * 1024 * 1024
    """Encoded bytes of the messages of one POST /api/sync answer over all its rooms; rooms it leaves unread
    or unfinished are in its next, to send again."""
    outbox_frames: int = 4096
    """Frames queued for one connection before it is closed as a slow consumer (4508)."""
    outbox_bytes: int = 4 * 1024 * 1024
    """Bytes queued for one connection before it is closed as a slow consumer (4508)."""
    write_timeout_s: float = 10.0
    """A write to one connection's socket that has waited this long (the client reads nothing, or far too
    little) closes the connection as a slow consumer (4508), catch-up included."""
    close_timeout_s: float = 2.0
    """A connection being closed whose socket has not taken the close frame (and the client's answer) in
    this time is aborted: the client sees the connection end without a close frame."""
    auth_timeout_s: float = 10.0
    """A connection that has not authenticated by then is closed with 4408."""
    heartbeat_s: float = 20.0
    """The server pings each connection this often; no pong in time closes it."""
    presence_interval_s: float = 10.0
    """Each node re-announces its users this often; other nodes forget them after three intervals."""
    head_check_s: float = 10.0
    """How often each node compares the rooms it follows with the store's head (lost-tail check)."""
    sends_per_s: float = 200.0
    """Messages per second per user (over all the user's connections and HTTP), as a token bucket."""
    send_burst: int = 400
    """The token bucket's size: how many sends may come at once before 4429."""
    typing_per_s: float = 2.0
    """Typing signals per second per user (bursts of twice that)."""
    frames_per_s: float = 200.0
    """Frame units per second one connection may use (every frame costs units, malformed ones too; costlier
    requests cost more: docs/protocol.md, "Frame budgets"), as a token bucket; over it: 4429."""
    frame_burst: int = 2000
    """One connection's frame budget bucket: the units it may use at once (a reconnect's subscribes)."""
    user_frames_per_s: float = 400.0
    """Frame units per second per user over all the user's connections to the node; over it: 4429."""
    user_frame_burst: int = 4000
    """The user's frame budget bucket, over all the user's connections to the node."""
    frame_strikes: int = 10
    """Frames refused over the frame budget within 10 s that close the connection with 4429."""
    membership_per_s: float = 5.0
    """Membership changes per second per user (create, join, leave, dm, invite, kick, ban, unban, role,
    uninvite, decline), as a token bucket; over it: 4429, nothing stored."""
    membership_burst: int = 30
    """The membership bucket's size: how many membership changes may come at once before 4429."""
    coalesce_s: float = 0.5
    """Read receipts and presence changes of one user in one room are published at most once per this
    interval: the first at once, the rest folded into one at the interval's end (the latest wins)."""
    max_connections_per_user: int = 32
    """Per node: one more is refused with 4429."""
    max_rooms_per_user: int = 1000
    """Rooms (public, private) one user may be a member of, and, separately, direct conversations one user may
    have opened; creating or joining a room, or opening a direct conversation, beyond it: 4422. Direct
    conversations others opened with the user count against neither."""
    max_mentions: int = 20
    """Distinct users one message may mention (``@name``) who are told in their event stream; the message is
    stored whole, the names past this many are not told (0: nobody is; at most 50 are stored with a message)."""
    max_room_mention_members: int = 50
    """The largest room (in members) where @room and @here may be used (by its owner and admins, or anyone in a
    direct conversation), each member being told in their event stream; in a larger room they are refused (4403)."""
    revocation_check_s: float = 10.0
    """How often each node re-reads the revoked users and closes their void connections (4401), in case the
    bus lost a revocation's notice; the notice itself closes them at once."""
    probe_interval_s: float = 1.0
    """How often readiness writes to the store and round-trips a message through the bus (/readyz)."""
    probe_timeout_s: float = 1.5
    """A probe with no answer in this time fails (a blackholed broker answers nothing)."""
    unready_grace_s: float = 3.0
    """Not ready for this long: the node closes its clients with 4504 so they fail over to another node."""
    idle_timeout_s: float = 15.0
    """A connection with no request in progress and no byte of the next one (before its first request, or
    between keep-alive requests) is closed after this long."""
    header_timeout_s: float = 10.0
    """From the first byte of a request to the end of its head (request line and headers): a slower one
    is answered 408 and closed (slowloris)."""
    request_timeout_s: float = 30.0
    """An HTTP request (not a WebSocket) not answered this long after its head arrived (a body trickled
    in, an answer not read) has its connection closed."""
    max_pending_connections: int = 10000
    """Connections per node that are not an authenticated WebSocket (HTTP, or a WebSocket before its
    auth), at most half the file-descriptor limit. A new one over it sheds the oldest idle one."""
    max_pending_per_source: int = 1000
    """The same per client IP address (0: no limit, e.g. behind a reverse proxy)."""
    connection_reserve: int = 64
    """Connections admitted over those caps when none can be shed; they are served /healthz, /livez,
    /readyz, /metrics and /ws only (429 otherwise), and more are refused with 429 at once."""
    retention_max_messages: int = 0
    """Server-wide retention: the newest N messages each room keeps (0: no limit). A room's owner or admin may
    set the room's own (PUT /api/rooms/{room}/retention); the store URL's keep=N caps every room regardless."""
    retention_max_age_s: int = 0
    """Server-wide retention: messages older than this many seconds are dropped (0: no limit); per room as
    above. Applied by the retention task, so a message may outlive it by up to retention_interval_s."""
    retention_interval_s: float = 60.0
    """How often the retention task makes a pass over the rooms, on the one node that holds its lease."""
    erase_deletes: bool = False
    """true: every delete is an erasure (the text is removed from the store, docs/backends.md), as with the
    delete's own erase flag."""
    max_consumers: int = 100
    """Durable event consumers (webhooks) on the server, over all owners; creating one more is refused with
    4422."""
    consumer_max_failures: int = 50
    """Consecutive failed deliveries after which a consumer is paused until resumed (the default of a new
    consumer, which may set its own)."""
    consumer_backoff_s: float = 0.5
    """The wait before retrying a failed delivery; it doubles with each consecutive failure (drawn from its
    upper half: jitter), up to consumer_max_backoff_s."""
    consumer_max_backoff_s: float = 30.0
    """The longest wait between two attempts of one delivery."""
    consumer_timeout_s: float = 10.0
    """A delivery not answered in this time is a failed attempt (retried)."""
    consumer_lease_s: float = 10.0
    """A consumer's lease: the node delivering it renews it every third of this; when that node dies, another
    node takes the consumer over after at most this long (plus one scan)."""
    consumer_cursor_interval_s: float = 0.1
    """How often the node delivering a consumer stores its cursors while it delivers (also before each wait,
    each retry, and when the node stops): 0 stores after every event. A kill of that node may deliver again
    what it delivered in this interval (at least once); each stored cursor is a write to the store's engine.
    """
    consumer_scan_s: float = 5.0
    """How often each node reads the consumer list (new, deleted, leases to take) and the rooms of each
    consumer it delivers (new rooms, the lag, and events whose bus nudge was lost)."""
    max_push_devices: int = 10
    """Web Push subscriptions (devices) one user may register; one more is refused with 4422 (registering the
    same endpoint again replaces it and counts once)."""
    push_include_text: bool = False
    """true: a push carries the message's text (at most 1000 characters), encrypted for the device but through
    the browser vendor's push service; false: only the room, seq, kind and sender (docs/security.md)."""
    push_allow_http: bool = False
    """true: subscriptions may name http:// endpoints on a loopback address (tests, development); false: only
    https:// endpoints, as every browser's push service has."""
    push_ttl_s: int = 86400
    """The TTL a push service keeps an undelivered push (RFC 8030); events older than this are not pushed."""
    push_timeout_s: float = 10.0
    """A push service that has not answered in this time: the attempt failed (retried)."""
    push_max_attempts: int = 5
    """Attempts of one push to one device (429, 5xx, timeouts, connection errors; with the consumers' backoff)
    before it is dropped."""
    searches_per_s: float = 5.0
    """Searches (GET /api/search) per second per user, bursts of four times that; over it: 4429."""
    search_rescan_s: float = 5.0
    """How often the search indexer reads the store's room list for new rooms: a new room's first messages are
    found after at most this long, later ones at once."""
    max_attachment_bytes: int = 10 * 1024 * 1024
    """An uploaded file over this many bytes is refused with 4413 as soon as its body passes it (or at once when
    its Content-Length says so); nothing is stored."""
    max_image_pixels: int = 50_000_000
    """An image whose header declares more pixels (width x height) is refused with 4413 before it is decoded
    (decompression bombs)."""
    uploads_per_s: float = 2.0
    """Uploads per second per user (bursts of five times that); over it: 4429."""
    attachment_orphan_s: float = 86400.0
    """An upload no message names is removed this long after it was made (also a send that claimed it but whose
    message was never stored)."""
    attachment_sweep_s: float = 300.0
    """How often the attachment sweeper makes a pass (on the one node that holds its lease): it removes orphaned
    uploads and the files of messages deleted or dropped by retention that a deletion did not remove at once."""


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    ws_transport: str = "aiohttp"
    """The WebSocket server: ``aiohttp`` (``/ws`` on ``port``, beside the HTTP API) or ``picows`` (``/ws`` on
    ``ws_port``, a listener of its own; the HTTP API and the page stay on ``port``)."""
    ws_port: int | None = None
    """With ``picows``: the WebSocket port; None: ``port`` + 1 (0 when ``port`` is 0: any free port)."""
    workers: int = 1
    """Processes of one ``roost serve`` sharing its listening port(s), each a full node (roost/workers/); 1: this
    process is the node."""
    metrics_port_base: int | None = None
    """Worker i (0 with one process) also serves ``/livez``, ``/readyz`` and ``/metrics`` on this port + i; 0: a
    free port each; None: not."""
    ws_compression: str = "off"
    """``deflate``: permessage-deflate (RFC 7692) for the WebSocket clients that offer it; ``off``: never. aiohttp
    only (picows cannot do it: refused at start-up)."""
    ws_deflate_window_bits: int = 15
    """With ``deflate``: the server's compression window, 9-15 bits (``server_max_window_bits``), at most what the
    client allows; smaller saves memory per connection and compresses a little less (gateway/deflate.py)."""
    data_dir: str = "./roost-data"
    store: str | None = None
    bus: str | None = None
    secret: str | None = None
    """HS256 secret for tokens; when None (and no key is given), one is generated in the data directory."""
    public_key_file: str | None = None
    """PEM public key (RSA or EC) for RS256/ES256 tokens from an identity provider."""
    jwks_file: str | None = None
    """A JWKS document (JSON file); the key is picked by the token's ``kid``."""
    issuer: str | None = "roost"
    audience: str | None = None
    dev_login: bool = True
    """Allow ``POST /api/login`` with just a name. Insecure: for the embedded default only."""
    allowed_origins: tuple[str, ...] = ()
    """Origins allowed to open WebSockets besides the server's own (cross-site WebSocket hijacking)."""
    admins: tuple[str, ...] = ()
    """Users who are server administrators (the admin HTTP API) whatever their token says; a token with
    ``"roles": ["admin"]`` is one too."""
    allowed_hosts: tuple[str, ...] = ()
    """Host names requests may carry in ``Host`` besides IP addresses and localhost (DNS rebinding); empty: only
    those in development mode, any with keys; ``*``: any (gateway/hosts.py)."""
    push_subject: str = "mailto:roost@localhost"
    """The VAPID ``sub`` claim (RFC 8292): how a push service reaches the operator (mailto: or https:)."""
    blobs: str | None = None
    """Where attachments are kept: ``local`` (``DATA_DIR/attachments``, this node's disk), ``s3://BUCKET[/PREFIX]``
    (an S3-compatible bucket shared by the nodes) or ``off``; None: ``local`` (attachments/__init__.py)."""
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    attachment_types: tuple[str, ...] = ()
    """The sniffed types uploads may have; empty: every type (service/attachments.py, ``DEFAULT_TYPES``)."""
    search: str | None = None
    """The search index: ``off``, ``sqlite`` (a file in the data directory, one per node) or a ``postgresql://`` URL;
    None: the PostgreSQL store's own database with a PostgreSQL store, else ``sqlite`` (search/__init__.py)."""
    search_in_process: bool = False
    """Run the search indexer in the node's own process (tests, debugging); by default it runs in a child process at
    a lower CPU priority, so it never competes with the event loop (search/process.py)."""
    search_nice: int = 10
    """The niceness the search indexer's child process adds to its own (``os.nice``): 0 keeps the node's priority."""
    limits: Limits = field(default_factory=Limits)
