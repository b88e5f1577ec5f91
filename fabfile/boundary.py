"""The task boundary shared by every `fab` task: load roles.yaml, turn errors into exits.

A task loads its config with `load(config, target)` first (a bad file exits
before anything is contacted) and wraps its body in `exits(...)`: whipup's,
botocore's and SSH errors become one `invoke.Exit(message, 1)`, never a
traceback.  Nothing below the task layer raises `Exit`.
"""
from __future__ import annotations

import gc
import socket
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError
from invoke import Exit
from paramiko.ssh_exception import SSHException

from .cloud import CloudError
from .config import Config, ConfigError, load_config, with_target
from .errors import ProvisionError

HELP = {
    "config": "path to roles.yaml (default: roles.yaml)",
    "target": "sandbox or aws: overrides cluster.target",
}


def load(config: str, target: str | None) -> Config:
    """roles.yaml at `config`, with cluster.target overridden by --target."""
    return with_target(load_config(config), target)


@contextmanager
def exits(*errors: type[BaseException]):
    """whipup's, botocore's (and `errors`) as invoke.Exit(message, 1): the task boundary."""
    try:
        yield
    except (ConfigError, CloudError, ProvisionError, *errors) as exc:
        raise Exit(str(exc), code=1) from None
    except EndpointConnectionError as exc:
        raise Exit(f"cannot reach the cloud ({exc}); for the sandbox, start it: fab sandbox.up", code=1) from None
    except (ClientError, BotoCoreError) as exc:
        raise Exit(f"{type(exc).__name__}: {exc}", code=1) from None
    except (SSHException, socket.timeout, EOFError) as exc:
        raise Exit(f"SSH: {type(exc).__name__}: {exc}", code=1) from None
    finally:
        # What the task leaves goes with the process: the interpreter's last collection at exit would spend
        # ~30-60 ms walking it (a rollback's budget is 1 s), so the survivors are moved out of its sight.
        gc.freeze()
