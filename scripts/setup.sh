#!/usr/bin/env bash
# Set up a virtual environment with splitbrain and its test extra (at the exact
# versions of requirements.lock; pyproject.toml holds the compatible ranges a
# user's environment may choose from), plus the
# system packages the tests need (Chromium for report tests, etcd for the
# etcd adapter). Idempotent: fast when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server etcd-client)
# --net netns (and its tests) need iproute2 and iptables.
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v iptables-restore >/dev/null 2>&1 || need_apt+=(iptables)
# fuzz --redis (and its test) share the example database through a Redis server.
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
if ((${#need_apt[@]})) && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${need_apt[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# pip's own chatter (build-backend warnings) goes to a log; shown only on failure.
log=$(mktemp)
if ! { .venv/bin/python -m pip install -q --upgrade pip &&
       .venv/bin/python -m pip install -q -c requirements.lock -e '.[test,adapters]'; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "setup: pip install failed (output above)" >&2
    exit 1
fi
rm -f "$log"
