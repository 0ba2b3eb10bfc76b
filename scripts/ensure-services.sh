#!/usr/bin/env bash
# Bring this machine to the state the test suite needs, idempotently, and say so in one line:
#   redis     Redis on 127.0.0.1:6379 (and redis-server installed: tests start their own too)
#   nats      NATS with JetStream on 127.0.0.1:4222 (and nats-server installed, same reason)
#   postgres  PostgreSQL on 127.0.0.1:$ROOST_PG_PORT (5432), a database "test", and role "postgres"
#             allowed in from loopback without a password, on database "test" only
#   chromium  Debian's chromium for the browser tests
#   node      Node.js: tests/vectors run the browser client's modules under it (no browser needed)
#   promtool  Prometheus' promtool (Debian's prometheus package) to check docs/alerts.yml
#   fuse      fusermount3 and libfuse3 (Debian's fuse3) and /dev/fuse: the power-loss filesystem's tests
# With no argument it does all seven. What it changes on a stock machine (README, "The test machine"):
# apt-get installs what is missing, starts what is stopped, creates database "test", and prepends two
# "trust" lines for postgres@test from 127.0.0.1 and ::1 to pg_hba.conf (then reloads the server).
# Anything it cannot do ends it with one line on stderr and exit status 1.
set -uo pipefail

fail() { echo "ensure-services: $*" >&2; exit 1; }

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_up() {  # wait_up PORT WHAT
  for _ in $(seq 1 100); do up "$1" && return 0; sleep 0.1; done
  fail "$2 did not come up on 127.0.0.1:$1"
}

need() {  # need BINARY PACKAGE...: install the packages unless BINARY is already on PATH
  command -v "$1" >/dev/null 2>&1 && return 0
  [ "$EUID" -eq 0 ] || fail "$1 is missing and installing it needs root: run this as root, or install ${*:2} yourself"
  command -v apt-get >/dev/null 2>&1 || fail "$1 is missing and there is no apt-get here: install ${*:2} yourself"
  local log
  log=$(mktemp)
  if [ -z "${APT_UPDATED:-}" ]; then
    apt-get update -qq >"$log" 2>&1 || fail "apt-get update failed: $(tail -n 1 "$log")"
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${@:2}" >"$log" 2>&1 ||
    fail "apt-get install ${*:2} failed: $(tail -n 1 "$log")"
  rm -f "$log"
  command -v "$1" >/dev/null 2>&1 || fail "installed ${*:2} but $1 is still not on PATH"
}

ensure_redis() {
  need redis-server redis-server redis-tools
  if ! up 6379; then
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null || fail "redis-server would not start"
    wait_up 6379 redis
  fi
}

ensure_nats() {
  need nats-server nats-server
  if ! up 4222; then
    mkdir -p /var/lib/nats-server
    start-stop-daemon --start --oknodo --background --exec "$(command -v nats-server)" -- \
      -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log ||
      fail "nats-server would not start"
    wait_up 4222 nats
  fi
}

# PostgreSQL: the tests connect as postgresql://postgres@127.0.0.1:PORT/test with no password.
pg_port() { echo "${ROOST_PG_PORT:-5432}"; }

as_postgres() {  # run a client as the postgres OS user over the Unix socket (peer auth on stock Debian)
  runuser -u postgres -- "$@" 2>&1
}

pg_ready() { psql -w -h 127.0.0.1 -p "$(pg_port)" -U postgres -d test -tAc 'select 1' >/dev/null 2>&1; }

ensure_postgres() {
  local port cluster out hba
  port=$(pg_port)
  need pg_ctlcluster postgresql
  need psql postgresql-client
  if ! up "$port"; then
    cluster=$(pg_lsclusters --no-header 2>/dev/null | awk -v p="$port" '$3 == p { print $1, $2; exit }')
    if [ -z "$cluster" ] && [ "$port" = 5432 ] && [ -z "$(pg_lsclusters --no-header 2>/dev/null)" ]; then
      [ "$EUID" -eq 0 ] || fail "no PostgreSQL cluster and creating one needs root"
      out=$(pg_createcluster "$(ls /usr/lib/postgresql | sort -V | tail -n 1)" main --port 5432 2>&1) ||
        fail "pg_createcluster failed: $(tail -n 1 <<<"$out")"
      cluster=$(pg_lsclusters --no-header | awk '$3 == 5432 { print $1, $2; exit }')
    fi
    [ -n "$cluster" ] || fail "no PostgreSQL cluster is configured for port $port (pg_lsclusters)"
    # shellcheck disable=SC2086  # "VERSION NAME"
    out=$(pg_ctlcluster --skip-systemctl-redirect $cluster start 2>&1) ||
      fail "pg_ctlcluster $cluster start failed: $(tail -n 1 <<<"$out")"
    wait_up "$port" postgres
  fi
  pg_ready && return 0

  [ "$EUID" -eq 0 ] || fail "postgres@127.0.0.1:$port/test is refused, and fixing that needs root"
  out=$(as_postgres psql -p "$port" -d postgres -tAc "select 1 from pg_database where datname = 'test'") ||
    fail "cannot reach PostgreSQL on port $port as the postgres OS user: $(tail -n 1 <<<"$out")"
  if [ "$out" != 1 ]; then
    out=$(as_postgres createdb -p "$port" test) || fail "createdb test failed: $(tail -n 1 <<<"$out")"
  fi
  hba=$(as_postgres psql -p "$port" -d postgres -tAc 'show hba_file') || fail "cannot read hba_file: $hba"
  if ! grep -q '^# roost test suite' "$hba"; then
    { printf '%s\n' \
        '# roost test suite (scripts/ensure-services.sh): postgres may use database "test" from loopback' \
        'host    test    postgres    127.0.0.1/32    trust' \
        'host    test    postgres    ::1/128         trust'
      cat "$hba"; } >"$hba.roost" && cat "$hba.roost" >"$hba" && rm -f "$hba.roost" ||
      fail "cannot write $hba"
    out=$(as_postgres psql -p "$port" -d postgres -tAc 'select pg_reload_conf()') ||
      fail "pg_reload_conf failed: $(tail -n 1 <<<"$out")"
  fi
  for _ in $(seq 1 50); do pg_ready && return 0; sleep 0.1; done
  fail "postgres@127.0.0.1:$port/test is still refused after setting it up (see $hba)"
}

ensure_chromium() {
  need chromium chromium   # the browser tests drive Debian's chromium with Playwright
}

ensure_node() {
  need node nodejs   # tests/vectors/run_js.mjs: the JavaScript side of the shared vector files
}

ensure_promtool() {
  need promtool prometheus   # tests/test_alerts.py checks docs/alerts.yml; the package's daemon is not started
}

ensure_fuse() {
  need fusermount3 fuse3   # roost.chaos.powerfs (tests/chaos/test_powerfs.py, tests/integration/test_power_loss.py)
  [ -c /dev/fuse ] || fail "/dev/fuse is missing: the power-loss tests need FUSE (a container needs --device /dev/fuse)"
}

what=("$@")
[ ${#what[@]} -gt 0 ] || what=(redis nats postgres chromium node promtool fuse)
for service in "${what[@]}"; do
  case "$service" in
    redis | nats | postgres | chromium | node | promtool | fuse) "ensure_$service" ;;
    *) fail "unknown service '$service' (redis, nats, postgres, chromium, node, promtool, fuse)" ;;
  esac
done
echo "ensure-services: ready: ${what[*]}"
