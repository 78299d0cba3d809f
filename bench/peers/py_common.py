"""Helpers shared by the Python peer benchmarks (py_loop.py, py_tasks.py).

Run the peers with the system interpreter (/usr/bin/python3, 3.11), which
is where Debian's python3-uvloop is installed.
"""
import argparse
import asyncio
import resource


def parse_args(benches, defaults):
    """Parse `BENCH [COUNT] [--uvloop]`; return (bench, count, loop factory, system)."""
    p = argparse.ArgumentParser()
    p.add_argument("bench", choices=benches)
    p.add_argument("count", nargs="?", type=int, default=None,
                   help="override the default count (quick smoke runs)")
    p.add_argument("--uvloop", action="store_true",
                   help="run on uvloop's event loop instead of asyncio's")
    a = p.parse_args()
    count = a.count if a.count is not None else defaults[a.bench]
    if count <= 0:
        p.error("count must be positive")
    if a.uvloop:
        import uvloop  # imported only when asked, so asyncio runs need nothing extra
        return a.bench, count, uvloop.new_event_loop, "uvloop"
    return a.bench, count, asyncio.new_event_loop, "asyncio"


def peak_rss_kib():
    """Peak resident set size of this process in KiB (Linux ru_maxrss unit)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def report(name, system, value, unit, fmt="{:.1f}"):
    print(f"bench {name} {system} {fmt.format(value)} {unit}", flush=True)
