"""The priority dispatcher: blocking calls (broker, database, log shipping) off the brain's loop.

One background thread runs an asyncio event loop (uvloop when installed) holding an
``asyncio.PriorityQueue`` of ``(priority, sequence, job)``; a scheduler coroutine hands jobs to
a ``ThreadPoolExecutor`` of N workers. Rules:

1. A job is taken from the queue only when a worker is free, so whatever waits when a worker
   frees up is ordered by priority: order actions (``ORDER``) run ahead of queries, account
   polling, persistence and logging. Within one priority, FIFO (the sequence number).
2. Jobs with the same ``key`` (the symbol, for order actions) never run at the same time: a job
   whose key is busy is parked (ordered by priority, then sequence); when the running one ends,
   the key passes straight to the first parked job, which goes back to the queue. Different
   keys run in parallel.
3. Every job ends as a ``Completion`` (result or exception, timings) on the thread-safe
   ``completed`` queue, which the brain's main loop drains without blocking (``drain``), and
   in the ``concurrent.futures.Future`` ``submit`` returned.
4. ``close`` runs the queued ``ORDER`` jobs still (an order action the brain decided on is not
   silently forgotten), drops the rest (counted, their futures cancelled) and joins the thread
   within its timeout, whatever the jobs do.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import structlog

from common.errors import ConfigError, DefinitiveError

log = structlog.get_logger(__name__)

ORDER = 0  # submit / cancel
QUERY = 1  # order status queries, fills
ACCOUNT = 2  # positions / balance polling
PERSIST = 5
LOG = 9

FORCE_STOP_S = 0.2  # close(): time kept back to stop a loop whose jobs hang


@dataclass(frozen=True, kw_only=True)
class Completion:
    tag: Any  # whatever the caller gave submit (a name, or a tuple that routes the answer)
    priority: int
    key: str | None
    result: Any = None
    error: BaseException | None = None
    queued_ns: int = 0  # time.monotonic_ns() at submit
    started_ns: int = 0
    finished_ns: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def wait_s(self) -> float:
        return (self.started_ns - self.queued_ns) / 1e9

    @property
    def run_s(self) -> float:
        return (self.finished_ns - self.started_ns) / 1e9


@dataclass(frozen=True, kw_only=True)
class CloseReport:
    dropped: int  # queued jobs below ORDER priority, never run
    unfinished: int  # jobs still running or queued when the timeout ran out
    clean: bool  # the loop thread ended within the timeout


@dataclass(eq=False)
class _Job:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    tag: Any
    priority: int
    key: str | None
    future: Future = field(default_factory=Future)
    queued_ns: int = 0


_Entry = tuple[int, int, _Job]


def _cancel(fut: Future) -> None:
    """Cancel a job's future the way an executor does: ``concurrent.futures.wait`` sees it too."""
    if fut.cancel():
        fut.set_running_or_notify_cancel()


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; asyncio is the fallback
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class Dispatcher:
    """``submit(priority, fn, *args, tag=..., key=...)`` from any thread; ``drain()``; ``close()``."""

    def __init__(self, workers: int = 4, *, name: str = "dispatch",
                 notify: Callable[[], None] | None = None) -> None:
        if workers < 1:
            raise ConfigError("workers must be >= 1")
        self.workers = workers
        self.completed: queue.SimpleQueue[Completion] = queue.SimpleQueue()
        self.dropped = 0
        self._notify = notify  # called (on a worker thread) after each completion, e.g. to wake a poller
        self._seq = itertools.count()
        self._lock = threading.Lock()  # guards _closing and the sequence
        self._closing = False
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{name}-worker")
        self._loop = _new_loop()
        self._queue: asyncio.PriorityQueue[_Entry] | None = None
        self._parked: dict[str, list[_Entry]] = {}  # key -> heap of jobs waiting for that key
        self._busy_keys: set[str] = set()
        self._handoff: set[int] = set()  # sequence numbers of queued jobs that own their busy key
        self._inflight: set[asyncio.Future] = set()  # executor futures of the running jobs
        self._running = 0
        self._unfinished = 0  # set when close() gave up on running or queued jobs
        self._drain_done: asyncio.Event | None = None
        self._close_begun = False  # loop side: _begin_close ran (jobs below ORDER are dropped from now on)
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run_loop, args=(ready,), name=name, daemon=True)
        self._thread.start()
        ready.wait()

    # ------------------------------------------------------------------ any thread
    def submit(self, priority: int, fn: Callable[..., Any], *args: Any, tag: Any = "",
               key: str | None = None, **kwargs: Any) -> Future:
        job = _Job(fn=fn, args=args, kwargs=kwargs, tag=tag or getattr(fn, "__name__", "job"),
                   priority=priority, key=key, queued_ns=time.monotonic_ns())
        with self._lock:
            if self._closing:
                raise DefinitiveError("dispatcher is closed", reason="closed")
            entry = (priority, next(self._seq), job)
            self._loop.call_soon_threadsafe(self._put, entry)
        return job.future

    def drain(self, max_items: int | None = None) -> list[Completion]:
        """Completions so far, oldest first; never blocks."""
        out: list[Completion] = []
        while max_items is None or len(out) < max_items:
            try:
                out.append(self.completed.get_nowait())
            except queue.Empty:
                break
        return out

    def close(self, timeout_s: float = 5.0) -> CloseReport:
        """Run the queued ORDER jobs, drop the others, stop the loop; returns within ``timeout_s``."""
        deadline = time.monotonic() + max(timeout_s, 0.0)
        with self._lock:
            already = self._closing
            self._closing = True
        if not already and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._begin_close)
        # keep the last tenth of the budget (at most FORCE_STOP_S) for stopping a stuck loop
        reserve = min(max(timeout_s, 0.0) * 0.1, FORCE_STOP_S)
        self._thread.join(max(deadline - reserve - time.monotonic(), 0.0))
        clean = not self._thread.is_alive()
        if not clean:
            # a job will not return (a broker call hung): give up on it and on what still waits
            with contextlib.suppress(RuntimeError):  # the loop closed after all, meanwhile
                self._loop.call_soon_threadsafe(self._abandon)
            self._thread.join(max(deadline - time.monotonic(), 0.0))
        self._pool.shutdown(wait=False, cancel_futures=True)
        report = CloseReport(dropped=self.dropped, unfinished=self._unfinished, clean=clean)
        log.info("dispatcher.closed", dropped=report.dropped, unfinished=report.unfinished, clean=clean)
        return report

    # ------------------------------------------------------------------ loop thread
    def _run_loop(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._queue = asyncio.PriorityQueue()
        self._drain_done = asyncio.Event()
        ready.set()
        main = self._loop.create_task(self._schedule())
        try:
            self._loop.run_until_complete(main)
        except RuntimeError:  # stopped by close() while jobs were still running
            main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                self._loop.run_until_complete(main)
        finally:
            self._finish_tasks()
            self._loop.close()

    def _finish_tasks(self) -> None:
        """Cancel and await what the scheduler left (its last queue getter): a task destroyed while
        pending would warn from the garbage collector, at some random later moment."""
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        if pending:
            with contextlib.suppress(RuntimeError, asyncio.CancelledError):
                self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))

    def _put(self, entry: _Entry) -> None:
        assert self._queue is not None
        self._queue.put_nowait(entry)

    async def _schedule(self) -> None:
        assert self._queue is not None and self._drain_done is not None
        free = asyncio.Semaphore(self.workers)
        while True:
            await free.acquire()  # a worker is free: only now pick the most urgent job
            getter = asyncio.ensure_future(self._queue.get())
            done_waiter = asyncio.ensure_future(self._drain_done.wait())
            await asyncio.wait({getter, done_waiter}, return_when=asyncio.FIRST_COMPLETED)
            done_waiter.cancel()
            if not getter.done():
                getter.cancel()
                if self._drained():
                    return  # closing, and nothing is queued, parked or running
                self._drain_done.clear()  # a job taken meanwhile is still running: wait for it
                free.release()
                continue
            entry = getter.result()
            if self._close_begun and entry[0] > ORDER:
                # taken from the queue while close began: _begin_close could not see it, drop it now
                self._drop_queued(entry)
                free.release()
                self._check_drained()
                continue
            job = entry[2]
            if job.key is not None:
                if entry[1] in self._handoff:
                    self._handoff.discard(entry[1])  # the key was kept busy for this job
                elif job.key in self._busy_keys:
                    heapq.heappush(self._parked.setdefault(job.key, []), entry)
                    free.release()
                    continue
                else:
                    self._busy_keys.add(job.key)
            self._running += 1
            fut = self._loop.run_in_executor(self._pool, self._call, job)
            self._inflight.add(fut)
            fut.add_done_callback(lambda f, job=job: self._finished(f, job, free))

    def _call(self, job: _Job) -> Completion:
        """On a worker thread: run the job, record the completion."""
        started = time.monotonic_ns()
        if not job.future.set_running_or_notify_cancel():
            return Completion(tag=job.tag, priority=job.priority, key=job.key, queued_ns=job.queued_ns)
        result: Any = None
        error: BaseException | None = None
        try:
            result = job.fn(*job.args, **job.kwargs)
        except BaseException as exc:  # delivered, never lost: the caller decides what it means
            error = exc
        done = Completion(tag=job.tag, priority=job.priority, key=job.key, result=result, error=error,
                          queued_ns=job.queued_ns, started_ns=started, finished_ns=time.monotonic_ns())
        self.completed.put(done)
        if error is None:
            job.future.set_result(result)
        else:
            job.future.set_exception(error)
        if self._notify is not None:
            self._notify()
        return done

    def _finished(self, fut: asyncio.Future, job: _Job, free: asyncio.Semaphore) -> None:
        self._inflight.discard(fut)
        self._running -= 1
        if job.key is not None:
            self._release_key(job.key)
        free.release()
        self._check_drained()

    def _release_key(self, key: str) -> None:
        """The key's job ended: hand the key to its next parked job, or free it.

        The key stays busy during the handoff, so a job of the same key that the scheduler
        already holds (taken from the queue a moment ago) is parked behind, not run ahead."""
        waiting = self._parked.get(key)
        if not waiting:
            self._busy_keys.discard(key)
            return
        entry = heapq.heappop(waiting)
        if not waiting:
            del self._parked[key]
        self._handoff.add(entry[1])
        self._put(entry)

    def _begin_close(self) -> None:
        """Keep the ORDER jobs (queued or parked), drop the rest."""
        assert self._queue is not None
        for key, heap in list(self._parked.items()):
            orders = [e for e in heap if e[0] <= ORDER]
            for e in heap:
                if e[0] > ORDER:
                    self._drop(e)
            if orders:
                heapq.heapify(orders)
                self._parked[key] = orders
            else:
                del self._parked[key]
        self._close_begun = True
        queued = [self._queue.get_nowait() for _ in range(self._queue.qsize())]
        for entry in queued:
            if entry[0] <= ORDER:
                self._queue.put_nowait(entry)
            else:
                self._drop_queued(entry)
        self._check_drained()

    def _drop_queued(self, entry: _Entry) -> None:
        """Drop a job that left the parking (or never parked); a key it held for the handoff passes on."""
        self._drop(entry)
        if entry[1] in self._handoff:
            self._handoff.discard(entry[1])
            assert entry[2].key is not None
            self._release_key(entry[2].key)

    def _abandon(self) -> None:
        """close() timed out: cancel what never started, count what runs on, stop the loop."""
        assert self._queue is not None
        waiting = [self._queue.get_nowait() for _ in range(self._queue.qsize())]
        waiting += [e for heap in self._parked.values() for e in heap]
        self._parked.clear()
        for entry in waiting:
            _cancel(entry[2].future)
        self._unfinished = self._running + len(waiting)
        for fut in self._inflight:
            fut.cancel()  # so a hung job that returns later does not call into the closed loop
        self._loop.stop()

    def _drop(self, entry: _Entry) -> None:
        self.dropped += 1
        _cancel(entry[2].future)

    def _drained(self) -> bool:
        assert self._queue is not None
        return self._closing and self._running == 0 and self._queue.empty() and not self._parked

    def _check_drained(self) -> None:
        assert self._drain_done is not None
        if self._drained():
            self._drain_done.set()


class InlineDispatcher:
    """The dispatcher's interface, run synchronously on the caller's thread (replay mode).

    ``submit`` calls the job at once and queues its ``Completion``; ``drain`` hands the
    completions over in submission order. With a broker that answers from memory (the paper
    broker) this makes every answer arrive at a point of the tick stream that depends on
    nothing but the stream: what a deterministic replay needs. Never use it with a network
    broker: the brain's loop would wait on the exchange.
    """

    inline = True  # Execution.poll drains until no answer is left

    def __init__(self) -> None:
        self.completed: list[Completion] = []
        self.dropped = 0
        self._closed = False

    def submit(self, priority: int, fn: Callable[..., Any], *args: Any, tag: Any = "",
               key: str | None = None, **kwargs: Any) -> Future:
        if self._closed:
            raise DefinitiveError("dispatcher is closed", reason="closed")
        fut: Future = Future()
        fut.set_running_or_notify_cancel()
        started = time.monotonic_ns()
        result: Any = None
        error: BaseException | None = None
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:  # delivered, never lost: the caller decides what it means
            error = exc
        self.completed.append(Completion(tag=tag or getattr(fn, "__name__", "job"), priority=priority, key=key,
                                         result=result, error=error, queued_ns=started, started_ns=started,
                                         finished_ns=time.monotonic_ns()))
        if error is None:
            fut.set_result(result)
        else:
            fut.set_exception(error)
        return fut

    def drain(self, max_items: int | None = None) -> list[Completion]:
        n = len(self.completed) if max_items is None else max_items
        out, self.completed = self.completed[:n], self.completed[n:]
        return out

    def close(self, timeout_s: float = 5.0) -> CloseReport:
        self._closed = True
        return CloseReport(dropped=0, unfinished=0, clean=True)
