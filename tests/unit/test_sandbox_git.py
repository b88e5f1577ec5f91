"""The local cloud's git server (gitserve.py) and `sandbox.git-publish` (gitpublish.py): the CGI environment,
request bodies and CGI output by exact value, the publish commands by exact argv, and the real thing over
loopback: a repository published, cloned and fetched through `git http-backend`, a push refused, and the
deploy's own fetch script (commands.fetch_script) run against it."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from fabfile.deploy import commands
from fabfile.layout import Layout
from fabfile.sandbox import gitpublish, gitserve
from fabfile.sandbox.errors import SandboxError
from fabfile.sandbox.gitserve import Refused, cgi_environ
from fabfile.sandbox.settings import load_settings

ROOT = Path("/st/git")
BASE_ENV = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "GIT_PROJECT_ROOT": "/st/git",
            "GIT_HTTP_EXPORT_ALL": "1", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
            "HOME": "/nonexistent", "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_PROTOCOL": "HTTP/1.1",
            "SERVER_SOFTWARE": "whipup-sandbox-git", "REMOTE_ADDR": "10.146.1.5"}


def test_settings_name_the_url_the_hosts_fetch_from():
    s = load_settings({"WHIPUP_SANDBOX_STATE": "/st", "WHIPUP_SANDBOX_BRIDGE_ADDRESS": "10.255.204.254",
                       "WHIPUP_SANDBOX_GIT_PORT": "8946"})
    assert s.git_url("demo") == "http://10.255.204.254:8946/demo.git"
    assert s.git_dir == Path("/st/git")
    assert load_settings({}).git_url("demo") == "http://10.255.255.254:8897/demo.git"


def test_cgi_environment_of_a_ref_advertisement():
    env = cgi_environ("GET", "/demo.git/info/refs?service=git-upload-pack", {"Git-Protocol": "version=2"},
                      "10.146.1.5", ROOT)
    assert env == {**BASE_ENV, "REQUEST_METHOD": "GET", "PATH_INFO": "/demo.git/info/refs",
                   "QUERY_STRING": "service=git-upload-pack", "HTTP_GIT_PROTOCOL": "version=2"}


def test_cgi_environment_of_an_upload_pack_request():
    headers = {"Content-Type": "application/x-git-upload-pack-request", "Content-Encoding": "gzip",
               "Authorization": "Basic c2VjcmV0", "Cookie": "x=1"}
    env = cgi_environ("POST", "/my-app_1.2.git/git-upload-pack", headers, "10.146.1.5", ROOT, 1234)
    assert env == {**BASE_ENV, "REQUEST_METHOD": "POST", "PATH_INFO": "/my-app_1.2.git/git-upload-pack",
                   "QUERY_STRING": "", "CONTENT_TYPE": "application/x-git-upload-pack-request",
                   "CONTENT_LENGTH": "1234", "HTTP_CONTENT_ENCODING": "gzip"}   # no other header reaches git


@pytest.mark.parametrize("method, target, status", [
    ("GET", "/demo.git/info/refs?service=git-receive-pack", 403),      # a push's first request
    ("POST", "/demo.git/git-receive-pack", 403),
    ("PUT", "/demo.git/info/refs?service=git-upload-pack", 403),
    ("POST", "/demo.git/info/refs?service=git-upload-pack", 405),
    ("GET", "/demo.git/git-upload-pack", 405),
    ("GET", "/demo.git/info/refs", 403),                               # the dumb protocol
    ("GET", "/demo.git/objects/info/packs", 404),
    ("GET", "/demo.git/HEAD", 404),
    ("GET", "/../etc.git/info/refs?service=git-upload-pack", 404),
    ("GET", "/a/b.git/info/refs?service=git-upload-pack", 404),
    ("GET", "/x;%20whoami.git/info/refs?service=git-upload-pack", 404),
    ("GET", "/x; whoami.git/info/refs?service=git-upload-pack", 404),
    ("GET", "/.git/info/refs?service=git-upload-pack", 404),
    ("GET", "/", 404),
])
def test_only_fetching_is_served(method, target, status):
    with pytest.raises(Refused) as info:
        cgi_environ(method, target, {}, "10.146.1.5", ROOT)
    assert info.value.status == status


def test_request_bodies_with_a_length_or_chunked():
    assert gitserve.read_body(io.BytesIO(b"0032want abcdefgh"), {"Content-Length": "9"}) == b"0032want "
    assert gitserve.read_body(io.BytesIO(b""), {}) == b""
    chunked = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\nnext request"
    rfile = io.BytesIO(chunked)
    assert gitserve.read_body(rfile, {"Transfer-Encoding": "chunked"}) == b"hello, world"
    assert rfile.read() == b"next request"
    with pytest.raises(Refused) as info:
        gitserve.read_body(io.BytesIO(b""), {"Content-Length": "101"}, limit=100)
    assert info.value.status == 413
    with pytest.raises(Refused):
        gitserve.read_body(io.BytesIO(b"65\r\n" + b"x" * 101 + b"\r\n0\r\n\r\n"), {"Transfer-Encoding": "chunked"},
                           limit=100)


def test_cgi_output_parsed():
    r = gitserve.parse_cgi(b"Status: 403 Forbidden\r\nContent-Type: text/plain\r\n\r\nnope\r\n\r\nmore")
    assert (r.status, r.headers, r.body) == (403, (("Content-Type", "text/plain"),), b"nope\r\n\r\nmore")
    r = gitserve.parse_cgi(b"Expires: Fri, 01 Jan 1980 00:00:00 GMT\nContent-Type: application/x-git\n\n\x00\x01")
    assert (r.status, r.headers, r.body) == (200, (("Expires", "Fri, 01 Jan 1980 00:00:00 GMT"),
                                                   ("Content-Type", "application/x-git")), b"\x00\x01")
    with pytest.raises(ValueError, match="no end of headers"):
        gitserve.parse_cgi(b"Content-Type: text/plain\r\n")
    with pytest.raises(ValueError, match="bad CGI header line"):
        gitserve.parse_cgi(b"garbage\r\n\r\n")


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "not-an-address"])
def test_the_server_never_listens_on_every_interface(address):
    with pytest.raises(SandboxError):
        gitserve.listen_address(address)


def test_the_bridge_address_is_listened_on():
    assert gitserve.listen_address("10.255.204.254") == "10.255.204.254"


@pytest.mark.parametrize("name", ["x; whoami", "demo.git", "", "-x", "a/b", "..", "é", "x" * 65])
def test_bad_repository_names(name):
    with pytest.raises(SandboxError, match="expected"):
        gitpublish.check_name(name)


def test_the_name_pattern_is_the_served_paths():
    for name in ("demo", "my-app_1.2", "x" * 64):
        assert gitpublish.check_name(name) == name
        assert gitserve.SMART_PATH.fullmatch(f"/{name}.git/info/refs").group(1) == name


def test_fab_does_not_import_the_server_module():
    """`python -m fabfile.sandbox.gitserve` runs it as __main__: fab's own imports must not have loaded it."""
    p = subprocess.run([sys.executable, "-c", "import sys, fabfile; print('fabfile.sandbox.gitserve' in sys.modules)"],
                       capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[2])
    assert p.stdout.strip() == "False"


def test_publish_commands():
    top, bare = Path("/src/x; whoami"), Path("/st/git/demo.git")
    assert gitpublish.publish_cmds(top, bare, "main", create=True) == [
        ["git", "init", "--bare", "--quiet", "/st/git/demo.git"],
        ["git", "-C", "/src/x; whoami", "push", "--quiet", "--no-verify", "--prune", "/st/git/demo.git",
         "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"],
        ["git", "--git-dir", "/st/git/demo.git", "symbolic-ref", "HEAD", "refs/heads/main"],
    ]
    assert gitpublish.publish_cmds(top, bare, None, create=False) == [
        ["git", "-C", "/src/x; whoami", "push", "--quiet", "--no-verify", "--prune", "/st/git/demo.git",
         "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"]]
    assert gitpublish.heads_cmd(bare) == ["git", "--git-dir", "/st/git/demo.git", "for-each-ref",
                                          "--format=%(refname:short) %(objectname)", "refs/heads"]
    assert gitpublish.parse_heads("main " + "a" * 40 + "\nfeature/x " + "b" * 40 + "\n") == (
        ("main", "a" * 40), ("feature/x", "b" * 40))
    assert gitpublish.default_name(Path("/src/demo.git")) == "demo"


# --- the real thing, over loopback -----------------------------------------------------------------

GIT_ENV = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
GIT_ENV.update(GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0", LC_ALL="C")


def git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, env=GIT_ENV,
                          capture_output=True, text=True, check=check)


def commit(repo: Path, text: str) -> str:
    (repo / "app.txt").write_text(text)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", text)
    return git(repo, "rev-parse", "HEAD").stdout.strip()


@pytest.fixture
def served(tmp_path):
    """A git server on 127.0.0.1 (an ephemeral port) over a sandbox state dir in tmp_path; its settings."""
    port_probe = gitserve.serve("127.0.0.1", 0, tmp_path / "st" / "git")
    port = port_probe.server_address[1]
    settings = load_settings({"WHIPUP_SANDBOX_STATE": str(tmp_path / "st"), "WHIPUP_SANDBOX_BRIDGE_ADDRESS": "127.0.0.1",
                              "WHIPUP_SANDBOX_GIT_PORT": str(port)})
    thread = threading.Thread(target=port_probe.serve_forever, daemon=True)
    thread.start()
    yield settings
    port_probe.shutdown()
    port_probe.server_close()


def test_publish_clone_fetch_and_a_refused_push(served, tmp_path):
    from fabfile.sandbox import control

    assert control.git_answers(served)                 # 127.0.0.1: this machine's own, so probed
    repo = tmp_path / "my app"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    first = commit(repo, "one")
    pub = gitpublish.publish(served, repo, "demo")
    assert (pub.url, pub.heads, pub.head) == (served.git_url("demo"), (("main", first),), "main")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", pub.url, str(clone))
    assert git(clone, "rev-parse", "HEAD").stdout.strip() == first
    second = commit(repo, "two")
    assert gitpublish.publish(served, repo, "demo").heads == (("main", second),)    # again: the new commit
    git(clone, "pull", "-q", "--ff-only")
    assert git(clone, "rev-parse", "HEAD").stdout.strip() == second
    (clone / "app.txt").write_text("pushed")
    git(clone, "commit", "-qam", "push attempt")
    pushed = git(clone, "push", "origin", "main", check=False)
    assert pushed.returncode != 0 and "403" in pushed.stderr
    assert git(served.git_dir / "demo.git", "rev-parse", "main").stdout.strip() == second


def test_the_deploy_fetch_script_fetches_from_the_server(served, tmp_path):
    repo = tmp_path / "app"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    sha = commit(repo, "one")
    url = gitpublish.publish(served, repo).url          # named after the directory: app
    assert url == served.git_url("app")
    layout = Layout("demo", "demo.settings", "requirements.txt", base=str(tmp_path / "srv"))
    Path(layout.root).mkdir(parents=True)
    p = subprocess.run(["sh", "-c", commands.fetch_script(layout, url, "main")], env=GIT_ENV, capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == sha
    missing = subprocess.run(["sh", "-c", commands.fetch_script(layout, served.git_url("nope"), "main")],
                             env=GIT_ENV, capture_output=True, text=True)
    assert missing.returncode != 0


def test_publish_refuses_what_it_cannot_publish(served, tmp_path):
    with pytest.raises(SandboxError, match="is not a directory"):
        gitpublish.publish(served, tmp_path / "missing")
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(SandboxError, match="is not a git work tree"):
        gitpublish.publish(served, plain)
    git(plain, "init", "-q", "-b", "main")
    with pytest.raises(SandboxError, match="has no commit yet"):
        gitpublish.publish(served, plain)
    (plain / "sub").mkdir()
    commit(plain, "one")
    with pytest.raises(SandboxError, match="is a subdirectory of the repository"):
        gitpublish.publish(served, plain / "sub")
    with pytest.raises(SandboxError, match="--name 'x; whoami': expected"):
        gitpublish.publish(served, plain, "x; whoami")
    assert not (served.git_dir / "x; whoami.git").exists()


def test_the_server_is_probed_only_on_an_address_of_this_machine(monkeypatch):
    """Without the bridge, the bridge address is not local: a probe would leave by the default route."""
    from fabfile.sandbox import control, net

    def no_connect(*a, **k):
        raise AssertionError("connected")

    monkeypatch.setattr(control.socket, "create_connection", no_connect)
    monkeypatch.setattr(net, "routed_via", lambda address: "eth0")
    assert control.git_answers(load_settings({"WHIPUP_SANDBOX_BRIDGE_ADDRESS": "10.255.255.254"})) is False
    monkeypatch.setattr(net, "routed_via", lambda address: None)
    assert control.git_answers(load_settings({"WHIPUP_SANDBOX_BRIDGE_ADDRESS": "10.255.255.254"})) is False
