#!/usr/bin/env python3
"""Prints scripts/bench-flink's table from measure.py's JSON files.

Usage: report.py DIR SMALL LARGE NAME[=LABEL]...

DIR holds NAME-SMALL-I.json and NAME-LARGE-I.json (I = 1, 2, …) for every
system NAME; repeated runs of a size count by their median wall and CPU
time. The net figures divide the records of the large run beyond the
small one by the time beyond the small run's: the small run is the
system's fixed cost (start-up, plan, shutdown), paid once per job whatever
the input.
"""

import glob
import json
import statistics
import sys

TARGET = 3.0


def load(out, name, n):
    """The runs of NAME on N records, as one: median times, largest RSS,
    and the processes of the run whose CPU time is the median one."""
    runs = [json.load(open(path)) for path in sorted(glob.glob(f"{out}/{name}-{n}-*.json"))]
    middle = sorted(runs, key=lambda r: r["cpu"])[(len(runs) - 1) // 2]
    return {
        "wall": statistics.median(r["wall"] for r in runs),
        "cpu": statistics.median(r["cpu"] for r in runs),
        "rss_kib": max(r["rss_kib"] for r in runs),
        "processes": middle["processes"],
        "repeats": len(runs),
    }


def main():
    out, small, large = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    systems = [arg.partition("=")[::2] for arg in sys.argv[4:]]

    print("| system | records | wall s | CPU s | net rec/s | net rec per CPU-s | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    per_cpu = {}
    for name, label in systems:
        runs = [load(out, name, n) for n in (small, large)]
        for n, run in zip((small, large), runs):
            net = ("–", "–")
            if n == large:
                extra = large - small
                wall = run["wall"] - runs[0]["wall"]
                cpu = run["cpu"] - runs[0]["cpu"]
                # Too few records to rise above the fixed cost's noise.
                if wall > 0 and cpu > 0:
                    per_cpu[name] = extra / cpu
                    net = (f"{extra / wall / 1e3:,.0f}k", f"{per_cpu[name] / 1e3:,.0f}k")
            times = f" (median of {run['repeats']})" if run["repeats"] > 1 else ""
            print(f"| {label or name} | {n:,}{times} | {run['wall']:.2f} | {run['cpu']:.2f} | "
                  f"{net[0]} | {net[1]} | {run['rss_kib'] / 1024:,.0f} |")

    # Where the CPU went: shows the JVM that PyFlink starts is counted.
    print()
    for name, label in systems:
        for n in (small, large):
            run = load(out, name, n)
            parts = " + ".join(f"{p['name']} {p['cpu']:.2f}" for p in run["processes"])
            print(f"CPU s of {label or name}, {n:,} records: {parts}")

    apiary, *flinks = systems
    print()
    for name, label in flinks:
        if apiary[0] not in per_cpu or name not in per_cpu:
            print(f"Apiary / {label or name}: no net figure, raise RECORDS")
            continue
        ratio = per_cpu[apiary[0]] / per_cpu[name]
        verdict = "met" if ratio >= TARGET else "not met"
        print(f"Apiary / {label or name}, net records per CPU-second: "
              f"{ratio:.2f}× (target ≥ {TARGET:g}×: {verdict})")


if __name__ == "__main__":
    main()
