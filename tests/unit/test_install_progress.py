"""Live progress of pip and apt-get: the pure line parsers (on real pip output captured from pip 23.2.1,
tests/unit/data/pip, and apt-get's line forms), the throttled reporter, the line stream `remote.run` feeds,
and the deploy's venv step printing progress lines over a fake host."""
from __future__ import annotations

from functools import reduce
from pathlib import Path

from deploy_fakes import World, make_cluster

from fabfile.install_progress import AptCounts, PipCounts, apt_step, apt_text, pip_live, pip_step, pip_text
from fabfile.remote import LineStream, Progress, run

DATA = Path(__file__).parent / "data" / "pip"


def fold(step, counts, lines):
    return reduce(step, lines, counts)


# --- pip ------------------------------------------------------------------------------------------------

def test_pip_counts_a_real_install_with_a_wheel_built_from_source():
    # django, psycopg2 (built: --no-binary), gunicorn and their 3 dependencies, from the index
    lines = (DATA / "django-psycopg2-gunicorn.pip23.txt").read_text().splitlines()
    assert fold(pip_step, PipCounts(), lines) == PipCounts(collected=6, downloaded=6, built=1, to_install=6,
                                                          installed=6)
    before_install = lines[:lines.index("Successfully built psycopg2")]
    building = lines[:lines.index("  Building wheel for psycopg2 (setup.py): started") + 1]
    assert pip_text(fold(pip_step, PipCounts(), building), 12.4) == "pip: 6 collected (6 downloaded), building psycopg2, 12 s"
    assert pip_text(fold(pip_step, PipCounts(), before_install), 30) == "pip: 6 collected (6 downloaded), 1 built, 30 s"
    assert pip_text(fold(pip_step, PipCounts(), lines[:-1]), 31) == \
        "pip: 6 collected (6 downloaded), 1 built, installing 6, 31 s"
    assert pip_text(fold(pip_step, PipCounts(), lines), 41.2) == \
        "pip: 6 collected (6 downloaded), 1 built, 6 installed, 41 s"


def test_pip_counts_a_failed_build_and_the_terminal_forms():
    lines = (DATA / "psycopg2-no-compiler.pip23.txt").read_text().splitlines()
    counts = fold(pip_step, PipCounts(), lines)
    assert counts == PipCounts(collected=1, failed="psycopg2")
    assert pip_text(counts, 3) == "pip: 1 collected, psycopg2 failed, 3 s"
    # pip on a terminal ends a step with ` ... done`; `Using cached` is no download; unknown lines change nothing
    tty = ["Collecting lxml", "  Using cached lxml-5.2.2.tar.gz (3.7 MB)",
           "  Building wheel for lxml (pyproject.toml) ... done", "Requirement already satisfied: pip in ./v",
           "Installing collected packages: lxml", "Successfully installed lxml-5.2.2"]
    assert fold(pip_step, PipCounts(), tty) == PipCounts(collected=1, built=1, to_install=1, installed=1)
    assert pip_text(PipCounts(), 0.2) == "pip: 0 collected, 0 s"


# --- apt-get --------------------------------------------------------------------------------------------

APT = """\
Hit:1 http://deb.debian.org/debian bookworm InRelease
Get:2 http://deb.debian.org/debian bookworm-updates InRelease [55.4 kB]
Reading package lists...
Reading package lists...
Building dependency tree...
The following NEW packages will be installed:
  libpq-dev libpq5 python3-dev
0 upgraded, 3 newly installed, 0 to remove and 0 not upgraded.
Need to get 1,019 kB of archives.
Get:1 http://deb.debian.org/debian bookworm/main amd64 libpq5 amd64 15.8-0+deb12u1 [191 kB]
Get:2 http://deb.debian.org/debian bookworm/main amd64 libpq-dev amd64 15.8-0+deb12u1 [143 kB]
Get:3 http://deb.debian.org/debian bookworm/main amd64 python3-dev amd64 3.11.2-1+b1 [26.2 kB]
Fetched 360 kB in 0s (4,213 kB/s)
Selecting previously unselected package libpq5:amd64.
(Reading database ... 23456 files and directories currently installed.)
Preparing to unpack .../libpq5_15.8-0+deb12u1_amd64.deb ...
Unpacking libpq5:amd64 (15.8-0+deb12u1) ...
Unpacking libpq-dev (15.8-0+deb12u1) ...
Unpacking python3-dev (3.11.2-1+b1) ...
Setting up libpq5:amd64 (15.8-0+deb12u1) ...
Setting up libpq-dev (15.8-0+deb12u1) ...
Processing triggers for libc-bin (2.36-9+deb12u7) ...
""".splitlines()


def test_apt_counts_lists_then_packages_fetched_unpacked_set_up():
    at = APT.index
    assert apt_text(fold(apt_step, AptCounts(), APT[:at("Reading package lists...")]), 2) == \
        "apt: updating package lists (2 sources), 2 s"
    assert apt_text(AptCounts(), 0) == "apt: reading package lists, 0 s"
    fetching = fold(apt_step, AptCounts(), APT[:at("Fetched 360 kB in 0s (4,213 kB/s)") - 1])
    assert apt_text(fetching, 4) == "apt: 3 packages: 2 fetched, 4 s"
    counts = fold(apt_step, AptCounts(), APT)
    assert counts == AptCounts(total=3, lists=2, fetched=3, unpacked=3, set_up=2)
    assert apt_text(counts, 9.6) == "apt: 3 packages: 3 fetched, 3 unpacked, 2 set up, 10 s"
    upgrade = fold(apt_step, AptCounts(), ["1 upgraded, 0 newly installed, 0 to remove and 5 not upgraded."])
    assert apt_text(upgrade, 1) == "apt: 1 package: 0 fetched, 1 s"


def test_apt_lists_count_again_from_zero_when_the_update_is_tried_again():
    lines = ["Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]",
             "Ign:2 http://deb.debian.org/debian bookworm-updates InRelease",
             "apt-get update failed; try 2 of 3",
             "Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]"]
    assert apt_text(fold(apt_step, AptCounts(), lines), 3) == "apt: updating package lists (1 sources), 3 s"


# --- the reporter and the stream ------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_live_says_at_most_every_few_seconds_and_once_at_the_end():
    clock, said = Clock(), []
    live = pip_live(said.append, every=5.0, clock=clock)
    for second, line in [(1, "Collecting a"), (4.9, "Collecting b"), (5.0, "Collecting c"), (7, "Collecting d"),
                         (9.9, "Collecting e"), (10.5, "Collecting f")]:
        clock.now = 100 + second
        live.line(line)
    assert said == ["pip: 3 collected, 5 s", "pip: 6 collected, 10 s"]
    clock.now = 112.2
    assert live.done() == "pip: 6 collected, 12 s" and said[-1] == "pip: 6 collected, 12 s"


def test_the_line_stream_splits_chunks_into_lines_whatever_their_boundaries():
    lines = []
    s = LineStream(lines.append)
    for chunk in ["Collecting Dja", "ngo\n  Downloading x (8 MB)\r\nProgress 10%\rProgress 20%\r", "\nInstalling"]:
        s.write(chunk)
    assert lines == ["Collecting Django", "  Downloading x (8 MB)", "Progress 10%", "Progress 20%", ""]
    s.close()
    assert lines[-1] == "Installing"


class StreamingConn:
    """A fabric-like connection whose command prints `chunks` (stdout) and `err` (stderr) as invoke would."""
    host, is_connected, transport = "10.0.0.7", True, None

    def __init__(self, chunks, err=""):
        self.chunks, self.err, self.kw = chunks, err, None

    def run(self, command, **kw):
        self.kw = kw
        if not kw["hide"]:
            for chunk in self.chunks:
                kw["out_stream"].write(chunk)
            kw["err_stream"].write(self.err)

        class R:
            exited, stdout, stderr = 0, "".join(self.chunks), self.err
        return R()


def test_run_streams_stdout_and_stderr_lines_to_on_line_and_still_keeps_the_output():
    lines = []
    conn = StreamingConn(["Collecting a\nColl", "ecting b\n", "Successfully installed a-1 b-2"], err="WARNING: x\n")
    result = run(conn, "pip install", step="pip install", on_line=lines.append)
    # stderr's line came while stdout's last line was unfinished: that one is handed over when the command ends
    assert lines == ["Collecting a", "Collecting b", "WARNING: x", "Successfully installed a-1 b-2"]
    assert result.stdout == "Collecting a\nCollecting b\nSuccessfully installed a-1 b-2"
    quiet = StreamingConn(["Collecting a\n"])
    run(quiet, "pip install", step="pip install")
    assert quiet.kw["hide"] is True and "out_stream" not in quiet.kw


# --- the deploy's venv step and configure's packages stage ----------------------------------------------

class Recorder(Progress):
    def __init__(self):
        super().__init__()
        self.lines: list[tuple[str, str, str]] = []

    def __call__(self, host, stage, message=""):
        self.lines.append((host, stage, message))


def test_a_deploy_that_installs_a_venv_prints_pip_progress(cfg):
    from dataclasses import replace

    from fabfile.deploy import engine
    from fabfile.deploy.planning import DeployOptions
    from deploy_scenarios import DEPLOYED, NOW, R2, SHA, SOURCE

    gitcfg = replace(cfg, app=replace(cfg.app, strategy="git", repo="https://example.com/demo.git"))
    cl, hosts, _ = make_cluster(gitcfg, World(SHA), DEPLOYED, R2)
    cl.progress = Recorder()
    hosts["app"].pip_output = (DATA / "django-psycopg2-gunicorn.pip23.txt").read_text()
    engine.deploy(cl, replace(SOURCE, requirements="Django>=5\n"), DeployOptions(), now=NOW)
    venv = [message for host, stage, message in cl.progress.lines if host == "t-app-0" and stage == "venv"]
    assert venv[0].startswith("pip install (") and venv[-1].startswith("install in ")
    assert venv[-2].startswith("pip: 6 collected (6 downloaded), 1 built, 6 installed, ") and len(venv) == 3


def test_configure_streams_apt_into_packages_progress_lines():
    from fabfile.configure.apply import Runner, apply_plan
    from fabfile.configure.plan import AptInstall, Plan

    conn = StreamingConn(["\n".join(APT) + "\n"])
    said = []
    plan = Plan((AptInstall(("libpq-dev", "libpq5", "python3-dev"), update_on_failure=True),), ())
    assert apply_plan(Runner(conn), plan, "systemd", progress=lambda stage, m="": said.append((stage, m))) == 3
    assert said == [("packages", "install 3 package(s): libpq-dev libpq5 python3-dev"),
                    ("packages", said[-1][1])]
    assert said[-1][1].startswith("apt: 3 packages: 3 fetched, 3 unpacked, 2 set up, ")
