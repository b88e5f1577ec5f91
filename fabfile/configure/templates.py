"""Config templates rendered locally with Jinja2 (StrictUndefined), before anything is uploaded.

`templates_dir` (roles.yaml `configure.templates_dir`, default `templates/`
next to roles.yaml) mirrors the remote paths: `etc/nginx/sites-available/whipup.conf.j2`
renders to `/etc/nginx/sites-available/whipup.conf`.  A template's `dest`
may itself use the context (`/etc/supervisor/conf.d/{{ app.name }}-web.conf`).

`host` holds what only the host knows (`host.postgresql`: its PostgreSQL's major version, for
`/etc/postgresql/{{ host.postgresql }}/main/...`): templates are rendered before any host is contacted, so
these are placeholders, filled in once the host's facts are read (facts.HOST_VALUES, Desired.for_host);
use them as text, not in tests or filters.

An undefined variable or a syntax error is a `TemplateError` whose message
names the template and the line: `templates/etc/...conf.j2:12: 'x' is undefined`.

The context holds no secrets: the database password goes to PostgreSQL on
stdin and to the app's .env by deploy.
"""
from __future__ import annotations

import os
import posixpath
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:     # jinja2 is imported where it renders: a deploy or rollback never pays for it
    import jinja2

from ..config import Config, TemplateSpec
from ..layout import APP_ROLES, BROKER_PORT, BROKER_ROLE, DB_PORT, DB_ROLE, SLOTS, WEB_PORT, Layout, slot_port
from ..tls.commands import template_context as site_context
from ..media import MediaSite, nginx_media, rehearsal_site, site_of
from ..monitor.context import monitor_context, receiver_url
from ..nodes import Node
from . import dbsize
from .facts import HOST_VALUES
from .want import DesiredFile


class TemplateError(Exception):
    """A template cannot be rendered; the message names the template and line."""


def environment(templates_dir: Path, cache: Path | None = None) -> jinja2.Environment:
    """The templates' Jinja2 environment; with `cache` (the state dir's .cache/), each template's compiled
    code kept in cache/jinja (0700), used again while the template's text is the same (jinja2's own
    FileSystemBytecodeCache, keyed by the text's checksum): a no-op run does not compile them again."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        bytecode_cache=_bytecode_cache(cache) if cache is not None else None,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def _bytecode_cache(cache: Path):
    """jinja2's file cache in cache/jinja, made 0700 (its files are code this process loads); None, and
    every template compiled as it is read, when it cannot be made or is not this user's alone."""
    import jinja2

    place = cache / "jinja"
    try:
        place.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = place.lstat()
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) != 0o700:
        return None
    return jinja2.FileSystemBytecodeCache(str(place))


def _node_entry(node: Node) -> dict:
    return {"name": node.name, "private_ip": node.private_ip, "index": node.index, "role": node.role}


def context(cfg: Config, node: Node, nodes: list[Node], media: MediaSite | None = None) -> dict:
    """What a template sees: cluster, app, role, node, nodes (by role), db, broker, media, monitor, ports, host."""
    by_role: dict[str, list[dict]] = {r: [] for r in cfg.role_names}
    for n in sorted(nodes, key=lambda n: (n.role, n.index, n.name)):
        if n.role in by_role and n.private_ip:
            by_role[n.role].append(_node_entry(n))
    layout = Layout.of(cfg)
    role = cfg.role(node.role)
    ctx = {
        "cluster": {"name": cfg.cluster.name, "region": cfg.cluster.region, "target": cfg.cluster.target},
        "app": {
            "name": layout.app, "user": layout.user, "group": layout.group, "root": layout.root,
            "releases": layout.releases, "shared": layout.shared, "current": layout.current,
            "logs": layout.logs, "env_file": layout.env_file, "venv": layout.current_venv,
            "launcher": layout.launcher,
            "web_program": layout.web_program, "worker_program": layout.worker_program,
            "port": WEB_PORT, "boot_program": layout.boot_program, "slots_dir": layout.slots_dir,
            "slots": [{"name": s, "program": layout.slot_program(s), "dir": layout.slot(s), "port": slot_port(s)}
                      for s in SLOTS],
            "upstream": layout.upstream_file,
        },
        "role": {"name": role.name, "services": list(role.services), "packages": list(role.packages)},
        "node": _node_entry(node),
        "nodes": by_role,
        "app_roles": list(APP_ROLES),
        "db": {"name": cfg.app.name, "user": cfg.app.name, "port": DB_PORT},
        "broker": {"port": BROKER_PORT},
        "media": nginx_media(media or site_of(cfg), layout.shared),
        "host": {name: mark for name, (mark, _) in HOST_VALUES.items()},
        "site": site_context(cfg.cluster.site),     # names and TLS (fabfile/tls)
        "monitor": monitor_context(cfg, by_role, receiver_url(cfg)),
    }
    ctx["db"]["clients"] = _port_clients(cfg, DB_ROLE, DB_PORT, by_role)
    ctx["db"]["max_connections"] = dbsize.for_cluster(cfg, by_role)
    ctx["broker"]["clients"] = _port_clients(cfg, BROKER_ROLE, BROKER_PORT, by_role)
    # the first db / broker node, when there is one (a template using them on a cluster without is an error)
    if by_role.get(DB_ROLE):
        ctx["db"]["host"] = by_role[DB_ROLE][0]["private_ip"]
    if by_role.get(BROKER_ROLE):
        host = by_role[BROKER_ROLE][0]["private_ip"]
        ctx["broker"].update(host=host, url=f"redis://{host}:{BROKER_PORT}/0")
    return ctx


def _port_clients(cfg: Config, role_name: str, port: int, by_role: dict[str, list[dict]]) -> list[dict]:
    """The nodes that role `role_name`'s rule for `port` lets in (roles.yaml `ports[].from` role names)."""
    if role_name not in cfg.role_names:
        return []
    roles = [r for rule in cfg.role(role_name).ports if rule.port == port for r in rule.roles]
    return [n for r in dict.fromkeys(roles) for n in by_role.get(r, [])]


def _where(exc: BaseException, templates_dir: Path, fallback: str) -> tuple[str, int | None]:
    """(template file, line) of an error: a syntax error says so; at render time Jinja rewrites the
    traceback so that template frames carry the template's file and line (the innermost one wins)."""
    import jinja2

    if isinstance(exc, jinja2.TemplateSyntaxError) and exc.lineno:
        return exc.filename or fallback, exc.lineno
    found: tuple[str, int | None] = (fallback, None)
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.startswith(str(templates_dir) + "/"):
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def render(env: jinja2.Environment, src: str, ctx: dict, *, show=str) -> str:
    """Render template `src`; TemplateError '<template>:<line>: <what>' on any error (`show` formats paths)."""
    import jinja2

    templates_dir = Path(env.loader.searchpath[0])  # type: ignore[union-attr]
    try:
        return env.get_template(src).render(ctx)
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"{show(str(templates_dir / src))}: template not found"
                            + (f" ({exc.name})" if exc.name != src else "")) from None
    except UnicodeDecodeError as exc:   # the loader reads UTF-8: say which byte, and how to fix it
        raise TemplateError(f"{show(str(templates_dir / src))}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} "
                            f"at offset {exc.start}, in it or a template it includes): save it as UTF-8") from None
    except Exception as exc:  # undefined variables, syntax errors, a filter misbehaving: name file and line
        filename, line = _where(exc, templates_dir, str(templates_dir / src))
        what = exc.message if isinstance(exc, jinja2.TemplateError) and exc.message else f"{type(exc).__name__}: {exc}"
        raise TemplateError(f"{show(filename)}:{line if line else '?'}: {what}") from None


_BAD_DEST = re.compile(r"[\s\x00-\x1f]")


def render_dest(env: jinja2.Environment, spec: TemplateSpec, ctx: dict, *, where: str) -> str:
    """The remote path of `spec`, its `{{ ... }}` rendered; absolute, normalised, no '..' or whitespace."""
    import jinja2

    try:
        dest = env.from_string(spec.dest).render(ctx) if "{" in spec.dest else spec.dest
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{where}.dest: {exc.message or exc}") from None
    if not dest.startswith("/") or ".." in dest.split("/") or _BAD_DEST.search(dest) or dest.endswith("/"):
        raise TemplateError(f"{where}.dest: rendered to {dest!r}, not an absolute file path without '..' or spaces")
    return posixpath.normpath(dest)


def owner_group(owner: str) -> tuple[str, str]:
    """roles.yaml `owner`: 'user' (group = user) or 'user:group'."""
    user, _, group = owner.partition(":")
    return user, group or user


def render_role_files(cfg: Config, node: Node, nodes: list[Node], env: jinja2.Environment | None = None,
                      media: MediaSite | None = None) -> tuple[DesiredFile, ...]:
    """Every template of `node`'s role rendered for it: the files configure keeps on that node."""
    env = env or environment(cfg.configure.templates_dir, cfg.cluster.state_dir / ".cache")
    ctx = context(cfg, node, nodes, media)
    role = cfg.role(node.role)
    out: list[DesiredFile] = []
    seen: dict[str, str] = {}
    for i, spec in enumerate(role.templates):
        where = f"{cfg.path.name}: roles.{role.name}.templates[{i}]"
        dest = render_dest(env, spec, ctx, where=where)
        if dest in seen:
            raise TemplateError(f"{where}: {dest} is also written by {seen[dest]}")
        seen[dest] = spec.src
        user, group = owner_group(spec.owner)
        out.append(DesiredFile(path=dest, content=render(env, spec.src, ctx, show=lambda f: _shown(cfg, f)), owner=user, group=group,
                               mode=spec.mode, notify=spec.notify, action=spec.action, src=spec.src))
    return tuple(out)


def _shown(cfg: Config, filename: str) -> str:
    """A template file as the user knows it: relative to roles.yaml's directory when inside it."""
    path = Path(filename)
    try:
        return str(path.relative_to(cfg.root))
    except ValueError:
        return str(path)


REHEARSAL_NET = "192.0.2."  # TEST-NET-1 (RFC 5737): documentation addresses, only ever rendered, never contacted


def rehearsal_nodes(cfg: Config) -> list[Node]:
    """The nodes roles.yaml asks for, with placeholder addresses: what templates will see, before any launch."""
    nodes, n = [], 10
    for role in cfg.roles:
        for index in range(role.count):
            n += 1
            nodes.append(Node(role=role.name, index=index, name=f"{cfg.cluster.name}-{role.name}-{index}",
                              instance_id=f"i-rehearsal{n:08d}", state="pending", private_ip=f"{REHEARSAL_NET}{n}",
                              public_ip=None, security_group=None))
    return nodes


def rehearse(cfg: Config) -> int:
    """Render every role's templates for the cluster roles.yaml describes, before anything is launched.

    A template error (an undefined variable, a syntax error, two templates writing one file) stops a
    whip-up-full-system here, with nothing created; returns how many files rendered.
    """
    env = environment(cfg.configure.templates_dir)
    nodes = rehearsal_nodes(cfg)
    media = rehearsal_site(cfg)
    return sum(len(render_role_files(cfg, node, nodes, env, media)) for node in nodes)
