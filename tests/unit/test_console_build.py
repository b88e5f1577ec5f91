"""fab manage / logs / ssh: the pure builders, by exact string, and the quoting of every value."""
from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from fabfile.console import build
from fabfile.console.build import CommandError
from fabfile.deploy.manage import manage, stdin_env_script
from fabfile.layout import Layout
from fabfile.nodes import Node

LAYOUT = Layout("demo", "demo.settings", "requirements.txt")
RID = "20240101120000-abcdef1"
TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "etc" / "supervisor" / "conf.d"


def node(role: str, index: int, state: str = "running") -> Node:
    return Node(role, index, f"c-{role}-{index}", f"i-{role}{index}", state, f"10.0.0.{index + 1}", None, None)


# --- the words after `--` ---------------------------------------------------------------------

def test_after_dashes_keeps_the_shell_s_words_with_their_spaces():
    argv = ["fab", "manage", "--env", "X", "--", "shell", "-c", "print(1); print(2)"]
    assert build.after_dashes(argv, "shell -c print(1); print(2)") == ["shell", "-c", "print(1); print(2)"]


def test_after_dashes_falls_back_to_invoke_s_join_when_argv_is_another_one():
    assert build.after_dashes(["python", "-m", "pytest"], "check --deploy") == ["check", "--deploy"]
    assert build.after_dashes(["fab", "manage", "--", "a", "--", "b"], "a -- b") == ["a", "--", "b"]


# --- fab manage -------------------------------------------------------------------------------

def test_manage_attached_runs_django_with_stdin_and_no_tie():
    cmd = manage(LAYOUT, RID, ["check", "x; whoami"], attached=True)
    assert cmd == ("sudo -n -u demo -- sh -c 'exec /bin/sh /srv/demo/shared/whipup-exec "
                   "/srv/demo/releases/20240101120000-abcdef1 python -m django check '\"'\"'x; whoami'\"'\"''")
    script = shlex.split(cmd)[-1]
    assert shlex.split(script)[-2:] == ["check", "x; whoami"]       # one argument, not a second command
    assert "setsid" not in script                                     # stdin reaches Django


def test_manage_by_default_stays_tied_to_the_session():
    assert "setsid -w sh -c" in shlex.split(manage(LAYOUT, RID, ["migrate"]))[-1]


def test_stdin_env_script_reads_one_line_a_name_and_exports_it():
    assert stdin_env_script(["A", "B_2"]) == ("IFS= read -r A && export A || exit 125\n"
                                              "IFS= read -r B_2 && export B_2 || exit 125\n")
    assert stdin_env_script([]) == ""
    with pytest.raises(ValueError):
        stdin_env_script(["A;B"])


def test_forwarded_values_come_off_stdin_and_the_rest_reaches_the_command():
    """Run by sh: the values (quote-breaking ones too) become the environment; what follows on stdin is the
    command's own, untouched; nothing of them is on any argv."""
    values = {"A": "x; whoami", "B": "it's $HOME `id`"}
    names = build.env_names(["A", "B"], values)
    script = stdin_env_script(names) + "exec sh -c 'printf \"%s|%s|\" \"$A\" \"$B\"; cat'"
    p = subprocess.run(["sh", "-c", script], input=build.env_payload(names, values) + "rest\nof it\n",
                       capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert p.stdout == "x; whoami|it's $HOME `id`|rest\nof it\n"


def test_manage_with_forwarded_names_reads_them_before_django():
    script = shlex.split(manage(LAYOUT, RID, ["createsuperuser", "--noinput"], attached=True,
                                stdin_env=("DJANGO_SUPERUSER_PASSWORD",)))[-1]
    assert script.startswith("IFS= read -r DJANGO_SUPERUSER_PASSWORD && export DJANGO_SUPERUSER_PASSWORD "
                             "|| exit 125\nexec /bin/sh /srv/demo/shared/whipup-exec /srv/demo/releases/")


@pytest.mark.parametrize("name, environ, message", [
    ("A-B", {}, "--env 'A-B': not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"),
    ("DATABASE_URL", {"DATABASE_URL": "x"}, "--env DATABASE_URL: set by whipup itself on the node"),
    ("WHIPUP_X", {"WHIPUP_X": "x"}, "--env WHIPUP_X: set by whipup itself on the node"),
    ("NOPE", {}, "--env NOPE: not set in this environment (export NOPE=... first)"),
    ("A", {"A": "two\nlines"}, "--env A: its value has a newline or NUL byte"),
])
def test_bad_env_names_are_refused_naming_the_flag(name, environ, message):
    with pytest.raises(CommandError) as info:
        build.env_names([name], environ)
    assert str(info.value).startswith(message)


def test_env_names_keep_the_order_once_each():
    assert build.env_names(["B", "A", "B"], {"A": "1", "B": "2"}) == ("B", "A")
    assert build.env_payload(("B", "A"), {"A": "1", "B": "2"}) == "2\n1\n"


@pytest.mark.parametrize("terminal, forwarded, pty", [
    (True, (), True), (False, (), False), (True, ("A",), False), (False, ("A",), False),
])
def test_a_terminal_only_when_stdin_is_one_and_nothing_is_forwarded(terminal, forwarded, pty):
    assert build.use_pty(terminal, forwarded) is pty


# --- fab logs ---------------------------------------------------------------------------------

def test_log_files_per_role_and_program():
    assert build.log_files(LAYOUT, "app") == ("/var/log/demo/web-a.log", "/var/log/demo/web-b.log")  # two slots
    assert build.log_files(LAYOUT, "worker") == ("/var/log/demo/worker.log",)
    assert build.log_files(LAYOUT, "proxy") == ("/var/log/nginx/access.log", "/var/log/nginx/error.log")
    assert build.log_files(LAYOUT, "app", "worker") == ()
    assert build.log_files(LAYOUT, "worker", "worker") == ("/var/log/demo/worker.log",)
    assert build.log_files(LAYOUT, "db") == ()
    with pytest.raises(CommandError, match="--program 'cron': expected one of web, worker"):
        build.log_files(LAYOUT, "app", "cron")


def test_the_log_files_are_the_ones_supervisor_writes():
    for program, role in build.PROGRAM_ROLES.items():
        text = (TEMPLATES / f"app-{program}.conf.j2").read_text()
        written = re.findall(r"^stdout_logfile={{ app.logs }}/(.*)$", text, re.M)
        assert [w.replace("{{ slot.name }}", s) for w in written if "slot.name" in w for s in "ab"] + [
            w for w in written if "slot.name" not in w and "boot" not in w] == list(build.PROGRAM_LOGS[program])


def test_log_roles():
    assert build.log_roles(None, None) == ("proxy", "app", "worker")
    assert build.log_roles("app", None) == ("app",)
    assert build.log_roles(None, "web") == ("app",)
    with pytest.raises(CommandError, match="--role 'db': logs are kept on proxy, app, worker nodes"):
        build.log_roles("db", None)
    with pytest.raises(CommandError, match="--program worker runs on worker nodes, not on app nodes"):
        build.log_roles("app", "worker")


def test_logs_commands_by_exact_string():
    assert build.logs_command(("/var/log/demo/web.log",), 5, False) == \
        "sudo -n -- tail -n 5 -- /var/log/demo/web.log"
    # several files: only those that exist (a gunicorn slot never started has no log yet)
    assert build.logs_command(("/var/log/demo/web-a.log", "/x; whoami"), 5, False) == (
        "sudo -n -- sh -c 'set --; for f in /var/log/demo/web-a.log '\"'\"'/x; whoami'\"'\"'; do "
        "[ ! -e \"$f\" ] || set -- \"$@\" \"$f\"; done; [ \"$#\" -eq 0 ] || exec tail -n 5 -- \"$@\"'")
    followed = build.logs_command(("/var/log/a b.log", "/x; whoami"), 0, True)
    assert followed.startswith("sudo -n -- sh -c ")
    script = shlex.split(followed)[-1]
    assert "exec 3<&0 </dev/null" in script                       # ends with the SSH session (tied)
    inner = shlex.split(shlex.split(script.split("\n")[1])[-2])     # setsid -w sh -c '<tail ...>' &
    assert inner == ["tail", "-n", "0", "-F", "--", "/var/log/a b.log", "/x; whoami"]
    with pytest.raises(ValueError):
        build.tail_argv((), 5, False)


def test_the_tail_of_several_logs_skips_those_not_written_yet(tmp_path):
    a, b, evil = tmp_path / "web-a.log", tmp_path / "web-b.log", tmp_path / "x; whoami"
    a.write_text("1\n2\n3\n")
    evil.write_text("e\n")
    cmd = build.logs_command((str(a), str(b)), 2, False)
    assert shlex.split(cmd)[:5] == ["sudo", "-n", "--", "sh", "-c"]
    script = shlex.split(cmd)[5]
    r = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stdout, r.stderr) == (0, "2\n3\n", "")
    both = shlex.split(build.logs_command((str(a), str(evil)), 1, False))[5]
    r = subprocess.run(["sh", "-c", both], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout == f"==> {a} <==\n3\n\n==> {evil} <==\ne\n"
    none = shlex.split(build.logs_command((str(b), str(tmp_path / "c.log")), 5, False))[5]
    r = subprocess.run(["sh", "-c", none], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert (r.returncode, r.stdout) == (0, "")


def test_prefixed_lines():
    assert build.prefixed("c-app-0", "a\r\nb\n") == ["[c-app-0] a", "[c-app-0] b"]
    assert build.prefixed("n", "") == []


# --- fab ssh ----------------------------------------------------------------------------------

NODES = [node("app", 0), node("app", 1, "stopped"), node("db", 0)]


def test_pick_node():
    assert build.pick_node(NODES, "app", 0, "c").name == "c-app-0"


@pytest.mark.parametrize("role, index, message", [
    ("worker", 0, "cluster c has no worker node (roles with nodes: app, db)"),
    ("app", 2, "app has no node 2: its nodes are c-app-0 (index 0, running), c-app-1 (index 1, stopped)"),
    ("app", 1, "c-app-1 is stopped, not running (nodes of app: c-app-0 (index 0, running), "
               "c-app-1 (index 1, stopped))"),
])
def test_pick_node_errors_name_the_role_and_its_nodes(role, index, message):
    with pytest.raises(CommandError) as info:
        build.pick_node(NODES, role, index, "c")
    assert str(info.value) == message


def test_pick_node_in_an_empty_cluster():
    with pytest.raises(CommandError, match=r"no app node \(roles with nodes: none; run fab provision\)"):
        build.pick_node([], "app", 0, "c")


def test_node_index():
    assert build.node_index("3") == 3
    with pytest.raises(CommandError, match="N '-1': expected a node index"):
        build.node_index("-1")


def test_ssh_argv_by_exact_string():
    base = ["ssh", "-F", "/dev/null", "-o", "StrictHostKeyChecking=yes"]
    assert build.ssh_argv(base, "admin", "10.0.0.1") == \
        ["ssh", "-F", "/dev/null", "-o", "StrictHostKeyChecking=yes", "--", "admin@10.0.0.1"]
    argv = build.ssh_argv(base, "admin", "10.0.0.1", ["echo", "x; whoami"])
    assert argv[-1] == "echo 'x; whoami'"
    assert shlex.split(argv[-1]) == ["echo", "x; whoami"]            # the remote shell sees one argument
