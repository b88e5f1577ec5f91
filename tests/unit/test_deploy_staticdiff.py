"""Static files as a difference (deploy/staticdiff.py, fabfile/stream.py): the scripts run here under a temp
dir, the listing's parser and the difference, and the byte pipe between sessions."""
from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from fabfile.deploy import staticdiff as sd
from fabfile.layout import Layout
from fabfile.remote import RemoteError
from fabfile.stream import pipe

R1 = "20240131120000-1a2b3c4"
R2 = "20240131130000-5e6f708"
SHA = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"
LOCAL = "f" * 32


def script_of(cmd: str) -> list[str]:
    argv = shlex.split(cmd)
    assert argv[0] == "sudo" and "--" in argv
    return argv[argv.index("--") + 1:]


def local(cmd: str, stdin: str | bytes = "", check: bool = True) -> subprocess.CompletedProcess:
    """A `sudo -n -u USER -- sh -c SCRIPT` command's script, run with this machine's sh as this user."""
    p = subprocess.run(script_of(cmd), input=stdin.encode() if isinstance(stdin, str) else stdin,
                       capture_output=True, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\n{p.stdout.decode()}\n{p.stderr.decode()}")
    return p


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def lay(tmp_path) -> Layout:
    layout = Layout("demo", "demo.settings", "requirements.txt", base=str(tmp_path / "srv"))
    os.makedirs(layout.releases)
    return layout


@pytest.fixture
def repo(tmp_path, lay):
    """A project's work tree whose commits go to the layout's mirror: commit(files) -> sha."""
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    git(tmp_path, "init", "-q", "--bare", lay.mirror)

    def commit(files: dict[str, str]) -> str:
        for path, text in files.items():
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).write_text(text)
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", "c")
        git(work, "push", "-q", "-f", lay.mirror, "main")
        return git(work, "rev-parse", "HEAD")

    return commit


def key_of(lay, release, sha, current=None, local_key=LOCAL):
    return sd.parse_key(local(sd.reuse_or_collect(lay, release, sha, "", current, local_key)).stdout.decode())


def collected(lay, release, files: dict[str, str]) -> None:
    for path, text in files.items():
        p = Path(lay.release(release)) / "static" / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_collectstatic_is_skipped_only_when_static_sources_settings_and_venv_are_unchanged(lay, repo):
    base = {"app/static/app/site.css": "body{}\n", "app/templates/app/home.html": "<p>1</p>\n",
            "app/views.py": "x = 1\n", "mysite/settings/base.py": "DEBUG = False\n"}
    sha1 = repo(base)
    os.makedirs(lay.release(R1))
    key1, reused, _ = key_of(lay, R1, sha1)
    assert not reused and key1.startswith(LOCAL + "-")
    collected(lay, R1, {"app/site.css": "body{}\n"})
    assert local(sd.record(lay, R1, key1)).stdout.decode().strip() == "1"
    # a template and a view changed: the same key; static/ hard-linked from R1, its sums copied
    sha2 = repo({"app/templates/app/home.html": "<p>2</p>\n", "app/views.py": "x = 2\n"})
    os.makedirs(lay.release(R2))
    key2, reused, files = key_of(lay, R2, sha2, R1)
    assert (key2, reused, files) == (key1, True, 1)
    a, b = (Path(lay.release(r)) / "static" / "app" / "site.css" for r in (R1, R2))
    assert a.stat().st_ino == b.stat().st_ino
    assert (Path(lay.release(R2)) / sd.KEY).read_text().strip() == key1
    # a static file, the settings, or the venv changed: collect
    assert key_of(lay, R2, repo({"app/static/app/site.css": "body{color:red}\n"}), R1)[1:] == (False, 0)
    assert key_of(lay, R2, repo({"mysite/settings/base.py": "DEBUG = True\n"}), R1)[1:] == (False, 0)
    assert key_of(lay, R2, sha2, R1, local_key="e" * 32)[1:] == (False, 0)
    assert key_of(lay, R2, sha2, None)[1] is False          # no current release: nothing to reuse


def test_the_local_key_covers_the_venv_the_runtime_and_the_env():
    k = sd.local_key("v1", "rt", "A=1\n")
    assert len(k) == 32 and k == sd.local_key("v1", "rt", "A=1\n")
    assert len({k, sd.local_key("v2", "rt", "A=1\n"), sd.local_key("v1", "rt2", "A=1\n"),
                sd.local_key("v1", "rt", "A=2\n")}) == 4


def test_a_bad_key_or_release_never_reaches_a_command(lay):
    with pytest.raises(ValueError):
        sd.record(lay, R1, "x; whoami")
    with pytest.raises(ValueError):
        sd.sums(lay, "x; whoami")
    with pytest.raises(ValueError):
        sd.reuse_or_collect(lay, R1, SHA, "", "x; whoami", LOCAL)


def test_parse_sums_and_the_difference():
    text = f"{'a' * 40}  static/a.css\n{'b' * 40}  static/b c.js\n\n"
    assert sd.parse_sums(text) == {"static/a.css": "a" * 40, "static/b c.js": "b" * 40}
    for bad in (f"\\{'a' * 40}  static/a\\nb", f"{'a' * 40}  etc/passwd", f"{'a' * 40}  static/../x",
                "garbage"):
        assert sd.parse_sums(bad + "\n") is None, bad
    new = {"static/same": "1" * 40, "static/changed": "2" * 40, "static/added": "3" * 40}
    old = {"static/same": "1" * 40, "static/changed": "9" * 40, "static/gone": "4" * 40}
    assert sd.difference(new, old) == sd.Difference(("static/changed", "static/gone"),
                                                    ("static/added", "static/changed"), 1)
    assert sd.difference(new, None) == sd.Difference((), tuple(sorted(new)), 0)


def test_a_proxy_gets_only_what_it_lacks_and_links_the_rest(tmp_path, lay):
    """app node 0's R2 against a proxy's R1: shared files hard-linked, a changed and an added file shipped
    in the tar, a file R2 dropped gone; the sums travel with the files."""
    collected(lay, R2, {"a.css": "same\n", "b.js": "new b\n", "c.png": "added\n", "-odd name.txt": "x\n"})
    new = sd.parse_sums(local(sd.sums(lay, R2)).stdout.decode())
    assert set(new) == {"static/a.css", "static/b.js", "static/c.png", "static/-odd name.txt"}
    proxy = Layout("demo", "demo.settings", "requirements.txt", base=str(tmp_path / "proxy"))
    os.makedirs(proxy.releases)
    collected(proxy, R1, {"a.css": "same\n", "b.js": "old b\n", "gone.css": "old\n"})
    old = sd.parse_sums(local(sd.proxy_sums(proxy, R1)).stdout.decode())      # no STATIC_SUMS: computed
    d = sd.difference(new, old)
    assert d.ship == ("static/-odd name.txt", "static/b.js", "static/c.png") and d.linked == 1
    local(sd.proxy_prepare(proxy, R2, R1), stdin="".join(p + "\n" for p in d.remove))
    tar = local(sd.pack(lay, R2), stdin="".join(p + "\n" for p in (*d.ship, sd.SUMS))).stdout
    local(sd.unpack(proxy, R2, SHA, None, R1), stdin=tar)
    rel = Path(proxy.release(R2))
    assert sorted(str(p.relative_to(rel / "static")) for p in (rel / "static").rglob("*")) == \
        ["-odd name.txt", "a.css", "b.js", "c.png"]
    assert (rel / "static" / "b.js").read_text() == "new b\n"
    assert (rel / "static" / "a.css").stat().st_ino == (Path(proxy.release(R1)) / "static" / "a.css").stat().st_ino
    assert (Path(proxy.release(R1)) / "static" / "b.js").read_text() == "old b\n"      # R1 untouched
    assert sd.parse_sums(local(sd.proxy_sums(proxy, R2)).stdout.decode()) == new       # its STATIC_SUMS now
    assert (rel / "REVISION").read_text() == SHA + "\n" and (rel / ".whipup-partial").exists()


def test_a_first_release_on_a_proxy_gets_every_file(tmp_path, lay):
    collected(lay, R1, {"a.css": "a\n"})
    local(sd.sums(lay, R1))
    proxy = Layout("demo", "demo.settings", "requirements.txt", base=str(tmp_path / "proxy"))
    os.makedirs(proxy.releases)
    local(sd.proxy_prepare(proxy, R1, None))
    local(sd.unpack(proxy, R1, SHA), stdin=local(sd.pack(lay, R1), stdin=f"static/a.css\n{sd.SUMS}\n").stdout)
    assert (Path(proxy.release(R1)) / "static" / "a.css").read_text() == "a\n"


# --- the pipe between sessions ------------------------------------------------------------------

class Channel:
    """A session whose command is run here by sh once its stdin ends."""

    def __init__(self, log: list):
        self.log, self.command, self.stdin, self.proc = log, "", b"", None
        self.out = b""

    def exec_command(self, command):
        self.command = command

    def sendall(self, data):
        self.stdin += data

    def shutdown_write(self):
        self.proc = subprocess.run(["sh", "-c", self.command], input=self.stdin, capture_output=True, timeout=30)
        self.out = self.proc.stdout
        self.log.append((self.command, len(self.stdin)))

    def recv(self, n):
        data, self.out = self.out[:n], self.out[n:]
        return data

    def recv_stderr(self, n):
        data, self.proc.stderr = self.proc.stderr[:n], self.proc.stderr[n:]
        return data

    def recv_exit_status(self):
        return self.proc.returncode

    def close(self):
        pass


class Conn:
    is_connected = True

    def __init__(self, host, log):
        self.host, self.log = host, log
        self.transport = self

    def open_session(self):
        return Channel(self.log)


def test_pipe_copies_the_bytes_to_every_target_and_names_a_failing_one():
    log = []
    src, a, b = Conn("app-0", log), Conn("proxy-0", log), Conn("proxy-1", log)
    data = bytes(range(256)) * 4096                  # 1 MiB, every byte value: no text decoding on the way
    piped = pipe(src, "head -c 1048576 /dev/zero | tr '\\000' x; cat", [(a, "sha1sum"), (b, "wc -c")],
                 step="copy static files", stdin=data.decode("latin-1"))
    assert piped.nbytes > 1048576
    assert dict(piped.outputs)["proxy-1"].strip() == str(piped.nbytes)
    with pytest.raises(RemoteError) as err:
        pipe(src, "echo hi", [(a, "cat >/dev/null; echo broken >&2; exit 3")], step="copy static files")
    assert err.value.host == "proxy-0" and err.value.exit_code == 3 and "broken" in err.value.output
    with pytest.raises(RemoteError) as err:
        pipe(src, "exit 2", [(a, "cat")], step="copy static files")
    assert err.value.host == "app-0" and err.value.exit_code == 2


def test_a_wheelhouse_travels_as_a_tar_and_is_sized_and_removed(tmp_path, lay):
    from fabfile.deploy import wheelhouse as wh

    h = "ab" * 32
    d = Path(wh.directory(lay, h))
    d.mkdir(parents=True)
    (d / "a-1.0-py3-none-any.whl").write_bytes(b"PK\x03\x04" + bytes(range(256)) * 16)
    (d / "b-2.0-py3-none-any.whl").write_bytes(b"PK\x03\x04b")
    assert local(wh.size(lay, h)).stdout.decode().split()[1] == "2"
    other = Layout("demo", "demo.settings", "requirements.txt", base=str(tmp_path / "other"))
    os.makedirs(other.root)
    kb = local(wh.unpack(other, h), stdin=local(wh.pack(lay, h)).stdout).stdout.decode().strip()
    got = Path(wh.directory(other, h))
    assert int(kb) > 0 and (got / "a-1.0-py3-none-any.whl").read_bytes() == (d / "a-1.0-py3-none-any.whl").read_bytes()
    local(wh.remove(other, h))
    assert not got.exists() and d.exists()
