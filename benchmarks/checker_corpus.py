"""Linearizability checker speed: Porcupine's corpus, and a generated 10,000-op history.

    python benchmarks/checker_corpus.py [--json] [--ops N] [--repeat R]

Prints, for every corpus file, the time to load and check it (as
``splitbrain check`` does) and whether the verdict matches expected.tsv; the
corpus total; and for a generated history (10 keys, 20 concurrent clients,
some unknown outcomes, real concurrent execution of the raft-kv semantics) the
time and the peak memory (tracemalloc peak, and the process's max RSS).
Targets (issue 3): corpus <= 2 s, kv/c50-ok.txt <= 0.5 s, 10,000 ops <= 10 s and
<= 1 GB. Times are best of ``--repeat`` runs per file, both wall clock and CPU
time of this process (on a shared, loaded machine the CPU time is the fair
figure; the load average is printed alongside). Targets are judged on CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from checker.history import history_from_events, load_history
from checker.linearizable import check_history
from checker.synth import simulate

TARGETS = {"corpus_total_s": 2.0, "c50_ok_s": 0.5, "generated_s": 10.0, "generated_mb": 1024}


def find_corpus() -> Path:
    here = Path(__file__).resolve()
    for candidate in (Path("/work/shared/corpus/porcupine"),
                      here.parents[2] / "shared" / "corpus" / "porcupine"):
        if (candidate / "expected.tsv").is_file():
            return candidate
    raise SystemExit("cannot find shared/corpus/porcupine")


def bench_corpus(corpus: Path, repeat: int) -> list[dict[str, Any]]:
    rows = []
    lines = (corpus / "expected.tsv").read_text().splitlines()[1:]
    for line in lines:
        path, model, linearizable, _, _ = line.split("\t")
        best = best_cpu = float("inf")
        verdict: Any = None
        for _ in range(repeat):
            started, started_cpu = time.perf_counter(), time.process_time()
            history = load_history(corpus / path)
            result = check_history(history, history.default_model)
            best = min(best, time.perf_counter() - started)
            best_cpu = min(best_cpu, time.process_time() - started_cpu)
            verdict = result["valid"]
        rows.append({"file": path, "model": model, "seconds": round(best, 5),
                     "cpu_seconds": round(best_cpu, 5),
                     "valid": verdict, "expected": linearizable == "true",
                     "match": verdict == (linearizable == "true"),
                     "search_steps": result["search_steps"]})
    return rows


def bench_generated(ops: int, seed: int = 1) -> dict[str, Any]:
    events = simulate(random.Random(seed), ops, keys=10, clients=20, info_rate=0.02)
    history = history_from_events(events)
    unknown = sum(1 for op in history.ops if op.unknown)
    tracemalloc.start()
    started = time.perf_counter()
    result = check_history(history, "raft-kv")
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # A second, untraced run for the time (tracemalloc slows allocation down).
    started, started_cpu = time.perf_counter(), time.process_time()
    check_history(history, "raft-kv")
    untraced = time.perf_counter() - started
    untraced_cpu = time.process_time() - started_cpu
    return {"ops": len(history.ops), "keys": 10, "clients": 20, "unknown_outcomes": unknown,
            "valid": result["valid"], "seconds": round(untraced, 3),
            "cpu_seconds": round(untraced_cpu, 3),
            "seconds_traced": round(elapsed, 3), "search_steps": result["search_steps"],
            "peak_traced_mb": round(peak / 2**20, 1),
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--ops", type=int, default=10_000, help="size of the generated history")
    parser.add_argument("--repeat", type=int, default=3, help="runs per corpus file (best kept)")
    args = parser.parse_args(argv)
    corpus = find_corpus()
    rows = bench_corpus(corpus, args.repeat)
    total = sum(r["seconds"] for r in rows)
    total_cpu = sum(r["cpu_seconds"] for r in rows)
    c50 = next(r["seconds"] for r in rows if r["file"] == "kv/c50-ok.txt")
    c50_cpu = next(r["cpu_seconds"] for r in rows if r["file"] == "kv/c50-ok.txt")
    generated = bench_generated(args.ops)
    mismatches = [r["file"] for r in rows if not r["match"]]
    summary = {
        "corpus_files": len(rows), "corpus_total_s": round(total, 3),
        "corpus_total_cpu_s": round(total_cpu, 3), "c50_ok_s": c50, "c50_ok_cpu_s": c50_cpu,
        "mismatches": mismatches, "generated": generated,
        "load_average": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
        "targets": TARGETS,
        "meets_targets": (not mismatches and total_cpu <= TARGETS["corpus_total_s"]
                          and c50_cpu <= TARGETS["c50_ok_s"]
                          and generated["cpu_seconds"] <= TARGETS["generated_s"]
                          and generated["max_rss_mb"] <= TARGETS["generated_mb"]),
    }
    if args.json:
        print(json.dumps({"files": rows, **summary}, indent=2))
    else:
        for r in rows:
            flag = "" if r["match"] else "   <-- VERDICT DIFFERS"
            print(f"{r['file']:<22} {r['seconds']:8.4f} s wall {r['cpu_seconds']:8.4f} s cpu  "
                  f"valid={r['valid']!s:<5}{flag}")
        print(f"\ncorpus: {len(rows)} files in {total_cpu:.3f} s cpu, {total:.3f} s wall "
              f"(target <= 2 s); kv/c50-ok.txt {c50_cpu:.3f} s cpu, {c50:.3f} s wall "
              f"(target <= 0.5 s); {len(mismatches)} verdict mismatches")
        g = generated
        print(f"generated: {g['ops']} ops, {g['keys']} keys, {g['clients']} clients, "
              f"{g['unknown_outcomes']} unknown outcomes -> valid={g['valid']} in "
              f"{g['cpu_seconds']:.3f} s cpu, {g['seconds']:.3f} s wall (target <= 10 s); "
              f"peak traced {g['peak_traced_mb']} MB, "
              f"max RSS {g['max_rss_mb']} MB (target <= 1024 MB)")
        print(f"load average {summary['load_average']} on {summary['cpus']} cpus")
        print("meets targets" if summary["meets_targets"] else "DOES NOT MEET TARGETS")
    return 0 if summary["meets_targets"] else 1


if __name__ == "__main__":
    sys.exit(main())
