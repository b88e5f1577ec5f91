"""A steady, bounded HTTP load on one sandbox address, recording every request's outcome and latency.

Used while a quick-update or a rollback runs: `with Load(address) as load: ...; print(load.summary())`.
It only ever targets an address routed to the benchmark's sandbox bridge, stops when told, and never
runs longer than `max_seconds` or past `max_requests`.
"""
from __future__ import annotations

import http.client
import subprocess
import threading
import time
from dataclasses import dataclass, field


def routed_to(address: str, bridge: str) -> bool:
    out = subprocess.run(["ip", "route", "get", address], capture_output=True, text=True).stdout
    return f" dev {bridge} " in out


@dataclass
class Load:
    address: str
    bridge: str
    path: str = "/"
    workers: int = 4
    pause: float = 0.01            # between one worker's requests: ~4 x 100 req/s at most
    max_seconds: float = 600.0
    max_requests: int = 200_000
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not routed_to(self.address, self.bridge):
            raise SystemExit(f"{self.address} is not a host of this sandbox ({self.bridge}); no load sent")
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(self.workers)]

    def _work(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                if len(self.latencies) + len(self.failures) >= self.max_requests:
                    return
            start = time.monotonic()
            outcome = None
            try:
                conn = http.client.HTTPConnection(self.address, 80, timeout=10)
                conn.request("GET", self.path, headers={"Connection": "close"})
                resp = conn.getresponse()
                resp.read()
                conn.close()
                if resp.status != 200:
                    outcome = f"HTTP {resp.status}"
            except OSError as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            elapsed = time.monotonic() - start
            with self._lock:
                if outcome is None:
                    self.latencies.append(elapsed)
                else:
                    self.failures.append(outcome)
            time.sleep(self.pause)

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        time.sleep(1.0)  # steady before the operation starts
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(1.0)  # and after it ends
        self._stop.set()
        for t in self._threads:
            t.join()

    def summary(self) -> str:
        served = sorted(self.latencies)

        def pct(p: float) -> float:
            return served[min(len(served) - 1, int(p * len(served)))] * 1000 if served else float("nan")

        kinds = sorted(set(self.failures))
        return (f"{len(served)} served, {len(self.failures)} failed, p50 {pct(0.50):.0f} ms, p99 {pct(0.99):.0f} ms"
                + (f" (failures: {', '.join(kinds[:3])})" if kinds else ""))
