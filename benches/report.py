#!/usr/bin/env python3
"""Summarises a `cargo bench -p pgmoneta-benches --bench codecs` run as a Markdown table:
throughput of each benchmark and, where a group has a `reference` (the library used directly),
our time as a ratio of it for the same level."""
import json
import os
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "target/criterion"
rows = []
for group in sorted(os.listdir(root)):
    gdir = os.path.join(root, group)
    if not os.path.isdir(gdir) or group == "report":
        continue
    for dirpath, _, files in os.walk(gdir):
        if "benchmark.json" not in files or not dirpath.endswith("new"):
            continue
        bench = json.load(open(os.path.join(dirpath, "benchmark.json")))
        est = json.load(open(os.path.join(dirpath, "estimates.json")))
        ns = est["mean"]["point_estimate"]
        nbytes = (bench.get("throughput") or {}).get("Bytes")
        rows.append((bench["group_id"], bench.get("function_id") or "", bench.get("value_str") or "", ns, nbytes))

by_key = {(g, f, v): ns for g, f, v, ns, _ in rows}
print("| benchmark | variant | throughput | ours / reference |")
print("|---|---|---|---|")
for g, f, v, ns, nbytes in rows:
    mbs = nbytes / ns * 1e3 if nbytes else 0
    ratio = ""
    if f == "ours" and (g, "reference", v) in by_key:
        ratio = "%.3f" % (ns / by_key[(g, "reference", v)])
    name = f + ("/" + v if v else "")
    print("| %s | %s | %s | %s |" % (g, name, ("%.0f MB/s" % mbs) if mbs < 10000 else ("%.1f GB/s" % (mbs / 1000)), ratio))
