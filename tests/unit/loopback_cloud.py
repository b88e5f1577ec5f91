"""A stand-in cloud endpoint on 127.0.0.1 that records every request and refuses it.

Shared by the bad-input corpus and the property test: `fab` is pointed at it, so any request that reaches
it is an API call the input should not have caused. Each call is answered with a non-retryable error
(AuthFailure), so botocore does not repeat it.
"""
from __future__ import annotations

import http.server
import threading
import urllib.parse
from contextlib import contextmanager

REFUSAL = (b"<Response><Errors><Error><Code>AuthFailure</Code><Message>recorder</Message></Error>"
           b"</Errors><RequestID>r</RequestID></Response>")


@contextmanager
def recording():
    """(port, [the Action of each request, or its path]) while the endpoint runs."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8", "replace")
            seen.append((urllib.parse.parse_qs(body).get("Action") or [self.path])[0])
            self.send_response(401)
            self.send_header("Content-Length", str(len(REFUSAL)))
            self.end_headers()
            self.wfile.write(REFUSAL)

        do_GET = do_POST

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()
