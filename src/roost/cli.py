"""``roost``: serve, config, spec, token, revoke, apikey, consumer, chaos, bench.

For ``serve`` and ``config show`` flags override ``ROOST_*`` variables, which override a ``--config`` TOML
file, which overrides the defaults (config_sources.py holds the one table of settings)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from .auth import TokenAuthority, load_or_create_secret
from .chaos.faults import BACKENDS, FAULTS
from .config import Limits, Settings
from .config_sources import OPTIONS, ConfigError, environment, limit_fields, reference, resolve
from .logs import configure as configure_logs
from .protocol.errors import Unavailable, UsageError
from .protocol.spec import build as build_spec
from .protocol.spec import render as render_spec

if TYPE_CHECKING:
    from .workers.sockets import Place

__all__ = ["main", "run_worker"]

T = TypeVar("T")


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"ROOST_{name}", default)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roost", description="A chat server that never loses a message.")
    parser.add_argument("--version", action="version", version=f"roost {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run a server node (embedded SQLite + in-process bus by default)")
    _add_setting_flags(serve)

    config = sub.add_parser("config", help="check a configuration file, or show the effective settings")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate FILE: one line per mistake, exit status 2 if any")
    check.add_argument("file")
    config_sub.add_parser("reference", help="every setting as a Markdown table (docs/operations.md)")
    show = config_sub.add_parser("show", help="the effective settings (file, ROOST_* env, flags), secrets redacted")
    _add_setting_flags(show)

    chaos = sub.add_parser("chaos", help="run clients against real nodes with faults, then check the history")
    chaos.add_argument("--backend", choices=BACKENDS, default="embedded")
    chaos.add_argument("--kafka", default="", help="HOST:PORT of a running Kafka broker (the kafka backend)")
    chaos.add_argument("--nodes", type=int, default=2, help="Roost nodes (embedded: always 1)")
    chaos.add_argument("--clients", type=int, default=12)
    chaos.add_argument("--rooms", type=int, default=4)
    chaos.add_argument("--duration", type=float, default=30.0, help="seconds of sending")
    chaos.add_argument("--messages", type=int, default=0, help="stop after this many sends (0: duration only)")
    chaos.add_argument("--rate", type=float, default=100.0, help="sends per second over all clients")
    chaos.add_argument(
        "--faults",
        default=",".join(FAULTS),
        help="comma-separated; each is used where the backend allows it (docs/reliability.md)",
    )
    chaos.add_argument("--fault-every", type=float, default=3.0, help="mean seconds between faults")
    chaos.add_argument("--seed", type=int, default=1)
    chaos.add_argument("--history", help="write the recorded history (JSON) here")
    chaos.add_argument("--dir", help="keep the run's logs and data in this directory (default: a temporary one)")
    chaos.add_argument("--quiet", action="store_true")

    bench = sub.add_parser("bench", help="measure Roost beside the bare ceiling and the Socket.IO peers")
    bench.add_argument("--quick", action="store_true", help="a small smoke run of every scenario (CI)")
    bench.add_argument("--out", default="bench-results.json", help="results (JSON)")
    bench.add_argument("--report", help="also write the Markdown tables here")
    bench.add_argument("--plot", help="also write the SVG plot here")
    bench.add_argument("--only", help="comma-separated targets to run in every scenario they fit (default: the plan's)")
    bench.add_argument("--scenarios", help="comma-separated scenarios: fanout,idle,storm,scale,wire (default: all)")
    bench.add_argument("--peers", default="bench/peers", help="folder of the peer servers")
    bench.add_argument("--from-json", help="render --report/--plot from an earlier results file, run nothing")
    bench.add_argument(
        "--rates", help="comma-separated offered msgs/s for fanout and scale, each measured (no stop at a failing one)"
    )
    bench.add_argument(
        "--generator",
        type=_generators,
        default="python",
        help="the load generator: python (picows, roost.bench.loadgen), node (ws, bench/gen_node beside --peers; "
        "its npm dependencies are installed from the lock on first use) or c (bench/gen_c/gen.c, compiled with the "
        "machine's cc on first use; the fan-out ladder only: fanout, scale), or several comma-separated "
        "(python,node,c) to run every target with each; the same plan and figures, and every record and report row "
        "names its generator",
    )
    bench.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every target this many times, alternating their order; the report adds CPU per frame over rounds",
    )

    spec = sub.add_parser("spec", help="print the protocol's machine-readable definition (docs/protocol.json)")
    which = spec.add_mutually_exclusive_group()
    which.add_argument("--openapi", action="store_true", help="the HTTP API's OpenAPI 3.1 document (docs/openapi.json)")
    which.add_argument(
        "--asyncapi", action="store_true", help="the WebSocket's AsyncAPI 3 document (docs/asyncapi.json)"
    )

    token = sub.add_parser("token", help="print a token for USER (signed with the data directory's secret)")
    token.add_argument("user")
    token.add_argument("--data-dir", default=_env("DATA_DIR", "./roost-data"))
    token.add_argument("--secret", default=_env("SECRET"))
    token.add_argument("--ttl", type=int, default=7 * 24 * 3600, help="lifetime in seconds")
    token.add_argument("--admin", action="store_true", help='add "roles": ["admin"] (the admin HTTP API)')

    revoke = sub.add_parser(
        "revoke", help="void every token of USER issued up to now, on every node (through a running server)"
    )
    revoke.add_argument("user")
    _add_admin_flags(revoke)

    apikey = sub.add_parser("apikey", help="create, list or revoke API keys (through a running server)")
    apikey_sub = apikey.add_subparsers(dest="apikey_command", required=True)
    create = apikey_sub.add_parser("create", help="print a new key (shown once) for a service principal")
    create.add_argument("--principal", required=True, help="the user name the key acts as (a bot user)")
    create.add_argument(
        "--scope",
        required=True,
        help="comma-separated: rooms:read, rooms:write, publish, publish:system, ws, consumers",
    )
    create.add_argument("--name", default="", help="a label for lists")
    _add_admin_flags(create)
    _add_admin_flags(apikey_sub.add_parser("list", help="every key, without its secret"))
    revoke_key = apikey_sub.add_parser("revoke", help="delete key ID: it stops working on every node at once")
    revoke_key.add_argument("id")
    _add_admin_flags(revoke_key)
    _add_consumer_commands(sub)
    return parser


def _from(value: str) -> str:
    if value != "now" and not value.isdigit():
        raise argparse.ArgumentTypeError("now, or a seq (0: every event)")
    return value


def _add_consumer_commands(sub: Any) -> None:
    """``roost consumer ...``: the routes of ``/api/consumers`` on a running node (docs/integration.md)."""
    consumer = sub.add_parser(
        "consumer", help="create, list, show, delete, resume or rewind durable event consumers (webhooks)"
    )
    commands = consumer.add_subparsers(dest="consumer_command", required=True)
    create = commands.add_parser("create", help="print the new consumer's signing secret (shown once)")
    create.add_argument("--url", required=True, help="http:// or https:// endpoint every matching event is POSTed to")
    create.add_argument("--rooms", default="*", help="glob over room names (default: *)")
    create.add_argument("--kinds", help="comma-separated: public, private, direct (default: public,private)")
    create.add_argument(
        "--events", help="comma-separated: messages, edits, deletes, reactions, membership (default: all)"
    )
    create.add_argument("--from", dest="start", type=_from, default="now", help="now (default), or deliver seq > N")
    create.add_argument("--max-failures", type=int, help="failures in a row before it is paused")
    _add_admin_flags(create)
    _add_admin_flags(commands.add_parser("list", help="every consumer you may see: state, failures, lag"))
    for name, what in (
        ("show", "one consumer, with its cursors (JSON)"),
        ("delete", "delete one"),
        ("resume", "resume one"),
    ):
        command = commands.add_parser(name, help=what)
        command.add_argument("id")
        _add_admin_flags(command)
    rewind = commands.add_parser("rewind", help="deliver again the events after --seq (in --room, or every room)")
    rewind.add_argument("id")
    rewind.add_argument("--seq", type=int, required=True)
    rewind.add_argument("--room", help="one room (default: every room)")
    _add_admin_flags(rewind)


def _add_admin_flags(parser: argparse.ArgumentParser) -> None:
    """How a command reaches a running node's admin API."""
    parser.add_argument("--server", default=_env("SERVER", "http://127.0.0.1:8080"), help="any node's URL")
    parser.add_argument("--token", default=_env("ADMIN_TOKEN"), help="an admin token (default: one signed here)")
    parser.add_argument("--data-dir", default=_env("DATA_DIR", "./roost-data"))
    parser.add_argument("--secret", default=_env("SECRET"))


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting of config_sources.OPTIONS; None when not given, so the lower sources show through."""
    parser.add_argument("--config", default=None, help="TOML file of settings (env: ROOST_CONFIG)")
    for option in OPTIONS:
        help_text = f"{option.help} (env: {option.env})"
        if option.kind is bool:
            parser.add_argument(option.flag, action="store_true", default=None, help=help_text)
        elif option.kind is list:
            parser.add_argument(option.flag, action="append", default=None, help=help_text + " (repeatable)")
        else:
            parser.add_argument(option.flag, default=None, help=help_text)
    parser.add_argument(
        "--limit", action="append", default=[], metavar="NAME=VALUE", help="a limit (docs/operations.md; repeatable)"
    )


def _settings(args: argparse.Namespace) -> tuple[Settings, dict[str, Any], dict[str, str]]:
    """Resolve file < env < flags into Settings; a mistake ends the process with one line each (status 2)."""
    env = environment()
    file = args.config or env.get("ROOST_CONFIG")
    flags = {o.name: getattr(args, o.name) for o in OPTIONS}
    try:
        values, limits, source = resolve(file, env, flags, args.limit)
    except ConfigError as exc:
        for mistake in exc.mistakes:
            print(f"roost: error: {mistake}", file=sys.stderr)
        sys.exit(2)
    keyed = values["secret"] is not None or values["jwt_public_key"] is not None or values["jwks"] is not None
    settings = Settings(
        host=values["host"],
        port=values["port"],
        data_dir=values["data_dir"],
        store=values["store"],
        bus=values["bus"],
        search=values["search"],
        search_in_process=values["search_in_process"],
        search_nice=values["search_nice"],
        blobs=values["blobs"],
        s3_endpoint=values["s3_endpoint"],
        s3_region=values["s3_region"],
        s3_access_key=values["s3_access_key"],
        s3_secret_key=values["s3_secret_key"],
        attachment_types=tuple(values["attachment_type"]),
        secret=values["secret"],
        public_key_file=values["jwt_public_key"],
        jwks_file=values["jwks"],
        issuer=values["issuer"] or None,
        audience=values["audience"],
        dev_login=not keyed,
        allowed_origins=tuple(values["allow_origin"]),
        admins=tuple(values["admin"]),
        allowed_hosts=tuple(values["allowed_host"]),
        push_subject=values["push_subject"],
        ws_transport=values["ws_transport"],
        ws_port=values["ws_port"],
        workers=values["workers"],
        metrics_port_base=values["metrics_port_base"],
        ws_compression=values["ws_compression"],
        ws_deflate_window_bits=values["ws_deflate_window_bits"],
        limits=Limits(**limits),
    )
    return settings, values, source


def _show(values: dict[str, Any], settings: Settings, source: dict[str, str]) -> str:
    """TOML a node could be started with, secrets redacted, each line saying where its value came from."""
    lines = []
    for option in OPTIONS:
        value = values[option.name]
        if value is None:
            lines.append(f"# {option.name} = (not set)")
            continue
        line = f"{option.name} = {_toml('***' if option.secret else value)}"
        lines.append(f"{line:<50} # {source[option.name]}")
    lines += ["", "[limits]"]
    for field in limit_fields():
        line = f"{field.name} = {_toml(getattr(settings.limits, field.name))}"
        lines.append(f"{line:<50} # {source['limits.' + field.name]}")
    return "\n".join(lines)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("roost")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
        return "unknown"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


async def _serve(settings: Settings, place: Place | None = None) -> None:
    """Run a node until SIGTERM/SIGINT; ``place``: as a worker of ``roost serve --workers N`` (roost/workers/), which
    also stops when its parent is gone, and leaves the "listening on" line to the parent."""
    # The SQLite writer thread and the event loop share the GIL. With the default 5 ms switch
    # interval a busy loop holds a commit back for up to 5 ms per handoff; 0.5 ms cut the send->ack
    # p99 at 1,500 msgs/s from 54-76 ms to 24-32 ms (`roost bench`, A/B in docs/benchmarks.md).
    sys.setswitchinterval(0.0005)
    from .node import serve

    stop = asyncio.Event()
    started = False
    main = asyncio.current_task()

    def on_signal() -> None:
        if started:
            stop.set()  # a clean stop: drain, close connections with 4509
        elif main is not None:
            main.cancel()  # still waiting for an engine that does not answer: give up now

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    orphaned = None if place is None else asyncio.ensure_future(_when_orphaned(on_signal))
    try:
        async with serve(settings, place) as node:
            started = True
            # What start-up made (modules, engines' clients) lives as long as the process: out of the cycle
            # collector's sight, so a full collection scans only what serving creates. Its pauses landed in
            # the flood test's p99 (20-75 ms with the test process's heap, tests/security/test_flood.py).
            gc.freeze()
            logging.getLogger("roost").info(
                "roost %s serving on %s (store: %s, bus: %s, search: %s, data: %s)",
                _version(),
                node.url,
                settings.store or "sqlite",
                settings.bus or (settings.store if (settings.store or "").startswith(("redis", "nats")) else "local"),
                "off" if node.search_index is None else "postgresql" if node.search_index.shared else "sqlite",
                settings.data_dir,
            )
            if place is None:
                print(f"roost: listening on {node.url}", flush=True)
            else:
                logging.getLogger("roost").info("roost: worker %d of %d serving", place.index, place.count)
            await stop.wait()
            logging.getLogger("roost").info("roost: stopping (signal): draining, closing connections with 4509")
        logging.getLogger("roost").info("roost: stopped")
    except asyncio.CancelledError:
        if started:
            raise
        logging.getLogger("roost").warning("roost: stopped by a signal while starting")
    finally:
        if orphaned is not None:
            orphaned.cancel()


async def _when_orphaned(stop: Callable[[], None]) -> None:
    """A worker: its parent's end (the end of stdin, workers/child.py) stops it as a signal would."""
    from .workers.child import parent_gone

    await parent_gone()
    logging.getLogger("roost").warning("roost: the workers' parent is gone: stopping")
    stop()


def run_worker(settings: Settings, place: Place) -> int:
    """A worker's node (roost/workers/child.py): ``roost serve`` on the sockets it was handed; its exit status (2: its
    settings are refused, which a restart cannot mend)."""
    try:
        _run(_serve(settings, place))
    except UsageError as exc:
        print(f"roost: error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    except (Unavailable, OSError) as exc:
        print(f"roost: error: worker {place.index}: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    return 0


async def _until_signalled(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``; SIGINT/SIGTERM cancel it, so its cleanup (stopping the processes it started) runs."""
    task = asyncio.ensure_future(coro)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    return await task


def _chaos(args: argparse.Namespace) -> int:
    import msgspec

    from .chaos.checker import check
    from .chaos.runner import ChaosConfig, run

    faults = tuple(f for f in args.faults.split(",") if f)
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        print(f"roost: error: unknown fault(s) {', '.join(unknown)} (known: {', '.join(FAULTS)})", file=sys.stderr)
        return 2
    config = ChaosConfig(
        backend=args.backend,
        kafka=args.kafka,
        nodes=args.nodes,
        clients=args.clients,
        rooms=args.rooms,
        duration_s=args.duration,
        max_messages=args.messages,
        rate=args.rate,
        faults=faults,
        fault_every_s=args.fault_every,
        seed=args.seed,
        base=Path(args.dir) if args.dir else None,
        progress=None if args.quiet else lambda line: print(line, flush=True),
    )
    history = asyncio.run(_until_signalled(run(config)))
    if args.history:
        Path(args.history).write_bytes(msgspec.json.encode(history))
    report = check(history)
    print(report.table())
    for violation in report.violations[:20]:
        print(f"\nVIOLATION {violation.kind}: {violation.detail}")
        for line in violation.evidence:
            print(f"    {line}")
    return 0 if report.ok else 1


def _generators(value: str) -> str:
    """``--generator``: one load generator or several, comma-separated, each known (src/roost/bench/generators.py)."""
    from .bench.generators import GENERATORS

    names = value.split(",")
    unknown = [n for n in names if n not in GENERATORS]
    if unknown or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"{value!r}: one or more of {', '.join(GENERATORS)}, each once")
    return value


def _bench(args: argparse.Namespace) -> int:
    import json

    from .bench.report import markdown, svg
    from .bench.runner import full_plan, quick_plan, run_bench

    if args.from_json:
        result = json.loads(Path(args.from_json).read_text())
    else:
        plan = quick_plan() if args.quick else full_plan()
        if args.scenarios:
            wanted = set(args.scenarios.split(","))
            plan.scenarios = {k: v for k, v in plan.scenarios.items() if k in wanted}
        if args.rates:
            plan.fixed_rates([int(rate) for rate in args.rates.split(",")])
        only = set(args.only.split(",")) if args.only else None
        bench = run_bench(plan, Path(args.out), Path(args.peers), only, rounds=args.rounds, generator=args.generator)
        result = asyncio.run(_until_signalled(bench))  # a signal stops the servers it started
    if args.report:
        Path(args.report).write_text(markdown(result))
    if args.plot:
        Path(args.plot).write_text(svg(result))
    print(markdown(result))
    failed = [r for r in result["records"] if r.get("error")]
    for record in failed:
        print(f"error: {record['scenario']} {record['target']}: {record['error']}", file=sys.stderr)
    return 1 if failed else 0


def _run(coro: object) -> None:
    try:
        import uvloop

        uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        asyncio.run(coro)  # type: ignore[arg-type]


def _fail(status: int, message: str) -> NoReturn:
    """One line, no traceback: a mistake in how the server was started is not a crash."""
    print(f"roost: error: {message}", file=sys.stderr)
    sys.exit(status)


def _supervise(settings: Settings, values: dict[str, Any]) -> int:
    """``--workers N``: this process binds and supervises, N worker processes serve (roost/workers/)."""
    from .workers import refusal
    from .workers.supervisor import supervise

    problem = refusal(settings)
    if problem is not None:
        _fail(2, problem)
    try:
        return asyncio.run(supervise(settings, values["log_level"], values["log_format"]))
    except OSError as exc:  # a port is taken, the address is not ours, the data dir is not writable
        _fail(1, f"cannot start on {settings.host}:{settings.port} with data in {settings.data_dir}: {exc}")


def _spec_text(args: argparse.Namespace) -> str:
    """docs/protocol.json, docs/openapi.json or docs/asyncapi.json, generated from the server's own types."""
    if args.openapi:
        from .gateway import openapi  # the HTTP handlers: imported only for this

        return openapi.render(openapi.build())
    if args.asyncapi:
        from .protocol import asyncapi

        return asyncapi.render(asyncapi.build())
    return render_spec(build_spec())


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "config":
        if args.config_command == "check":
            try:
                resolve(args.file, {}, {})
            except ConfigError as exc:
                for mistake in exc.mistakes:
                    print(f"roost: error: {mistake}", file=sys.stderr)
                sys.exit(2)
            print(f"roost: {args.file} is valid")
            return
        if args.config_command == "reference":
            print(reference())
            return
        settings, values, source = _settings(args)
        print(_show(values, settings, source))
        return
    if args.command == "serve":
        settings, values, _ = _settings(args)
        configure_logs(values["log_level"], values["log_format"])
        if settings.dev_login and not _loopback(settings.host):
            if not values["insecure_dev_login"]:
                _fail(
                    2,
                    f"--host {settings.host} is not a loopback address and no --secret, --jwt-public-key or --jwks"
                    " is set, so the development login would let anyone sign in as anyone: set one of them, or"
                    " pass --insecure-dev-login to allow it anyway",
                )
            logging.getLogger("roost").warning(
                "INSECURE: the development login is open on %s (--insecure-dev-login): anyone can sign in as anyone",
                settings.host,
            )
        if settings.workers > 1:
            sys.exit(_supervise(settings, values))
        try:
            _run(_serve(settings))
        except (UsageError, Unavailable) as exc:
            _fail(1, exc.args[0] if exc.args else str(exc))
        except OSError as exc:  # the port is taken, the address is not ours, the data dir is not writable
            _fail(1, f"cannot start on {settings.host}:{settings.port} with data in {settings.data_dir}: {exc}")
    elif args.command == "chaos":
        sys.exit(_chaos(args))
    elif args.command == "bench":
        sys.exit(_bench(args))
    elif args.command == "spec":
        sys.stdout.write(_spec_text(args))
    elif args.command == "token":
        secret = args.secret or load_or_create_secret(Path(args.data_dir))
        claims = {"roles": ["admin"]} if args.admin else {}
        print(TokenAuthority(secret).issue(args.user, ttl_s=args.ttl, **claims))
    elif args.command == "revoke":
        _revoke(args)
    elif args.command == "apikey":
        _apikey(args)
    elif args.command == "consumer":
        _consumer(args)
    else:  # pragma: no cover - argparse rejects it first
        sys.exit(2)


def _admin_call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    """One call of a running node's admin API (the CLI never opens the store itself), with ``--token`` or an admin
    token signed from the data directory's or ``--secret`` key; a refusal ends the process with one line."""
    import urllib.error
    import urllib.request

    token = args.token
    if not token:
        secret = args.secret or load_or_create_secret(Path(args.data_dir))
        token = TokenAuthority(secret).issue("roost-cli", ttl_s=60, roles=["admin"])
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {token}"}
    request = urllib.request.Request(f"{args.server.rstrip('/')}{path}", data, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        _fail(1, f"{args.server} refused: {exc.code} {exc.read().decode(errors='replace')}")
    except (urllib.error.URLError, OSError) as exc:
        _fail(1, f"cannot reach {args.server}: {exc}")


def _revoke(args: argparse.Namespace) -> None:
    """``POST /api/admin/users/USER/revoke-tokens`` on a running node: the node writes the revocation to the
    shared store and announces it, so it holds on every node."""
    import urllib.parse

    answer = _admin_call(args, "POST", f"/api/admin/users/{urllib.parse.quote(args.user, safe='')}/revoke-tokens")
    print(f"roost: tokens of {answer['user']} issued at or before {answer['revoked_before']} are void")


def _apikey(args: argparse.Namespace) -> None:
    """``roost apikey create|list|revoke``: the admin API's ``/api/admin/apikeys`` routes. ``create`` prints the
    key alone on stdout (``KEY=$(roost apikey create ...)``) and what it may do on stderr."""
    import urllib.parse

    if args.apikey_command == "create":
        scopes = [scope.strip() for scope in args.scope.split(",") if scope.strip()]
        body = {"principal": args.principal, "scopes": scopes, "name": args.name}
        answer = _admin_call(args, "POST", "/api/admin/apikeys", body)
        print(answer["key"])
        print(
            f"roost: key {answer['id']} acts as {answer['principal']} with {','.join(answer['scopes'])};"
            " it is shown only this once",
            file=sys.stderr,
        )
    elif args.apikey_command == "list":
        for key in _admin_call(args, "GET", "/api/admin/apikeys")["keys"]:
            print(f"{key['id']}  {key['principal']}  {','.join(key['scopes'])}  {key['created']}  {key['name']}")
    else:
        answer = _admin_call(args, "DELETE", f"/api/admin/apikeys/{urllib.parse.quote(args.id, safe='')}")
        print(f"roost: API key {answer['id']} revoked")


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [part.strip() for part in value.split(",") if part.strip()]


def _consumer(args: argparse.Namespace) -> None:
    """``roost consumer create|list|show|delete|resume|rewind``: the routes of ``/api/consumers``, with an
    administrator's token signed here (or ``--token``: an admin token, or an API key with ``consumers``).
    ``create`` prints the signing secret alone on stdout (``SECRET=$(roost consumer create ...)``)."""
    import urllib.parse

    if args.consumer_command == "create":
        body: dict[str, Any] = {"url": args.url, "rooms": args.rooms}
        for name, value in (("kinds", _csv(args.kinds)), ("events", _csv(args.events))):
            if value is not None:
                body[name] = value
        if args.start != "now":
            body["from"] = int(args.start)
        if args.max_failures is not None:
            body["max_failures"] = args.max_failures
        answer = _admin_call(args, "POST", "/api/consumers", body)
        print(answer["secret"])
        start = "now" if answer["from"] is None else f"after seq {answer['from']}"
        print(
            f"roost: consumer {answer['id']} delivers {','.join(answer['events'])} of rooms {answer['rooms']} "
            f"({','.join(answer['kinds'])}) from {start} to {answer['url']}; its secret is shown only this once",
            file=sys.stderr,
        )
        return
    if args.consumer_command == "list":
        for c in _admin_call(args, "GET", "/api/consumers")["consumers"]:
            print(
                f"{c['id']}  {c['state']}  failures={c['failures']}  lag={c['lag']}  {c['url']}  {c['rooms']}  "
                f"{c['holder'] or '-'}  {c['last_error']}".rstrip()
            )
        return
    path = f"/api/consumers/{urllib.parse.quote(args.id, safe='')}"
    if args.consumer_command == "show":
        print(json.dumps(_admin_call(args, "GET", path), indent=2))
    elif args.consumer_command == "delete":
        print(f"roost: consumer {_admin_call(args, 'DELETE', path)['id']} deleted")
    elif args.consumer_command == "resume":
        answer = _admin_call(args, "POST", path + "/resume")
        print(f"roost: consumer {answer['id']} resumed ({answer['state']})")
    else:
        rewind: dict[str, Any] = {"seq": args.seq} | ({"room": args.room} if args.room else {})
        answer = _admin_call(args, "POST", path + "/rewind", rewind)
        print(f"roost: consumer {answer['id']} delivers again after seq {args.seq} in {args.room or 'every room'}")
