"""`fab sandbox.*`: the local cloud on this machine."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

from invoke import Exit, task

from . import acme, control, gitpublish
from .errors import SandboxError
from .settings import load_settings


@task
def up(c):
    """Start the local cloud (build/reuse image, API, bridge, proxy, git server, materializer)."""
    try:
        control.up(load_settings())
    except SandboxError as exc:
        raise Exit(f"sandbox.up: {exc}", code=1)


@task
def down(c):
    """Stop the local cloud and remove its hosts, namespaces, bridge and processes."""
    try:
        control.down(load_settings())
    except SandboxError as exc:
        raise Exit(f"sandbox.down: {exc}", code=1)


@task(help={"json": "print JSON instead of a table"})
def status(c, json_=False):
    """Show the local cloud: endpoint, region, image and every host."""
    st = control.status(load_settings())
    if json_:
        print(json.dumps({**st, "hosts": [h.__dict__ for h in st["hosts"]]}, indent=2))
        return
    print(f"endpoint:     {st['endpoint']} ({'up' if st['api'] else 'down'})")
    print(f"region:       {st['region']}")
    for im in st["images"]:
        print(f"image:        {im['image_id'] or '-'} {im['name']} {im['tree'] or '(not built)'}, "
              f"Python {im['python']}, PostgreSQL {im['postgresql']}")
    print(f"proxy:        {st['proxy'] or 'down'}")
    print(f"s3 for hosts: {st['s3'] or 'down'}")
    print(f"git:          {st['git'] or 'down'}")
    print(f"dns:          {st['dns'] or 'down'}")
    print(f"acme:         {st['acme'] or 'down'}")
    print(f"materializer: {'pid ' + str(st['materializer']) if st['materializer'] else 'down'}")
    print(f"firewall:     {(st['firewall'] + ' (the security groups)') if st['firewall'] else 'no table yet'}")
    if st["hosts"]:
        print(f"{'INSTANCE':<21} {'STATE':<14} {'PRIVATE IP':<16} PID")
        for h in st["hosts"]:
            print(f"{h.instance_id:<21} {h.state:<14} {h.private_ip:<16} {h.pid or '-'}")
    else:
        print("hosts:        none")


@task
def env(c):
    """Print shell exports so plain boto3 and the aws CLI use the local cloud; its DNS server and the root
    certificate of its ACME server (pebble), which the sites' certificates chain to."""
    settings = load_settings()
    for key, value in control.sandbox_environ(settings).items():
        print(f"export {key}={shlex.quote(value)}")
    print(f"export WHIPUP_SANDBOX_DNS={shlex.quote(settings.bridge_address)}   # dig @$WHIPUP_SANDBOX_DNS NAME")
    print(f"export WHIPUP_SANDBOX_ACME_ROOT={shlex.quote(str(acme.root_path(settings)))}   "
          "# curl --cacert $WHIPUP_SANDBOX_ACME_ROOT")


@task(name="git-publish", positional=["path"],
      help={"path": "a local git repository (its root): every branch and tag is published",
            "name": "the repository's name in the URL (default: the directory's name)"})
def git_publish(c, path, name=None):
    """Publish a local git repository to the local cloud's git server; print the URL its hosts fetch from."""
    settings = load_settings()
    try:
        pub = gitpublish.publish(settings, Path(path), name)
    except SandboxError as exc:
        raise Exit(f"sandbox.git-publish: {exc}", code=1)
    for branch, sha in pub.heads:
        print(f"{branch}: {sha}" + (" (HEAD)" if branch == pub.head else ""))
    if not control.git_answers(settings):
        print("note: the git server is not running (fab sandbox.up starts it)")
    print(pub.url)
