"""Where a node's settings come from: built-in defaults, then a TOML file, then ``ROOST_*`` environment
variables, then command-line flags (each overrides the one before).

One table (``OPTIONS`` and the fields of ``Limits``) drives all four, the validation and the reference in
docs/operations.md (a test compares them), so a setting cannot exist in one place and not another. A
mistake (an unknown key, a value of the wrong type) is one line naming it, never a traceback.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Limits
from .protocol.spec import attribute_docs

__all__ = ["OPTIONS", "ConfigError", "Option", "limit_fields", "reference", "resolve"]


class ConfigError(Exception):
    """One or more mistakes, one per line."""

    def __init__(self, mistakes: Sequence[str]) -> None:
        super().__init__("\n".join(mistakes))
        self.mistakes = list(mistakes)


@dataclass(frozen=True)
class Option:
    name: str
    """The key in the file; the flag is ``--`` + name with dashes; the variable ``ROOST_`` + NAME."""
    kind: type
    default: Any
    help: str
    secret: bool = False
    env_name: str | None = None
    """The variable's name where it is not ``ROOST_`` + NAME (kept from before the file existed)."""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return self.env_name or "ROOST_" + self.name.upper()


OPTIONS: tuple[Option, ...] = (
    Option("host", str, "127.0.0.1", "address to listen on"),
    Option("port", int, 8080, "port to listen on"),
    Option(
        "ws_transport",
        str,
        "aiohttp",
        "the WebSocket server: aiohttp (/ws on the HTTP port) or picows (/ws on ws_port, the HTTP API and page"
        " staying on port)",
    ),
    Option("ws_port", int, None, "with ws_transport picows: the WebSocket port (default: port + 1; 0: any free port)"),
    Option(
        "workers",
        int,
        1,
        "processes sharing the listening port(s), each a full node with its own node id (one per core; a store"
        " several nodes can share only: not the embedded SQLite store; docs/deploy.md)",
    ),
    Option(
        "metrics_port_base",
        int,
        None,
        "also serve /livez, /readyz and /metrics of worker i (0, 1, ...) on this port + i, to scrape each"
        " worker (0: any free port each, printed at start)",
    ),
    Option(
        "ws_compression",
        str,
        "off",
        "off or deflate: permessage-deflate (RFC 7692) for WebSocket clients that offer it (100-250 KB more"
        " memory per connection that uses it; ws_transport aiohttp only)",
    ),
    Option(
        "ws_deflate_window_bits",
        int,
        15,
        "with ws_compression deflate: the server's compression window, 9 to 15 bits (at most what the client"
        " allows); 12 saves about 100 KB per busy compressed connection for a few percent more bytes",
    ),
    Option("data_dir", str, "./roost-data", "the embedded store's folder and the generated token secret"),
    Option("store", str, None, "store URL (default: SQLite in data_dir)"),
    Option("bus", str, None, "bus URL (default: in-process; a Redis or NATS store implies its own engine)"),
    Option(
        "search",
        str,
        None,
        "search index: off, sqlite (search.sqlite3 in data_dir, one per node) or a postgresql:// URL"
        " (default: the PostgreSQL store's database with a PostgreSQL store, else sqlite)",
    ),
    Option(
        "search_in_process",
        bool,
        False,
        "run the search indexer in the node's process (default: a child process at a lower CPU priority;"
        " always in the node's process with a Kafka store)",
    ),
    Option("search_nice", int, 10, "niceness added to the search indexer's child process (0: the node's priority)"),
    Option(
        "blobs",
        str,
        None,
        "attachments: local (data_dir/attachments, this node's disk), s3://BUCKET[/PREFIX] (shared by the nodes)"
        " or off (default: local)",
    ),
    Option("s3_endpoint", str, None, "the S3 API's URL for --blobs s3:// (default: AWS)"),
    Option("s3_region", str, None, "the S3 region (default: us-east-1)"),
    Option("s3_access_key", str, None, "the S3 access key (default: botocore's sources, e.g. AWS_ACCESS_KEY_ID)"),
    Option("s3_secret_key", str, None, "the S3 secret key (default: botocore's sources)", secret=True),
    Option(
        "attachment_type",
        list,
        [],
        "a type uploads may have, sniffed from the bytes (image/png, image/jpeg, image/gif, image/webp,"
        " application/pdf, text/plain, application/octet-stream); default: all",
        env_name="ROOST_ATTACHMENT_TYPES",
    ),
    Option("secret", str, None, "HS256 token secret (default: generated into data_dir)", secret=True),
    Option("jwt_public_key", str, None, "PEM file: accept RS256/ES256 tokens"),
    Option("jwks", str, None, "JWKS file: accept tokens signed by its keys (by kid)"),
    Option("issuer", str, "roost", "required iss claim ('' for none)"),
    Option("audience", str, None, "required aud claim"),
    Option(
        "allow_origin",
        list,
        [],
        "Origins allowed to open WebSockets besides the server's own",
        env_name="ROOST_ALLOWED_ORIGINS",
    ),
    Option(
        "allowed_host",
        list,
        [],
        "host names clients may use in Host (DNS rebinding); IP addresses and localhost always pass; '*': any",
        env_name="ROOST_ALLOWED_HOSTS",
    ),
    Option(
        "admin", list, [], "users who are server administrators, whatever their token says", env_name="ROOST_ADMINS"
    ),
    Option("log_level", str, "INFO", "DEBUG, INFO, WARNING, ERROR"),
    Option("log_format", str, "text", "text or json: one line per event"),
    Option("insecure_dev_login", bool, False, "allow the development login on a non-loopback host"),
    Option("push_subject", str, "mailto:roost@localhost", "the VAPID sub claim of Web Push: mailto: or https: contact"),
)
_BY_NAME = {o.name: o for o in OPTIONS}
_CHOICES = {
    "log_level": ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
    "log_format": ("text", "json"),
    "ws_transport": ("aiohttp", "picows"),
    "ws_compression": ("off", "deflate"),
}
"""Settings with a closed set of values (log_level is compared in upper case, log_format in lower)."""
_MINIMUM = {"workers": 1, "metrics_port_base": 0}
"""Integer settings with a lower bound."""


def limit_fields() -> list[dataclasses.Field[Any]]:
    return list(dataclasses.fields(Limits))


def _convert(where: str, name: str, kind: type, raw: Any, from_text: bool) -> tuple[Any, str | None]:
    """``raw`` as ``kind``; text (env, flags) is parsed, TOML values must already have the type."""
    try:
        if kind is bool:
            if from_text:
                text = str(raw).strip().lower()
                if text not in ("1", "true", "yes", "0", "false", "no"):
                    raise ValueError
                return text in ("1", "true", "yes"), None
            if not isinstance(raw, bool):
                raise ValueError
            return raw, None
        if kind is list:
            if from_text:
                return [part for part in str(raw).split(",") if part], None
            if not (isinstance(raw, list) and all(isinstance(x, str) for x in raw)):
                raise ValueError
            return list(raw), None
        if kind is float:
            if isinstance(raw, bool) or (not from_text and not isinstance(raw, int | float)):
                raise ValueError
            return float(raw), None
        if kind is int:
            if isinstance(raw, bool) or (not from_text and not isinstance(raw, int)):
                raise ValueError
            return int(raw), None
        if not from_text and not isinstance(raw, str):
            raise ValueError
        return str(raw), None
    except ValueError:
        wanted = {list: "a list of strings", int: "an integer", float: "a number", bool: "true or false"}
        return None, f"{where}: {name} = {raw!r} is not {wanted.get(kind, 'a string')}"


def _limit_kind(field: dataclasses.Field[Any]) -> type:
    return {"int": int, "float": float, "bool": bool}[str(field.type)]


def resolve(
    file: str | None, env: Mapping[str, str], flags: Mapping[str, Any], limit_flags: Sequence[str] = ()
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(settings by option name, limits by field name, where each value came from), or ``ConfigError``."""
    mistakes: list[str] = []
    values: dict[str, Any] = {o.name: o.default for o in OPTIONS}
    limits: dict[str, Any] = {f.name: f.default for f in limit_fields()}
    source: dict[str, str] = {name: "default" for name in [*values, *(f"limits.{n}" for n in limits)]}
    fields = {f.name: f for f in limit_fields()}

    def put(where: str, name: str, raw: Any, from_text: bool) -> None:
        if name.startswith("limits."):
            field = fields.get(name.removeprefix("limits."))
            if field is None:
                mistakes.append(f"{where}: unknown limit {name.removeprefix('limits.')!r}")
                return
            value, problem = _convert(where, name, _limit_kind(field), raw, from_text)
            target, key = limits, field.name
        else:
            option = _BY_NAME.get(name)
            if option is None:
                mistakes.append(f"{where}: unknown setting {name!r}")
                return
            value, problem = _convert(where, name, option.kind, raw, from_text)
            if problem is None and name in _CHOICES:
                value = value.upper() if name == "log_level" else value.lower()
                if value not in _CHOICES[name]:
                    problem = f"{where}: {name} = {raw!r} is not one of {', '.join(_CHOICES[name])}"
            if problem is None and name in _MINIMUM and value < _MINIMUM[name]:
                problem = f"{where}: {name} = {raw!r} is less than {_MINIMUM[name]}"
            target, key = values, name
        if problem is not None:
            mistakes.append(problem)
            return
        target[key] = value
        source[name] = where

    if file is not None:
        path = Path(file)
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError([f"{file}: cannot read it ({exc.strerror or exc})"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{file}: not TOML ({exc})"]) from None
        for key, raw in document.items():
            if key == "limits" and isinstance(raw, dict):
                for name, value in raw.items():
                    put(file, f"limits.{name}", value, from_text=False)
            else:
                put(file, key, raw, from_text=False)
    for option in OPTIONS:
        if option.env in env:
            put(option.env, option.name, env[option.env], from_text=True)
    for variable in sorted(v for v in env if v.startswith("ROOST_LIMIT_")):
        put(variable, f"limits.{variable.removeprefix('ROOST_LIMIT_').lower()}", env[variable], from_text=True)
    for name, raw in flags.items():
        if raw is not None:
            put(_BY_NAME[name].flag, name, raw, from_text=not isinstance(raw, bool | list))
    for item in limit_flags:
        name, sep, raw = item.partition("=")
        if not sep:
            mistakes.append(f"--limit {item!r}: expected NAME=VALUE")
            continue
        put("--limit", f"limits.{name.strip()}", raw.strip(), from_text=True)
    if not mistakes:
        mistakes += combination_mistakes(values, source)
    if mistakes:
        raise ConfigError(mistakes)
    return values, limits, source


def combination_mistakes(values: Mapping[str, Any], source: Mapping[str, str]) -> list[str]:
    """Settings each valid alone that cannot go together: refused at start-up, never quietly ignored."""
    mistakes = []
    if values["ws_compression"] != "off" and values["ws_transport"] == "picows":
        where = source.get("ws_compression", "default")
        mistakes.append(f"{where}: {COMPRESSION_NEEDS_AIOHTTP}")
    bits = values["ws_deflate_window_bits"]
    if not 9 <= bits <= 15:
        where = source.get("ws_deflate_window_bits", "default")
        mistakes.append(f"{where}: ws_deflate_window_bits = {bits} is not between 9 and 15")
    return mistakes


COMPRESSION_NEEDS_AIOHTTP = (
    "ws_compression = deflate needs ws_transport = aiohttp: picows cannot do permessage-deflate (RFC 7692)"
)


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("ROOST_")}


def _limit_docs() -> dict[str, str]:
    """Each Limits field's docstring (the string right after it in the class body)."""
    return attribute_docs(Limits)


def _shown(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[]" if not value else repr(value)
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def reference() -> str:
    """The Markdown reference of every setting (``roost config reference``; docs/operations.md holds it)."""
    lines = ["| Key | Flag | Environment | Default | Meaning |", "|---|---|---|---|---|"]
    for o in OPTIONS:
        lines.append(f"| `{o.name}` | `{o.flag}` | `{o.env}` | `{_shown(o.default)}` | {o.help} |")
    lines += ["", "| Limit (`[limits]`) | Flag | Environment | Default | Meaning |", "|---|---|---|---|---|"]
    docs = _limit_docs()
    for f in limit_fields():
        env = f"ROOST_LIMIT_{f.name.upper()}"
        value = "true" if _limit_kind(f) is bool else "N"
        lines.append(f"| `{f.name}` | `--limit {f.name}={value}` | `{env}` | `{_shown(f.default)}` | {docs[f.name]} |")
    return "\n".join(lines)
