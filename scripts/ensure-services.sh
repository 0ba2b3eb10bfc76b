#!/usr/bin/env bash
# Make sure the services the test suite talks to are up on 127.0.0.1: Redis :6379, NATS with
# JetStream :4222, PostgreSQL :5432 (database "test", trust auth). On this project's machines they
# are started before a session; this script installs and starts whichever one is missing, with the
# same commands, and is a no-op otherwise.
set -euo pipefail

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_up() {
  for _ in $(seq 1 100); do up "$1" && return 0; sleep 0.1; done
  echo "service on port $1 did not come up" >&2
  return 1
}

need() {  # need BINARY PACKAGE...
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${@:2}" >/dev/null
}

if ! up 6379; then
  need redis-server redis-server redis-tools
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_up 6379
fi
need redis-server redis-server redis-tools   # the tests also start their own redis-server

if ! up 4222; then
  need nats-server nats-server
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_up 4222
fi
need nats-server nats-server

if ! up 5432; then
  need pg_ctlcluster postgresql
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  wait_up 5432
fi
if command -v psql >/dev/null 2>&1; then
  psql -h 127.0.0.1 -U postgres -d test -c 'select 1' >/dev/null 2>&1 ||
    runuser -u postgres -- createdb -h 127.0.0.1 test 2>/dev/null || true
fi

# The browser tests (tests/browser) drive Debian's chromium with Playwright; no service to start.
need chromium chromium

echo "services: redis :6379, nats :4222, postgres :5432 are up; chromium is installed"
