#!/usr/bin/python3
"""Task-level peer benchmarks for asyncio and uvloop (issues "coroutines", "sync").

Usage: py_tasks.py BENCH [COUNT] [--uvloop]
  spawn             COUNT trivial tasks created, run and waited for (ns/task)
  switch            two tasks hand a value back and forth COUNT times (ns/op)
  sleepers          COUNT tasks each sleep 1 s at once (bytes/task, wall s)
  queue_pingpong    two tasks, two Queue(maxsize=1), COUNT hand-offs (ns/op)
  queue_throughput  4 producers / 4 consumers, one Queue(1024), COUNT items (items/s)
  executor          COUNT run_in_executor round trips, 64 in flight (ns/op)
"""
import asyncio
import time

from py_common import parse_args, peak_rss_kib, report

DEFAULTS = {
    "spawn": 1_000_000,
    "switch": 1_000_000,
    "sleepers": 100_000,
    "queue_pingpong": 1_000_000,
    "queue_throughput": 1_000_000,
    "executor": 100_000,
    "spawn_process": 1_000,
}


class WaitGroup:
    """Minimal counterpart of Go's sync.WaitGroup: one counter + one future.

    Used instead of asyncio.gather/TaskGroup to wait for many tasks, because
    those add a done-callback per task and build a result list; a counter
    is the cheapest way to "wait for all" and is what the Go peer does.
    """
    __slots__ = ("left", "fut")

    def __init__(self, loop, n):
        self.left = n
        self.fut = loop.create_future()

    def done(self):
        self.left -= 1
        if self.left == 0:
            self.fut.set_result(None)


async def bench_spawn(n, system):
    """Create n trivial tasks, all at once (no batching), then wait for all.

    All n tasks exist at the same time (about 1 GB for 1M on CPython), like
    the Go peer where all goroutines are started before Wait. The task body
    only signals the wait group.
    """
    loop = asyncio.get_running_loop()
    wg = WaitGroup(loop, n)

    async def trivial():
        wg.done()

    create_task = loop.create_task
    t0 = time.perf_counter_ns()
    for _ in range(n):
        create_task(trivial())
    await wg.fut
    t1 = time.perf_counter_ns()
    report("spawn", system, (t1 - t0) / n, "ns/op")


class Slot:
    """One-value rendezvous built directly on a Future.

    A bare future per hand-off is the cheapest fair primitive in asyncio:
    asyncio.Event, Queue and Condition are all built on futures and add
    bookkeeping (waiter deques, clear()) on top. Whoever comes first,
    sender or receiver, creates the future.
    """
    __slots__ = ("loop", "fut")

    def __init__(self, loop):
        self.loop = loop
        self.fut = None

    def send(self, value):
        if self.fut is None:
            self.fut = self.loop.create_future()
        self.fut.set_result(value)

    async def recv(self):
        if self.fut is None:
            self.fut = self.loop.create_future()
        value = await self.fut
        self.fut = None
        return value


async def bench_switch(n, system):
    """Two tasks pass a value back and forth; n hand-offs in total
    (A->B and B->A each count as one)."""
    loop = asyncio.get_running_loop()
    to_b, to_a = Slot(loop), Slot(loop)
    rounds = n // 2

    async def a():
        v = 0
        for _ in range(rounds):
            to_b.send(v)
            v = await to_a.recv()
        return v

    async def b():
        for _ in range(rounds):
            v = await to_b.recv()
            to_a.send(v + 1)

    t0 = time.perf_counter_ns()
    ta, tb = loop.create_task(a()), loop.create_task(b())
    await tb
    v = await ta
    t1 = time.perf_counter_ns()
    assert v == rounds, v
    report("switch", system, (t1 - t0) / (2 * rounds), "ns/op")


async def bench_sleepers(n, system):
    """n tasks each asyncio.sleep(1) concurrently.

    bytes/task = (peak RSS after - peak RSS before spawning) / n;
    wall = start of spawning until the last sleeper has finished.
    """
    loop = asyncio.get_running_loop()
    wg = WaitGroup(loop, n)

    async def sleeper():
        await asyncio.sleep(1)
        wg.done()

    before = peak_rss_kib()
    t0 = time.perf_counter_ns()
    for _ in range(n):
        loop.create_task(sleeper())
    await wg.fut
    t1 = time.perf_counter_ns()
    after = peak_rss_kib()
    report("sleepers", system, (after - before) * 1024 / n, "bytes/task", "{:.0f}")
    report("sleepers_wall", system, (t1 - t0) / 1e9, "s", "{:.3f}")


async def bench_queue_pingpong(n, system):
    """Two tasks pass an item through two asyncio.Queue(maxsize=1); n hand-offs
    in total (each put->get transfer counts as one)."""
    loop = asyncio.get_running_loop()
    q_ab, q_ba = asyncio.Queue(maxsize=1), asyncio.Queue(maxsize=1)
    rounds = n // 2

    async def a():
        v = 0
        for _ in range(rounds):
            await q_ab.put(v)
            v = await q_ba.get()
        return v

    async def b():
        for _ in range(rounds):
            v = await q_ab.get()
            await q_ba.put(v + 1)

    t0 = time.perf_counter_ns()
    ta, tb = loop.create_task(a()), loop.create_task(b())
    await tb
    v = await ta
    t1 = time.perf_counter_ns()
    assert v == rounds, v
    report("queue_pingpong", system, (t1 - t0) / (2 * rounds), "ns/op")


async def bench_queue_throughput(n, system):
    """4 producers and 4 consumers move n items through one Queue(maxsize=1024).

    Each producer puts n/4 items and each consumer takes exactly n/4, so no
    sentinels are needed. Reports items per second.
    """
    loop = asyncio.get_running_loop()
    workers = 4
    per = n // workers
    q = asyncio.Queue(maxsize=1024)

    async def producer():
        for i in range(per):
            await q.put(i)

    async def consumer():
        for _ in range(per):
            await q.get()

    t0 = time.perf_counter_ns()
    tasks = [loop.create_task(producer()) for _ in range(workers)]
    tasks += [loop.create_task(consumer()) for _ in range(workers)]
    for t in tasks:
        await t
    t1 = time.perf_counter_ns()
    assert q.empty()
    report("queue_throughput", system, per * workers / ((t1 - t0) / 1e9), "items/s", "{:.0f}")


async def bench_executor(n, system):
    """n loop.run_in_executor round trips of a trivial function on the
    default executor, 64 in flight at a time: each completion (a done
    callback on the loop) submits the next. ns per call, from the first
    submit to the last delivery."""
    loop = asyncio.get_running_loop()
    wg = WaitGroup(loop, n)
    submitted = 0

    def trivial():
        return 1

    def on_done(fut):
        nonlocal submitted
        assert fut.result() == 1
        if submitted < n:
            submitted += 1
            loop.run_in_executor(None, trivial).add_done_callback(on_done)
        wg.done()

    t0 = time.perf_counter_ns()
    for _ in range(min(64, n)):
        submitted += 1
        loop.run_in_executor(None, trivial).add_done_callback(on_done)
    await wg.fut
    t1 = time.perf_counter_ns()
    report("executor", system, (t1 - t0) / n, "ns/op")


async def bench_spawn_process(n, system):
    """n /bin/true children started with create_subprocess_exec, at most 16
    at a time (a Semaphore), each awaited with wait(). Processes per second,
    from the first spawn to the last exit."""
    sem = asyncio.Semaphore(16)

    async def one():
        async with sem:
            proc = await asyncio.create_subprocess_exec("/bin/true")
            assert await proc.wait() == 0

    t0 = time.perf_counter_ns()
    await asyncio.gather(*(one() for _ in range(n)))
    t1 = time.perf_counter_ns()
    report("spawn_process", system, n / ((t1 - t0) / 1e9), "procs/s")


def main():
    bench, n, new_loop, system = parse_args(list(DEFAULTS), DEFAULTS)
    loop = new_loop()
    try:
        loop.run_until_complete(globals()["bench_" + bench](n, system))
    finally:
        loop.close()


if __name__ == "__main__":
    main()
