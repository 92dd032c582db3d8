#!/usr/bin/env bash
# jmap-host developer entry point.  Works on a fresh Debian machine with Python 3.11:
#   bash dev.sh serve   set up .venv, then run the server on the embedded default config
#   bash dev.sh test    set up .venv, Chromium, slapd and PostgreSQL, then run ruff and the
#                       whole test suite twice: on SQLite, then on PostgreSQL
#   bash dev.sh test-postgresql   the test suite on the PostgreSQL storage back end
#   bash dev.sh setup   only set up .venv (host, every in-repo plugin, test tools)
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "dev.sh: need root (or sudo) to run: $*" >&2; return 1; fi
}

apt_install() {
  # apt-get update only once per run, and only when something is missing.
  if [ -z "${APT_UPDATED:-}" ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

setup() {
  if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
    apt_install python3-venv
  fi
  if [ ! -x .venv/bin/python ]; then "$PYTHON" -m venv .venv; fi
  local args=(-e ".[test]")
  for plugin in plugins/*/; do args+=(-e "$plugin"); done
  .venv/bin/python -m pip install -q --disable-pip-version-check "${args[@]}"
}

setup_browser() {
  # The CORS test drives Debian's Chromium through Playwright (no browser download).
  if [ ! -x /usr/bin/chromium ]; then apt_install chromium; fi
}

setup_ldap() {
  # The LDAP directory tests run Debian's OpenLDAP server on 127.0.0.1 (their own throw-away
  # configuration and database; the package's own service is not used).
  if [ ! -x /usr/sbin/slapd ]; then apt_install slapd ldap-utils; fi
}

setup_postgresql() {
  # The PostgreSQL tests (jmap_host.pgcluster) run Debian's server binaries on 127.0.0.1 in a
  # throw-away cluster of their own; the package's own cluster and service are not used.
  if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then apt_install postgresql; fi
}

case "${1:-}" in
  serve)
    shift; setup; exec .venv/bin/jmap-host run "$@" ;;
  test)
    shift; setup; setup_browser; setup_ldap; setup_postgresql
    .venv/bin/ruff check .
    # The whole suite on both storage back ends: the embedded SQLite, then PostgreSQL (a
    # throw-away server on 127.0.0.1, see jmap_host/pgcluster.py).  pytest-xdist runs one
    # worker per core (at most 4; each worker starts its own servers): on the 2-core CI
    # machine 3.6 + 6.4 minutes instead of 5.5 + 8.8.
    workers=$(nproc); if [ "$workers" -gt 4 ]; then workers=4; fi
    .venv/bin/python -m pytest -n "$workers" "$@"
    exec .venv/bin/python -m pytest -n "$workers" --backend=postgresql "$@" ;;
  test-postgresql)
    shift; setup; setup_browser; setup_ldap; setup_postgresql
    exec .venv/bin/python -m pytest --backend=postgresql "$@" ;;
  setup)
    setup ;;
  *)
    echo "usage: bash dev.sh serve|test|test-postgresql|setup" >&2; exit 2 ;;
esac
