#!/usr/bin/env python3
"""Markdown table of the `channels` bench results.

Usage: python3 benches/summarize.py [CRITERION_DIR]   (default: target/criterion)

Reads every <id>/new/benchmark.json (for the id and the messages per
iteration) and <id>/new/estimates.json (median time per iteration), and
prints, for each scenario (group + message type), the median throughput in
millions of messages per second of every channel and the ratio of each lanebus
variant to the best peer (a channel whose name does not start with
"lanebus"). One row per lanebus variant.
"""

import json
import os
import sys

PEER_ORDER = ["crossbeam", "kanal", "flume", "std"]
GROUP_ORDER = ["spsc", "mpsc", "mpmc_2p2c", "mpmc_4p4c", "batch", "priority_overhead"]
MSG_ORDER = ["u64", "256B"]


def scenario_key(scenario):
    """Bench order: topologies by thread count, then batch, then priority."""
    group, msg = scenario
    g = next((i for i, p in enumerate(GROUP_ORDER) if group.startswith(p)), len(GROUP_ORDER))
    m = MSG_ORDER.index(msg) if msg in MSG_ORDER else len(MSG_ORDER)
    return (g, group, m, msg)


def elements(throughput):
    """Messages per iteration from criterion's serialized Throughput."""
    if not throughput:
        return None
    for key in ("Elements", "ElementsAndBytes"):
        if key in throughput:
            value = throughput[key]
            return value["elements"] if isinstance(value, dict) else value
    return None


def load(root):
    """{(group, message): {channel: M msg/s}}, in a stable order."""
    results = {}
    for dirpath, _dirs, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "benchmark.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            bench = json.load(f)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            estimates = json.load(f)
        n = elements(bench.get("throughput"))
        if n is None:
            continue
        ns = estimates["median"]["point_estimate"]
        mps = n / ns * 1e3  # messages per ns * 1e9 / 1e6
        scenario = (bench["group_id"], bench.get("function_id") or "")
        channel = bench.get("value_str") or bench.get("function_id") or "?"
        results.setdefault(scenario, {})[channel] = mps
    return results


def fmt(x):
    return "–" if x is None else f"{x:.1f}"


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "target/criterion"
    results = load(root)
    if not results:
        sys.exit(f"no criterion results with throughput under {root}")

    peers = {c for chans in results.values() for c in chans if not c.startswith("lanebus")}
    peers = [p for p in PEER_ORDER if p in peers] + sorted(peers - set(PEER_ORDER))

    header = ["scenario", "msg", "lanebus variant", "lanebus"] + peers + ["lanebus / best peer"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + "|")
    for (group, msg), chans in sorted(results.items(), key=lambda kv: scenario_key(kv[0])):
        best = max((v for c, v in chans.items() if c in peers), default=None)
        best_name = next((c for c in peers if chans.get(c) == best), None)
        for variant in sorted(c for c in chans if c.startswith("lanebus")):
            value = chans[variant]
            ratio = f"{value / best:.2f} (vs {best_name})" if best else "–"
            row = [group, msg, variant, fmt(value)] + [fmt(chans.get(p)) for p in peers] + [ratio]
            print("| " + " | ".join(row) + " |")
    print()
    print("Median throughput, M msg/s (criterion median of per-iteration time).")


if __name__ == "__main__":
    main()
