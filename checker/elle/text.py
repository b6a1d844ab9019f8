"""A transactional result as text, for ``splitbrain check``: per anomaly, one example."""

from __future__ import annotations

import json
from typing import Any

_SHOWN = 3  # examples printed per anomaly type


def is_txn_result(result: dict[str, Any]) -> bool:
    """True for a result of :func:`checker.elle.check_txns`."""
    return "consistency_model" in result


def format_txn_result(result: dict[str, Any], indent: str = "") -> list[str]:
    """Lines describing the anomalies (the verdict line is the caller's)."""
    lines = [f"{indent}model {result.get('model')}, {result.get('txns')} transactions, "
             f"checked for {result.get('consistency_model')}, "
             f"{result.get('elapsed_s', 0):.3f} s"]
    if result.get("not"):
        lines.append(f"{indent}rules out: {', '.join(result['not'])}")
    counts = result.get("counts") or {}
    for name in result.get("anomaly_types") or []:
        examples = (result.get("anomalies") or {}).get(name) or []
        lines.append(f"{indent}{name}: {counts.get(name, len(examples))} found")
        for example in examples[:_SHOWN]:
            if "steps" in example:
                ids = " -> ".join(f"T{t['id']}" for t in example["cycle"])
                lines.append(f"{indent}  cycle {ids} -> T{example['cycle'][0]['id']}")
                for step in example["steps"]:
                    lines.append(f"{indent}    {step['type']}: {step['explanation']}")
            else:
                shown = {k: v for k, v in example.items() if k != "type"}
                text = json.dumps(shown, default=str)
                lines.append(f"{indent}  {text[:300]}{'…' if len(text) > 300 else ''}")
    return lines


__all__ = ["format_txn_result", "is_txn_result"]
