"""Wait until a node answers SSH with its pinned host key and accepts the cluster key."""
from __future__ import annotations

import time

from paramiko.ssh_exception import SSHException

from ..config import SSH_PORT, Config
from ..errors import ProvisionError
from ..nodes import Node, connect_address
from ..ssh import connect
from .timing import Timing


def wait_for_ssh(cfg: Config, node: Node, timing: Timing, *, port: int = SSH_PORT) -> None:
    """Return once an authenticated SSH session opens; ProvisionError naming node, address and last error."""
    address = connect_address(cfg, node)
    deadline = time.monotonic() + timing.ssh_timeout
    last: Exception | None = None
    while (remaining := deadline - time.monotonic()) > 0:
        conn = None
        try:
            conn = connect(cfg, node, port=port,
                           connect_timeout=max(1.0, min(timing.ssh_connect_timeout, remaining)))
            conn.open()
            return
        except (SSHException, OSError, EOFError) as exc:
            last = exc
        finally:
            if conn is not None:
                conn.close()
        time.sleep(max(0.0, min(timing.ssh_interval, deadline - time.monotonic())))
    seen = f"{type(last).__name__}: {last}" if last is not None else "none (no time to try)"
    raise ProvisionError(f"{node.name} ({node.instance_id}) at {address}:{port}: no SSH after "
                         f"{timing.ssh_timeout:g}s; last error: {seen}")
