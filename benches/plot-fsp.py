#!/usr/bin/env python3
"""Both phases of a striped mover push over time, one chart per row of a benches/run-fsp.sh run.

    python3 benches/plot-fsp.py benches/results/fsp-DATE-ts.csv [--runs fsp-DATE-raw.jsonl] [--out PREFIX]
                                [--rows in123-direct-overlap,in123-direct] [--repeat 1]

Reads the samples (row,repeat,t_s,spool_bytes,recv_root_bytes,dest_bytes: allocated bytes every 0.2 s) and,
if given, the runs (labels, file size, send_seconds and seconds of mover push --json); writes
PREFIX-<row>.svg for each row (its first repeat unless --repeat says otherwise; PREFIX defaults to the CSV's
name without "-ts.csv") and prints a markdown list of them on stdout. Each chart shows
  - the sending phase: bytes held by the relays' spools plus the bytes under the receiver's root (everything
    the sender has handed off), reaching the file's size when the sender could go away;
  - the receiving phase: the destination file's own data at the receiver (its partial or final file);
  - the relays' spools alone (dotted), and marks at send_seconds ("sent") and seconds ("verified").
Hand-written SVG: needs nothing beyond the standard library (no matplotlib on the benchmark machines).
"""

import argparse
import csv
import json
import math
import os
import sys
from xml.sax.saxutils import escape

W, H = 760, 400
ML, MR, MT, MB = 70, 20, 48, 78  # margins: left, right, top, bottom
COLORS = {"held": "#d62728", "dest": "#1f77b4", "spool": "#7f7f7f"}


def nice_step(span, ticks=6):
    if span <= 0:
        return 1.0
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def fmt_num(v):
    return f"{v:.0f}" if abs(v - round(v)) < 1e-9 else f"{v:g}"


def chart(title, subtitle, series, size, marks, unit_bytes, unit_name):
    """series: [(key, label, [(t, bytes)], dashed)]; marks: [(t, label)]."""
    t_max = max([t for _, _, pts, _ in series for t, _ in pts] + [t for t, _ in marks] + [1e-3])
    y_max = max([b for _, _, pts, _ in series for _, b in pts] + [size or 0, 1]) / unit_bytes
    xs, ys = nice_step(t_max), nice_step(y_max)
    x_top, y_top = math.ceil(t_max / xs) * xs, math.ceil(y_max * 1.04 / ys) * ys
    pw, ph = W - ML - MR, H - MT - MB

    def X(t):
        return ML + pw * t / x_top

    def Y(v):
        return MT + ph * (1 - v / y_top)

    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
         f'font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="15" font-weight="bold">{escape(title)}</text>',
         f'<text x="{W / 2}" y="37" text-anchor="middle" fill="#444">{escape(subtitle)}</text>']
    # grid and axes
    v = 0.0
    while v <= y_top + 1e-9:
        y = Y(v)
        o.append(f'<line x1="{ML}" y1="{y:.1f}" x2="{W - MR}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        o.append(f'<text x="{ML - 6}" y="{y + 4:.1f}" text-anchor="end">{fmt_num(v)}</text>')
        v += ys
    t = 0.0
    while t <= x_top + 1e-9:
        x = X(t)
        o.append(f'<line x1="{x:.1f}" y1="{MT}" x2="{x:.1f}" y2="{MT + ph}" stroke="#f0f0f0"/>')
        o.append(f'<text x="{x:.1f}" y="{MT + ph + 16}" text-anchor="middle">{fmt_num(t)}</text>')
        t += xs
    o.append(f'<rect x="{ML}" y="{MT}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    o.append(f'<text x="{ML + pw / 2}" y="{MT + ph + 34}" text-anchor="middle">seconds since the push started</text>')
    o.append(f'<text x="16" y="{MT + ph / 2}" text-anchor="middle" transform="rotate(-90 16 {MT + ph / 2})">'
             f'{unit_name}</text>')
    if size:
        y = Y(size / unit_bytes)
        o.append(f'<line x1="{ML}" y1="{y:.1f}" x2="{W - MR}" y2="{y:.1f}" stroke="#000" stroke-dasharray="6 4"/>')
        o.append(f'<text x="{ML + 4}" y="{y - 4:.1f}" fill="#000">file size</text>')
    for t, label in marks:
        x = X(t)
        o.append(f'<line x1="{x:.1f}" y1="{MT}" x2="{x:.1f}" y2="{MT + ph}" stroke="#555" stroke-dasharray="2 3"/>')
        o.append(f'<text x="{x - 4:.1f}" y="{MT + 12}" text-anchor="end" fill="#555">{escape(label)}</text>')
    for key, label, pts, dashed in series:
        if not pts:
            continue
        d = " ".join(f"{X(t):.1f},{Y(b / unit_bytes):.1f}" for t, b in pts)
        dash = ' stroke-dasharray="2 3"' if dashed else ""
        o.append(f'<polyline fill="none" stroke="{COLORS[key]}" stroke-width="{1.5 if dashed else 2.2}"{dash} '
                 f'points="{d}"/>')
    # legend below the plot
    lx, ly = ML, H - 14
    for key, label, pts, dashed in series:
        dash = ' stroke-dasharray="2 3"' if dashed else ""
        o.append(f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 24}" y2="{ly - 4}" stroke="{COLORS[key]}" '
                 f'stroke-width="2.2"{dash}/>')
        o.append(f'<text x="{lx + 30}" y="{ly}">{escape(label)}</text>')
        lx += 36 + 6.4 * len(label)
    o.append("</svg>")
    return "\n".join(o) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ts")
    ap.add_argument("--runs", help="the run's -raw.jsonl (labels, size, send_seconds, seconds)")
    ap.add_argument("--out", help="output prefix (default: the CSV's path without -ts.csv)")
    ap.add_argument("--rows", help="comma-separated row ids (default: every row in the CSV)")
    ap.add_argument("--repeat", type=int, default=None, help="which repeat to draw (default: the first)")
    a = ap.parse_args()
    prefix = a.out or (a.ts[:-len("-ts.csv")] if a.ts.endswith("-ts.csv") else os.path.splitext(a.ts)[0])

    samples = {}
    for r in csv.DictReader(open(a.ts)):
        try:
            key = (r["row"], int(r["repeat"]))
            s = [float(r["t_s"]), int(float(r["spool_bytes"] or 0)), int(float(r["recv_root_bytes"] or 0)),
                 int(float(r["dest_bytes"] or 0))]
        except (KeyError, ValueError):
            continue
        samples.setdefault(key, []).append(s)
    runs = {}
    if a.runs and os.path.exists(a.runs):
        for line in open(a.runs):
            if line.strip():
                j = json.loads(line)
                runs[(j["row"], j["repeat"])] = j
    order = []
    for row, _ in list(samples) + list(runs):
        if row not in order:
            order.append(row)
    if a.rows:
        order = [r for r in a.rows.split(",") if r in order]
    written = []
    for row in order:
        reps = sorted(rep for r, rep in samples if r == row)
        if not reps:
            continue
        rep = a.repeat if a.repeat in reps else reps[0]
        pts = sorted(samples[(row, rep)])
        run = runs.get((row, rep), {})
        push = run.get("push") or {}
        size = run.get("size") or push.get("bytes")
        big = max([size or 0] + [s[1] + s[2] for s in pts]) >= 2 ** 30
        unit, unit_name = (2 ** 30, "GiB") if big else (2 ** 20, "MiB")
        series = [
            ("held", "sending phase: held by relays + receiver", [(s[0], s[1] + s[2]) for s in pts], False),
            ("dest", "receiving phase: destination file", [(s[0], s[3]) for s in pts], False),
        ]
        if any(s[1] for s in pts):
            series.append(("spool", "relays' spools", [(s[0], s[1]) for s in pts], True))
        marks = []
        if isinstance(push.get("send_seconds"), (int, float)):
            marks.append((push["send_seconds"], "sent"))
        if isinstance(push.get("seconds"), (int, float)):
            marks.append((push["seconds"], "verified"))

        def mb(k):
            v = push.get(k)
            return "–" if not isinstance(v, (int, float)) else f"{v / 1e6:.1f}"
        title = run.get("label", row) + (f" (run {rep})" if len(reps) > 1 else "")
        sub = (f"mover send {mb('send_goodput_bps')} Mbit/s (max {run['send_max_bps'] / 1e6:.0f}), "
               f"total {mb('goodput_bps')} Mbit/s; {run.get('status', '?')}" if run else "no run record")
        path = f"{prefix}-{row}.svg"
        with open(path, "w") as f:
            f.write(chart(title, sub, series, size, marks, unit, unit_name))
        written.append((run.get("label", row), path))
    if not written:
        print("plot-fsp.py: no samples to plot", file=sys.stderr)
        return 1
    print("\nPlots (bytes handed off by the sender and bytes of the destination file over time):\n")
    for label, path in written:
        print(f"- {label}: [{os.path.basename(path)}]({os.path.basename(path)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
