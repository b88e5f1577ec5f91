"""The S3 gate: moto's S3, and only its S3, for the sandbox's hosts, at the bridge address.

On AWS a host reaches S3 through a VPC endpoint. Here moto serves every service on 127.0.0.1, which hosts
cannot reach, and must not: its EC2 API would let a host terminate its neighbours, `/moto-api/reset` would
wipe the cloud. This forwarder listens on the bridge address (`SandboxSettings.s3_endpoint`; never on
0.0.0.0) and passes on to moto only requests that moto routes to S3 (see `refusal`, which follows moto's
own dispatch: moto_server/werkzeug_app.py, `infer_service_region_host`); anything else is answered 403
here. Hosts reach the bridge address as they reach the proxy: the security groups' table filters traffic
to hosts only, and what hosts send is AWS's open egress.

moto checks no signatures: any credentials, or none, are accepted (an unsigned `curl -T` PUT works).
Bodies are streamed both ways; a request body needs a Content-Length (S3 itself answers 411 without one).

Run by `sandbox.up` as `python -m fabfile.sandbox.s3gate LISTEN PORT UPSTREAM_PORT`.
"""
from __future__ import annotations

import http.client
import http.server
import ipaddress
import sys
from typing import Mapping

CHUNK = 64 * 1024
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
                        "te", "trailer", "transfer-encoding", "upgrade"})
MOTO_OWN = ("/moto-api", "/latest/", "/favicon.ico")      # moto's control API, instance metadata
NOT_S3_PATHS = ("/.well-known/jwks.json", "/.well-known/openid-configuration")   # moto: cognito-idp
NO_LENGTH = "a request body without Content-Length (S3 needs one)"       # answered 411, as S3 does


def signed_service(authorization: str) -> str | None:
    """The service a SigV4 Authorization header is scoped to (`Credential=AK/date/region/SERVICE/aws4_request`);
    None for anything else (SigV2 `AWS AK:sig`, or a header moto cannot parse, both of which moto sends to S3)."""
    try:
        _, _, _, service, _ = authorization.split(",")[0].split()[1].split("/")
    except (IndexError, ValueError):
        return None
    return service.lower()


def reads_form(headers: Mapping[str, str]) -> bool:
    """Whether moto would read this request's body as an API call's form (an unsigned, form-encoded body):
    the gate then reads it first (moto does the same, in memory) to look for another service's call in it."""
    return "authorization" not in headers and \
        headers.get("content-type", "").startswith("application/x-www-form-urlencoded") and \
        headers.get("content-length", "0") not in ("", "0")


def form_call(body: bytes) -> str | None:
    """The Action or Version a form body names, as moto reads it (`dict(x.split("=") for x in body.split("&"))`,
    which gives up on anything else): None if moto would find neither (an S3 object body sent as a form)."""
    try:
        fields = dict(x.split("=") for x in body.decode("utf-8").split("&"))
    except ValueError:
        return None
    for key in ("Action", "Version"):
        if key in fields:
            return f"{key}={fields[key]}"
    return None


def refusal(method: str, target: str, headers: Mapping[str, str], form: bytes | None = None) -> str | None:
    """Why this request may not pass to moto (None: it is an S3 request). `headers`' names are lowercase;
    `form` is the body when `reads_form(headers)`."""
    path = target.split("?", 1)[0]
    if path.startswith(MOTO_OWN):
        return f"{path}: moto's own API, not S3"
    if "x-amz-target" in headers:
        return f"X-Amz-Target {headers['x-amz-target']}: a JSON-protocol API call, not S3"
    if "s3-control" in headers.get("host", "") or path.startswith("/v20180820/"):
        return "S3 Control, not S3"
    if "transfer-encoding" in headers:
        return NO_LENGTH
    auth = headers.get("authorization")
    if auth:
        service = signed_service(auth)
        if auth.startswith("AWS4-") and service != "s3":
            return f"a request signed for {service or 'an unreadable scope'}, not s3"
        return None
    # unsigned: moto looks at the body, then the path, for another service
    call = form_call(form) if form is not None else None
    if call is not None:
        return f"a form-encoded API call ({call}), not S3"
    if path.rstrip("/").endswith(NOT_S3_PATHS):
        return f"{path}: an identity-provider path, not S3"
    if "_" in path[1:].split("/", 1)[0]:
        return f"{path}: no bucket name holds '_' (moto reads /<service>_<region>/ as another service)"
    return None


def check_listen(address: str) -> str:
    """The gate listens on one given address, never on every interface."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"s3gate: listen address {address!r} is not an IP address") from None
    if ip.is_unspecified:
        raise ValueError(f"s3gate: refusing to listen on {address} (every interface): give the bridge address")
    return address


def error_body(reason: str) -> bytes:
    text = reason.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
            f"<Message>whipup sandbox S3 gate: {text}</Message></Error>").encode()


class Gate(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream: tuple[str, int] = ("127.0.0.1", 4590)     # set by `server`

    def handle_one(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        form = self.rfile.read(int(headers["content-length"])) if reads_form(headers) else None
        reason = refusal(self.command, self.path, headers, form)
        if reason is not None:
            self.log_message("refused %s %s: %s", self.command, self.path, reason)
            return self._answer(411 if reason == NO_LENGTH else 403, error_body(reason))
        try:
            self._forward(headers, form)
        except (OSError, http.client.HTTPException) as exc:
            self.log_message("upstream %s:%s: %s", *self.upstream, exc)
            self.close_connection = True

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_OPTIONS = handle_one

    def _answer(self, status: int, body: bytes) -> None:
        self.close_connection = True     # a refused request's body is never read: the connection ends here
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _forward(self, headers: dict[str, str], form: bytes | None) -> None:
        conn = http.client.HTTPConnection(*self.upstream, timeout=300)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    conn.putheader(name, value)
            conn.endheaders(form)
            left = 0 if form is not None else int(headers.get("content-length") or 0)
            while left > 0:
                chunk = self.rfile.read(min(CHUNK, left))
                if not chunk:
                    raise OSError("client closed the request body early")
                conn.send(chunk)
                left -= len(chunk)
            self._relay(conn.getresponse())
        finally:
            conn.close()

    def _relay(self, resp: http.client.HTTPResponse) -> None:
        self.send_response_only(resp.status, resp.reason)
        self.log_request(resp.status)
        for name, value in resp.getheaders():
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        sized = resp.getheader("Content-Length") is not None or self.command == "HEAD" or resp.status in (204, 304)
        if not sized:            # streamed to the end: the connection's end marks the body's
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        while self.command != "HEAD" and (chunk := resp.read(CHUNK)):
            self.wfile.write(chunk)

    def log_request(self, code="-", size="-") -> None:
        if str(code).startswith(("4", "5")):
            super().log_request(code, size)


def server(listen: str, port: int, upstream_port: int) -> http.server.ThreadingHTTPServer:
    handler = type("BoundGate", (Gate,), {"upstream": ("127.0.0.1", upstream_port)})
    httpd = http.server.ThreadingHTTPServer((check_listen(listen), port), handler)
    httpd.daemon_threads = True
    return httpd


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m fabfile.sandbox.s3gate LISTEN_ADDRESS PORT MOTO_PORT", file=sys.stderr)
        return 2
    httpd = server(argv[0], int(argv[1]), int(argv[2]))
    print(f"s3gate: http://{argv[0]}:{argv[1]} -> moto's S3 at 127.0.0.1:{argv[2]}", file=sys.stderr, flush=True)
    httpd.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
