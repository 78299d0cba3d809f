#!/usr/bin/env python3
"""Draws one `make bench` run's figures as grouped bars, an SVG.

  python3 tools/bench_svg.py RUN.txt PATTERN TITLE OUT.svg

RUN.txt holds the `bench <name> <system> <value> <unit>` lines of a run
(the output of `make bench`, kept in docs/figures/ beside the plot);
PATTERN is a regular expression the measurement names must match
(`^http_[a-z0-9]+$`: the throughputs, without their _p99 rows). One group
a measurement, one bar a system, each bar's height its value over the
group's largest, its figure written on it; cio first, in its own colour.
Only the standard library: the docs build needs nothing more.
"""
import re
import sys
from xml.sax.saxutils import escape

COLOURS = ["#2b6cb0", "#a0aec0", "#718096", "#cbd5e0", "#4a5568", "#e2e8f0"]


def read(path, pattern):
    rows, systems, units = {}, [], {}
    for line in open(path):
        f = line.split()
        if len(f) != 5 or f[0] != "bench" or not re.search(pattern, f[1]):
            continue
        try:
            value = float(f[3])
        except ValueError:
            continue  # unavailable, failed
        rows.setdefault(f[1], {})[f[2]] = value
        units[f[1]] = f[4]
        if f[2] not in systems:
            systems.append(f[2])
    order = list(systems)
    systems.sort(key=lambda s: (not s.startswith("cio"), order.index(s)))
    return rows, systems, units


def draw(rows, systems, units, title):
    bar, gap, top, height, left = 26, 34, 56, 220, 20
    group = bar * len(systems) + gap
    width = max(left * 2 + group * len(rows), 480)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{top + height + 60}" font-family="sans-serif" font-size="11">',
           f'<text x="{left}" y="22" font-size="14">{escape(title)}</text>']
    for i, s in enumerate(systems):  # the legend
        x = left + i * 110
        out.append(f'<rect x="{x}" y="32" width="10" height="10" '
                   f'fill="{COLOURS[i % len(COLOURS)]}"/>'
                   f'<text x="{x + 14}" y="41">{escape(s)}</text>')
    for g, (name, vals) in enumerate(rows.items()):
        x0 = left + g * group
        most = max(vals.values()) or 1
        for i, s in enumerate(systems):
            if s not in vals:
                continue
            h = height * vals[s] / most
            x, y = x0 + i * bar, top + height - h
            out.append(f'<rect x="{x}" y="{y:.1f}" width="{bar - 3}" '
                       f'height="{h:.1f}" fill="{COLOURS[i % len(COLOURS)]}"/>')
            v = vals[s]
            label = f"{v / 1000:.0f}k" if v >= 10000 else f"{v:g}"
            out.append(f'<text x="{x + (bar - 3) / 2}" y="{y - 3:.1f}" '
                       f'text-anchor="middle">{label}</text>')
        out.append(f'<text x="{x0 + (group - gap) / 2}" y="{top + height + 16}" '
                   f'text-anchor="middle">{escape(name)}</text>'
                   f'<text x="{x0 + (group - gap) / 2}" y="{top + height + 30}" '
                   f'text-anchor="middle" fill="#555">{escape(units[name])}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    rows, systems, units = read(sys.argv[1], sys.argv[2])
    if not rows:
        sys.exit(f"bench_svg: nothing in {sys.argv[1]} matches {sys.argv[2]}")
    with open(sys.argv[4], "w") as f:
        f.write(draw(rows, systems, units, sys.argv[3]))


if __name__ == "__main__":
    main()
