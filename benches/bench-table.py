#!/usr/bin/env python3
"""Prints the table of a bench-brokers results file (one JSON line per run): per scenario and
broker the median and min-max, the ratios tinymqtt/mosquitto and tinymqtt/rumqttd of the
medians, and the loss/duplicate/reorder counts and failed runs summed over the rounds."""

import json
import statistics
import sys

# (metric key, unit, higher is better)
METRICS = {
    "latency": [("p50_us", "p50 us", False), ("p99_us", "p99 us", False), ("p999_us", "p99.9 us", False)],
    "connections": [("bytes_per_conn", "B/conn", False), ("rate", "conn/s", True)],
}
DEFAULT = [("rate", "msg/s", True)]
BROKERS = ["tinymqtt", "mosquitto", "rumqttd"]


def fmt(v):
    if v is None:
        return "-"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e4:
        return f"{v / 1e3:.0f}k"
    if v >= 100:
        return f"{v:.0f}"
    return f"{v:.1f}"


def main(path):
    runs = [json.loads(line) for line in open(path) if line.strip()]
    benches = []
    for r in runs:
        if r["bench"] not in benches:
            benches.append(r["bench"])
    brokers = [b for b in BROKERS if any(r.get("label") == b for r in runs)]
    brokers += sorted({r.get("label") for r in runs} - set(brokers) - {None})
    head = f"{'scenario':<11} {'metric':<9}"
    for b in brokers:
        head += f" {b + ' median (min-max)':<28}"
    head += " tiny/mosq tiny/rumq  lost/dup/reord (failed runs)"
    print(head)
    print("-" * len(head))
    for bench in benches:
        rows = [r for r in runs if r["bench"] == bench]
        scenario = next((r.get("scenario") for r in rows if r.get("scenario")), "")
        for key, unit, _higher in METRICS.get(scenario, DEFAULT):
            line = f"{bench:<11} {unit:<9}"
            medians = {}
            for b in brokers:
                mine = [r for r in rows if r.get("label") == b and r.get(key) is not None]
                vals = [r[key] for r in mine if r.get("ok")]
                mark = ""
                if not vals:
                    # Every run failed its checks: show what they measured, marked.
                    vals = [r[key] for r in mine if r.get("rate")]
                    mark = "*"
                if vals:
                    medians[b] = statistics.median(vals)
                    cell = f"{fmt(medians[b])}{mark} ({fmt(min(vals))}-{fmt(max(vals))})"
                else:
                    cell = "-"
                line += f" {cell:<28}"
            for other in ["mosquitto", "rumqttd"]:
                t, o = medians.get("tinymqtt"), medians.get(other)
                line += f" {t / o:>8.2f}x" if t is not None and o else f" {'-':>9}"
            counts = []
            for b in brokers:
                mine = [r for r in rows if r.get("label") == b]
                lost = sum(r.get("lost", 0) for r in mine)
                dup = sum(r.get("duplicates", 0) for r in mine)
                reord = sum(r.get("reordered", 0) for r in mine)
                failed = sum(1 for r in mine if not r.get("ok"))
                short = b[len("tinymqtt-"):][:5] if b.startswith("tinymqtt-") else b[:4]
                counts.append(f"{short} {lost}/{dup}/{reord} ({failed})")
            line += "  " + ", ".join(counts)
            print(line)
    runtimes = [b for b in brokers if b.startswith("tinymqtt-")]
    if runtimes and "tinymqtt" in brokers:
        print("\nruntimes against tokio (ratio of medians, tinymqtt-X / tinymqtt):")
        for bench in benches:
            rows = [r for r in runs if r["bench"] == bench]
            scenario = next((r.get("scenario") for r in rows if r.get("scenario")), "")
            for key, unit, _higher in METRICS.get(scenario, DEFAULT):
                def med(b):
                    vals = [r[key] for r in rows if r.get("label") == b and r.get("ok") and r.get(key) is not None]
                    return statistics.median(vals) if vals else None
                tokio = med("tinymqtt")
                line = f"{bench:<11} {unit:<9} tokio {fmt(tokio)}"
                for b in runtimes:
                    m = med(b)
                    ratio = f"{m / tokio:.2f}x" if m is not None and tokio else "-"
                    line += f"  {b[len('tinymqtt-'):]} {fmt(m)} ({ratio})"
                print(line)
    print("\ncores used (median over rounds): load tool / broker")
    for bench in benches:
        rows = [r for r in runs if r["bench"] == bench]
        line = f"{bench:<11}"
        for b in brokers:
            tool = [r["tool_cpu"] for r in rows if r.get("label") == b and r.get("tool_cpu") is not None]
            broker = [r["broker_cpu"] for r in rows if r.get("label") == b and r.get("broker_cpu") is not None]
            if tool or broker:
                t = f"{statistics.median(tool):.2f}" if tool else "-"
                k = f"{statistics.median(broker):.2f}" if broker else "-"
                line += f" {b}: {t} / {k}  "
        if line.strip() != bench:
            print(line)
    failures = [r for r in runs if not r.get("ok")]
    if failures:
        print("\nfailed runs:")
        for r in failures:
            print(f"  {r['bench']} round {r.get('round')} {r.get('label')}: {r.get('error') or 'check failed'}"
                  f" (lost {r.get('lost', 0)}, duplicates {r.get('duplicates', 0)}, reordered {r.get('reordered', 0)})")
    print("\nratios are of medians; for latency and B/conn lower is better, for rates higher is better;")
    print("* every run failed its checks (loss, duplicates, reordering or errors): the figure is not valid")


if __name__ == "__main__":
    main(sys.argv[1])
