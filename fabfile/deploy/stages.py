"""The stages of a deploy, each small, each on the nodes that need it, in parallel.

    deliver -> collectstatic_and_migrate (app node 0) -> static_to_proxies (with switchover.boot_all)
    -> switch -> (reload) -> prune;  remove_release on the failure path

Every command comes from `commands`; what to do on each node comes from the `Plan`.
"""
from __future__ import annotations

import base64
import time
from dataclasses import replace

from ..install_progress import pip_live
from ..remote import RemoteError, run
from ..stream import pipe
from . import buildpkgs, commands, manage, runtime, staticdiff, wheelhouse
from .cluster import Cluster, Member, at_once, each, each_best_effort
from .errors import DeployError, PreviousServes
from .planning import Plan, dotenv
from .releases import in_use, parse_state, releases_to_delete
from .source import push


# --- code, .env, venv --------------------------------------------------------------------------

def _code(cl: Cluster, plan: Plan, m: Member) -> None:
    layout, source = cl.layout, plan.source
    if source.strategy == "push":
        run(m.conn, commands.init_mirror(layout), step="create the git mirror")
        push(cl.cfg, layout, m.node, source)
    else:
        sha = run(m.conn, commands.fetch(layout, cl.cfg.app.repo, cl.cfg.app.branch), step="git fetch"
                  ).stdout.strip().splitlines()[-1]
        if sha != source.sha and not plan.options.catch_up:     # (catching up: extract finds the older commit)
            raise DeployError(f"{cl.cfg.app.branch} moved during the deploy ({source.short} -> {sha[:7]}); "
                              f"deploy again")
    run(m.conn, commands.extract(layout, plan.release, source.sha, source.prefix, source.tree,
                                 plan.current(m.name)), step="check out the code")
    files = runtime.release_files(layout, plan.release, plan.runtime)
    for path, text in source.generated:        # requirements whipup made (from a lock file; the extras)
        files[f"releases/{plan.release}/{path}"] = (text, 0o644)
    run(m.conn, runtime.write_files(layout, layout.root), step="write the release's environment",
        stdin=base64.b64encode(runtime.files_tar(files)).decode())
    cl.progress(m.name, "code", f"{source.short} in releases/{plan.release}")


def _venv(cl: Cluster, plan: Plan, m: Member, wheelhouse: str | None = None, build: bool = False) -> None:
    v = plan.venvs[m.name]
    t = time.monotonic()
    if v.action == "reuse":
        run(m.conn, commands.venv_reuse(cl.layout, plan.release, v.source), step="reuse the venv")
    else:
        cl.progress(m.name, "venv", f"pip install ({v.reason})")
        reqs = plan.source.requirement_files
        live = pip_live(lambda text: cl.progress(m.name, "venv", text))
        try:
            run(m.conn, commands.venv_install(cl.layout, plan.release, reqs.hash, v.venv_id, reqs.files_mark(),
                                              plan.source.install, wheelhouse, build),
                step="pip install", timeout=1800, on_line=live.line)
        except RemoteError as exc:
            failure = buildpkgs.diagnose(exc.output)
            if failure is None:
                raise
            raise DeployError(buildpkgs.build_error(m.name, failure, cl.cfg.app.build_packages)) from None
        live.done()
    cl.progress(m.name, "venv", f"{v.action}" + (f" from {v.source}" if v.source else "")
                + f" in {time.monotonic() - t:.1f} s ({v.reason})")


def deliver(cl: Cluster, plan: Plan) -> None:
    """Code, .env and venv (and Django's upgrade, if asked) on every code node; proxies get theirs with
    the static files. Several nodes installing the same requirements: the first builds a wheelhouse, the
    others install from it once it reached them (`wheelhouse`)."""
    env = dotenv(cl)
    installs = [m for m in plan.code if plan.venvs[m.name].action == "install"]
    builder, others = (installs[0], installs[1:]) if len(installs) > 1 else (None, [])
    wh = wheelhouse.directory(cl.layout, plan.source.requirement_files.hash) if builder else None

    def one(m: Member) -> None:
        _code(cl, plan, m)
        changed = run(m.conn, commands.write_env(cl.layout), step="write shared/.env", stdin=env).stdout.strip()
        if changed == "changed":
            cl.progress(m.name, ".env", "written (0600)")
        if m not in others:
            venv_and_django(m, build=m is builder)

    def venv_and_django(m: Member, build: bool = False) -> None:
        _venv(cl, plan, m, wh, build)
        if plan.options.upgrade_django:
            upgrade_django(cl, plan, m)

    each(plan.code, one, "delivering the code")
    if builder is not None:
        share_wheelhouse(cl, plan, builder, others)
        each(others, venv_and_django, "installing from the wheelhouse")
        each_best_effort([builder, *others], lambda m: run(m.conn, wheelhouse.remove(
            cl.layout, plan.source.requirement_files.hash), step="remove the wheelhouse"))


def share_wheelhouse(cl: Cluster, plan: Plan, builder: Member, others: list[Member]) -> None:
    """The builder's wheelhouse to the other nodes, through this machine, as one tar stream."""
    req_hash = plan.source.requirement_files.hash
    kb, wheels = run(builder.conn, wheelhouse.size(cl.layout, req_hash), step="size the wheelhouse").stdout.split()
    cl.progress(builder.name, "wheelhouse", f"{wheels} wheels, {kb} kB: downloaded and built here, once")
    pipe(builder.conn, wheelhouse.pack(cl.layout, req_hash),
         [(m.conn, wheelhouse.unpack(cl.layout, req_hash)) for m in others], step="copy the wheelhouse")
    for m in others:
        cl.progress(m.name, "wheelhouse", f"{kb} kB from {builder.name}: nothing from the package index")


def upgrade_django(cl: Cluster, plan: Plan, m: Member) -> None:
    """Upgrade Django within the requirements' constraint in the new venv; report old -> new. Unchanged,
    the venv keeps its content id, so gunicorn gets a HUP rather than a restart."""
    spec = plan.source.requirement_files.upgrade_spec()
    out = run(m.conn, manage.upgrade_django(cl.layout, plan.release, spec, plan.release),
              step="upgrade Django", timeout=900).stdout.strip().splitlines()[-1]
    before, _, after = out.partition(" ")
    cl.progress(m.name, "Django", f"{before} -> {after} (within {spec!r})"
                + (": already the newest" if before == after else ""))
    v = plan.venvs[m.name]
    if before == after and v.action == "reuse":
        info = plan.before[m.name].current_info
        plan.venvs[m.name] = replace(v, venv_id=info.venv if info and info.venv else v.venv_id)


# --- Django on app node 0 ----------------------------------------------------------------------

def _on_app0(cl: Cluster, command: str, step: str, **kw):
    m = cl.apps[0]
    try:
        return run(m.conn, command, step=step, **kw)
    except RemoteError as exc:
        raise PreviousServes(f"{m.name}: {step} failed (exit {exc.exit_code}); the previous release keeps "
                             f"serving:\n" + "\n".join(exc.output.strip().splitlines()[-25:])) from None


def collectstatic(cl: Cluster, plan: Plan) -> None:
    """collectstatic into the release's static/, unless its inputs are those of the current release (its
    static/ is hard-linked instead: `staticdiff`); then it must not be empty for a project with static files."""
    from . import verify

    m = cl.apps[0]
    local = staticdiff.local_key(plan.venvs[m.name].venv_id if m.name in plan.venvs else plan.release,
                                 repr(plan.runtime), dotenv(cl))
    key, reused, collected = staticdiff.parse_key(_on_app0(cl, staticdiff.reuse_or_collect(
        cl.layout, plan.release, plan.source.sha, plan.source.prefix, plan.current(m.name), local),
        "compare the static files' sources").stdout)
    if reused:
        cl.progress(m.name, "collectstatic", f"skipped: static sources, settings and venv as in release "
                    f"{plan.current(m.name)} ({collected} files hard-linked)")
    else:
        out = _on_app0(cl, manage.collectstatic(cl.layout, plan.release), "collectstatic").stdout.strip()
        collected = int(_on_app0(cl, staticdiff.record(cl.layout, plan.release, key), "list static files")
                        .stdout.strip() or 0)
        cl.progress(m.name, "collectstatic", (out.splitlines()[-1] if out else "done") + f" ({collected} in static/)")
    verify.static_check(cl, plan, collected)


def migrate(cl: Cluster, plan: Plan) -> None:
    """migrate, unless the new release's settings check found no migration the database lacks."""
    if plan.pending_migrations is False:
        cl.progress(cl.apps[0].name, "migrate", "skipped: the database has every migration of this release")
        return
    out = _on_app0(cl, manage.migrate(cl.layout, plan.release), "migrate", timeout=3600).stdout
    applied = [line.strip() for line in out.splitlines() if line.strip().startswith("Applying ")]
    cl.progress(cl.apps[0].name, "migrate", "; ".join(applied) if applied else "no migrations to apply")


def collectstatic_and_migrate(cl: Cluster, plan: Plan) -> None:
    """Both on app node 0, at once (collectstatic writes only the new release's static/)."""
    at_once(lambda: collectstatic(cl, plan), lambda: migrate(cl, plan))


def release_command(cl: Cluster, plan: Plan) -> None:
    """app.release_command (or the Procfile's release:) once per deploy on app node 0, before the switch,
    as Heroku's release phase: it fails, and the previous release keeps serving."""
    command = plan.runtime.release_command
    if command:
        out = _on_app0(cl, manage.release_command(cl.layout, plan.release, command), "release command",
                       timeout=3600).stdout.strip()
        cl.progress(cl.apps[0].name, "release", f"{command!r}: " + (out.splitlines()[-1] if out else "done"))


def migrations_applied(cl: Cluster, plan: Plan) -> None:
    """workers only: refuse a release whose migrations the database lacks (web/all runs migrate)."""
    m = plan.code[0]
    r = run(m.conn, manage.migrate_check(cl.layout, plan.release), step="migrate --check", check=False)
    if r.exited != 0:
        raise DeployError(f"{m.name}: release {plan.release} has migrations the database lacks; "
                          f"deploy --component web (or all) first, which runs migrate:\n"
                          + "\n".join(((r.stdout or "") + (r.stderr or "")).strip().splitlines()[-10:]))


# --- proxies, switch, prune ----------------------------------------------------------------------

def static_to_proxies(cl: Cluster, plan: Plan) -> None:
    """The release's static/ (collected on app node 0) into the same release on every proxy: each keeps by
    hard link what its current release has, and gets only the files it lacks, as one tar stream."""
    if not plan.static:
        return
    new = staticdiff.parse_sums(_on_app0(cl, staticdiff.sums(cl.layout, plan.release), "list static files").stdout)
    if new is None:
        raise PreviousServes(f"{cl.apps[0].name}: release {plan.release}: a static file's name is not one whipup "
                             f"ships (outside static/, or with a newline); the previous release keeps serving")

    def listed(m: Member) -> dict[str, str] | None:
        current = plan.current(m.name)
        return None if current is None else staticdiff.parse_sums(
            run(m.conn, staticdiff.proxy_sums(cl.layout, current), step="list the proxy's static files").stdout)

    olds = each(plan.static, listed, "listing the proxies' static files")
    groups: dict[tuple[str, ...], list[Member]] = {}
    diffs = {m.name: staticdiff.difference(new, olds[m.name]) for m in plan.static}
    for m in plan.static:
        groups.setdefault(diffs[m.name].ship, []).append(m)

    def prepare(m: Member) -> None:
        run(m.conn, staticdiff.proxy_prepare(cl.layout, plan.release, plan.current(m.name)),
            step="prepare static files", stdin="".join(p + "\n" for p in diffs[m.name].remove))

    each(plan.static, prepare, "preparing the proxies' static files")

    def ship(files: tuple[str, ...]) -> None:
        members = groups[files]
        piped = pipe(cl.apps[0].conn, staticdiff.pack(cl.layout, plan.release),
                     [(m.conn, staticdiff.unpack(cl.layout, plan.release, plan.source.sha, plan.source.tree,
                                                 plan.current(m.name))) for m in members],
                     step="copy static files", stdin="".join(p + "\n" for p in (*files, staticdiff.SUMS)))
        for m in members:
            d = diffs[m.name]
            cl.progress(m.name, "static", f"releases/{plan.release}/static: {len(d.ship)} file(s) shipped "
                        f"({piped.nbytes // 1024} kB tar), {d.linked} hard-linked from {plan.current(m.name)}")

    for files in groups:         # one group when the proxies ran the same release (the usual case)
        ship(files)


def switch(cl: Cluster, members: list[Member], release: str, switched: list[Member] | None = None) -> None:
    """`current` -> releases/<release> on every member; each one switched is added to `switched`."""
    def one(m: Member) -> None:
        run(m.conn, commands.switch(cl.layout, release), step="switch current")
        if switched is not None:
            switched.append(m)

    each(members, one, "switching current")
    cl.out(f"current -> releases/{release} on {', '.join(m.name for m in members)}")


def prune(cl: Cluster, plan: Plan) -> None:
    """Releases beyond app.keep_releases go (never current, the previous one, or one a process runs)."""
    keep = cl.cfg.app.keep_releases

    def one(m: Member) -> None:
        st = plan.before[m.name]
        names = set(st.releases) | {plan.release}
        protect = in_use(cl.layout, st)
        if m.name in plan.booted:    # that slot's old release runs no more: the new one was booted over it
            protect -= {st.slots.get(plan.booted[m.name])} - {st.current}
        doomed = releases_to_delete(names, plan.release, keep, protect=protect, previous=st.current,
                                    partial=st.partial)
        if doomed:
            run(m.conn, commands.remove_releases(cl.layout, doomed), step="prune releases")
            cl.progress(m.name, "prune", f"removed {', '.join(doomed)}")

    for name, error in each_best_effort(plan.involved, one).items():
        cl.out(f"warning: {name}: pruning failed: {error}")


def remove_release(cl: Cluster, members: list[Member], release: str) -> None:
    """Drop `release` where it is not current (best effort: pruning catches leftovers)."""
    def one(m: Member) -> None:
        st = parse_state(run(m.conn, commands.state(cl.layout), step="read state").stdout)
        if st.current != release and release in st.releases:
            run(m.conn, commands.remove_releases(cl.layout, [release]), step="remove the failed release")

    for name, error in each_best_effort(members, one).items():
        cl.out(f"warning: {name}: failed release {release} not removed: {error}")
