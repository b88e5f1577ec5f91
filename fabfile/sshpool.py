"""One pinned SSH connection per host for a whole run, every handshake started at once (issue 16).

    with Connections(cfg) as pool:
        pool.start(nodes)              # handshakes in flight, on threads, while the caller renders templates
        conn = pool.connect(cfg, node) # as ssh.connect: that node's connection, once its handshake is done

A no-op configure talks to the anchor node for the deploy lock, for its live slot, for its facts, and to the db
node for its facts and its nightly job: each host's connection is opened once, not once per step, and every
host's handshake runs while the others' do (and while the lock is taken on the anchor). `close()` (the end
of the `with`) closes them all; a caller's own `conn.close()` leaves a pooled connection open for the next.

Nothing is relaxed: each connection is `ssh.connect`'s (pinned host keys, the cluster key only), and on the
local cloud every address is checked to be routed to its bridge before a byte is sent to it (one `ip -batch`
for all of them). A failed handshake is raised where the caller's first command opens the connection, as
`ssh.connect`'s own connection would raise it (remote.run says ConnectionLost, "could not connect").
"""
from __future__ import annotations

import subprocess
import threading

from .config import Config
from .nodes import Node, connect_address
from .ssh import NotInSandbox, PinnedConnection, connect, sandbox_bridge


class PooledConnection(PinnedConnection):
    """A PinnedConnection its pool owns: `close()` keeps it open (the pool's `release()` closes it); its
    first `open()` waits for the handshake the pool started, and raises that handshake's error if it failed."""

    # declared here, so that fabric's Connection keeps them as attributes (not as its config's keys)
    _pool_lock: threading.Lock | None = None
    _pool_error: BaseException | None = None
    _pool_opened = False

    def prepare(self) -> None:
        self._pool_lock = threading.Lock()
        self._pool_error: BaseException | None = None
        self._pool_opened = False

    def handshake(self) -> None:
        """The pool's thread: open now; an error is kept for the first `open()` from a caller."""
        with self._pool_lock:
            try:
                PinnedConnection.open(self)
            except Exception as exc:  # raised again by the caller's first open(), as its own would be
                self._pool_error = exc
                return
            try:        # sshd answers a connection's first session ~40 ms after the login: open it now
                self.client.get_transport().open_session(timeout=self.connect_timeout).close()
            except Exception:  # the caller's first command opens its own, and says what goes wrong
                pass

    def open(self):
        with self._pool_lock:
            if not self._pool_opened:
                self._pool_opened = True
                error, self._pool_error = self._pool_error, None
                if error is not None:
                    raise error
            return PinnedConnection.open(self)

    def close(self) -> None:
        """Left open for the run's next step on this host (the pool closes it)."""

    def release(self) -> None:
        PinnedConnection.close(self)


def route_batch(addresses: list[str]) -> list[str] | None:
    """`ip -batch` input asking the route of each address (one process for all, as `routed_via` for one)."""
    return [f"route get {a}" for a in addresses] if addresses else None


def parse_route_batch(addresses: list[str], output: str) -> dict[str, str | None] | None:
    """{address: the device its traffic leaves by} from `ip -o -batch` output (one line per address, in
    order); None when the lines do not match the addresses one to one (the caller asks one by one)."""
    lines = [line for line in output.splitlines() if line.strip()]
    if len(lines) != len(addresses):
        return None
    found: dict[str, str | None] = {}
    for address, line in zip(addresses, lines):
        fields = line.split()
        if address not in fields[:2]:
            return None
        found[address] = fields[fields.index("dev") + 1] if "dev" in fields[:-1] else None
    return found


def routes(addresses: list[str]) -> dict[str, str | None]:
    """{address: device} for every address; one `ip` process, else one per address."""
    from .sandbox.net import routed_via

    batch = route_batch(addresses)
    if batch is None:
        return {}
    p = subprocess.run(["ip", "-o", "-batch", "-"], input="\n".join(batch) + "\n", capture_output=True,
                       text=True, check=False)
    found = parse_route_batch(addresses, p.stdout) if p.returncode == 0 else None
    return found if found is not None else {a: routed_via(a) for a in addresses}


def _key(node: Node) -> tuple:
    """A node's place in the pool: the same instance at another address (stopped and started) is another."""
    return node.instance_id, node.private_ip, node.public_ip


class Connections:
    """The run's connections, one per node (see the module's docstring); safe from many threads."""

    def __init__(self, cfg: Config, *, route=None, timeout: float | None = 10):
        self.cfg, self.timeout = cfg, timeout
        self._route = route or routes
        self._lock, self._starting = threading.Lock(), threading.Lock()
        self._conns: dict[tuple, PooledConnection] = {}
        self._refused: dict[tuple, BaseException] = {}
        self._threads: dict[tuple, threading.Thread] = {}

    def start(self, nodes: list[Node]) -> None:
        """Start the handshake of every running node not started yet (after the sandbox route check)."""
        with self._starting:
            todo = {_key(n): n for n in nodes if n.state == "running"}   # a node listed twice: one handshake
            self._start([n for k, n in todo.items() if k not in self._conns and k not in self._refused])

    def _start(self, todo: list[Node]) -> None:
        if not todo:
            return
        self._check_routes(todo)
        for node in todo:
            if _key(node) in self._refused:
                continue
            try:
                conn = self._make(node)
            except Exception as exc:  # no key file, no known_hosts: raised by connect() as ssh.connect's
                self._refused[_key(node)] = exc
                continue
            thread = threading.Thread(target=conn.handshake, name=f"ssh-{node.name}", daemon=True)
            self._threads[_key(node)] = thread
            thread.start()

    def _check_routes(self, nodes: list[Node]) -> None:
        if self.cfg.cluster.target != "sandbox":
            return
        addresses = {}
        for node in nodes:
            try:
                addresses[_key(node)] = connect_address(self.cfg, node)
            except Exception as exc:
                self._refused[_key(node)] = exc
        bridge = sandbox_bridge()
        via = self._route(sorted(set(addresses.values())))
        for key, address in addresses.items():
            if via.get(address) not in (bridge, "lo"):
                self._refused[key] = NotInSandbox(
                    f"{address} is not routed to the local cloud's bridge {bridge} "
                    f"(it goes via {via.get(address)})")

    def _make(self, node: Node) -> PooledConnection:
        conn = connect(self.cfg, node, connect_timeout=self.timeout, kind=PooledConnection, routed=True)
        conn.prepare()
        with self._lock:
            self._conns[_key(node)] = conn
        return conn

    def connect(self, cfg: Config, node: Node, **options) -> PinnedConnection:
        """As ssh.connect(cfg, node): this node's pooled connection (its handshake started now if it was not);
        a connection with other options (another port) is ssh.connect's own."""
        if options or cfg is not self.cfg:
            return connect(cfg, node, **options)
        with self._lock:
            known = _key(node) in self._conns or _key(node) in self._refused
        if not known:
            self.start([node])
        with self._lock:
            refused, conn = self._refused.get(_key(node)), self._conns.get(_key(node))
        if refused is not None:
            raise refused
        if conn is None:                    # not running: as ssh.connect would (route check, then a connection)
            return connect(cfg, node)
        return conn

    def close(self) -> None:
        for thread in list(self._threads.values()):
            thread.join()
        for conn in list(self._conns.values()):
            try:
                conn.release()
            except Exception:  # closing is best effort
                pass

    def __enter__(self) -> "Connections":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
