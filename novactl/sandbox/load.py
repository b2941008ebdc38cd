"""A small load generator: steady GET traffic at a target rate, counted by version.

:class:`LoadGenerator` runs ``concurrency`` worker threads that share one
pacing schedule (a token every ``1/rps`` seconds), so the aggregate rate is
about ``rps`` whatever each request takes, as long as enough workers are
free.  A generator that falls behind catches up by at most a short burst
rather than flooding the target.  Answers are counted by status and by their
``X-Version`` (and ``X-Routed-To``) header; network errors are counted, never
raised.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = ["LoadGenerator"]

_MAX_BURST = 0.25  # seconds of backlog a late generator may catch up at once


class LoadGenerator:
    """Sends GET requests to ``url`` at roughly ``rps`` per second in background threads.

    Stops after ``duration`` seconds or ``max_requests`` requests (whichever
    comes first), or when :meth:`stop` is called.
    """

    def __init__(
        self,
        url: str,
        rps: float,
        *,
        concurrency: int = 8,
        duration: float | None = None,
        max_requests: int | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"url must be an http:// URL, got {url!r}")
        if not rps > 0:
            raise ValueError(f"rps must be > 0, got {rps!r}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be ≥ 1, got {concurrency!r}")
        if duration is not None and duration < 0:
            raise ValueError(f"duration must be ≥ 0, got {duration!r}")
        if max_requests is not None and max_requests < 0:
            raise ValueError(f"max_requests must be ≥ 0, got {max_requests!r}")
        self.url = url
        self.rps = float(rps)
        self.concurrency = concurrency
        self.duration = duration
        self.max_requests = max_requests
        self.headers = dict(headers or {})
        self.timeout = timeout
        self._host = parts.hostname
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._interval = 1.0 / self.rps
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started_at: float | None = None
        self._stopped_at: float | None = None
        self._next = 0.0
        self._issued = 0
        self._sent = 0
        self._completed = 0
        self._network_errors = 0
        self._latency_sum = 0.0
        self._by_status: Counter[int] = Counter()
        self._by_version: Counter[str] = Counter()
        self._by_route: Counter[str] = Counter()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> LoadGenerator:
        """Start the workers; returns self.  A generator runs once."""
        with self._lock:
            if self._started_at is not None:
                return self
            self._started_at = self._next = time.monotonic()
        for i in range(self.concurrency):
            thread = threading.Thread(target=self._work, name=f"load-{i}", daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop sending and join the workers (requests in flight finish first)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._mark_stopped()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the generator to finish on its own; True if it did."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
            if thread.is_alive():
                return False
        self._mark_stopped()
        return True

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _mark_stopped(self) -> None:
        with self._lock:
            if self._stopped_at is None and self._started_at is not None:
                self._stopped_at = time.monotonic()

    # ------------------------------------------------------------ work

    def _next_slot(self) -> float | None:
        """The time the next request is due, or None when the run is over."""
        with self._lock:
            if self._stop.is_set():
                return None
            if self.max_requests is not None and self._issued >= self.max_requests:
                return None
            assert self._started_at is not None
            now = time.monotonic()
            slot = max(self._next, now - _MAX_BURST)
            if self.duration is not None and slot >= self._started_at + self.duration:
                return None
            self._next = slot + self._interval
            self._issued += 1
            return slot

    def _work(self) -> None:
        while True:
            slot = self._next_slot()
            if slot is None:
                return
            delay = slot - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            self._send()

    def _send(self) -> None:
        with self._lock:
            self._sent += 1
        started = time.perf_counter()
        conn = http.client.HTTPConnection(self._host or "127.0.0.1", self._port,
                                          timeout=self.timeout)
        try:
            conn.request("GET", self._path, headers=self.headers)
            response = conn.getresponse()
            response.read()
            status = response.status
            version = response.getheader("X-Version")
            route = response.getheader("X-Routed-To")
        except (OSError, http.client.HTTPException):
            with self._lock:
                self._network_errors += 1
            return
        finally:
            conn.close()
        elapsed = time.perf_counter() - started
        with self._lock:
            self._completed += 1
            self._latency_sum += elapsed
            self._by_status[status] += 1
            if version is not None:
                self._by_version[version] += 1
            if route is not None:
                self._by_route[route] += 1

    # ------------------------------------------------------------ results

    def stats(self) -> dict[str, Any]:
        """Counts so far: sent, completed, ok (2xx), network errors, by status/version/route."""
        with self._lock:
            started, stopped = self._started_at, self._stopped_at
            end = stopped if stopped is not None else time.monotonic()
            elapsed = 0.0 if started is None else end - started
            ok = sum(n for code, n in self._by_status.items() if 200 <= code < 300)
            return {
                "sent": self._sent,
                "completed": self._completed,
                "ok": ok,
                "failed": self._completed - ok,
                "network_errors": self._network_errors,
                "by_status": dict(self._by_status),
                "by_version": dict(self._by_version),
                "by_route": dict(self._by_route),
                "elapsed": elapsed,
                "rate": self._completed / elapsed if elapsed > 0 else 0.0,
                "latency_mean": (self._latency_sum / self._completed
                                 if self._completed else None),
            }
