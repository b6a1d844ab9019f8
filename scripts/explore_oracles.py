"""Hunt for checker bugs: the brute-force oracle properties with many fresh random examples.

The suite runs its Hypothesis properties derandomized and with a few hundred
examples (tests/conftest.py, profile ``ci``), so that a green suite stays
green. This runs the same property bodies with as many *fresh* examples as
asked, on wider histories than the suite affords:

- ``list-append``: the transactional checker's verdict is the brute force's
  (serializable and strict), histories of up to ``--max-txns`` transactions;
- ``rw-register``: a reported cycle is always real, and what the brute force
  serializes is never reported;
- ``registers``: register linearizability from values, by the WGL search
  alone, and by brute force agree (up to ``--max-ops`` operations on two keys).

A failure prints Hypothesis's shrunk counterexample and exits 1; it belongs in a
crafted regression test. Exit 0: no disagreement in that many examples.

    .venv/bin/python scripts/explore_oracles.py --examples 20000 --only list-append
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--only", choices=("list-append", "rw-register", "registers"),
                        action="append", help="which property (default: all three)")
    parser.add_argument("--max-txns", type=int, default=6)
    parser.add_argument("--max-ops", type=int, default=9)
    args = parser.parse_args()
    sys.path.insert(0, str(TESTS))
    from elle_helpers import txn_histories
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from test_elle import agrees_with_brute_force, never_contradicts_brute_force
    from test_register_values import MODELS, unique_histories, values_agree

    explore = settings(max_examples=args.examples, deadline=None, database=None,
                       derandomize=False, suppress_health_check=list(HealthCheck))

    @explore
    @given(txn_histories("list-append", max_txns=args.max_txns))
    def list_append(history: object) -> None:
        agrees_with_brute_force(history)  # type: ignore[arg-type]

    @explore
    @given(txn_histories("rw-register", max_txns=args.max_txns))
    def rw_register(history: object) -> None:
        never_contradicts_brute_force(history)  # type: ignore[arg-type]

    @explore
    @given(st.sampled_from(MODELS), st.data())
    def registers(model: str, data: st.DataObject) -> None:
        history = data.draw(unique_histories(cas=model != "register", max_ops=args.max_ops,
                                             keys=("k", "j")))
        values_agree(history, model)

    properties = {"list-append": list_append, "rw-register": rw_register,
                  "registers": registers}
    failed = False
    for name in args.only or list(properties):
        started = time.monotonic()
        try:
            properties[name]()
        except AssertionError as exc:
            failed = True
            print(f"{name}: DISAGREEMENT after {time.monotonic() - started:.0f} s: {exc}")
            continue
        print(f"{name}: {args.examples} examples agree ({time.monotonic() - started:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
