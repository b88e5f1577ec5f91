"""The local cloud's API: moto's server, which also marks every request that may have changed something.

The materializer reconciles the hosts with the API (four Describe calls a time) and the DNS sync the
zones' records (two or more). Polled every 0.2 s and 1 s, they kept moto busy for a quarter of a core
while nothing happened. Instead, every answered request that did not come from one of these watchers
(their user agent says so) touches the mark file, after moto has applied it; a watcher looks at the
mark's time every 0.2 s and reconciles when it moved, else every IDLE_RECONCILE seconds.

Run: python -m fabfile.sandbox.api -H 127.0.0.1 -p PORT --mark FILE   (sandbox.up does it)
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, Iterable

WATCHER_AGENT = "whipup-sandbox-watcher"     # in the User-Agent of the materializer's and the DNS sync's clients
MAX_INSTANCES = 64        # the local cloud's account limit (an idle host holds 8 MiB; every host shares the cores)
IDLE_RECONCILE = 10.0     # seconds between two reconciles of a watcher while the API reports no change


def touch(mark: Path) -> None:
    """The mark's time moves to now (made if missing)."""
    with open(mark, "a"):
        pass
    os.utime(mark)


def mark_of(path: Path) -> int | None:
    """The change mark: its file's time in ns, None while there is none."""
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def due(mark: int | None, seen: int | None, idle: float) -> bool:
    """A watcher reconciles now: the API changed something since its last reconcile (or has no mark to
    tell), or it has been IDLE_RECONCILE seconds."""
    return mark is None or mark != seen or idle >= IDLE_RECONCILE


def marking(app: Callable, mark: Path) -> Callable:
    """`app` (WSGI), touching `mark` once it answered a request that is not a watcher's."""
    def wrapped(environ: dict, start_response: Callable) -> Iterable[bytes]:
        answer = app(environ, start_response)            # moto handles the request in this call
        if WATCHER_AGENT not in environ.get("HTTP_USER_AGENT", ""):
            touch(mark)
        return answer
    return wrapped


# the service a request signed with SigV4 is for: `Credential=KEY/DATE/REGION/SERVICE/aws4_request`
_SERVICE = re.compile(r"Credential=[^/,]+/[^/,]+/[^/,]+/([^/,]+)/aws4_request")
ONE_AT_A_TIME = frozenset({"ec2"})


def service_of(environ: dict) -> str | None:
    found = _SERVICE.search(environ.get("HTTP_AUTHORIZATION", ""))
    return found.group(1) if found else None


def serialized(app: Callable, services: frozenset[str] = ONE_AT_A_TIME) -> Callable:
    """`app` (WSGI), handling the requests for `services` one at a time. moto's EC2 backend is not safe
    across threads: two RunInstances in one subnet at once share its address generator ("ValueError:
    generator already executing", a 500 to one of them; seen in CI as the provision of a db node failing),
    and a Describe iterates dicts that a Run changes. Each call takes milliseconds; S3 and the rest, whose
    bodies may be large, are not held up."""
    lock = threading.Lock()

    def wrapped(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if service_of(environ) not in services:
            return app(environ, start_response)
        with lock:
            return app(environ, start_response)
    return wrapped


def with_instance_limit(limit: int) -> None:
    """DescribeAccountAttributes' max-instances is the local cloud's own limit (moto answers AWS's old default,
    20; this machine holds more hosts than that: bench/scale.py runs 26)."""
    from moto.core.responses import ActionResult
    from moto.ec2.responses.account_attributes import AccountAttributes

    answer = AccountAttributes.describe_account_attributes

    def describe(self) -> ActionResult:
        result = answer(self).result
        for attribute in result["AccountAttributes"]:           # type: ignore[index]
            if attribute["AttributeName"] == "max-instances":
                attribute["AttributeValues"] = [{"AttributeValue": str(limit)}]
        return ActionResult(result)
    AccountAttributes.describe_account_attributes = describe   # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-H", "--host", default="127.0.0.1")
    ap.add_argument("-p", "--port", type=int, required=True)
    ap.add_argument("--mark", type=Path, required=True, help="the file whose time every change moves")
    ap.add_argument("--max-instances", type=int, default=MAX_INSTANCES, help="the account's instance limit")
    args = ap.parse_args(argv)
    with_instance_limit(args.max_instances)
    os.environ.setdefault("MOTO_PORT", str(args.port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    touch(args.mark)
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True          # as moto.server's own main
    run_simple(args.host, args.port, marking(serialized(app), args.mark), threaded=True,
               request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
