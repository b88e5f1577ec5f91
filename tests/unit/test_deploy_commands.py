"""Deploy's remote commands: exact strings, quoting, and the scripts themselves run here under a temp dir."""
from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fabfile.deploy import commands as c
from fabfile.deploy import manage as dj
from fabfile.deploy import lock as lk
from fabfile.deploy.lock import LockInfo, format_lock, parse_lock
from fabfile.deploy.releases import parse_state
from fabfile.layout import Layout

L = Layout("demo", "demo.settings", "requirements.txt")
R = "20240131120000-1a2b3c4"
R2 = "20240131130000-5e6f708"
SHA = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"


def test_manage_keeps_every_argument_one_word():
    cmd = dj.manage(L, R, ["shell", "-c", "x; whoami"])
    # through the launcher: the app's environment, the release's venv and Django root (deploy/runtime.py)
    django = ("exec /bin/sh /srv/demo/shared/whipup-exec /srv/demo/releases/20240131120000-1a2b3c4 python -m django "
              "shell -c 'x; whoami'")
    assert cmd == "sudo -n -u demo -- sh -c " + shlex.quote(c.tied(django))     # ended with its SSH session
    outer = shlex.split(cmd)
    assert outer[:7] == ["sudo", "-n", "-u", "demo", "--", "sh", "-c"] and len(outer) == 8
    setsid = next(line for line in outer[7].splitlines() if line.startswith("setsid "))
    inner = shlex.split(shlex.split(setsid)[4])
    assert inner[-3:] == ["shell", "-c", "x; whoami"]


def test_a_tied_command_ends_with_its_session_and_keeps_its_exit_status_otherwise(tmp_path):
    """The watcher sees the session's stdin close (the SSH session gone) and kills the command's process
    group: the `sleep` it started is gone. With the session alive, the command's own status comes back
    at once."""
    pidfile = tmp_path / "pid"
    p = subprocess.Popen(["sh", "-c", c.tied(f"echo $$ > {shlex.quote(str(pidfile))}; sleep 60")],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    child = int(pidfile.read_text())
    assert os.path.exists(f"/proc/{child}")
    p.stdin.close()                                  # the session ends
    assert p.wait(10) == 143                         # killed by TERM
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{child}") and "Z" not in Path(f"/proc/{child}/stat").read_text().split()[2]:
        assert time.monotonic() < deadline, "the command outlived its session"
        time.sleep(0.02)
    p.stdout.close()
    alive = subprocess.Popen(["sh", "-c", c.tied("echo done; exit 3")], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    start = time.monotonic()
    assert alive.stdout.read() == b"done\n" and alive.wait(10) == 3 and time.monotonic() - start < 5
    alive.stdin.close()
    alive.stdout.close()


def test_switch_is_a_symlink_renamed_over_current():
    assert c.switch(L, R) == (
        "sudo -n -u demo -- sh -c 'cd /srv/demo && test -d releases/20240131120000-1a2b3c4 && "
        "rm -f releases/20240131120000-1a2b3c4/.whipup-partial && "
        "ln -sfn releases/20240131120000-1a2b3c4 current.tmp-20240131120000-1a2b3c4 && "
        "mv -T current.tmp-20240131120000-1a2b3c4 current'")


def test_release_ids_and_shas_are_checked_before_they_reach_a_command():
    for bad in ("x; whoami", "../..", "20240131120000-1a2b3c4; rm -rf /"):
        with pytest.raises(ValueError):
            c.switch(L, bad)
        with pytest.raises(ValueError):
            c.remove_releases(L, [R, bad])
    with pytest.raises(ValueError):
        c.extract(L, R, "HEAD; whoami")
    with pytest.raises(ValueError):
        lk.lock_release(L, "x; whoami")
    with pytest.raises(ValueError):
        c.fetch(L, "https://example.org/app.git", "main; whoami")


def test_worker_commands():
    assert c.worker_restart(L) == ("sudo -n -- sh -c 'supervisorctl stop demo-worker >/dev/null 2>&1; "
                                   "supervisorctl start demo-worker'")
    assert c.switch_and_worker(L, R) == c.switch(L, R) + " && " + c.worker_warm_restart(L)   # run in test_deploy_supervisor


def test_other_exact_strings():
    assert dj.collectstatic(L, R) == "sudo -n -u demo -- sh -c " + shlex.quote(c.tied(
        "exec /bin/sh /srv/demo/shared/whipup-exec /srv/demo/releases/20240131120000-1a2b3c4 python -m django "
        "collectstatic --noinput --verbosity 1"))
    assert dj.migrate(L, R) == "sudo -n -u demo -- sh -c " + shlex.quote(c.tied(
        "exec /bin/sh /srv/demo/shared/whipup-exec /srv/demo/releases/20240131120000-1a2b3c4 python -m django "
        "migrate --noinput"))
    assert c.health("172.31.0.4", path="/-/health") == (
        "curl -sS -m 3 -w '\\n%{http_code} %{redirect_url}' http://172.31.0.4:8000/-/health")
    assert c.receive_pack(L) == "sudo -n -u demo -- git-receive-pack"
    assert c.init_mirror(L) == ("sudo -n -u demo -- sh -c 'test -d /srv/demo/repo.git || "
                                "git init --bare --quiet /srv/demo/repo.git'")
    assert c.remove_releases(L, [R, R2]) == (
        "sudo -n -u demo -- sh -c 'cd /srv/demo && t=$(mktemp -d /srv/demo/.trash.XXXXXX) && (cd releases && "
        "mv -- 20240131120000-1a2b3c4 20240131130000-5e6f708 \"$t\"/) && { setsid nohup rm -rf /srv/demo/.trash.* "
        "</dev/null >/dev/null 2>&1 & }'")
    assert lk.lock_acquire(L) == (
        "sudo -n -u demo -- sh -c 'tmp=$(mktemp -d /srv/demo/shared/deploy.lock.new.XXXXXX) && cat > \"$tmp/info\" "
        "&& chmod 755 \"$tmp\" && if mv -T \"$tmp\" /srv/demo/shared/deploy.lock 2>/dev/null; then :; else "
        "rm -rf \"$tmp\"; cat /srv/demo/shared/deploy.lock/info 2>/dev/null; exit 75; fi'")
    assert c.write_env(L) == (
        "sudo -n -u demo -- sh -c 'umask 077 && cat > /srv/demo/shared/.env.tmp && if cmp -s "
        "/srv/demo/shared/.env.tmp /srv/demo/shared/.env; then rm -f /srv/demo/shared/.env.tmp; echo unchanged; "
        "else chmod 0600 /srv/demo/shared/.env.tmp && mv -f /srv/demo/shared/.env.tmp /srv/demo/shared/.env "
        "&& echo changed; fi'")
    assert c.treeish(SHA, "examples/demo") == f"{SHA}:examples/demo"
    assert c.treeish(SHA, "") == f"{SHA}^{{tree}}"


# --- the scripts, run here ------------------------------------------------------------------------

def local(cmd: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a `sudo -n [-u USER] -- sh -c SCRIPT` command's script with this machine's sh, as this user."""
    argv = shlex.split(cmd)
    assert argv[0] == "sudo" and "--" in argv
    rest = argv[argv.index("--") + 1:]
    p = subprocess.run(rest, input=stdin, capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"{rest}: exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture
def lay(tmp_path) -> Layout:
    layout = Layout("demo", "demo.settings", "requirements.txt", base=str(tmp_path / "srv"))
    for d in (layout.releases, layout.shared):
        os.makedirs(d)
    return layout


def test_switch_and_state(lay):
    for rid, sha in ((R, SHA), (R2, "5" * 40)):
        os.makedirs(f"{lay.release(rid)}/.venv")
        Path(f"{lay.release(rid)}/REVISION").write_text(sha + "\n")
    Path(f"{lay.venv(R)}/.whipup-requirements").write_text("h1\n")
    Path(f"{lay.venv(R)}/.whipup-venv").write_text(R + "\n")
    st = parse_state(local(c.state(lay)).stdout)
    assert st.configured and st.current is None and set(st.releases) == {R, R2}
    local(c.switch(lay, R))
    local(c.switch(lay, R2))
    assert os.readlink(lay.current) == f"releases/{R2}"
    assert sorted(os.listdir(lay.root)) == ["current", "releases", "shared"]     # no temp link left
    local(c.switch(lay, R))
    st = parse_state(local(c.state(lay)).stdout)
    assert st.current == R and st.current_info.requirements == "h1" and st.current_info.venv == R
    assert st.releases[R2].sha == "5" * 40 and st.releases[R2].venv is None
    assert local(c.switch(lay, "20990101000000-0000000"), check=False).returncode != 0
    assert os.readlink(lay.current) == f"releases/{R}"
    local(c.remove_releases(lay, [R2]))
    assert os.listdir(lay.releases) == [R]                       # gone from releases/ at once
    deadline = time.monotonic() + 10
    while any(n.startswith(".trash.") for n in os.listdir(lay.root)):   # and deleted in the background
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_state_of_an_unconfigured_host(tmp_path):
    lay = Layout("demo", "demo.settings", "requirements.txt", base=str(tmp_path / "nothing"))
    assert parse_state(local(c.state(lay)).stdout).configured is False


def test_lock_is_exclusive_and_released_only_by_its_owner(lay):
    mine = LockInfo.new(R, "deploy", who="ana@laptop")
    assert local(lk.lock_acquire(lay), stdin=format_lock(mine)).returncode == 0
    theirs = local(lk.lock_acquire(lay), stdin=format_lock(LockInfo.new(R2, "deploy")), check=False)
    assert theirs.returncode == lk.LOCK_HELD
    assert parse_lock(theirs.stdout) == mine
    held = local(lk.lock_read(lay)).stdout
    assert held.startswith("held\n") and parse_lock(held[5:]) == mine
    local(lk.lock_release(lay, "0" * 16))            # not ours: stays
    assert os.path.isdir(lay.lock_dir)
    local(lk.lock_release(lay, mine.token))
    assert not os.path.exists(lay.lock_dir) and local(lk.lock_read(lay)).stdout == ""
    local(lk.lock_acquire(lay), stdin=format_lock(mine))
    assert parse_lock(local(lk.lock_break(lay)).stdout).who == "ana@laptop"
    assert not os.path.exists(lay.lock_dir)


def test_a_lock_found_held_always_names_its_holder_even_in_a_race(lay):
    """Many deploys take the lock at the same moment: one gets it, every other reads the winner's info
    (never an empty lock), and no temporary directory is left behind."""
    from concurrent.futures import ThreadPoolExecutor

    infos = [LockInfo.new(R, "quick-update", who=f"user{i}@host") for i in range(8)]
    with ThreadPoolExecutor(len(infos)) as pool:
        runs = list(pool.map(lambda info: local(lk.lock_acquire(lay), stdin=format_lock(info), check=False), infos))
    won = [info for info, r in zip(infos, runs) if r.returncode == 0]
    assert len(won) == 1
    assert all(r.returncode == lk.LOCK_HELD and parse_lock(r.stdout) == won[0] for r in runs if r.returncode != 0)
    assert sorted(os.listdir(os.path.dirname(lay.lock_dir))) == ["deploy.lock"]


def test_env_is_written_0600_from_stdin(lay):
    assert local(c.write_env(lay), stdin="A=1\n").stdout.strip() == "changed"
    assert stat.S_IMODE(os.stat(lay.env_file).st_mode) == 0o600
    assert local(c.write_env(lay), stdin="A=1\n").stdout.strip() == "unchanged"
    assert local(c.write_env(lay), stdin="A=2\n").stdout.strip() == "changed"
    assert Path(lay.env_file).read_text() == "A=2\n" and os.listdir(lay.shared) == [".env"]


def test_audit_append_and_tail(lay):
    local(lk.audit_append(lay), stdin='{"a": 1}\n')
    info = LockInfo.new(R, "deploy")
    local(lk.lock_acquire(lay), stdin=format_lock(info))
    first, second = lk.audit_and_unlock(lay, info.token).split(" && ")
    assert (first, second) == (lk.audit_append(lay), lk.lock_release(lay, info.token))
    local(first, stdin='{"a": 2}\n')
    local(second)
    assert local(lk.audit_tail(lay, 1)).stdout == '{"a": 2}\n'
    assert not os.path.exists(lay.lock_dir)


def git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_extract_a_subdirectory_of_a_commit_from_the_mirror(lay, tmp_path):
    repo = tmp_path / "repo"
    (repo / "examples" / "demo" / "demo").mkdir(parents=True)
    (repo / "examples" / "demo" / "manage.py").write_text("print('hi')\n")
    (repo / "examples" / "demo" / "demo" / "settings.py").write_text("X = 1\n")
    (repo / "README.md").write_text("the tool\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    sha = git(repo, "rev-parse", "HEAD")
    local(c.init_mirror(lay))
    git(repo, "push", "-q", f"file://{lay.mirror}", f"{sha}:refs/heads/whipup-deploy")
    local(c.extract(lay, R, sha, "examples/demo"))
    rel = Path(lay.release(R))
    assert sorted(str(p.relative_to(rel)) for p in rel.rglob("*")) == [".whipup-partial", "REVISION", "demo",
                                                                       "demo/settings.py", "manage.py"]
    assert (rel / "REVISION").read_text() == sha + "\n"
    assert parse_state(local(c.state(lay)).stdout).releases[R].partial        # half made until the switch ...
    local(c.switch(lay, R))
    state = parse_state(local(c.state(lay)).stdout)
    assert not state.releases[R].partial and state.current == R                # ... whole once current
    tree = git(repo, "rev-parse", f"{sha}:examples/demo")
    local(c.extract(lay, R, sha, "examples/demo", tree))
    assert (rel / ".whipup-tree").read_text() == tree + "\n"
    assert parse_state(local(c.state(lay)).stdout).releases[R].tree == tree
    local(c.extract(lay, R2, sha, "", None, R))
    assert parse_state(local(c.state(lay)).stdout).releases[R2].previous == R
    assert (Path(lay.release(R2)) / "README.md").is_file()
    bad = local(c.extract(lay, R, sha, "examples/nope"), check=False)
    assert bad.returncode == 1 and f"{sha}:examples/nope: no such tree" in bad.stderr


def test_state_lists_migration_files_of_each_release(lay):
    for rid, names in ((R, ["0001_initial.py"]), (R2, ["0001_initial.py", "0002_more.py"])):
        d = Path(lay.release(rid)) / "notes" / "migrations"
        d.mkdir(parents=True)
        (d / "__init__.py").write_text("")
        for n in names:
            (d / n).write_text("")
        (Path(lay.release(rid)) / ".venv" / "x" / "migrations").mkdir(parents=True)
        (Path(lay.release(rid)) / ".venv" / "x" / "migrations" / "0001_pkg.py").write_text("")
    st = parse_state(local(c.state(lay, migrations=True)).stdout)
    assert st.migrations == {R: ("notes/migrations/0001_initial.py",),
                             R2: ("notes/migrations/0001_initial.py", "notes/migrations/0002_more.py")}
    assert parse_state(local(c.state(lay)).stdout).migrations == {}


@pytest.mark.skipif(not Path(sys.base_prefix, "bin", "python3").exists(), reason="needs a python3 to make venvs")
def test_reused_venv_works_at_its_new_path_and_shares_files(lay):
    """A venv is not relocatable: the reuse makes one at the new path and hardlinks the packages."""
    old = Path(lay.venv(R))
    subprocess.run([sys.executable, "-m", "venv", str(old)], check=True, timeout=300)
    pkg = next(old.glob("lib/python3*/site-packages"))
    (pkg / "whipup_probe.py").write_text("VALUE = 42\n")
    (old / "bin" / "whipup-probe").write_text(f"#!{old}/bin/python\nimport whipup_probe, sys\n"
                                              "print(whipup_probe.VALUE, sys.prefix)\n")
    (old / "bin" / "whipup-probe").chmod(0o755)
    (old / ".whipup-requirements").write_text("h1\n")
    (old / ".whipup-venv").write_text(R + "\n")
    os.makedirs(lay.release(R2))
    script = c.venv_reuse_script(lay, R2, R)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    subprocess.run(["sh", "-c", script], check=True, timeout=120, env=env)
    new = Path(lay.venv(R2))
    out = subprocess.run([str(new / "bin" / "whipup-probe")], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["42", str(new)]
    pip = subprocess.run([str(new / "bin" / "pip"), "--version"], capture_output=True, text=True, check=True).stdout
    assert str(new) in pip and str(old) not in pip
    new_pkg = next(new.glob("lib/python3*/site-packages"))
    assert (new_pkg / "whipup_probe.py").stat().st_ino == (pkg / "whipup_probe.py").stat().st_ino
    assert (new / ".whipup-venv").read_text() == R + "\n"
    assert (new / "bin" / "whipup-probe").read_text().startswith(f"#!{new}/bin/python\n")
    # the old venv is untouched and still works
    out = subprocess.run([str(old / "bin" / "whipup-probe")], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["42", str(old)]


def test_venv_shebangs_are_rewritten_with_both_paths_taken_literally(tmp_path):
    """A base dir with regex, sed and shell metacharacters: the old path matches only itself, the new one
    lands verbatim, and nothing in either runs."""
    old, new = "/srv/a.b|c&d; whoami/releases/R/.venv", "/srv/x&y|z; whoami\\1/releases/R2/.venv"
    script = tmp_path / "gunicorn"
    script.write_text(f"#!{old}/bin/python\nprint(1)\n")
    decoy = tmp_path / "decoy"
    decoy.write_text("#!/srv/aXb|c&d; whoami/releases/R/.venv/bin/python\n")
    sed = f"sed {c.q(c.shebang_rewrite(old, new))}"
    assert subprocess.run(["sh", "-c", f"{sed} {c.q(str(script))}"], capture_output=True, text=True,
                          check=True).stdout == f"#!{new}/bin/python\nprint(1)\n"
    assert subprocess.run(["sh", "-c", f"{sed} {c.q(str(decoy))}"], capture_output=True, text=True,
                          check=True).stdout == decoy.read_text()


@pytest.mark.parametrize("quote", ["", '"'])
def test_long_venv_paths_launcher_line_is_rewritten_too(tmp_path, quote):
    """pip's launcher for a venv path over a shebang's 127 bytes: `#!/bin/sh` then an exec line naming the
    venv's python (bare, or quoted by newer pip); that line moves to the new venv, a later line naming the
    old path is left alone."""
    old, new = "/srv/" + "a.b" * 40 + "/R/.venv", "/srv/" + "x&y" * 40 + "/R2/.venv"
    script = tmp_path / "pip"
    body = (f"#!/bin/sh\n'''exec' {quote}{old}/bin/python{quote} \"$0\" \"$@\"\n' '''\n"
            f"# {old}/bin/python\n")
    script.write_text(body)
    sed = f"sed {c.q(c.shebang_rewrite(old, new))}"
    out = subprocess.run(["sh", "-c", f"{sed} {c.q(str(script))}"], capture_output=True, text=True,
                         check=True).stdout
    assert out == body.replace(f"exec' {quote}{old}", f"exec' {quote}{new}", 1)
    assert out.splitlines()[3] == f"# {old}/bin/python"


def test_git_ssh_command_survives_both_shell_parses(tmp_path):
    """GIT_SSH_COMMAND is parsed by the script's shell, then by git's: a key path with `x; whoami` in it
    stays one argument of ssh."""
    lay = Layout("demo", "demo.settings", "requirements.txt", base=str(tmp_path / "x; whoami"))
    key = Path(lay.root) / ".ssh" / "deploy_key"
    key.parent.mkdir(parents=True)
    key.write_text("not a key\n")
    line = next(x for x in c.fetch_script(lay, "https://example.org/app.git", "main").splitlines()
                if "GIT_SSH_COMMAND" in x)
    out = subprocess.run(["sh", "-c", line + '\nprintf %s "$GIT_SSH_COMMAND"'], capture_output=True, text=True,
                         check=True).stdout
    assert shlex.split(out) == ["ssh", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                                "-o", "StrictHostKeyChecking=accept-new"]


def test_fetch_by_exact_string():
    assert c.fetch_script(L, "http://10.255.255.254:8897/demo.git", "main") == "\n".join([
        "set -e",
        "test -d /srv/demo/repo.git || git init --bare --quiet /srv/demo/repo.git",
        "if [ -f /srv/demo/.ssh/deploy_key ]; then export GIT_SSH_COMMAND='ssh -i /srv/demo/.ssh/deploy_key "
        "-o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new'; fi",
        "git --git-dir=/srv/demo/repo.git fetch --quiet --force -- http://10.255.255.254:8897/demo.git "
        "+refs/heads/main:refs/heads/main",
        "git --git-dir=/srv/demo/repo.git rev-parse --verify 'refs/heads/main^{commit}'",
    ])
    assert c.fetch(L, "https://example.org/app.git", "main") == c.as_app(
        L, c.fetch_script(L, "https://example.org/app.git", "main"))


def test_the_fetch_url_stays_one_argument_and_never_an_option(tmp_path):
    """A URL with `x; whoami` (or one starting with a dash) reaches git as one argument, after `--`."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "git").write_text('#!/bin/sh\nfor a in "$@"; do printf \'%s\\n\' "$a"; done >> "$ARGV_LOG"\n'
                                'echo 3333333333333333333333333333333333333333\n')
    (bindir / "git").chmod(0o755)
    lay = Layout("demo", "demo.settings", "requirements.txt", base=str(tmp_path / "srv"))
    for url in ("https://example.org/x; whoami", "--upload-pack=touch /tmp/pwned"):
        log = tmp_path / "argv.log"
        log.unlink(missing_ok=True)
        env = {"PATH": f"{bindir}:/usr/bin:/bin", "ARGV_LOG": str(log)}
        subprocess.run(["sh", "-c", c.fetch_script(lay, url, "main")], env=env, check=True, capture_output=True)
        calls = log.read_text().splitlines()
        fetch = calls[calls.index("fetch"):][:6]
        assert fetch == ["fetch", "--quiet", "--force", "--", url, "+refs/heads/main:refs/heads/main"]


def test_state_prints_program_names_as_data():
    assert "printf 'program=%s %s %s %s %s\\n' 'x; whoami' " in c.state_script(L, ["x; whoami"])


def test_python_stdin_passes_each_argument_as_one_word():
    assert dj.python_stdin(L, R, ["10.0.0.5:8000", "x; whoami"]) == (
        "sudo -n -u demo -- sh -c 'exec /bin/sh /srv/demo/shared/whipup-exec /srv/demo/releases/20240131120000-1a2b3c4 "
        "python - 10.0.0.5:8000 '\"'\"'x; whoami'\"'\"''")
    assert dj.script("django_facts").startswith('"""What Django itself makes of the settings')


def test_a_venv_from_a_wheelhouse_builds_once_and_falls_back_to_the_index():
    from fabfile.deploy import wheelhouse as wh

    d = wh.directory(L, "ab" * 32)
    assert d == "/srv/demo/wheelhouse/abababababababab"
    build = c.venv_install_script(L, R, "h", R, wheelhouse=d, build=True).splitlines()
    pip = "PYTHONUNBUFFERED=1 /srv/demo/releases/20240131120000-1a2b3c4/.venv/bin/pip"
    opts = "--progress-bar off --disable-pip-version-check --no-input"
    reads = "-r /srv/demo/releases/20240131120000-1a2b3c4/requirements.txt"
    assert build[4:8] == [f"rm -rf {d}", f"mkdir -p {d}", f"{pip} wheel {opts} --wheel-dir {d} {reads}",
                          f"{pip} install {opts} --no-index --find-links {d} {reads}"]
    use = c.venv_install_script(L, R, "h", R, wheelhouse=d).splitlines()
    assert use[4] == f"{pip} install {opts} --no-index --find-links {d} {reads} || {pip} install {opts} {reads}"
    assert "wheel" not in c.venv_install_script(L, R, "h", R)
    with pytest.raises(ValueError):
        wh.directory(L, "x; whoami")
    odd = Layout("my app", "demo.settings", "requirements.txt")
    assert shlex.split(shlex.split(wh.remove(odd, "ab" * 32))[-1]) == ["rm", "-rf", "/srv/my app/wheelhouse/abababababababab"]
