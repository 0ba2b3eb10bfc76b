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
    """Membership changes per second per user (create, join, leave, dm, invite, kick, ban, unban, role), as
    a token bucket; over it: 4429, nothing stored."""
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


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
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
    limits: Limits = field(default_factory=Limits)
