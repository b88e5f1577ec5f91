"""Dependencies downloaded once per cluster: when several code nodes need a new venv for the same
requirements, the first one builds a wheelhouse (`pip wheel`: downloads and builds every requirement once,
through its pip cache) and installs from it; the wheelhouse then travels to the others as one tar over the
SSH channels (`fabfile.stream.pipe`), and they install from it with no index (from the index only if that
fails: a node whose Python differs). pip's own cache stays on each host between releases
(`$HOME/.cache/pip`, HOME being the app's root).

    builder: venv + pip wheel + pip install --no-index -> pack | unpack on the others
    -> the others: venv + pip install --no-index -> the wheelhouse removed everywhere
"""
from __future__ import annotations

from ..layout import Layout
from .commands import as_app, q


def directory(layout: Layout, req_hash: str) -> str:
    """The wheelhouse of these requirements on a node (under the app's root, the app user's)."""
    if not req_hash.isalnum():
        raise ValueError(f"not a requirements hash: {req_hash!r}")
    return f"{layout.root}/wheelhouse/{req_hash[:16]}"


def pack(layout: Layout, req_hash: str) -> str:
    """The builder's wheelhouse as an uncompressed tar on stdout (wheels are zip files already)."""
    directory(layout, req_hash)                         # a valid hash only
    return as_app(layout, f"cd {q(layout.root)} && tar -cf - {q('wheelhouse/' + req_hash[:16])}")


def unpack(layout: Layout, req_hash: str) -> str:
    """A wheelhouse from stdin under the app's root; prints its size in kB."""
    wh = q(directory(layout, req_hash))
    return as_app(layout, f"set -e\nrm -rf {wh}\ncd {q(layout.root)}\ntar -xf - --no-same-owner\ndu -sk {wh} | cut -f1")


def size(layout: Layout, req_hash: str) -> str:
    """The wheelhouse's size in kB and its wheel count: `<kB> <wheels>`."""
    wh = q(directory(layout, req_hash))
    return as_app(layout, f"echo \"$(du -sk {wh} | cut -f1) $(ls {wh} | grep -c '\\.whl$')\"")


def remove(layout: Layout, req_hash: str) -> str:
    return as_app(layout, f"rm -rf {q(directory(layout, req_hash))}")
