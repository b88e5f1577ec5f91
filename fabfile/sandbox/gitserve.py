"""The local cloud's git server: the bare repositories of `settings.git_dir`, read-only over smart HTTP.

The hosts of a cluster with `app.strategy: git` fetch from `http://<bridge address>:<git port>/<name>.git`
(`fab sandbox.git-publish` puts a local repository there and prints that URL), as hosts on AWS fetch from a
git hosting service. A small HTTP server, started by `sandbox.up` as a process of its own (`python -m
fabfile.sandbox.gitserve`), listens on the bridge address only and hands each request to git's own CGI
program, `git http-backend` (Debian's git), with an environment built by `cgi_environ`. Only fetching is
served: `GET info/refs?service=git-upload-pack` and `POST git-upload-pack`; a push
(git-receive-pack), the dumb protocol's object paths, or any other path is refused before git runs.

The hosts reach it as they reach the proxy: the security groups' table filters only traffic *to* hosts
(firewall.py), and a reply to a host is a tracked flow.
"""
from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO, Mapping
from urllib.parse import parse_qs, urlsplit

from .errors import SandboxError

# /<name>.git/<what>: the smart protocol's fetch side only (names as gitpublish.NAME)
SMART_PATH = re.compile(r"\A/([A-Za-z0-9][A-Za-z0-9._-]{0,63})\.git/(info/refs|git-upload-pack)\Z", re.ASCII)
MAX_BODY = 64 * 1024 * 1024      # a fetch's request (wants and haves) is small; anything larger is refused
BACKEND_TIMEOUT = 600


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def listen_address(address: str) -> str:
    """The address the server binds: the bridge's, never the unspecified address (every interface)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise SandboxError(f"git server: bridge address {address!r} is not an IP address") from None
    if ip.is_unspecified:
        raise SandboxError(f"git server: refusing to listen on {address} (every interface); "
                           f"it listens on the sandbox bridge address only")
    return address


def cgi_environ(method: str, target: str, headers: Mapping[str, str], remote_addr: str, root: Path,
                content_length: int = 0) -> dict[str, str]:
    """The environment of `git http-backend` for one request, or Refused. Nothing of this process's own
    environment but PATH reaches git, and no user or system git config is read."""
    parts = urlsplit(target)
    if parts.path.endswith("/git-receive-pack"):
        raise Refused(403, "this git server is read-only (fetch and clone only)")
    m = SMART_PATH.fullmatch(parts.path)
    if m is None:
        raise Refused(404, f"not a repository path this server serves: {parts.path!r}")
    what = m.group(2)
    services = parse_qs(parts.query).get("service", [])
    if "git-receive-pack" in services or method not in ("GET", "POST"):
        raise Refused(403, "this git server is read-only (fetch and clone only)")
    if (method == "POST") != (what == "git-upload-pack"):
        raise Refused(405, f"{method} {what}: not part of a fetch")
    if what == "info/refs" and services != ["git-upload-pack"]:
        raise Refused(403, "only the smart protocol's git-upload-pack is served")
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "GIT_PROJECT_ROOT": str(root), "GIT_HTTP_EXPORT_ALL": "1",
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": "/nonexistent",
        "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_SOFTWARE": "whipup-sandbox-git",
        "REQUEST_METHOD": method, "PATH_INFO": parts.path, "QUERY_STRING": parts.query,
        "REMOTE_ADDR": remote_addr,
    }
    lower = {k.lower(): v for k, v in headers.items()}
    if method == "POST":
        env["CONTENT_TYPE"] = lower.get("content-type", "")
        env["CONTENT_LENGTH"] = str(content_length)
    for header in ("content-encoding", "git-protocol"):   # gzip'ed requests; protocol v2
        if header in lower:
            env["HTTP_" + header.upper().replace("-", "_")] = lower[header]
    return env


def read_body(rfile: BinaryIO, headers: Mapping[str, str], limit: int = MAX_BODY) -> bytes:
    """A request's body: Content-Length bytes, or a chunked one decoded (git chunks large requests)."""
    lower = {k.lower(): v for k, v in headers.items()}
    if lower.get("transfer-encoding", "").lower() == "chunked":
        out = bytearray()
        while True:
            size = int(rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while rfile.readline() not in (b"\r\n", b"\n", b""):   # trailers
                    pass
                return bytes(out)
            if len(out) + size > limit:
                raise Refused(413, f"request body over {limit} bytes")
            out += rfile.read(size)
            rfile.readline()
    length = int(lower.get("content-length") or 0)
    if length > limit:
        raise Refused(413, f"request body over {limit} bytes")
    return rfile.read(length) if length else b""


@dataclass(frozen=True)
class CgiResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def parse_cgi(output: bytes) -> CgiResponse:
    """A CGI program's output: header lines (`Status: 403 Forbidden` sets the status), a blank line, the body."""
    head, sep, body = output.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = output.partition(b"\n\n")
    if not sep:
        raise ValueError("the CGI output has no end of headers")
    status, headers = 200, []
    for line in head.decode("latin-1").splitlines():
        name, colon, value = line.partition(":")
        if not colon:
            raise ValueError(f"bad CGI header line {line!r}")
        if name.strip().lower() == "status":
            status = int(value.split()[0])
        else:
            headers.append((name.strip(), value.strip()))
    return CgiResponse(status, tuple(headers), body)


def backend(env: dict[str, str], body: bytes) -> CgiResponse:
    p = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True,
                       timeout=BACKEND_TIMEOUT)
    if p.stderr:
        sys.stderr.write(p.stderr.decode(errors="replace"))
    return parse_cgi(p.stdout)


class Handler(BaseHTTPRequestHandler):
    root: Path = Path("/nonexistent")
    server_version = "whipup-sandbox-git"

    def _serve(self) -> None:
        try:
            body = read_body(self.rfile, self.headers) if self.command == "POST" else b""
            env = cgi_environ(self.command, self.path, self.headers, self.client_address[0], self.root, len(body))
            r = backend(env, body)
        except Refused as exc:
            return self._send(exc.status, (("Content-Type", "text/plain"),), exc.message.encode() + b"\n")
        except (ValueError, subprocess.TimeoutExpired) as exc:
            return self._send(500, (("Content-Type", "text/plain"),), f"git http-backend: {exc}\n".encode())
        self._send(r.status, r.headers, r.body)

    def _send(self, status: int, headers, body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _serve


def serve(address: str, port: int, root: Path) -> ThreadingHTTPServer:
    handler = type("RootHandler", (Handler,), {"root": root})
    server = ThreadingHTTPServer((listen_address(address), port), handler)
    server.daemon_threads = True
    return server


def main() -> None:
    from .settings import load_settings

    settings = load_settings()
    settings.git_dir.mkdir(parents=True, exist_ok=True)
    server = serve(settings.bridge_address, settings.git_port, settings.git_dir)
    print(f"git server: {settings.git_url('<name>')} serving {settings.git_dir}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
