"""Work on many hosts at once: thin runners, per-host outcomes, progress lines.

Builders elsewhere return command *strings* (pure, tested by exact value); this
module only runs them. Every value in a command is quoted by its builder with
shlex; `sudo()` wraps an argv for the non-interactive sudo of a cloud image's
default user. Secrets go to a host on stdin (`run(..., stdin=...)`), never in
a command line.
"""
from __future__ import annotations

import io
import re
import shlex
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, TextIO, TypeVar

from paramiko.ssh_exception import ChannelException, SSHException

from .nodes import Node

T = TypeVar("T")


def sudo(argv: Iterable[str], *, user: str | None = None) -> str:
    """`sudo -n [-u USER] -- argv...`, every word quoted."""
    prefix = ["sudo", "-n"] + (["-u", user] if user else []) + ["--"]
    return shlex.join(prefix + list(argv))


def sudo_sh(script: str, *, user: str | None = None) -> str:
    """Run a shell script (already built from quoted parts) as root or USER: `sudo -n -- sh -c SCRIPT`."""
    return sudo(["sh", "-c", script], user=user)


def install_stdin(path: str, mode: str, group: str = "root") -> str:
    """stdin to `path` (`mode`, root:`group`) when it differs; prints changed or unchanged. The temp file is
    made with its mode before anything is written into it (the text may be a secret); `cmp` on the host, so
    nothing of the text travels back."""
    q = shlex.quote
    tmp = f"{path}.tmp"
    return sudo_sh("\n".join([
        "set -e",
        f"install -d -m 0755 $(dirname {q(path)})",
        f"rm -f {q(tmp)}",
        f"install -m {q(mode)} -o root -g {q(group)} /dev/null {q(tmp)}",
        f"cat > {q(tmp)}",
        f"if cmp -s {q(tmp)} {q(path)}; then rm -f {q(tmp)}; echo unchanged; exit 0; fi",
        f"mv -f {q(tmp)} {q(path)}",
        "echo changed",
    ]))


class RemoteError(Exception):
    """A command failed on a host; names the host, the step and what it printed."""

    def __init__(self, host: str, step: str, exit_code: int | None, output: str):
        self.host, self.step, self.exit_code, self.output = host, step, exit_code, output
        tail = "\n".join(output.strip().splitlines()[-12:])
        super().__init__(f"{host}: {step} failed" + (f" (exit {exit_code})" if exit_code is not None else "")
                         + (f":\n{tail}" if tail else ""))


class ConnectionLost(RemoteError):
    """No SSH connection to a host: it went away while a command ran, or could not be (re)opened for one."""

    def __init__(self, host: str, step: str, why: str, *, connecting: bool = False):
        self.why, self.connecting = why, connecting
        Exception.__init__(self, f"{host}: {step}: could not connect over SSH ({why})" if connecting else
                           f"{host}: {step}: the SSH connection was lost ({why}); what the command did on the "
                           f"host is unknown")
        self.host, self.step, self.exit_code, self.output = host, step, None, why


def _transport_gone(conn, wait: float = 1.0) -> bool:
    """True once conn's SSH transport is down. paramiko closes a dying transport's channels just before it
    marks the transport inactive, so a command that ended without an exit status gets a moment to see it."""
    transport = getattr(conn, "transport", None)
    if transport is None:
        return False
    deadline = time.monotonic() + wait
    while transport.is_active():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


# seconds between attempts to open a session that the host refused (see `run`)
SESSION_RETRY_WAITS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)

def run(conn, command: str, *, step: str, stdin: str | bytes | None = None, check: bool = True,
        timeout: float | None = None, on_line: Callable[[str], None] | None = None):
    """Run `command` over `conn` (a fabric Connection) quietly; RemoteError names `step` on failure.

    `on_line` gets each line the command prints (stdout and stderr, as they come, from invoke's reader
    threads), for live progress; nothing is echoed, and the output is kept in the result as always.

    A connection lost before or while the command runs is a `ConnectionLost` (a RemoteError naming the
    host and step) whatever `check` says: there is no exit status to look at. fabric opens a new
    connection for the next command on `conn` if the old one is gone.
    """
    kwargs = {"hide": True, "warn": True, "timeout": timeout, "pty": False}
    streams = (LineStream(on_line), LineStream(on_line)) if on_line is not None else ()
    if streams:   # invoke writes to out_stream/err_stream only what it does not hide
        kwargs.update(hide=False, out_stream=streams[0], err_stream=streams[1])
    connected = getattr(conn, "is_connected", True)       # fabric (re)opens the connection in run()
    for wait in (*SESSION_RETRY_WAITS, None):
        if stdin is not None:
            kwargs["in_stream"] = _WholeRead(stdin if isinstance(stdin, str) else stdin.decode("utf-8"))
        else:
            kwargs["in_stream"] = False
        try:
            opened(conn)
            with channel_slot(conn):
                result = conn.run(command, **kwargs)
            break
        except ChannelException as exc:
            # The host refused to open the session: nothing ran. sshd frees a finished session a moment
            # after we see it end, so a busy connection can meet MaxSessions briefly: wait and ask again.
            if wait is None:
                raise RemoteError(conn.host, step, None, f"the host refused a new SSH session "
                                  f"{len(SESSION_RETRY_WAITS) + 1} times ({exc})") from None
            time.sleep(wait)
        except (SSHException, EOFError, OSError) as exc:
            raise ConnectionLost(conn.host, step, f"{type(exc).__name__}: {exc}".rstrip(": "),
                                 connecting=not connected) from None
    for stream in streams:
        stream.close()
    if result.exited == -1 and _transport_gone(conn):     # paramiko's "no exit status came"
        raise ConnectionLost(conn.host, step, "closed before the command's exit status came")
    if check and result.exited != 0:
        raise RemoteError(conn.host, step, result.exited, (result.stdout or "") + (result.stderr or ""))
    return result


# OpenSSH's sshd refuses an 11th session on one connection (MaxSessions 10): commands that threads run
# at once over one shared connection (the proxy asking every app node's /health, say) wait for a slot.
CHANNELS_PER_CONNECTION = 8
_slots_lock = threading.Lock()


def opened(conn) -> None:
    """`conn` connected. fabric opens a connection in its first command: threads whose first commands on one
    connection start together would each open it (one's authentication then times out), so the first
    opens it and the others wait for it."""
    if getattr(conn, "is_connected", True) or not hasattr(conn, "open"):
        return
    with _own(conn, "_whipup_open_lock", threading.Lock):
        if not conn.is_connected:
            conn.open()


def channel_slot(conn) -> threading.BoundedSemaphore:
    """The semaphore bounding how many commands run at once over `conn` (made on first use)."""
    return _own(conn, "_whipup_channel_slots", lambda: threading.BoundedSemaphore(CHANNELS_PER_CONNECTION))


def _own(conn, name: str, make: Callable[[], T]) -> T:
    """`conn`'s attribute `name`, made on first use, shared by every thread using `conn`. Set as the object's
    own attribute: fabric's Connection turns others into config entries, which copies them (a lock cannot be
    copied). An object that takes no attributes gets a fresh one each time: nothing to share."""
    with _slots_lock:
        value = getattr(conn, name, None)
        if value is None:
            value = make()
            try:
                object.__setattr__(conn, name, value)
            except AttributeError:
                pass
        return value


class LineStream:
    """A write-only text stream that hands each complete line (without its end: \\n, \\r\\n or a lone \\r, as
    progress bars use) to `on_line`; `close()` hands over what is left."""

    def __init__(self, on_line: Callable[[str], None]):
        self.on_line, self._rest = on_line, ""

    def write(self, data: str) -> int:
        *lines, self._rest = re.split(r"\r\n|\r|\n", self._rest + data)
        for line in lines:
            self.on_line(line)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        rest, self._rest = self._rest, ""
        if rest:
            self.on_line(rest)


class _WholeRead(io.StringIO):
    """Text for a command's stdin, handed over in one read.

    invoke reads a stream without a terminal one byte per 10 ms loop
    (`bytes_to_read` is 1): 1 kB of stdin would take 10 s.  Returning all of
    it on the first read sends it at once; the next read ('') closes stdin.
    """

    def read(self, size: int | None = -1) -> str:
        return super().read(-1)


@dataclass
class HostOutcome:
    """What fn(node) gave on one host: its value, or the exception object it raised (as fabric's
    GroupResult keeps them), so callers decide by type, never by searching the message."""
    node: Node
    ok: bool
    value: object = None
    error: Exception | None = None
    seconds: float = 0.0

    @property
    def message(self) -> str:
        """The error as a line of text (its type's name when it has no message)."""
        return (str(self.error) or type(self.error).__name__) if self.error is not None else ""


@dataclass
class Progress:
    """A line per host and stage, as work proceeds; safe from many threads."""

    out: TextIO = field(default_factory=lambda: sys.stdout)
    quiet: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, host: str, stage: str, message: str = "") -> None:
        if self.quiet:
            return
        with self._lock:
            # one write per line: several Progress objects share stdout in whip-up's pipeline
            self.out.write(f"[{host}] {stage}" + (f": {message}" if message else "") + "\n")
            self.out.flush()


def on_hosts(nodes: list[Node], fn: Callable[[Node], T], *, max_workers: int = 32) -> list[HostOutcome]:
    """Run fn(node) on every node in parallel; a failure is recorded, never hides the others."""

    def one(node: Node) -> HostOutcome:
        start = time.monotonic()
        try:
            value = fn(node)
        except Exception as exc:  # collected per host, reported together by the caller
            return HostOutcome(node, False, error=exc, seconds=time.monotonic() - start)
        return HostOutcome(node, True, value=value, seconds=time.monotonic() - start)

    if not nodes:
        return []
    with ThreadPoolExecutor(max_workers=min(max_workers, len(nodes))) as pool:
        return list(pool.map(one, nodes))


class HostFailures(Exception):
    """Some hosts failed: the message lists each with its error; `failed` keeps the outcomes, each with
    its exception object."""

    def __init__(self, what: str, failed: list[HostOutcome]):
        self.what, self.failed = what, failed
        lines = [f"{what} failed on {len(failed)} host(s):"]
        for o in failed:
            lines.append(f"  {o.node.name}: " + o.message.replace("\n", "\n    "))
        super().__init__("\n".join(lines))

    def errors(self) -> dict[str, Exception]:
        """{node name: the exception it raised}."""
        return {o.node.name: o.error for o in self.failed if o.error is not None}

    def any_is(self, kind: type[Exception]) -> bool:
        """Some failed host raised a `kind`."""
        return any(isinstance(o.error, kind) for o in self.failed)


def raise_failures(what: str, outcomes: list[HostOutcome]) -> list[HostOutcome]:
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise HostFailures(what, failed)
    return outcomes
