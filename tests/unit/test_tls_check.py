"""fabfile/tls/check.py's `get` against a real TLS server on loopback (a self-signed certificate made by openssl)."""
from __future__ import annotations

import http.server
import ssl
import subprocess
import threading

from cryptography import x509

from fabfile.tls.check import get


class Closing(http.server.BaseHTTPRequestHandler):
    """Answers as nginx does while it reloads: the response says `Connection: close`."""
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def test_the_certificate_is_read_even_when_the_server_closes_the_connection(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=shop.test",
                    "-addext", "subjectAltName=DNS:shop.test"], check=True, capture_output=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Closing)
    served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.load_cert_chain(cert, key)
    server.socket = served.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        trusting = ssl.create_default_context(cafile=str(cert))
        status, location, body, der = get("shop.test", "127.0.0.1", "/", trusting, port=server.server_port)
    finally:
        server.shutdown()
    assert (status, location, body) == (200, None, b"ok")
    assert x509.load_der_x509_certificate(der).serial_number == x509.load_pem_x509_certificate(
        cert.read_bytes()).serial_number
