#!/usr/bin/env bash
# The README's first command: set up, then run a real test — a 3-node raft_impl
# cluster under partitions, crashes and pauses — and write its report.
# Extra arguments are passed to `splitbrain run` (try `--bug stale-leader-read`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/splitbrain run --nodes 3 --time-limit 30 --nemesis partition,kill,pause "$@"
