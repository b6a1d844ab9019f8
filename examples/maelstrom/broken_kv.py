#!/usr/bin/env python3
"""A deliberately broken ``lin-kv`` node: ``lin_kv.py`` whose followers answer reads locally.

    splitbrain run --db maelstrom --bin "python3 examples/maelstrom/broken_kv.py" \\
        --nodes 3 --nemesis partition,loss,reorder --time-limit 10

A follower cut off from the leader (or one that lost an accept) keeps serving
its old copy: stale reads, which the linearizability checker must catch.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lin_kv

if __name__ == "__main__":
    sys.argv.append("--stale-reads")
    lin_kv.main()
