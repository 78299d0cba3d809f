#!/usr/bin/env python3
"""Draws a cio trace (CIO_TRACE=file.json, cio_loop_trace_start) as an SVG
timeline: one row per task (and for the loop's callbacks, and for each
executor worker), time running left to right. A task's run slices are
dark; what it waited on is a light bar with the wait's name on it; timers
and ready fds are ticks on the loop's row. Only the standard library.

Usage: trace_svg.py TRACE.json [OUT.svg] [--title TEXT] [--no-loop]
  --no-loop   leave out the loop's own row (the picture of the tasks alone)
Perfetto (ui.perfetto.dev) shows the same file interactively."""
import html
import json
import sys

ROW_H, BAR_H, LABEL_W, PLOT_W, TOP = 30, 18, 110, 640, 40
RUN, WAIT, TICK, JOB = '#2b5d8a', '#c9dcef', '#888888', '#8a5d2b'


def rows_of(events, with_loop):
    """Each (pid, tid) row: its name and sort key, in display order."""
    names, order = {}, {}
    for e in events:
        if e.get('ph') != 'M':
            continue
        key = (e['pid'], e.get('tid'))
        if e['name'] == 'thread_name':
            names[key] = e['args']['name']
        elif e['name'] == 'thread_sort_index':
            order[key] = e['args']['sort_index']
    used = {(e['pid'], e['tid']) for e in events if e.get('ph') in 'Xi'}
    rows = [k for k in used if with_loop or k[1] != 0]
    rows.sort(key=lambda k: (k[0], k[1] != 0, order.get(k, k[1])))
    return [(k, names.get(k, 'row %s' % k[1])) for k in rows]


def draw(events, title, with_loop):
    rows = rows_of(events, with_loop)
    index = {k: i for i, (k, _) in enumerate(rows)}
    timed = [e for e in events if e.get('ph') in 'Xi' and
             (e['pid'], e['tid']) in index]
    end = max([e['ts'] + e.get('dur', 0) for e in timed] + [1])
    scale = PLOT_W / end
    height = TOP + ROW_H * len(rows) + 40
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'font-family="sans-serif" font-size="12">'
           % (LABEL_W + PLOT_W + 20, height),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="10" y="20" font-size="14">%s</text>' % html.escape(title)]
    for i, (_, name) in enumerate(rows):
        y = TOP + i * ROW_H
        out.append('<text x="10" y="%d">%s</text>'
                   % (y + BAR_H - 4, html.escape(name)))
        out.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#eee"/>'
                   % (LABEL_W, LABEL_W + PLOT_W, y + BAR_H + 5,
                      y + BAR_H + 5))
    for e in timed:
        y = TOP + index[(e['pid'], e['tid'])] * ROW_H
        x = LABEL_W + e['ts'] * scale
        if e['ph'] == 'i':
            out.append('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" '
                       'stroke="%s"/>' % (x, x, y, y + BAR_H, TICK))
            continue
        w = max(e['dur'] * scale, 1.0)
        run = e['name'] in ('run', 'callback')
        fill = RUN if run else JOB if e['name'] == 'executor job' else WAIT
        out.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s">'
                   '<title>%s %.3f ms</title></rect>'
                   % (x, y, w, BAR_H, fill, html.escape(e['name']),
                      e['dur'] / 1000))
        if not run and w > 8 * len(e['name']):
            out.append('<text x="%.1f" y="%d">%s</text>'
                       % (x + 4, y + BAR_H - 5, html.escape(e['name'])))
    # The time axis, in milliseconds.
    y = TOP + ROW_H * len(rows) + 5
    step = nice_step(end / 1000)
    t = 0.0
    while t * 1000 <= end:
        x = LABEL_W + t * 1000 * scale
        out.append('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#444"/>'
                   '<text x="%.1f" y="%d" text-anchor="middle">%g ms</text>'
                   % (x, x, y, y + 5, x, y + 18, round(t, 6)))
        t += step
    out.append('</svg>')
    return '\n'.join(out) + '\n'


def nice_step(total_ms):
    """A round tick spacing giving about five to ten ticks."""
    step = 1e-3
    while total_ms / step > 10:
        for m in (2, 2.5, 2):
            step *= m
            if total_ms / step <= 10:
                break
    return step


def main(argv):
    args = [a for a in argv[1:] if not a.startswith('--')]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    title = 'cio trace: ' + args[0]
    if '--title' in argv:
        title = argv[argv.index('--title') + 1]
        args.remove(title)
    with open(args[0]) as f:
        events = json.load(f)['traceEvents']
    svg = draw(events, title, '--no-loop' not in argv)
    if len(args) > 1:
        with open(args[1], 'w') as f:
            f.write(svg)
    else:
        sys.stdout.write(svg)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
