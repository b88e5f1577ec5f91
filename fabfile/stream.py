"""Bytes from one host's command into other hosts' commands, through this machine, as they come.

`pipe` runs `source` on one connection (its stdin: a short text, then EOF) and every target's command on
its own connection, and copies the source's stdout to each target's stdin in chunks: binary, no base64, no
whole copy in memory (a tar of static files, say). Each command runs on a session of its own (bounded by
`remote.channel_slot`, as `remote.run`'s are). A failure names the host and the step, as `remote.run`'s do.
"""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass

from paramiko.ssh_exception import SSHException

from .remote import ConnectionLost, RemoteError, channel_slot

CHUNK = 256 * 1024


@dataclass
class Piped:
    """What `pipe` moved: bytes from the source; each target's (host, stdout) after it ended."""
    nbytes: int
    outputs: list[tuple[str, str]]


def _session(conn, command: str, step: str):
    try:
        if not getattr(conn, "is_connected", True):
            conn.open()
        channel = conn.transport.open_session()
        channel.exec_command(command)
        return channel
    except (SSHException, EOFError, OSError) as exc:
        raise ConnectionLost(conn.host, step, f"{type(exc).__name__}: {exc}".rstrip(": ")) from None


def _drain(channel) -> tuple[str, str]:
    out, err = b"", b""
    while True:
        data = channel.recv(CHUNK)
        if not data:
            break
        out += data
    while True:
        data = channel.recv_stderr(CHUNK)
        if not data:
            break
        err += data
    return out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def _ended(conn, channel, step: str) -> tuple[str, str]:
    """(stdout, stderr) of a finished command; RemoteError when it failed."""
    code = channel.recv_exit_status()
    out, err = _drain(channel)
    if code == -1:
        raise ConnectionLost(conn.host, step, "closed before the command's exit status came")
    if code != 0:
        raise RemoteError(conn.host, step, code, out + err)
    return out, err


def _send(conn, channel, data: bytes | None, step: str) -> None:
    """`data` to a target's stdin (None: its EOF); a target that ended early says why."""
    try:
        if data is None:
            channel.shutdown_write()
        else:
            channel.sendall(data)
    except (SSHException, EOFError, OSError):
        _ended(conn, channel, step)          # its exit status and output, if it failed
        raise ConnectionLost(conn.host, step, "the command stopped reading its input") from None


def pipe(source_conn, source: str, targets: list[tuple[object, str]], *, step: str, stdin: str = "") -> Piped:
    """`source` on `source_conn` (given `stdin`), its stdout into each (conn, command) of `targets`."""
    with ExitStack() as stack:
        for conn in [source_conn, *(c for c, _ in targets)]:
            stack.enter_context(channel_slot(conn))
        src = _session(source_conn, source, step)
        stack.callback(src.close)
        dsts = []
        for conn, command in targets:
            channel = _session(conn, command, step)
            stack.callback(channel.close)
            dsts.append((conn, channel))
        try:
            src.sendall(stdin.encode("utf-8"))
            src.shutdown_write()
            nbytes = 0
            while True:
                data = src.recv(CHUNK)
                if not data:
                    break
                nbytes += len(data)
                for conn, channel in dsts:
                    _send(conn, channel, data, step)
        except (SSHException, EOFError, OSError) as exc:
            raise ConnectionLost(source_conn.host, step, f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
        for conn, channel in dsts:
            _send(conn, channel, None, step)
        _ended(source_conn, src, step)
        return Piped(nbytes, [(conn.host, _ended(conn, channel, step)[0]) for conn, channel in dsts])
