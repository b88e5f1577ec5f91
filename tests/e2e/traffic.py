"""What the drills and the zero-downtime tests share: `fab` run in the background, and a bounded HTTP load on
a cluster's proxy that counts every outcome.

`Load(cl, ...)` sends GETs to `cl.proxy_ip` (port 80, or 443 as a site name with `tls=`) only once `cl.routed` has shown that address on the
test sandbox's bridge, and stops by itself after `max_seconds` or `max_requests`, whichever comes first.
Two ways to drive it:

- closed loop (the default, as the drills use it): `threads` workers, each one request after the other
  with `pause` between them; a non-200 answer or a connection error is a failure, a slow answer is not
  (`timeout` 30 s);
- paced (`rate=N`): requests start on a fixed schedule of N per second, shared by the workers (enough of
  them that a slow answer does not hold the schedule back), and `check(path, status, body)` judges each
  answer: a wrong body counts as a failure like a 502, a connection error or a timeout.

Every request is kept as a `Sample` (when it started, how long it took, why it failed, which release
answered), so a test can print its figures and ask which releases served, and when.
"""
from __future__ import annotations

import http.client
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from .conftest import ROOT
from .demo import RELEASE

Check = Callable[[str, int, str], "str | None"]


class Background:
    """`fab ARGS` started now, its output in files (no pipe to fill up)."""

    def __init__(self, env: dict, *args: str):
        self.out, self.err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "fabric", *args], cwd=ROOT, env=env,
                                     stdin=subprocess.DEVNULL, stdout=self.out, stderr=self.err, text=True)
        self.ended: float | None = None

    def poll(self) -> int | None:
        code = self.proc.poll()
        if code is not None and self.ended is None:
            self.ended = time.monotonic()
        return code

    def wait(self, timeout: float = 600) -> "Background":
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"fab did not end within {timeout} s:\n{self.stdout}\n{self.stderr}") from None
        self.poll()
        return self

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def _read(self, f) -> str:
        f.seek(0)
        return f.read()

    @property
    def stdout(self) -> str:
        return self._read(self.out)

    @property
    def stderr(self) -> str:
        return self._read(self.err)


def status_200(path: str, status: int, body: str) -> str | None:
    """The closed loop's judgement: anything but 200 failed."""
    return None if status == 200 else f"HTTP {status}"


def release_of(path: str, body: str) -> str | None:
    """The release id an answer names: the demo page's footer, or a /health body's "release"."""
    m = RELEASE.search(body)
    if m:
        return m.group(1)
    if body.startswith("{"):
        try:
            value = json.loads(body).get("release")
        except (ValueError, AttributeError):
            return None
        return value if isinstance(value, str) else None
    return None


@dataclass(frozen=True)
class Sample:
    start: float                 # seconds since the load began
    seconds: float               # until the answer was read (or the error)
    path: str
    why: str | None              # None: served as expected
    release: str | None          # the release the answer names, if any


class Load:
    """A bounded GET load on the proxy from a few threads; every outcome counted per path."""

    def __init__(self, cl, paths: tuple[str, ...] = ("/",), threads: int = 4, max_seconds: float = 300,
                 max_requests: int = 50_000, *, rate: float | None = None, timeout: float = 30.0,
                 pause: float = 0.02, check: Check = status_200, tls: tuple[str, object] | None = None):
        cl.routed(cl.proxy_ip)
        self.address, self.paths = cl.proxy_ip, paths
        self.tls = tls          # (site name, ssl.SSLContext): HTTPS to the proxy as that name, else HTTP on 80
        self.max_seconds, self.max_requests = max_seconds, max_requests
        self.rate, self.timeout, self.pause, self.check = rate, timeout, pause, check
        self.ok: Counter = Counter()
        self.failed: Counter = Counter()
        self.errors: list[str] = []
        self.samples: list[Sample] = []
        self._issued = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, args=(i,), daemon=True) for i in range(threads)]

    def _next(self, i: int) -> tuple[int, float] | None:
        """(request number, when to send it) for worker `i`, or None once the load is over."""
        with self._lock:
            if self._stop.is_set() or self._issued >= self.max_requests:
                return None
            n = self._issued
            self._issued += 1
        if self.rate is None:
            return n, time.monotonic()
        return n, self.start + n / self.rate

    def _one(self, path: str) -> tuple[str | None, str | None]:
        try:
            if self.tls is None:
                conn = http.client.HTTPConnection(self.address, 80, timeout=self.timeout)
            else:
                from fabfile.tls.check import SiteConnection
                conn = SiteConnection(self.tls[0], self.address, self.tls[1], timeout=self.timeout)
            try:
                conn.request("GET", path, headers={"Connection": "close"})
                r = conn.getresponse()
                body = r.read().decode(errors="replace")
            finally:
                conn.close()
        except OSError as exc:           # refused, reset, timed out (socket.timeout is an OSError)
            return f"{type(exc).__name__}: {exc}", None
        except http.client.HTTPException as exc:       # a malformed or cut answer
            return f"{type(exc).__name__}: {exc}", None
        return self.check(path, r.status, body), release_of(path, body)

    def _work(self, i: int) -> None:
        deadline = self.start + self.max_seconds
        while time.monotonic() < deadline:
            slot = self._next(i)
            if slot is None:
                return
            n, at = slot
            delay = at - time.monotonic()
            if delay > 0:
                if self._stop.wait(delay):
                    return
            path = self.paths[n % len(self.paths)]
            began = time.monotonic()
            why, release = self._one(path)
            sample = Sample(began - self.start, time.monotonic() - began, path, why, release)
            with self._lock:
                self.samples.append(sample)
                if why is None:
                    self.ok[path] += 1
                else:
                    self.failed[path] += 1
                    self.errors.append(f"{path}: {why}")
            if self.rate is None:
                time.sleep(self.pause)

    def __enter__(self) -> "Load":
        self.start = time.monotonic()
        for t in self._threads:
            t.start()
        time.sleep(0.5)
        self.began = time.monotonic() - self.start        # the operation under load starts here ...
        return self

    def __exit__(self, *exc) -> None:
        self.ended = time.monotonic() - self.start        # ... and ended here
        time.sleep(0.5)
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 5)
        self.seconds = time.monotonic() - self.start

    # --- figures ---
    @property
    def requests(self) -> int:
        return len(self.samples)

    @property
    def failures(self) -> int:
        return sum(self.failed.values())

    def during(self) -> list[Sample]:
        """The requests started while the operation ran (between __enter__'s return and __exit__)."""
        return [s for s in self.samples if self.began <= s.start <= self.ended]

    def operation_rate(self) -> float:
        """Requests started per second while the operation ran."""
        span = self.ended - self.began
        return len(self.during()) / span if span > 0 else 0.0

    def slowest_second(self) -> int:
        """The fewest requests started in one whole second of the operation (the load's steadiness)."""
        whole = int(self.ended - self.began)
        if whole < 1:
            return len(self.during())
        counts = Counter(int(s.start - self.began) for s in self.during())
        return min(counts.get(k, 0) for k in range(whole))

    def releases(self) -> list[tuple[float, str]]:
        """(when, release) each time the release named by the answers changed, in the order sent."""
        seen: list[tuple[float, str]] = []
        for s in sorted(self.samples, key=lambda s: s.start):
            if s.release and (not seen or seen[-1][1] != s.release):
                seen.append((s.start, s.release))
        return seen

    def failures_at(self, n: int = 10) -> list[str]:
        """The first `n` failed requests, with when they were sent."""
        bad = sorted((s for s in self.samples if s.why is not None), key=lambda s: s.start)
        return [f"{s.start:.1f} s {s.path}: {s.why}" for s in bad[:n]]

    def latency_ms(self, p: float) -> float:
        done = sorted(s.seconds for s in self.samples if s.why is None)
        return done[min(len(done) - 1, int(p * len(done)))] * 1000 if done else float("nan")

    def summary(self) -> str:
        return ", ".join(f"{p}: {self.ok[p]} ok, {self.failed[p]} failed" for p in self.paths) + \
            f" in {self.seconds:.1f} s"

    def figures(self) -> str:
        """requests, rate, failures (by kind), seconds: what each zero-downtime test prints."""
        kinds = Counter(self.errors)
        return (f"{self.requests} requests in {self.seconds:.1f} s ({self.operation_rate():.0f}/s while the "
                f"operation ran for {self.ended - self.began:.1f} s, slowest second {self.slowest_second()}), "
                f"{self.failures} failed" + (f" {dict(kinds.most_common(4))}" if kinds else "")
                + f"; p50 {self.latency_ms(0.5):.0f} ms, p99 {self.latency_ms(0.99):.0f} ms, "
                f"max {self.latency_ms(1.0):.0f} ms")
