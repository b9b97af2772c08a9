#!/usr/bin/env python3
"""Prints the table of a bench-brokers results file (one JSON line per run): per scenario and
broker, for each settings column (equal settings, each broker's defaults, or a given in-flight
window), the median and min-max and the ratio of the median to rumqttd's in the same column (to
the first column's when rumqttd was not run, e.g. a window sweep of one broker); then the
loss/duplicate/reorder counts and failed runs summed over the rounds, the cores used and the
brokers' peak memory."""

import json
import statistics
import sys

# (metric key, unit, higher is better)
METRICS = {
    "latency": [("p50_us", "p50 us", False), ("p99_us", "p99 us", False), ("p999_us", "p99.9 us", False)],
    "connections": [("bytes_per_conn", "B/conn", False), ("rate", "conn/s", True)],
}
DEFAULT = [("rate", "msg/s", True)]
BROKERS = ["tinymqtt", "mosquitto", "rumqttd", "rmqtt"]
SETTINGS_ORDER = ["equal", "defaults"]
REFERENCE = "rumqttd"


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


def settings_of(r):
    return r.get("settings", "equal")


def ordered(values, first):
    """`values` in order of first appearance, those named in `first` ahead in that order."""
    seen = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return [v for v in first if v in seen] + [v for v in seen if v not in first]


def window_key(s):
    # window-20 before window-100
    if s.startswith("window-") and s[len("window-"):].isdigit():
        return (1, int(s[len("window-"):]))
    return (0, 0)


def median_of(rows, key):
    """The median of `key` over the runs that passed their checks, with min and max; when every
    run failed, over the failed ones that measured something, marked with '*'."""
    vals = [r[key] for r in rows if r.get("ok") and r.get(key) is not None]
    mark = ""
    if not vals:
        vals = [r[key] for r in rows if r.get(key) is not None and r.get("rate")]
        mark = "*"
    if not vals:
        return None, "-"
    m = statistics.median(vals)
    return m, f"{fmt(m)}{mark} ({fmt(min(vals))}-{fmt(max(vals))})"


def main(path):
    runs = [json.loads(line) for line in open(path) if line.strip()]
    benches = ordered([r["bench"] for r in runs], [])
    brokers = ordered([r.get("label") for r in runs if r.get("label")], BROKERS)
    settings = ordered([settings_of(r) for r in runs], SETTINGS_ORDER)
    settings.sort(key=window_key)
    reference = REFERENCE if REFERENCE in brokers and len(brokers) > 1 else None
    ratio_head = f"x {reference}" if reference else f"x {settings[0]}"

    head = f"{'scenario':<15} {'metric':<8} {'broker':<10}"
    for s in settings:
        head += f" {s + ': median (min-max)':<30} {ratio_head:>10}"
    head += "  lost/dup/reord (failed runs)"
    print(head)
    print("-" * len(head))
    for bench in benches:
        rows = [r for r in runs if r["bench"] == bench]
        scenario = next((r.get("scenario") for r in rows if r.get("scenario")), "")
        for key, unit, _higher in METRICS.get(scenario, DEFAULT):
            medians = {}
            cells = {}
            for b in brokers:
                for s in settings:
                    mine = [r for r in rows if r.get("label") == b and settings_of(r) == s]
                    medians[(b, s)], cells[(b, s)] = median_of(mine, key)
            for b in brokers:
                if all(cells[(b, s)] == "-" for s in settings):
                    continue
                line = f"{bench:<15} {unit:<8} {b:<10}"
                for s in settings:
                    m = medians[(b, s)]
                    o = medians.get((reference, s)) if reference else medians.get((b, settings[0]))
                    ratio = f"{m / o:.2f}x" if m is not None and o else "-"
                    line += f" {cells[(b, s)]:<30} {ratio:>10}"
                mine = [r for r in rows if r.get("label") == b]
                lost = sum(r.get("lost", 0) for r in mine)
                dup = sum(r.get("duplicates", 0) for r in mine)
                reord = sum(r.get("reordered", 0) for r in mine)
                failed = sum(1 for r in mine if not r.get("ok"))
                line += f"  {lost}/{dup}/{reord} ({failed})"
                print(line)
    runtimes = [b for b in brokers if b.startswith("tinymqtt-")]
    if runtimes and "tinymqtt" in brokers:
        print("\nruntimes against tokio (ratio of medians, tinymqtt-X / tinymqtt):")
        for s in settings:
            for bench in benches:
                rows = [r for r in runs if r["bench"] == bench and settings_of(r) == s]
                scenario = next((r.get("scenario") for r in rows if r.get("scenario")), "")
                for key, unit, _higher in METRICS.get(scenario, DEFAULT):
                    def med(b):
                        return median_of([r for r in rows if r.get("label") == b], key)[0]
                    tokio = med("tinymqtt")
                    line = f"{bench:<15} {unit:<8} {s:<10} tokio {fmt(tokio)}"
                    for b in runtimes:
                        m = med(b)
                        ratio = f"{m / tokio:.2f}x" if m is not None and tokio else "-"
                        line += f"  {b[len('tinymqtt-'):]} {fmt(m)} ({ratio})"
                    print(line)
    print("\ncores used (median over rounds): load tool / broker")
    for bench in benches:
        for s in settings:
            rows = [r for r in runs if r["bench"] == bench and settings_of(r) == s]
            line = f"{bench:<15} {s:<10}"
            shown = False
            for b in brokers:
                tool = [r["tool_cpu"] for r in rows if r.get("label") == b and r.get("tool_cpu") is not None]
                broker = [r["broker_cpu"] for r in rows if r.get("label") == b and r.get("broker_cpu") is not None]
                if tool or broker:
                    shown = True
                    t = f"{statistics.median(tool):.2f}" if tool else "-"
                    k = f"{statistics.median(broker):.2f}" if broker else "-"
                    line += f" {b}: {t} / {k}  "
            if shown:
                print(line)
    print("\nper broker core (median over rounds of rate / broker cores; steadier than the rate when"
          " other work shares the machine)")
    for bench in benches:
        for s in settings:
            rows = [r for r in runs if r["bench"] == bench and settings_of(r) == s and r.get("ok")
                    and r.get("broker_cpu") and r.get("rate")
                    and r.get("scenario") not in ("latency", "connections")]
            line = f"{bench:<15} {s:<10}"
            for b in brokers:
                vals = [r["rate"] / r["broker_cpu"] for r in rows if r.get("label") == b]
                if vals:
                    line += f" {b}: {fmt(statistics.median(vals))}  "
            if rows:
                print(line)
    peaks = [r for r in runs if r.get("broker_peak_rss")]
    if peaks:
        print("\nbroker peak memory (VmHWM of a broker started for the run, median over rounds, MiB)")
        for bench in benches:
            for s in settings:
                rows = [r for r in peaks if r["bench"] == bench and settings_of(r) == s]
                line = f"{bench:<15} {s:<10}"
                for b in brokers:
                    vals = [r["broker_peak_rss"] for r in rows if r.get("label") == b]
                    if vals:
                        line += f" {b}: {statistics.median(vals) / 1048576:.1f}  "
                if rows:
                    print(line)
    failures = [r for r in runs if not r.get("ok")]
    if failures:
        print("\nfailed runs:")
        for r in failures:
            print(f"  {r['bench']} {settings_of(r)} round {r.get('round')} {r.get('label')}: "
                  f"{r.get('error') or 'check failed'}"
                  f" (lost {r.get('lost', 0)}, duplicates {r.get('duplicates', 0)}, reordered {r.get('reordered', 0)})")
    print("\nratios are of medians; for latency and B/conn lower is better, for rates higher is better;")
    print("* every run failed its checks (loss, duplicates, reordering or errors): the figure is not valid")


if __name__ == "__main__":
    main(sys.argv[1])
