#!/usr/bin/env bash
# Measure splitbrain against one unplanted raft_impl bug ("mutant").
#   bash benchmarks/mutants/run.sh MUTANT fuzz|run|campaign [SEED]
# MUTANT is a patch name without .patch (see README.md here). The patch is applied
# to a throwaway git worktree of HEAD (the checkout itself is never touched), the
# project's .venv runs splitbrain there, and the worktree is removed afterwards.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
mutant=$1; what=$2; seed=${3:-1}
patch="$root/benchmarks/mutants/$mutant.patch"
[ -f "$patch" ] || { echo "run.sh: no such mutant: $mutant" >&2; exit 2; }
wt=$(mktemp -d /tmp/sb-mutant-XXXXXX)
trap 'git -C "$root" worktree remove --force "$wt" >/dev/null 2>&1 || rm -rf "$wt"' EXIT
git -C "$root" worktree add -q --detach "$wt" HEAD
git -C "$wt" apply "$patch"
cd "$wt"
export PYTHONPATH="$wt"   # the mutated tree, not the editable install's
store="$root/store/mutants/$mutant"
echo "mutant $mutant, $what, seed $seed, commit $(git -C "$root" rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg)"
case $what in
  fuzz) "$root/.venv/bin/python" -m harness fuzz --examples 100000 --search-seconds 180 \
            --shrink-seconds 60 --seed "$seed" --store "$store" ;;
  run) "$root/.venv/bin/python" -m harness run --nodes 5 --time-limit 60 --nemesis all \
            --seed "$seed" --store "$store" ;;
  campaign) "$root/.venv/bin/python" -m harness campaign --minutes 5 --nodes 5 \
            --seed "$seed" --store "$store" ;;
  *) echo "run.sh: fuzz, run or campaign, not $what" >&2; exit 2 ;;
esac
