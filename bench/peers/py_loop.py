#!/usr/bin/python3
"""Loop-level peer benchmarks for asyncio and uvloop (issue "foundation").

Usage: py_loop.py {callsoon,timers,threadsafe} [COUNT] [--uvloop]

Every benchmark drives the loop with plain callbacks (no coroutines), so it
measures the event loop itself. The same code runs on both loops; only the
loop object differs.
"""
import random
import threading
import time

from py_common import parse_args, peak_rss_kib, report

DEFAULTS = {"callsoon": 1_000_000, "timers": 1_000_000, "threadsafe": 1_000_000}
SEED = 12345


def bench_callsoon(loop, n, system):
    """A chain of n callbacks; each one schedules the next with call_soon."""
    count = 0

    def step():
        nonlocal count
        count += 1
        if count < n:
            loop.call_soon(step)
        else:
            loop.stop()

    t0 = time.perf_counter_ns()
    loop.call_soon(step)
    loop.run_forever()
    t1 = time.perf_counter_ns()
    assert count == n, count
    report("callsoon", system, (t1 - t0) / n, "ns/op")


def bench_timers(loop, n, system):
    """n call_later timers, delays uniform in [0, 1) s (fixed seed), all fired.

    Time runs from the start of scheduling until the last timer fires.
    Delays are drawn while scheduling (not precomputed) so no extra list of
    a million floats inflates the RSS figure.
    """
    rnd = random.Random(SEED)
    fired = 0

    def on_timer():
        nonlocal fired
        fired += 1
        if fired == n:
            loop.stop()

    t0 = time.perf_counter_ns()
    for _ in range(n):
        loop.call_later(rnd.random(), on_timer)
    loop.run_forever()
    t1 = time.perf_counter_ns()
    assert fired == n, fired
    report("timers", system, (t1 - t0) / n, "ns/timer")
    report("timers_rss", system, peak_rss_kib(), "KiB", "{}")


def bench_threadsafe(loop, n, system):
    """A threading.Thread posts n callbacks with call_soon_threadsafe.

    Time runs from the poster's first post until the loop ran the last one.
    """
    delivered = 0
    t = {}

    def on_item():
        nonlocal delivered
        delivered += 1
        if delivered == n:
            t["end"] = time.perf_counter_ns()
            loop.stop()

    def poster():
        post = loop.call_soon_threadsafe
        t["start"] = time.perf_counter_ns()
        for _ in range(n):
            post(on_item)

    th = threading.Thread(target=poster)
    # Start the thread from inside the running loop, so no post can land
    # before the loop is running.
    loop.call_soon(th.start)
    loop.run_forever()
    th.join()
    assert delivered == n, delivered
    report("threadsafe", system, (t["end"] - t["start"]) / n, "ns/op")


def main():
    bench, n, new_loop, system = parse_args(list(DEFAULTS), DEFAULTS)
    loop = new_loop()
    try:
        globals()["bench_" + bench](loop, n, system)
    finally:
        loop.close()


if __name__ == "__main__":
    main()
