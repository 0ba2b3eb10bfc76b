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
    """Messages per store read when a subscription catches up."""
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
    """Rooms one user may be a member of; creating, joining or opening a direct conversation beyond it: 4422."""
    probe_interval_s: float = 1.0
    """How often readiness writes to the store and round-trips a message through the bus (/readyz)."""
    probe_timeout_s: float = 1.5
    """A probe with no answer in this time fails (a blackholed broker answers nothing)."""
    unready_grace_s: float = 3.0
    """Not ready for this long: the node closes its clients with 4504 so they fail over to another node."""


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
    admins: tuple[str, ...] = ()
    """Users who are server administrators (the admin HTTP API) whatever their token says; a token with
    ``"roles": ["admin"]`` is one too."""
    """Origins allowed to open WebSockets besides the server's own (cross-site WebSocket hijacking)."""
    limits: Limits = field(default_factory=Limits)
