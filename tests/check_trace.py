#!/usr/bin/env python3
"""Checks a cio trace (CIO_TRACE=file.json): it is well-formed JSON in
Chrome's Trace Event Format; every event has its fields; every slice is
closed (a complete event with a duration >= 0); on each row the slices
follow one another without overlapping (a task is running or waiting, not
both); every task row is named; nothing was lost. With --cake, the order
examples/cake.c must show: the oven's and the mixer's sleeps overlap,
and the kitchen bakes (its last sleep) only after both ended.

Usage: check_trace.py [--cake] TRACE.json   (exits 1 listing what is wrong)
"""
import json
import sys


def problems(trace, cake):
    bad = []
    if trace.get('otherData', {}).get('lost_events') is not False:
        bad.append('events were lost (or the flag is missing)')
    events = trace.get('traceEvents')
    if not isinstance(events, list) or not events:
        return bad + ['no traceEvents']
    names, rows = {}, {}
    for i, e in enumerate(events):
        ph = e.get('ph')
        if ph == 'M':
            if e.get('name') == 'thread_name':
                names[(e['pid'], e['tid'])] = e['args']['name']
            continue
        if ph not in ('X', 'i'):
            bad.append('event %d: phase %r (only X, i and M are made)' % (i, ph))
            continue
        for field in ('name', 'pid', 'tid', 'ts'):
            if field not in e:
                bad.append('event %d: no %s' % (i, field))
        if ph == 'X':
            if not isinstance(e.get('dur'), (int, float)) or e['dur'] < 0:
                bad.append('event %d (%s): not closed (dur %r)'
                           % (i, e.get('name'), e.get('dur')))
                continue
            rows.setdefault((e['pid'], e['tid']), []).append(e)
    for row, slices in rows.items():
        if row not in names:
            bad.append('row %s has no name' % (row,))
        slices.sort(key=lambda e: e['ts'])
        for a, b in zip(slices, slices[1:]):
            if b['ts'] < a['ts'] + a['dur'] - 0.002:  # the printed rounding
                bad.append('row %s: %s at %.3f overlaps %s ending %.3f'
                           % (names.get(row, row), b['name'], b['ts'],
                              a['name'], a['ts'] + a['dur']))
    if cake:
        bad += cake_order(rows, names)
    return bad


def cake_order(rows, names):
    by_name = {names.get(k): v for k, v in rows.items()}
    sleeps = {}
    for who in ('oven', 'mixer', 'kitchen'):
        if who not in by_name:
            return ['no row named %r' % who]
        sleeps[who] = [e for e in by_name[who] if e['name'] == 'sleep']
        if not sleeps[who]:
            return ['%s never slept' % who]
    oven, mixer = sleeps['oven'][0], sleeps['mixer'][0]
    bake = sleeps['kitchen'][-1]
    bad = []
    if not (oven['ts'] < mixer['ts'] + mixer['dur'] and
            mixer['ts'] < oven['ts'] + oven['dur']):
        bad.append('preheating and mixing did not overlap')
    for e, who in ((oven, 'preheating'), (mixer, 'mixing')):
        if bake['ts'] < e['ts'] + e['dur']:
            bad.append('baking began before %s ended' % who)
    return bad


def main(argv):
    args = [a for a in argv[1:] if a != '--cake']
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        with open(args[0]) as f:
            trace = json.load(f)
    except (OSError, ValueError) as e:
        print('FAIL trace %s: %s' % (args[0], e))
        return 1
    bad = problems(trace, '--cake' in argv)
    for b in bad:
        print('FAIL trace %s: %s' % (args[0], b))
    if not bad:
        print('ok   trace %s (%d events)' % (args[0],
                                            len(trace['traceEvents'])))
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
