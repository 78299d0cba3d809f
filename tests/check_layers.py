#!/usr/bin/env python3
"""Checks that src/ keeps its floors (docs/design.md): every call from one
source file to a function defined in another goes down a floor or stays on
its own, and the call graph between files has no circle. Calls made inside
a header's inline functions count as that header's. Exits 1, listing each
offending arrow, or prints the counts and exits 0.

Usage: check_layers.py [src-dir] [-v]   (-v: every arrow)"""
import glob
import os
import re
import sys

# Bottom up, one floor a line; keep in step with docs/design.md.
FLOORS = """
sys error ctx stack list internal trace
backend_epoll backend_poll
posts
loop
debug
future
task
flow
sync queue waitq
executor
sock net tls
transport
connect sendfile
server
stream
process signal
runner inspect
"""
floor = {name: i for i, line in enumerate(FLOORS.strip().split('\n'))
         for name in line.split()}

CALL = re.compile(r'\b(cio_\w+)\s*\(')
DEF = re.compile(r'^[a-zA-Z_][\w \*]*?\b(cio_\w+)\s*\([^;]*?\)\s*\{', re.M)
INLINE = re.compile(r'static inline [\w \*]*?\b(cio_\w+)\s*\([^;{]*\)\s*\{')


def strip(text):
    text = re.sub(r'/\*.*?\*/', '', text, flags=re.S)
    return re.sub(r'"(\\.|[^"\\])*"', '""', text)


def body_after(text, start):
    depth, i = 1, start
    while depth and i < len(text):
        depth += {'{': 1, '}': -1}.get(text[i], 0)
        i += 1
    return text[start:i]


def read(src):
    defs, code = {}, {}
    for path in sorted(glob.glob(os.path.join(src, '*.c'))):
        name = os.path.basename(path)[:-2]
        code[name] = strip(open(path).read())
        for m in DEF.finditer(code[name]):
            defs[m.group(1)] = name
    for path in sorted(glob.glob(os.path.join(src, '*.h'))):
        name = os.path.basename(path)[:-2]
        text, bodies = strip(open(path).read()), []
        for m in INLINE.finditer(text):
            defs[m.group(1)] = name
            bodies.append(body_after(text, m.end()))
        code[name] = '\n'.join(bodies)
    return defs, code


def circles(edges):
    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def main():
    args = [a for a in sys.argv[1:] if a != '-v']
    src = args[0] if args else 'src'
    defs, code = read(src)
    edges = {}
    for name, text in code.items():
        for m in CALL.finditer(text):
            to = defs.get(m.group(1))
            if to and to != name:
                edges.setdefault((name, to), set()).add(m.group(1))
    bad = []
    for (a, b), fns in sorted(edges.items()):
        up = a in floor and b in floor and floor[b] > floor[a]
        if '-v' in sys.argv:
            print(f'{a} -> {b}{"  UP" if up else ""}: {", ".join(sorted(fns))}')
        if up:
            bad.append(f'{a} calls up into {b}: {", ".join(sorted(fns))}')
    placed = {n for n in code if code[n]}
    for n in sorted(placed - set(floor)):
        bad.append(f'{n} has no floor (add it to FLOORS and docs/design.md)')
    for comp in circles(edges):
        bad.append('circle: ' + ' -> '.join(comp))
    for line in bad:
        print(f'check_layers: {line}')
    if not bad:
        print(f'layers OK: {len(code)} files, {len(edges)} arrows, none up')
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
