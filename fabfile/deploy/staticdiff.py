"""Static files as a difference: collected only when their inputs changed, shipped only where missing.

On app node 0 a release's static/ comes with two files beside it: STATIC_SUMS (`sha1sum` of every file
under static/, sorted) and STATIC_KEY (what collectstatic's result depends on: the project's files outside
templates that are not Python code, its settings, the venv, how the release runs, the .env). A release
whose key equals the current release's takes that release's static/ by hard links instead of running
collectstatic (`reuse_or_collect`).

A proxy's new release starts as hard links of its current release's static/ (`proxy_prepare`), minus the
files the new listing lacks or has with other contents; the files it lacks travel from app node 0 as one
tar over the SSH channels (`pack`, `unpack`, through `fabfile.stream.pipe`): binary, no base64, and with
ManifestStaticFilesStorage's hashed names most files are shared with the previous release.

    reuse_or_collect -> (collectstatic -> record) -> sums on app node 0 and each proxy -> difference
    -> proxy_prepare -> pack | unpack
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ..layout import PARTIAL_MARK, Layout
from .commands import _marks, as_app, q, release_arg, sha_arg, treeish

SUMS = "STATIC_SUMS"
KEY = "STATIC_KEY"
KEY_VERSION = "1"        # bump when what the key covers changes

# Files of the project that collectstatic's result does not depend on: templates and Python code other
# than settings (a settings module or package: settings.py, settings_prod.py, settings/base.py).
_AWK_FILTER = (r"$2 ~ /(^|\/)templates\// { next } "
               r"$2 ~ /\.py$/ && $2 !~ /(^|\/)settings[^\/]*(\/|$)/ { next } { print }")
_SUM_LINE = re.compile(r"([0-9a-f]{40}) [ *](static/.+)")


def local_key(venv_id: str, runtime: str, env_text: str) -> str:
    """The part of the key this machine knows: the venv's content id, how the release runs, the .env."""
    h = hashlib.sha256()
    for part in (KEY_VERSION, venv_id, runtime, hashlib.sha256(env_text.encode()).hexdigest()):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:32]


def _sums_script(rel: str) -> str:
    """Write STATIC_SUMS for `rel`'s static/ (a temp file renamed over it)."""
    return (f"(cd {rel} && find static -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha1sum > {SUMS}.tmp "
            f"&& mv -f {SUMS}.tmp {SUMS})")


def reuse_or_collect(layout: Layout, release_id: str, sha: str, prefix: str, current: str | None,
                     local: str) -> str:
    """On app node 0: the release's static key; `reused N` after hard-linking the current release's
    static/ (same key), else `collect`. Prints `key=<key>` first."""
    rel, m = q(layout.release(release_arg(release_id))), q(layout.mirror)
    lines = [
        "set -e",
        f"k=$(git --git-dir={m} ls-tree -r {q(treeish(sha, prefix))} | awk -F '\\t' {q(_AWK_FILTER)} "
        "| sha1sum | cut -c1-40)",
        f"key={q(local)}-$k",
        'echo "key=$key"',
    ]
    if current is None:
        return as_app(layout, "\n".join(lines + ["echo collect"]))
    prev = q(layout.release(release_arg(current)))
    lines += [
        f'if [ -d {prev}/static ] && [ -f {prev}/{SUMS} ] && [ "$(cat {prev}/{KEY} 2>/dev/null)" = "$key" ]; then',
        f"  rm -rf {rel}/static && cp -al {prev}/static {rel}/static && cp {prev}/{SUMS} {rel}/{SUMS}",
        f"  printf '%s\\n' \"$key\" > {rel}/{KEY}",
        f'  echo "reused $(wc -l < {rel}/{SUMS})"',
        "else",
        "  echo collect",
        "fi",
    ]
    return as_app(layout, "\n".join(lines))


def parse_key(out: str) -> tuple[str, bool, int]:
    """(key, reused, files) from `reuse_or_collect`'s output."""
    key, reused, files = "", False, 0
    for line in out.splitlines():
        if line.startswith("key="):
            key = line[4:].strip()
        elif line.startswith("reused "):
            reused, files = True, int(line.split()[1])
    return key, reused, files


def record(layout: Layout, release_id: str, key: str) -> str:
    """After collectstatic: STATIC_SUMS and STATIC_KEY of the release; prints how many files static/ holds."""
    rel = q(layout.release(release_arg(release_id)))
    if not re.fullmatch(r"[0-9a-f]{32}-[0-9a-f]{40}", key):
        raise ValueError(f"not a static key: {key!r}")
    return as_app(layout, f"set -e\nmkdir -p {rel}/static\n{_sums_script(rel)}\n"
                          f"printf '%s\\n' {q(key)} > {rel}/{KEY}\nwc -l < {rel}/{SUMS}")


def sums(layout: Layout, release_id: str) -> str:
    """The release's STATIC_SUMS (written first if the release has none: one made before them)."""
    rel = q(layout.release(release_arg(release_id)))
    return as_app(layout, f"set -e\nmkdir -p {rel}/static\n[ -f {rel}/{SUMS} ] || {_sums_script(rel)}\n"
                          f"cat {rel}/{SUMS}")


def proxy_sums(layout: Layout, release_id: str) -> str:
    """What a proxy's release holds: its STATIC_SUMS, else the sums of its static/ (nothing when neither)."""
    rel = q(layout.release(release_arg(release_id)))
    return as_app(layout, f"cat {rel}/{SUMS} 2>/dev/null || {{ cd {rel} 2>/dev/null && [ -d static ] && "
                          f"find static -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha1sum; }} || true")


def parse_sums(out: str) -> dict[str, str] | None:
    """{path: sha1} from a sums listing; None when a line is not one whipup can trust (an escaped name, a
    path outside static/ or with `..`): then every file is shipped."""
    found: dict[str, str] = {}
    for line in out.splitlines():
        if not line.strip():
            continue
        m = _SUM_LINE.fullmatch(line)
        if m is None or "/../" in m.group(2) + "/" or m.group(2).endswith("/"):
            return None
        found[m.group(2)] = m.group(1)
    return found


@dataclass(frozen=True)
class Difference:
    """For one proxy: what to delete from the hard-linked copy of its current static/, what to ship."""
    remove: tuple[str, ...]
    ship: tuple[str, ...]
    linked: int                           # files kept from the proxy's current release


def difference(new: dict[str, str], old: dict[str, str] | None) -> Difference:
    if old is None:
        return Difference((), tuple(sorted(new)), 0)
    remove = tuple(sorted(p for p in old if new.get(p) != old[p]))
    ship = tuple(sorted(p for p in new if old.get(p) != new[p]))
    return Difference(remove, ship, len(new) - len(ship))


def proxy_prepare(layout: Layout, release_id: str, current: str | None) -> str:
    """A proxy's fresh release: its current release's static/ hard-linked (when it has one), then the paths
    on stdin (one a line, under static/) deleted."""
    rel = q(layout.release(release_arg(release_id)))
    lines = ["set -e", f"rm -rf {rel}", f"mkdir -p {rel}", f": > {rel}/{PARTIAL_MARK}"]
    if current is not None:
        prev = q(layout.release(release_arg(current)))
        lines.append(f"if [ -d {prev}/static ]; then cp -al {prev}/static {rel}/static; fi")
    lines += [f"mkdir -p {rel}/static", f"cd {rel}", "tr '\\n' '\\0' | xargs -0 -r rm -f --"]
    return as_app(layout, "\n".join(lines))


def pack(layout: Layout, release_id: str) -> str:
    """On app node 0: a tar (uncompressed) of the paths on stdin (one a line) of the release, to stdout."""
    rel = q(layout.release(release_arg(release_id)))
    return as_app(layout, f"cd {rel} && tar -cf - --verbatim-files-from -T -")


def unpack(layout: Layout, release_id: str, sha: str, tree: str | None = None, previous: str | None = None) -> str:
    """A proxy's release: the tar on stdin over its prepared static/, then REVISION and the marks."""
    rel = q(layout.release(release_arg(release_id)))
    return as_app(layout, "\n".join([
        "set -e",
        f"tar -xf - --no-same-owner -C {rel}",
        f"printf '%s\\n' {q(sha_arg(sha))} > {rel}/REVISION",
        *_marks(rel, tree, previous),
    ]))
