#!/usr/bin/env python3
"""Reads `perf script --no-inline` output and prints, per function, the share
of samples whose stack contains it (inclusive %), or what a function calls.

  perf_frames.py SCRIPT [--from S] [--to S] [--match REGEX] [--top N]
      inclusive share of every frame (optionally only frames matching REGEX)
  perf_frames.py SCRIPT [--from S] [--to S] --callees REGEX [--top N]
      for samples whose stack holds a frame matching REGEX, the frame
      right below its outermost match (what its time is spent in)

--from/--to keep samples taken S seconds after the first one (a benchmark's
phase: e.g. only while pods are scheduled, not the clean-up).
"""
import argparse
import collections
import re

ap = argparse.ArgumentParser()
ap.add_argument("script")
ap.add_argument("--from", dest="lo", type=float, default=0.0)
ap.add_argument("--to", dest="hi", type=float, default=float("inf"))
ap.add_argument("--match")
ap.add_argument("--callees")
ap.add_argument("--top", type=int, default=50)
a = ap.parse_args()

stamp = re.compile(r" (\d+\.\d+): ")
samples, cur, t0, keep = [], None, None, False
for line in open(a.script, errors="replace"):
    if not line.strip():
        if cur is not None and keep:
            samples.append(cur)
        cur = None
        continue
    if not line[0].isspace():
        m = stamp.search(line)
        t = float(m.group(1)) if m else 0.0
        t0 = t if t0 is None else t0
        keep, cur = a.lo <= t - t0 <= a.hi, []
        continue
    if cur is not None:
        parts = line.strip().split(" ", 1)
        f = parts[1] if len(parts) > 1 else "?"
        f = re.sub(r"\+0x[0-9a-f]+ \(.*\)$", "", f)
        cur.append(re.sub(r" \(/.*\)$", "", f)[:150])
if cur is not None and keep:
    samples.append(cur)

n = max(len(samples), 1)
count = collections.Counter()
if a.callees:
    pat = re.compile(a.callees)
    hit = 0
    for st in samples:  # st[0] is the leaf
        idx = [i for i, f in enumerate(st) if pat.search(f)]
        if idx:
            hit += 1
            i = max(idx)
            count[st[i - 1] if i > 0 else "<self>"] += 1
    print(f"samples {len(samples)}, with a match {hit} ({100 * hit / n:.1f}%)")
else:
    pat = re.compile(a.match) if a.match else None
    for st in samples:
        for f in set(st):
            if pat is None or pat.search(f):
                count[f] += 1
    print(f"samples {len(samples)}")
for f, c in count.most_common(a.top):
    print(f"{100 * c / n:5.1f}% {f}")
