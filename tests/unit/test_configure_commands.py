"""configure's command builders, by exact string; values stay one argument; no secret in a command line."""
import os
import shlex
import subprocess

import pytest

from fabfile.configure import commands as cmd
from fabfile.configure.apply import files_stage, packages_stage, postgres_stage, services_stage, staged_tar
from fabfile.configure.plan import (AptInstall, AptUpdate, CreateUser, DesiredAbsent, DesiredDir, DesiredFile,
                                    DesiredLink, DesiredUser, EnableService, Link, MakeDir, PgEnsure, Remove,
                                    ServiceAction, WriteFile)
from fabfile.configure.scram import scram_verifier

EVIL = "x; whoami"


def test_apt_install_is_noninteractive_and_keeps_config_files():
    assert cmd.apt_install(["nginx", "git"]) == (
        "DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a APT_LISTCHANGES_FRONTEND=none "
        "apt-get install -y -q --no-install-recommends "
        "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold nginx git")
    with pytest.raises(ValueError):
        cmd.apt_install([])


def test_apt_update_stamps_the_time():
    assert cmd.apt_update() == (
        'for n in 1 2 3; do timeout -k 10 300 apt-get update -q && break; [ "$n" -lt 3 ] || exit 1; '
        'echo "apt-get update failed; try $((n + 1)) of 3"; sleep "$n"; done'
        " && mkdir -p /var/lib/whipup && touch /var/lib/whipup/apt-updated")


def fake_apt_get(tmp_path, body: str) -> dict:
    """PATH with an `apt-get` that counts its calls in tmp_path/calls and then runs `body`."""
    (tmp_path / "apt-get").write_text(f"#!/bin/sh\necho x >> {tmp_path}/calls\n{body}\n")
    (tmp_path / "apt-get").chmod(0o755)
    return {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}


def test_apt_update_tries_again_after_a_failure_and_after_a_hang(tmp_path):
    # first try hangs (cut at 1 s), second fails, third succeeds: the loop ends 0, the next command runs
    env = fake_apt_get(tmp_path, f"case $(wc -l < {tmp_path}/calls) in 1) sleep 30;; 2) exit 100;; esac")
    script = f"set -e\n{cmd.apt_update_tries(3, 1)} && echo updated"
    out = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=20)
    assert (out.returncode, out.stdout.splitlines()) == (0, [
        "apt-get update failed; try 2 of 3", "apt-get update failed; try 3 of 3", "updated"])


def test_apt_update_gives_up_after_the_last_try(tmp_path):
    env = fake_apt_get(tmp_path, "exit 100")
    out = subprocess.run(["sh", "-c", f"set -e\n{cmd.apt_update_tries(2, 5)} && echo updated; echo after"],
                         env=env, capture_output=True, text=True, timeout=20)
    assert out.returncode == 1 and "updated" not in out.stdout and "after" not in out.stdout
    assert (tmp_path / "calls").read_text().count("x") == 2


def test_packages_script_updates_first_or_only_when_the_install_fails():
    install = cmd.apt_install(["nginx"])
    assert cmd.packages_script(["nginx"], update=True) == "\n".join([
        "set -e",
        "export DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a APT_LISTCHANGES_FRONTEND=none",
        cmd.apt_update(),
        install,
    ])
    assert cmd.packages_script(["nginx"], update=False).splitlines()[-1] == (
        f"{install} || {{ {cmd.apt_update()} && {install}; }}")


def test_debconf_answers_for_packages_that_ask():
    assert cmd.debconf_preseed(["nginx"]) is None
    assert cmd.debconf_preseed(["nginx", "postfix"]) == (
        "printf '%s\\n' 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections")
    script = cmd.packages_script(["postfix"], update=False)
    assert script.splitlines()[2] == cmd.debconf_preseed(["postfix"])


def test_file_user_dir_link_builders():
    assert cmd.install_file("f0", "/etc/nginx/sites-available/whipup.conf", "root", "root", "0644") == (
        "install -D -o root -g root -m 0644 f0 /etc/nginx/sites-available/whipup.conf.whipup-new"
        " && mv -f /etc/nginx/sites-available/whipup.conf.whipup-new /etc/nginx/sites-available/whipup.conf")
    assert cmd.ensure_dir("/srv/demo", "demo", "demo", "0755") == "install -d -o demo -g demo -m 0755 /srv/demo"
    assert cmd.create_user("demo", "/srv/demo", "/usr/sbin/nologin") == (
        "useradd --system --user-group --home-dir /srv/demo --no-create-home --shell /usr/sbin/nologin demo")
    assert cmd.modify_user("demo", "/srv/demo", "/bin/sh") == "usermod --home /srv/demo --shell /bin/sh demo"
    assert cmd.set_attrs("/etc/a", "redis", "redis", "0640") == "chown redis:redis /etc/a && chmod 0640 /etc/a"
    assert cmd.link("/etc/nginx/sites-enabled/w.conf", "/etc/nginx/sites-available/w.conf") == (
        "ln -sfnT /etc/nginx/sites-available/w.conf /etc/nginx/sites-enabled/w.conf")
    assert cmd.remove("/etc/nginx/sites-enabled/default") == "rm -f /etc/nginx/sites-enabled/default"


@pytest.mark.parametrize("build, position", [
    (lambda v: cmd.ensure_dir(v, "root", "root", "0755"), -1),
    (lambda v: cmd.create_user(v, "/srv/x", "/usr/sbin/nologin"), -1),
    (lambda v: cmd.remove(v), -1),
    (lambda v: cmd.apt_install([v]).split(" ", 3)[-1], -1),
    (lambda v: cmd.service("sysv", v, "start"), 1),
    (lambda v: cmd.service("systemd", v, "reload"), -1),
    (lambda v: cmd.enable_service("systemd", v), -1),
    (lambda v: cmd.enable_service("sysv", v).split(" && ")[1], 1),
])
def test_a_value_with_shell_syntax_stays_one_argument(build, position):
    argv = shlex.split(build(EVIL))
    assert argv[position] == EVIL
    assert "whoami" not in [a for i, a in enumerate(argv) if i != (position % len(argv))]


def test_install_file_quotes_both_paths():
    argv = shlex.split(cmd.install_file("f0", f"/etc/{EVIL}", "root", "root", "0644"))
    assert argv[:9] == ["install", "-D", "-o", "root", "-g", "root", "-m", "0644", "f0"]
    assert argv[9] == f"/etc/{EVIL}.whipup-new" and argv[-1] == f"/etc/{EVIL}"


def test_service_layer_picks_systemctl_or_service():
    assert cmd.service("systemd", "nginx", "reload") == "systemctl reload nginx"
    assert cmd.service("sysv", "nginx", "reload") == "service nginx reload"
    assert cmd.service_running("systemd", "nginx") == "systemctl is-active --quiet nginx"
    assert cmd.service_running("sysv", "nginx") == "service nginx status >/dev/null 2>&1"
    assert cmd.enable_service("systemd", "nginx") == "systemctl enable --quiet nginx"
    with pytest.raises(ValueError):
        cmd.service("upstart", "nginx", "start")


def test_enabling_at_boot_under_sysv_is_update_rc_d_links():
    """`defaults` makes the links of the script's LSB header where it has none; `enable` turns the K links
    of a service disabled earlier (which `defaults` leaves alone) into S links."""
    assert cmd.enable_service("sysv", "postgresql") == "update-rc.d postgresql defaults && update-rc.d postgresql enable"
    with pytest.raises(ValueError):
        cmd.enable_service("upstart", "nginx")
    assert cmd.service_enabled_sysv("postgresql") == (
        'for l in /etc/rc2.d/S[0-9][0-9]postgresql; do [ -x "$l" ] && break; done; [ -x "$l" ]')


def test_enabling_quotes_the_service_name():
    argvs = [shlex.split(part) for part in cmd.enable_service("sysv", EVIL).split(" && ")]
    assert argvs == [["update-rc.d", EVIL, "defaults"], ["update-rc.d", EVIL, "enable"]]
    # the name is a quoted literal after the glob of the link's number
    assert f"/etc/rc2.d/S[0-9][0-9]{shlex.quote(EVIL)};" in cmd.service_enabled_sysv(EVIL)


def test_the_enabled_test_runs_in_a_shell(tmp_path):
    """The sysv test, on an rc tree of its own (the path rewritten to a temp dir): an executable script
    behind an S link is enabled; a K link, a dangling link or no link is not; a name with shell syntax is
    looked up literally."""
    rc = tmp_path / "rc2.d"
    initd = tmp_path / "init.d"
    rc.mkdir()
    initd.mkdir()
    for name in ("postgresql", "nginx", EVIL):
        (initd / name).write_text("#!/bin/sh\n")
        (initd / name).chmod(0o755)
    (rc / "S01postgresql").symlink_to(initd / "postgresql")
    (rc / "K01nginx").symlink_to(initd / "nginx")
    (rc / "S02gone").symlink_to(initd / "gone")
    (rc / f"S01{EVIL}").symlink_to(initd / EVIL)

    def enabled(name: str) -> bool:
        test = cmd.service_enabled_sysv(name).replace("/etc/rc2.d/", f"{rc}/")
        return subprocess.run(["sh", "-c", test]).returncode == 0

    assert enabled("postgresql")
    assert not enabled("nginx") and not enabled("gone") and not enabled("redis-server")
    assert enabled(EVIL) and not enabled("x")


SUPERVISOR_UPDATE = (
    "out=$(supervisorctl reread) || { echo \"$out\" >&2; exit 1; }\n"
    "names=$(printf '%s\\n' \"$out\" | sed -n 's/^\\([^: ]*\\): \\(available\\|changed\\|disappeared\\)$/\\1/p' "
    "| grep -Ev -- '-web-[ab]$' || true)\n"
    '[ -z "$names" ] || supervisorctl update $names')


def test_supervisor_reload_rereads_and_updates_only_changed_programs_but_the_web_slots():
    assert cmd.service("sysv", "supervisor", "reload") == SUPERVISOR_UPDATE
    assert cmd.service("systemd", "supervisor", "reload") == SUPERVISOR_UPDATE
    assert cmd.service("systemd", "supervisor", "restart") == "systemctl restart supervisor"


def _fake_supervisorctl(tmp_path, reread: str, rc: int = 0):
    """A supervisorctl that prints `reread` for `reread` (exit `rc`) and logs any other call's argv."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    (tmp_path / "reread.out").write_text(reread)
    tool = bindir / "supervisorctl"
    tool.write_text('#!/bin/sh\nif [ "$1" = reread ]; then cat "$REREAD"; exit "$RC"; fi\n'
                    'echo "$*" >> "$LOG"\n')
    tool.chmod(0o755)
    log = tmp_path / "calls.log"
    return {"PATH": f"{bindir}:/usr/bin:/bin", "REREAD": str(tmp_path / "reread.out"), "RC": str(rc),
            "LOG": str(log)}, log


# what supervisord 4.2's `supervisorctl reread` prints: one line per group (a [program:x] is group x)
REREAD = ("demo-web-a: changed\ndemo-web-b: changed\ndemo-web-boot: changed\ndemo-worker: available\n"
          "demo-web: disappeared\nother-web-b: changed\n")


def test_supervisor_update_applies_every_changed_program_but_the_gunicorn_slots(tmp_path):
    import subprocess
    env, log = _fake_supervisorctl(tmp_path, REREAD)
    subprocess.run(["sh", "-ec", SUPERVISOR_UPDATE], env=env, check=True, timeout=30)
    assert log.read_text() == "update demo-web-boot demo-worker demo-web\n"   # the old single program goes too


def test_supervisor_update_with_nothing_changed_or_only_the_slots_updates_nothing(tmp_path):
    import subprocess
    for reread in ("No config updates to processes\n", "demo-web-a: changed\ndemo-web-b: available\n"):
        env, log = _fake_supervisorctl(tmp_path, reread)
        log.unlink(missing_ok=True)
        subprocess.run(["sh", "-ec", SUPERVISOR_UPDATE], env=env, check=True, timeout=30)
        assert not log.exists(), reread


def test_supervisor_update_fails_with_supervisors_words_when_reread_fails(tmp_path):
    import subprocess
    env, log = _fake_supervisorctl(tmp_path, "ERROR: CANT_REREAD: File contains no section headers.\n", rc=2)
    r = subprocess.run(["sh", "-ec", SUPERVISOR_UPDATE], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and r.stderr == "ERROR: CANT_REREAD: File contains no section headers.\n"
    assert not log.exists()


def test_the_converged_supervisor_reload_runs_as_one_script(tmp_path):
    import subprocess
    env, log = _fake_supervisorctl(tmp_path, REREAD)
    service = tmp_path / "bin" / "service"
    service.write_text('#!/bin/sh\necho "service $*" >> "$LOG"\n')
    service.chmod(0o755)
    subprocess.run(["sh", "-ec", cmd.converge_service("sysv", "supervisor", "reload")], env=env, check=True,
                   timeout=30)
    assert log.read_text() == "service supervisor status\nupdate demo-web-boot demo-worker demo-web\n"


def test_converge_service_starts_a_stopped_service_instead_of_reloading_it():
    assert cmd.converge_service("sysv", "redis-server", "start") == (
        "service redis-server status >/dev/null 2>&1 || service redis-server start")
    assert cmd.converge_service("systemd", "nginx", "reload") == (
        "nginx -t -q\n"     # its own line: `set -e` stops the script on a config error, before the reload
        "if systemctl is-active --quiet nginx; then systemctl reload nginx; else systemctl start nginx; fi")
    assert cmd.converge_service("sysv", "postgresql", "restart") == (
        "if service postgresql status >/dev/null 2>&1; then service postgresql restart; "
        "else service postgresql start; fi")
    assert cmd.converge_service("sysv", "supervisor", "reload") == (
        f"if service supervisor status >/dev/null 2>&1; then {SUPERVISOR_UPDATE}; else service supervisor start; fi")


def test_pending_handler_marks():
    assert cmd.mark_pending("nginx", "reload") == (
        "mkdir -p /var/lib/whipup/pending && touch /var/lib/whipup/pending/nginx:reload")
    assert cmd.clear_pending("nginx") == "rm -f /var/lib/whipup/pending/nginx:*"
    assert cmd.clear_pending(EVIL) == "rm -f '/var/lib/whipup/pending/x; whoami:'*"


def test_psql_reads_sql_from_stdin_as_postgres():
    assert cmd.psql_command() == "cd / && sudo -n -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d postgres"


def test_pg_ensure_sql_is_idempotent_and_quotes():
    sql = cmd.pg_ensure_sql("demo", "demo", "SCRAM-SHA-256$4096:c2FsdA==$a:b")
    assert sql == (
        "SELECT format('CREATE ROLE %I LOGIN', 'demo') WHERE NOT EXISTS "
        "(SELECT 1 FROM pg_roles WHERE rolname = 'demo')\\gexec\n"
        "ALTER ROLE \"demo\" LOGIN PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$a:b';\n"
        "SELECT format('CREATE DATABASE %I OWNER %I', 'demo', 'demo') WHERE NOT EXISTS "
        "(SELECT 1 FROM pg_database WHERE datname = 'demo')\\gexec\n"
        "ALTER DATABASE \"demo\" OWNER TO \"demo\";\n")
    assert "PASSWORD" not in cmd.pg_ensure_sql("demo", "demo", None)
    assert cmd.sql_literal("it's") == "'it''s'" and cmd.sql_ident('a"b') == '"a""b"'


def test_the_postgres_password_is_never_in_a_command_line():
    password = "pw-0123456789-secret"
    verifier = scram_verifier(password, b"0123456789abcdef")
    stage = postgres_stage([PgEnsure("demo", "demo", verifier, ("set role demo's password",))])
    assert password not in stage.command and verifier not in stage.command
    assert verifier in stage.stdin and password not in stage.stdin   # only the verifier travels, on stdin


def test_stage_scripts_are_one_sudo_command_each():
    f = DesiredFile("/etc/a.conf", "a = 1\n", "root", "root", "0644", notify="nginx", action="reload", src="a.j2")
    files = files_stage([
        CreateUser(DesiredUser("demo", "/srv/demo", "/usr/sbin/nologin")),
        MakeDir(DesiredDir("/srv/demo", "demo", "demo", "0755"), "absent"),
        WriteFile(f, None),
        Link(DesiredLink("/etc/nginx/sites-enabled/a", "/etc/nginx/sites-available/a"), "absent"),
        Remove(DesiredAbsent("/etc/nginx/sites-enabled/default")),
    ])
    script = shlex.split(files.command)
    assert script[:5] == ["sudo", "-n", "--", "sh", "-c"]
    assert script[5].splitlines() == [
        "set -e", "umask 022", "stage=$(mktemp -d)", "trap 'rm -rf \"$stage\"' EXIT",
        'base64 -d | tar -x -f - -C "$stage"', 'cd "$stage"',
        cmd.create_user("demo", "/srv/demo", "/usr/sbin/nologin"),      # the user and dirs first (a check
        cmd.ensure_dir("/srv/demo", "demo", "demo", "0755"),             # may read them), then ...
        "mkdir -p /var/lib/whipup/pending && touch /var/lib/whipup/pending/nginx:reload",   # ... before the files
        cmd.install_file("f0", "/etc/a.conf", "root", "root", "0644"),
        cmd.link("/etc/nginx/sites-enabled/a", "/etc/nginx/sites-available/a"),
        cmd.remove("/etc/nginx/sites-enabled/default"),
    ]
    assert files.stdin == staged_tar(["a = 1\n"])
    assert files_stage([Remove(DesiredAbsent("/x"))]).stdin is None

    services = services_stage([ServiceAction("nginx", "reload", "a.conf changed"), EnableService("nginx")], "systemd")
    assert shlex.split(services.command)[5] == "\n".join([
        "set -e", cmd.converge_service("systemd", "nginx", "reload"), "rm -f /var/lib/whipup/pending/nginx:*",
        "systemctl enable --quiet nginx"])
    assert shlex.split(services_stage([EnableService("nginx")], "sysv").command)[5] == (
        "set -e\nupdate-rc.d nginx defaults && update-rc.d nginx enable")

    packages = packages_stage([AptUpdate("package lists missing"), AptInstall(("nginx", "git"), False)])
    assert shlex.split(packages.command)[5] == cmd.packages_script(["nginx", "git"], update=True)


def test_staged_tar_round_trips():
    import base64
    import io
    import tarfile

    data = staged_tar(["one\n", "two ünïcode\n"])
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(data))) as tar:
        assert [(m.name, m.mode) for m in tar.getmembers()] == [("f0", 0o600), ("f1", 0o600)]
        assert tar.extractfile("f1").read().decode() == "two ünïcode\n"


def test_read_files_script_quotes_paths():
    assert cmd.read_files_script(["/etc/a b"]) == (
        "printf '@@file\\t%s\\n' '/etc/a b'; base64 < '/etc/a b' 2>/dev/null || true\necho @@end")
