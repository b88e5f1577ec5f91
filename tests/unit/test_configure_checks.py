"""A changed config checked by its service's own tool on a staged copy before it is installed (configure/checks):
which changes get which check, the commands by exact string, values kept one argument, and the staged copy
run for real under sh with a stand-in `nginx` that reads includes as nginx does."""
from __future__ import annotations

import hashlib
import os
import pwd
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from fabfile.configure import checks
from fabfile.configure import commands as cmd
from fabfile.configure.apply import StageFailed, apply_plan, files_stage, staged_tar
from fabfile.configure.checks import CopyOp, TreeCheck, check_lines, plan_checks, tool_command
from fabfile.configure.plan import FixAttrs, Link, Plan, Remove, WriteFile
from fabfile.configure.want import DesiredAbsent, DesiredDir, DesiredFile, DesiredLink
from fabfile.remote import RemoteError

EVIL = "x; whoami"
SITE = "/etc/nginx/sites-available/whipup.conf"


def write(path, notify=None, content="x\n", owner="root", mode="0644", src=""):
    return WriteFile(DesiredFile(path, content, owner, owner, mode, notify=notify, action="reload",
                                 src=src), None)


def nginx_changes():
    return [write(SITE, "nginx"), write("/etc/nginx/whipup/demo-upstream.conf", "nginx"),
            Link(DesiredLink("/etc/nginx/sites-enabled/whipup.conf", SITE, notify="nginx"), "absent"),
            Remove(DesiredAbsent("/etc/nginx/sites-enabled/default", notify="nginx"))]


# --- which checks --------------------------------------------------------------------------------

def test_every_change_of_one_tree_goes_into_one_check():
    staged = {SITE: "f0", "/etc/nginx/whipup/demo-upstream.conf": "f1"}
    assert plan_checks(nginx_changes(), staged) == [TreeCheck("nginx", "/etc/nginx", (
        CopyOp("file", "/sites-available/whipup.conf", "f0", "root", "root", "0644"),
        CopyOp("file", "/whipup/demo-upstream.conf", "f1", "root", "root", "0644"),
        CopyOp("link", "/sites-enabled/whipup.conf", SITE),
        CopyOp("remove", "/sites-enabled/default"),
    ))]


def test_a_change_notifying_no_checked_service_or_outside_its_tree_is_not_checked():
    assert plan_checks([write("/etc/redis/redis.conf", "redis-server")], {"/etc/redis/redis.conf": "f0"}) == []
    assert plan_checks([write("/etc/ssl/site.pem", "nginx")], {"/etc/ssl/site.pem": "f0"}) == []
    assert plan_checks([write("/etc/nginx/snippets/a.conf")], {"/etc/nginx/snippets/a.conf": "f0"}) == []
    # ... but once a change notifies nginx, the copy holds every change of the run in /etc/nginx
    both = [write("/etc/nginx/snippets/a.conf"), write(SITE, "nginx"),
            FixAttrs("/etc/nginx/nginx.conf", "root", "root", "0644", "root:root 0600")]
    (check,) = plan_checks(both, {"/etc/nginx/snippets/a.conf": "f0", SITE: "f1"})
    assert [(op.kind, op.rel) for op in check.ops] == [
        ("file", "/snippets/a.conf"), ("file", "/sites-available/whipup.conf"), ("attrs", "/nginx.conf")]


def test_supervisor_and_postgresql_trees():
    web = "/etc/supervisor/conf.d/demo-web.conf"
    assert plan_checks([write(web, "supervisor")], {web: "f0"}) == [
        TreeCheck("supervisor", "/etc/supervisor", (CopyOp("file", "/conf.d/demo-web.conf", "f0", "root", "root",
                                                           "0644"),))]
    conf, hba = "/etc/postgresql/15/main/conf.d/whipup.conf", "/etc/postgresql/15/main/pg_hba.conf"
    (only_conf,) = plan_checks([write(conf, "postgresql", owner="postgres")], {conf: "f0"})
    assert (only_conf.tree, only_conf.hba) == ("/etc/postgresql/15/main", False)
    (with_hba,) = plan_checks([write(conf, "postgresql"), write(hba, "postgresql", mode="0640")],
                              {conf: "f0", hba: "f1"})
    assert with_hba.hba and [op.rel for op in with_hba.ops] == ["/conf.d/whipup.conf", "/pg_hba.conf"]
    assert plan_checks([write("/etc/postgresql/pg.conf", "postgresql")], {"/etc/postgresql/pg.conf": "f0"}) == []


# --- the commands, by exact string ---------------------------------------------------------------

def test_the_nginx_check_lines():
    (check,) = plan_checks(nginx_changes()[:1] + nginx_changes()[2:], {SITE: "f0"})
    assert check_lines(check, 0) == [
        "# nginx: the new config checked on a copy of /etc/nginx before it is installed",
        "[ -d /etc/nginx ] || { { printf '%s\\t%s\\n' @@rejected nginx; "
        "echo '/etc/nginx does not exist: is nginx installed on this host?'; } >&2; exit 65; }",
        'cp -a /etc/nginx "$stage/check-0"',
        'install -D -o root -g root -m 0644 f0 "$stage/check-0"/sites-available/whipup.conf',
        'mkdir -p "$stage/check-0"/sites-enabled && ln -sfnT /etc/nginx/sites-available/whipup.conf '
        '"$stage/check-0"/sites-enabled/whipup.conf',
        'rm -f "$stage/check-0"/sites-enabled/default',
        # the copy names itself: absolute links into /etc/nginx, then the path in every file
        "find \"$stage/check-0\" -type l -lname '/etc/nginx/*' -exec sh -c "
        "'for l; do d=$(readlink \"$l\"); ln -sfnT \"$0${d#/etc/nginx}\" \"$l\"; done' \"$stage/check-0\" {} +",
        'grep -rlZF /etc/nginx/ "$stage/check-0" | xargs -0r sed -i "s#/etc/nginx/#$stage/check-0/#g"',
        'if ! out=$(cd / && { nginx -t -q -c "$stage/check-0"/nginx.conf; } 2>&1); then '
        "{ printf '%s\\t%s\\n' @@rejected nginx; printf '%s\\n' \"$out\" | sed \"s#$stage/check-0/#/etc/nginx/#g\"; "
        "} >&2; exit 65; fi",
    ]


def test_the_supervisor_and_postgresql_tools():
    sup = TreeCheck("supervisor", "/etc/supervisor", ())
    assert tool_command(sup, "$stage/check-1") == (
        f'python3 -c {shlex.quote(checks.SUPERVISOR_PARSE)} "$stage/check-1"/supervisord.conf')
    assert "o.realize(args=['-c', sys.argv[1]])" in checks.SUPERVISOR_PARSE
    pg = "runuser -u postgres -- /usr/lib/postgresql/15/bin/postgres --config-file=\"$stage/check-0\"/postgresql.conf"
    conf_only = TreeCheck("postgresql", "/etc/postgresql/15/main", ())
    assert tool_command(conf_only, "$stage/check-0") == f"{pg} -C data_directory >/dev/null"
    bin_ = "/usr/lib/postgresql/15/bin"
    scratch = '"$stage/check-0.pg"'
    assert tool_command(TreeCheck("postgresql", "/etc/postgresql/15/main", (), hba=True), "$stage/check-0") == (
        " && ".join([
            f"{pg} -C data_directory >/dev/null",
            f"hba=$({pg} -C hba_file)",
            f"ident=$({pg} -C ident_file)",
            f"install -d -o postgres -g postgres -m 0700 {scratch}",
            f"runuser -u postgres -- {bin_}/initdb -D {scratch}/data -A trust -U postgres -N >/dev/null",
            "printf \"%s = '%s'\\n\" hba_file \"$hba\" ident_file \"$ident\" listen_addresses '' "
            f"unix_socket_directories {scratch} max_connections 5 shared_buffers 1MB >> {scratch}/data/postgresql.conf",
            f"{{ ctl=$(runuser -u postgres -- {bin_}/pg_ctl -D {scratch}/data -l {scratch}/log -w -t 60 -s start 2>&1) "
            f"|| {{ grep -v {checks.PG_CHATTER} {scratch}/log; printf '%s\\n' \"$ctl\" | grep -v 'Examine the log "
            "output.'; false; }; }",
            f"runuser -u postgres -- {bin_}/pg_ctl -D {scratch}/data -s -m immediate stop",
        ]))
    lines = check_lines(conf_only, 0)
    assert lines.index('chmod 711 "$stage"') < lines.index('cp -a /etc/postgresql/15/main "$stage/check-0"')


def test_a_value_with_shell_syntax_stays_one_argument():
    root = '"$stage/check-0"'
    argv = shlex.split(CopyOp("file", f"/conf.d/{EVIL}", "f0", EVIL, EVIL, "0644").line(root))
    assert argv == ["install", "-D", "-o", EVIL, "-g", EVIL, "-m", "0644", "f0", f"$stage/check-0/conf.d/{EVIL}"]
    assert shlex.split(CopyOp("link", f"/sites-enabled/{EVIL}", f"/etc/nginx/{EVIL}").line(root))[-2:] == [
        f"/etc/nginx/{EVIL}", f"$stage/check-0/sites-enabled/{EVIL}"]
    assert shlex.split(CopyOp("remove", f"/{EVIL}").line(root)) == ["rm", "-f", f"$stage/check-0/{EVIL}"]
    argv = shlex.split(CopyOp("attrs", f"/{EVIL}", owner="a", group=EVIL, mode="0600").line(root))
    assert argv == ["chown", f"a:{EVIL}", f"$stage/check-0/{EVIL}", "&&", "chmod", "0600", f"$stage/check-0/{EVIL}"]


def test_a_tree_the_sed_and_find_patterns_cannot_hold_is_refused():
    for tree in ("/etc/ng'inx", "/etc/nginx x", "/etc/ng*", "etc/nginx", "/etc/nginx/"):
        with pytest.raises(ValueError, match="not a config tree"):
            check_lines(TreeCheck("nginx", tree, ()), 0)
    assert checks.sed_literal("/etc/postgresql/15.2/main") == "/etc/postgresql/15\\.2/main"


# --- the stage script: checks after the user and dirs, before the pending marks and the installs ----

def test_the_files_stage_checks_before_it_marks_or_installs_anything():
    stage = files_stage([checks_makedir := _makedir(), *nginx_changes()])
    script = shlex.split(stage.command)[5].splitlines()
    check = plan_checks(nginx_changes(), {SITE: "f0", "/etc/nginx/whipup/demo-upstream.conf": "f1"})[0]
    assert script == [
        "set -e", "umask 022", "stage=$(mktemp -d)", "trap 'rm -rf \"$stage\"' EXIT",
        'base64 -d | tar -x -f - -C "$stage"', 'cd "$stage"',
        cmd.ensure_dir(checks_makedir.dir.path, "demo", "demo", "0755"),
        *check_lines(check, 0),
        cmd.mark_pending("nginx", "reload"),
        cmd.install_file("f0", SITE, "root", "root", "0644"),
        cmd.install_file("f1", "/etc/nginx/whipup/demo-upstream.conf", "root", "root", "0644"),
        cmd.link("/etc/nginx/sites-enabled/whipup.conf", SITE),
        cmd.remove("/etc/nginx/sites-enabled/default"),
    ]
    # a link alone: the copy needs the stage's temp dir, but no tar comes on stdin
    only_link = files_stage(nginx_changes()[2:3])
    assert only_link.stdin is None
    assert shlex.split(only_link.command)[5].splitlines()[2:5] == [
        "stage=$(mktemp -d)", "trap 'rm -rf \"$stage\"' EXIT", 'cd "$stage"']


def _makedir():
    from fabfile.configure.plan import MakeDir
    return MakeDir(DesiredDir("/srv/demo", "demo", "demo", "0755"), "absent")


# --- a rejection, as the files stage reports it and as the user reads it --------------------------

REJECTED = ("@@rejected\tnginx\n"
            '2026/01/31 12:00:00 [emerg] 41#41: unknown directive "bogus" in /etc/nginx/sites-enabled/whipup.conf:14\n'
            "nginx: configuration file /etc/nginx/nginx.conf test failed\n")
SOURCES = ((SITE, "rendered from etc/nginx/sites-available/whipup.conf.j2"),
           ("/etc/nginx/sites-enabled/whipup.conf",
            f"a link to {SITE}, rendered from etc/nginx/sites-available/whipup.conf.j2"),
           ("/etc/nginx/whipup/demo-upstream.conf", "rendered from etc/nginx/whipup/upstream.conf.j2"))


def test_a_rejection_reads_back_as_the_services_own_words_naming_the_template():
    assert checks.parse_rejection("E: something else\n") is None
    service, words = checks.parse_rejection(REJECTED)
    assert service == "nginx" and words.startswith('2026/01/31 12:00:00 [emerg] 41#41: unknown directive "bogus"')
    assert str(checks.ConfigRejected(service, words, dict(SOURCES))) == (
        "nginx rejected the new configuration (nothing was installed; the live files are unchanged): "
        '2026/01/31 12:00:00 [emerg] 41#41: unknown directive "bogus" in /etc/nginx/sites-enabled/whipup.conf:14\n'
        "  nginx: configuration file /etc/nginx/nginx.conf test failed\n"
        "/etc/nginx/sites-enabled/whipup.conf: a link to /etc/nginx/sites-available/whipup.conf, rendered from "
        "etc/nginx/sites-available/whipup.conf.j2")


class Runner:
    def __init__(self, fail: RemoteError | None):
        self.fail, self.commands = fail, []

    def __call__(self, command, *, step, stdin=None, on_line=None):
        self.commands.append(step)
        if step == "files" and self.fail:
            raise self.fail


@pytest.mark.parametrize("exit_code, output, rejected", [
    (65, REJECTED, True),
    (1, REJECTED, False),                          # not the checks' exit status: the stage's own failure
    (65, "install: cannot create regular file\n", False),
])
def test_apply_turns_only_a_checks_rejection_into_config_rejected(exit_code, output, rejected):
    from fabfile.configure.plan import ServiceAction

    plan = Plan((write(SITE, "nginx"), ServiceAction("nginx", "reload", "whipup.conf changed")), (), SOURCES)
    runner = Runner(RemoteError("proxy", "files", exit_code, output))
    with pytest.raises(StageFailed) as info:
        apply_plan(runner, plan, "sysv")
    assert runner.commands == ["files"]            # the services stage never ran: no reload
    assert isinstance(info.value.__cause__, checks.ConfigRejected) is rejected
    if rejected:
        assert "unknown directive \"bogus\"" in str(info.value.__cause__)


# --- the staged copy, for real: sh, cp, find, sed, and a stand-in nginx that follows includes -------

FAKE_NGINX = '''#!PYTHON
import glob, sys
conf = sys.argv[sys.argv.index("-c") + 1]
def read(path):
    for n, line in enumerate(open(path), 1):
        word = line.split()
        if word[:1] == ["include"]:
            pattern = word[1].rstrip(";")
            found = sorted(glob.glob(pattern))
            if not found and "*" not in pattern:
                fail(f'open() "{pattern}" failed (2: No such file or directory) in {path}:{n}')
            for p in found:
                read(p)
        elif word and word[0].startswith("bogus"):
            fail(f'unknown directive "{word[0].rstrip(";")}" in {path}:{n}')
def fail(what):
    print(f"nginx: [emerg] {what}", file=sys.stderr)
    print(f"nginx: configuration file {conf} test failed", file=sys.stderr)
    sys.exit(1)
read(conf)
'''


@pytest.fixture
def live(tmp_path):
    """A tree laid out as Debian's /etc/nginx (absolute includes, an absolute link in sites-enabled), and a
    PATH whose `nginx` reads it as nginx does."""
    tree = tmp_path / "etc" / "nginx"
    (tree / "sites-available").mkdir(parents=True)
    (tree / "sites-enabled").mkdir()
    (tree / "nginx.conf").write_text(f"events {{}}\ninclude {tree}/conf.d/*.conf;\ninclude {tree}/sites-enabled/*;\n")
    (tree / "conf.d").mkdir()
    (tree / "sites-available" / "whipup.conf").write_text("server {\n    listen 80;\n}\n")
    (tree / "sites-available" / "default").write_text("server {\n    bogus_old on;\n}\n")
    os.symlink(f"{tree}/sites-available/whipup.conf", tree / "sites-enabled" / "whipup.conf")
    os.symlink(f"{tree}/sites-available/default", tree / "sites-enabled" / "default")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nginx").write_text(FAKE_NGINX.replace("PYTHON", sys.executable))
    (bin_dir / "nginx").chmod(0o755)
    return tree, {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def run_stage(tree: Path, env: dict, files: dict[str, str], links=(), removes=()):
    """The files stage's checks and installs for `files` ({path under tree: content}), run by sh."""
    me = pwd.getpwuid(os.getuid()).pw_name
    writes = [write(f"{tree}/{rel}", "nginx", content, owner=me) for rel, content in files.items()]
    actions = writes + [Link(DesiredLink(f"{tree}/{p}", f"{tree}/{t}", notify="nginx"), "absent") for p, t in links]
    actions += [Remove(DesiredAbsent(f"{tree}/{p}", notify="nginx")) for p in removes]
    staged = {a.file.path: f"f{i}" for i, a in enumerate(writes)}
    ops = tuple(op for a in actions if (op := checks._copy_op(a, str(tree), staged)))
    lines = check_lines(TreeCheck("nginx", str(tree), ops), 0)
    lines += [cmd.install_file(staged[a.file.path], a.file.path, me, me, "0644") for a in writes]
    lines += [cmd.link(a.link.path, a.link.target) for a in actions if isinstance(a, Link)]
    lines += [cmd.remove(a.absent.path) for a in actions if isinstance(a, Remove)]
    script = cmd.files_script(lines, staged=True)
    return subprocess.run(["sh", "-c", script], input=staged_tar(list(files.values())), text=True,
                          capture_output=True, env=env, timeout=60)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_broken_file_never_lands_and_the_error_names_its_live_path(live):
    tree, env = live
    site = tree / "sites-available" / "whipup.conf"
    before = sha(site)
    p = run_stage(tree, env, {"sites-available/whipup.conf": "server {\n    bogus_directive on;\n}\n"},
                  removes=["sites-enabled/default"])
    assert p.returncode == checks.CHECK_REJECTED, p.stderr
    service, words = checks.parse_rejection(p.stderr)
    # read through the link in sites-enabled, which the copy points at the new file: the live path is named
    assert (service, words) == ("nginx", f'nginx: [emerg] unknown directive "bogus_directive" in '
                                         f"{tree}/sites-enabled/whipup.conf:2\n"
                                         f"nginx: configuration file {tree}/nginx.conf test failed")
    assert sha(site) == before and not (tree / "sites-available" / "whipup.conf.whipup-new").exists()
    assert (tree / "sites-enabled" / "default").is_symlink()          # nothing of the run happened


def test_a_good_change_lands_and_the_runs_changes_are_checked_together(live):
    tree, env = live
    site = "server {\n    listen 80;\n    include " + f"{tree}/whipup/upstream.conf;\n" + "}\n"
    # the site includes a file new in this same run, and the broken default site goes in this same run:
    # checked one at a time, either would fail
    p = run_stage(tree, env, {"sites-available/whipup.conf": site, "whipup/upstream.conf": "upstream_ok on;\n"},
                  removes=["sites-enabled/default"])
    assert p.returncode == 0, p.stderr
    assert (tree / "sites-available" / "whipup.conf").read_text() == site
    assert (tree / "whipup" / "upstream.conf").read_text() == "upstream_ok on;\n"
    assert not (tree / "sites-enabled" / "default").exists()
    assert [p.name for p in tree.rglob("*check-0*")] == []             # the copy lived in the stage dir only


def test_the_live_files_are_what_the_copy_reads_otherwise(live):
    """The copy starts as the live tree: a live file the run does not change is checked too."""
    tree, env = live
    p = run_stage(tree, env, {"conf.d/extra.conf": "ok_directive on;\n"})      # the default site is still enabled
    assert p.returncode == checks.CHECK_REJECTED
    assert f'unknown directive "bogus_old" in {tree}/sites-enabled/default:2' in p.stderr
    assert not (tree / "conf.d" / "extra.conf").exists()
