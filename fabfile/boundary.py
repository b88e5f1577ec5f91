"""The task boundary shared by every `fab` task on a cluster: load roles.yaml, turn errors into exits.

`@cluster_task(help=..., errors=(...))` makes such a task: it adds `--config`
and `--target` where the body has its `cfg` parameter, loads roles.yaml first
(a bad file exits before anything is contacted) and runs the body inside
`exits(...)`: whipup's, botocore's and SSH errors become one
`invoke.Exit(message, 1)`, never a traceback.  Nothing below the task layer
raises `Exit`.
"""
from __future__ import annotations

import functools
import gc
import inspect
import socket
import sys
from contextlib import contextmanager
from typing import Callable, Mapping

from invoke import Exit, Task, task
from paramiko.ssh_exception import SSHException

from .cloud import CloudError
from .config import Config, ConfigError, load_config, with_target
from .errors import ProvisionError

HELP = {
    "config": "path to roles.yaml (default: roles.yaml)",
    "target": "sandbox or aws: overrides cluster.target",
}
# what a task's `cfg` parameter stands for on the command line (and for a caller)
CONFIG_PARAMETERS = (
    inspect.Parameter("config", inspect.Parameter.POSITIONAL_OR_KEYWORD, default="roles.yaml"),
    inspect.Parameter("target", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None),
)


def load(config: str, target: str | None) -> Config:
    """roles.yaml at `config`, with cluster.target overridden by --target."""
    return with_target(load_config(config), target)


def cloud_message(exc: BaseException) -> str | None:
    """botocore's error as the task says it, or None for any other. botocore is not imported for this: a
    task that never loaded it (a no-op configure) cannot have raised its errors."""
    boto = sys.modules.get("botocore.exceptions")
    if boto is None:
        return None
    if isinstance(exc, boto.EndpointConnectionError):
        return f"cannot reach the cloud ({exc}); for the sandbox, start it: fab sandbox.up"
    if isinstance(exc, (boto.ClientError, boto.BotoCoreError)):
        return f"{type(exc).__name__}: {exc}"
    return None


@contextmanager
def exits(*errors: type[BaseException]):
    """whipup's, botocore's (and `errors`) as invoke.Exit(message, 1): the task boundary."""
    try:
        yield
    except (ConfigError, CloudError, ProvisionError, *errors) as exc:
        raise Exit(str(exc), code=1) from None
    except (SSHException, socket.timeout, EOFError) as exc:
        raise Exit(f"SSH: {type(exc).__name__}: {exc}", code=1) from None
    except Exception as exc:
        message = cloud_message(exc)
        if message is None:
            raise
        raise Exit(message, code=1) from None
    finally:
        # What the task leaves goes with the process: the interpreter's last collection at exit would spend
        # ~30-60 ms walking it (a rollback's budget is 1 s), so the survivors are moved out of its sight.
        gc.freeze()


def task_signature(body: Callable) -> inspect.Signature:
    """`body`'s signature as invoke sees the task: its `cfg` parameter is `config="roles.yaml", target=None`.

    The order of the parameters is the flags' order (invoke gives short flags first come, first served), so
    `cfg` stands where --config and --target come; a keyword-only `cfg` (after `*`) can follow parameters
    with defaults, and every parameter is presented as positional-or-keyword, as invoke expects.
    """
    params = list(inspect.signature(body).parameters.values())
    if [p.name for p in params].count("cfg") != 1 or params[0].name == "cfg":
        raise TypeError(f"{body.__name__}: a cluster task takes the context first, then a `cfg` parameter")
    shown: list[inspect.Parameter] = []
    for p in params:
        shown += CONFIG_PARAMETERS if p.name == "cfg" else (p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD),)
    return inspect.Signature(shown)


def cluster_task(*, help: Mapping[str, str] | None = None, errors: tuple[type[BaseException], ...] = (),
                 **options) -> Callable[[Callable], Task]:
    """@task for a task on the cluster of roles.yaml: --config/--target added (HELP texts) where the body has
    its `cfg`, roles.yaml loaded and passed in as `cfg`, the body run inside `exits(*errors)`.

    `help` holds the body's own flags; `options` go to invoke's `task` (e.g. name=).
    """
    def decorate(body: Callable) -> Task:
        signature = task_signature(body)

        @functools.wraps(body)
        def run(c, *args, **kwargs):
            given = signature.bind(c, *args, **kwargs)
            given.apply_defaults()
            arguments = dict(given.arguments)
            config, target = arguments.pop("config"), arguments.pop("target")
            with exits(*errors):
                return body(**arguments, cfg=load(config, target))

        run.__signature__ = signature
        return task(run, help={**HELP, **(help or {})}, **options)

    return decorate
