"""Local I/O of the command tasks: a remote command's stdin, and lines prefixed by node from many nodes."""
from __future__ import annotations

import codecs
import os
import select
import threading
from typing import IO, Callable, Iterable


class StdinFeed:
    """A remote command's stdin for invoke: `first` (the forwarded values) at once, then the bytes of the
    file descriptor `fd` as they come (None: nothing more, EOF).

    No `fileno()`, so invoke neither puts a terminal in cbreak mode nor reads it a byte at a time; `read`
    waits at most `wait` seconds and says "nothing yet" (None), so invoke's stdin thread never blocks past
    the command's end."""

    def __init__(self, first: str = "", fd: int | None = None, wait: float = 0.05, chunk: int = 65536):
        self._first, self._fd, self._wait, self._chunk = first, fd, wait, chunk
        self._decode = codecs.getincrementaldecoder("utf-8")("replace")

    def read(self, size: int = -1) -> str | None:
        if self._first:
            data, self._first = self._first, ""
            return data
        if self._fd is None:
            return ""
        ready, _, _ = select.select([self._fd], [], [], self._wait)
        if not ready:
            return None
        data = os.read(self._fd, self._chunk)
        if not data:
            self._fd = None
            return self._decode.decode(b"", final=True)
        return self._decode.decode(data) or None


class Prefixer:
    """A text stream (invoke's out_stream) that writes each whole line as `[name] line` to `sink`, under
    a lock shared by every node's stream, so lines from many nodes never interleave mid-line."""

    def __init__(self, name: str, sink: IO[str], lock: threading.Lock):
        self.name, self.sink, self.lock, self._partial = name, sink, lock, ""

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        if lines:
            self._emit(lines)
        return len(text)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        """The last line, if it had no newline."""
        if self._partial:
            rest, self._partial = self._partial, ""
            self._emit([rest])

    def _emit(self, lines: list[str]) -> None:
        with self.lock:
            for line in lines:
                self.sink.write(f"[{self.name}] {line.rstrip(chr(13))}\n")
            self.sink.flush()


def follow_all(streams: Iterable[tuple[str, Callable[[Prefixer], object]]], sink: IO[str], errors: IO[str],
               stop: threading.Event) -> dict[str, BaseException]:
    """Run each `(name, read)` in a thread of its own: read(prefixer) streams that node's lines. A node that
    fails has its error printed (prefixed) while the others go on. Returns when all ended or `stop` is set
    (the caller then closes the connections, which ends the reads): {name: error} of the failed ones."""
    lock, failed, threads = threading.Lock(), {}, []

    def one(name: str, read: Callable[[Prefixer], object]) -> None:
        out = Prefixer(name, sink, lock)
        try:
            read(out)
        except BaseException as exc:  # shown, and the other nodes go on
            if not stop.is_set():
                failed[name] = exc
                Prefixer(name, errors, lock).write(f"error: {str(exc) or type(exc).__name__}\n")
        finally:
            out.close()

    for name, read in streams:
        t = threading.Thread(target=one, args=(name, read), name=f"logs-{name}", daemon=True)
        t.start()
        threads.append(t)
    while any(t.is_alive() for t in threads) and not stop.is_set():
        for t in threads:
            t.join(0.2)
    return failed
