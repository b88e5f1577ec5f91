"""A requirement pip must compile and cannot: the package, the cause, the Debian packages and the roles.yaml
key in the deploy's error; configure installing app.build_packages on the app and worker roles.

The pip outputs in data/pip are real, captured once with pip 23.2.1 (Debian 12 ships 23.0.1), Python 3.11,
PIP_CONFIG_FILE=/dev/null, `--no-index --no-build-isolation --progress-bar off`, output to a file:
  psycopg2-no-pg_config   psycopg2 2.9.9's sdist with PATH lacking pg_config
  psycopg2-no-compiler    the same with CC=/nonexistent/gcc (as on a host without build-essential)
  pillow-no-compiler      pillow 10.4.0's sdist, CC=/nonexistent/gcc
  missing-header          a one-file C extension (setup.py) including <whipup_absent.h>, real gcc
  django-psycopg2-gunicorn  a successful install from the index with psycopg2 built (--no-binary psycopg2)
One more is made at test time: pip itself (this venv's) building a tiny sdist without a compiler.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from deploy_fakes import NODES, World, make_cluster

from fabfile.configure.desired import build_packages, desired_state
from fabfile.deploy.buildpkgs import BuildFailure, build_error, diagnose, requirement_name

DATA = Path(__file__).parent / "data" / "pip"


def captured(name: str) -> str:
    return (DATA / f"{name}.pip23.txt").read_text()


def test_each_real_failure_names_the_package_the_cause_and_the_debian_packages():
    assert diagnose(captured("psycopg2-no-pg_config")) == BuildFailure(
        "psycopg2", "pg_config executable not found", ("libpq-dev",), "Error: pg_config executable not found.")
    assert diagnose(captured("psycopg2-no-compiler")) == BuildFailure(
        "psycopg2", "no C compiler (gcc not found)", ("build-essential", "libpq-dev"),
        "error: command '/nonexistent/gcc' failed: No such file or directory")
    assert diagnose(captured("pillow-no-compiler")) == BuildFailure(
        "pillow", "no C compiler (gcc not found)", ("build-essential", "libjpeg-dev", "zlib1g-dev"),
        "error: command '/nonexistent/gcc' failed: No such file or directory")
    assert diagnose(captured("missing-header")) == BuildFailure(
        "tinyext", "whipup_absent.h not found", (), "tinyext.c:2:10: fatal error: whipup_absent.h: No such file "
        "or directory", missing="whipup_absent.h")


def test_a_success_or_a_failure_that_is_no_build_is_not_diagnosed():
    assert diagnose(captured("django-psycopg2-gunicorn")) is None
    assert diagnose("ERROR: Could not find a version that satisfies the requirement Djnago==9.9 (from versions: "
                    "none)\nERROR: No matching distribution found for Djnago==9.9\n") is None
    # a setup.py that fails in plain Python during egg_info: no missing system package to name
    assert diagnose("Collecting foo==1.0\n  Preparing metadata (setup.py): started\n  error: subprocess-exited-"
                    "with-error\n      NameError: name 'x' is not defined\nerror: metadata-generation-failed\n") is None


def test_headers_and_libraries_map_to_debian_packages():
    def one(output: str) -> BuildFailure:
        found = diagnose("Collecting x\n  error: subprocess-exited-with-error\n" + output)
        assert found is not None
        return found

    assert one("      psycopg/psycopg.h:36:10: fatal error: Python.h: No such file or directory\n"
               "  ERROR: Failed building wheel for psycopg2\n").debian == ("python3-dev", "libpq-dev")
    assert one("src/lxml/etree.c:96:10: fatal error: libxml/xmlversion.h: No such file or directory\n"
               "  ERROR: Failed building wheel for lxml\n").debian == ("libxml2-dev", "libxslt1-dev")
    pillow = one("      The headers or library files could not be found for jpeg,\n"
                 "      a required dependency when compiling Pillow from source.\n")
    assert (pillow.package, pillow.cause, pillow.debian) == ("x", "the headers or library files for jpeg not found",
                                                             ("libjpeg-dev",))
    assert one("      /bin/sh: 1: mysql_config: not found\n      OSError: mysql_config not found\n"
               "  ERROR: Failed building wheel for mysqlclient\n").debian == ("default-libmysqlclient-dev",
                                                                              "pkg-config")
    assert one("  unable to execute 'x86_64-linux-gnu-gcc': No such file or directory\n").cause == \
        "no C compiler (x86_64-linux-gnu-gcc not found)"


def test_requirement_names_from_pip_lines():
    assert [requirement_name(s) for s in ("psycopg2==2.9.9", "asgiref<4,>=3.6.0", "./sd/psycopg2-2.9.9.tar.gz",
                                          "./tiny", "/tmp/x/lxml-5.2.2-cp311-cp311-linux_x86_64.whl")] == \
        ["psycopg2", "asgiref", "psycopg2", "tiny", "lxml"]


def test_the_error_names_the_package_the_debian_packages_and_the_roles_yaml_key():
    assert build_error("t-app-0", diagnose(captured("psycopg2-no-pg_config")), ()) == (
        "t-app-0: pip install: psycopg2 has no wheel for this host, and building it from source failed: "
        "pg_config executable not found\n"
        "  pip: Error: pg_config executable not found.\n"
        "likely Debian packages: build-essential python3-dev libpq-dev: add them to roles.yaml as "
        "app.build_packages: [libpq-dev] (build-essential and python3-dev come with any)\n"
        "then `fab configure` (it installs them on the app and worker nodes) and deploy again; "
        "or require psycopg2-binary, which has wheels")
    # what is configured already counts (build-essential comes with it), and stays in the suggestion
    pillow = build_error("t-app-0", diagnose(captured("pillow-no-compiler")), ("libjpeg-dev",))
    assert "app.build_packages: [libjpeg-dev, zlib1g-dev]" in pillow.splitlines()[2]
    done = build_error("t-app-0", diagnose(captured("pillow-no-compiler")), ("libjpeg-dev", "zlib1g-dev"))
    assert done.splitlines()[2] == ("roles.yaml's app.build_packages is [libjpeg-dev, zlib1g-dev] (with "
                                    "build-essential and python3-dev): are they installed? (not if `fab "
                                    "configure` has not run since they were added)")
    unknown = build_error("t-app-0", diagnose(captured("missing-header")), ())
    assert unknown.splitlines()[2] == (
        "whipup does not know which Debian package provides whipup_absent.h (`apt-file search whipup_absent.h` "
        "or packages.debian.org finds it): add that package to roles.yaml's app.build_packages")


BACKEND = '''\
"""Builds tinyext's C extension with setuptools' build_ext (this venv may lack the `wheel` package)."""
import os
from setuptools import Distribution, Extension


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    os.makedirs(os.path.join(metadata_directory, "tinyext-1.0.dist-info"))
    with open(os.path.join(metadata_directory, "tinyext-1.0.dist-info", "METADATA"), "w") as f:
        f.write("Metadata-Version: 2.1\\nName: tinyext\\nVersion: 1.0\\n")
    return "tinyext-1.0.dist-info"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    dist = Distribution({"name": "tinyext", "ext_modules": [Extension("tinyext", ["tinyext.c"])]})
    dist.script_name = "setup.py"
    dist.run_command("build_ext")
    raise SystemExit("no wheel: this backend only compiles")
'''


def test_pip_itself_failing_to_compile_without_a_compiler_is_diagnosed(tmp_path):
    pytest.importorskip("setuptools")
    src = tmp_path / "tinyext"
    src.mkdir()
    (src / "pyproject.toml").write_text('[build-system]\nrequires = []\nbuild-backend = "backend"\n'
                                        'backend-path = ["."]\n')
    (src / "backend.py").write_text(BACKEND)
    (src / "tinyext.c").write_text("#include <Python.h>\n")
    env = {**os.environ, "CC": "/nonexistent/gcc", "PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "",
           "PIP_NO_INPUT": "1"}
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-build-isolation", "--no-deps",
                        "--disable-pip-version-check", "--progress-bar", "off", "--target", str(tmp_path / "t"),
                        str(src)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    found = diagnose(r.stdout + r.stderr)
    assert found is not None, r.stdout + r.stderr
    assert (found.package, found.cause, found.debian) == ("tinyext", "no C compiler (gcc not found)",
                                                          ("build-essential",))
    assert "app.build_packages: [python3-dev]" in build_error("t-app-0", found, ())


def test_a_deploy_whose_pip_cannot_build_says_so_and_keeps_the_previous_release(cfg):
    from fabfile.deploy import engine
    from fabfile.deploy.planning import DeployOptions
    from deploy_scenarios import DEPLOYED, NOW, R2, SHA, SOURCE

    gitcfg = replace(cfg, app=replace(cfg.app, strategy="git", repo="https://example.com/demo.git"))
    cl, hosts, _ = make_cluster(gitcfg, World(SHA), DEPLOYED, R2)
    hosts["app"].fail("pip install", message=captured("psycopg2-no-pg_config"))
    with pytest.raises(Exception) as info:
        engine.deploy(cl, replace(SOURCE, requirements="psycopg2==2.9.9\n"), DeployOptions(), now=NOW)
    message = str(info.value)
    assert "t-app-0: pip install: psycopg2 has no wheel for this host" in message
    assert "app.build_packages: [libpq-dev]" in message and "fab configure" in message
    assert message.endswith("nothing was switched: the previous release keeps serving")
    assert hosts["app"].current == R2


def test_configure_installs_build_packages_with_a_compiler_on_the_app_and_worker_roles(cfg):
    assert build_packages(cfg, "app") == ()          # the shipped roles.yaml sets none
    with_libpq = replace(cfg, app=replace(cfg.app, build_packages=("libpq-dev", "python3-dev")))
    assert build_packages(with_libpq, "app") == build_packages(with_libpq, "worker") == \
        ("build-essential", "python3-dev", "libpq-dev")
    assert build_packages(with_libpq, "proxy") == build_packages(with_libpq, "db") == ()
    for role in ("app", "worker", "proxy", "db"):
        plain = desired_state(cfg, NODES[role], (), db_password=None).packages
        built = desired_state(with_libpq, NODES[role], (), db_password=None).packages
        assert built == (plain + tuple(p for p in ("build-essential", "python3-dev", "libpq-dev") if p not in plain)
                         if role in ("app", "worker") else plain), role
