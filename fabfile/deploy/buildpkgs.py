"""PURE: a pip install that failed because a requirement had to be compiled (no wheel fits the host), read
from pip's output: which package, why (no compiler, a missing header, no pg_config, ...), the Debian
packages that likely fix it, and the deploy error that says so and names roles.yaml's `app.build_packages`.

configure installs `app.build_packages` (with build-essential and python3-dev) on the app and worker
nodes (`configure.desired.build_packages`).
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

# with any app.build_packages, configure installs these too: a C compiler and Python's headers
BASE = ("build-essential", "python3-dev")

# a header that a failed compile missed -> the Debian package that ships it (by file or directory)
HEADERS = {
    "Python.h": "python3-dev", "libpq-fe.h": "libpq-dev", "pg_config.h": "libpq-dev", "jpeglib.h": "libjpeg-dev",
    "zlib.h": "zlib1g-dev", "ffi.h": "libffi-dev", "openssl/": "libssl-dev", "libxml/": "libxml2-dev",
    "libxslt/": "libxslt1-dev", "mysql.h": "default-libmysqlclient-dev", "mysql/": "default-libmysqlclient-dev",
    "lber.h": "libldap2-dev", "ldap.h": "libldap2-dev", "sasl/": "libsasl2-dev", "yaml.h": "libyaml-dev",
    "cairo.h": "libcairo2-dev", "ft2build.h": "libfreetype-dev", "png.h": "libpng-dev", "tiffio.h": "libtiff-dev",
    "webp/": "libwebp-dev", "lcms2.h": "liblcms2-dev", "krb5.h": "libkrb5-dev", "gssapi/": "libkrb5-dev",
    "sqlite3.h": "libsqlite3-dev", "xmlsec/": "libxmlsec1-dev", "magic.h": "libmagic-dev",
}

# Pillow: `The headers or library files could not be found for jpeg,` -> its library's -dev package
PILLOW_LIBS = {"jpeg": "libjpeg-dev", "zlib": "zlib1g-dev", "freetype": "libfreetype-dev", "tiff": "libtiff-dev",
               "webp": "libwebp-dev", "lcms": "liblcms2-dev", "openjpeg": "libopenjp2-7-dev"}

# what a well-known project needs to build, whatever its own error says (a missing compiler hides the rest)
KNOWN = {
    "psycopg2": ("libpq-dev",), "psycopg-c": ("libpq-dev",), "pillow": ("libjpeg-dev", "zlib1g-dev"),
    "mysqlclient": ("default-libmysqlclient-dev", "pkg-config"), "lxml": ("libxml2-dev", "libxslt1-dev"),
    "python-ldap": ("libldap2-dev", "libsasl2-dev"), "cffi": ("libffi-dev",),
    "cryptography": ("libssl-dev", "libffi-dev", "rustc", "cargo"), "pycairo": ("libcairo2-dev", "pkg-config"),
    "xmlsec": ("libxmlsec1-dev", "pkg-config"), "gssapi": ("libkrb5-dev",),
}

# a package on PyPI with wheels that does the same
WHEELED = {"psycopg2": "psycopg2-binary"}

# (pattern, cause, Debian packages): the first that matches pip's output says why the build failed
CAUSES: tuple[tuple[re.Pattern[str], str, tuple[str, ...]], ...] = tuple(
    (re.compile(p), cause, pkgs) for p, cause, pkgs in (
        (r"pg_config executable not found|pg_config is required to build", "pg_config executable not found",
         ("libpq-dev",)),
        (r"mysql_config not found|Can not find valid pkg-config name", "mysql_config not found",
         ("default-libmysqlclient-dev", "pkg-config")),
        (r"command '([^']*)' failed: No such file or directory|unable to execute '([^']*)': No such file",
         "no C compiler ({0} not found)", ("build-essential",)),
        (r"can't find Rust compiler|Cargo, the Rust package manager, is not installed", "no Rust compiler",
         ("rustc", "cargo")),
        (r"pkg-config: not found|Did not find pkg-config|[Cc]ould not find pkg-config", "pkg-config not found",
         ("pkg-config",)),
    ))
_HEADER = re.compile(r"fatal error: ([\w./+-]+\.h): No such file or directory")
_PILLOW = re.compile(r"The headers or library files could not be found for (\w+)")
_FAILED_WHEEL = re.compile(r"ERROR: Failed building wheel for (\S+)")
_FAILED_TO_BUILD = re.compile(r"^Failed to build (\S+)", re.M)
_SUBPROCESS = "error: subprocess-exited-with-error"
_STARTED = re.compile(r"^(?:Collecting|Processing) (\S+)", re.M)


@dataclass(frozen=True)
class BuildFailure:
    package: str                   # the requirement pip could not build ("psycopg2")
    cause: str                     # why, in a few words ("" when pip's output does not say)
    debian: tuple[str, ...]        # Debian packages that likely make it build, beyond BASE
    evidence: str = ""             # the line of pip's output that says why
    missing: str = ""              # a file the build missed that no Debian package here is known to provide


def diagnose(output: str) -> BuildFailure | None:
    """The build failure in pip's `output` (stdout and stderr), or None when pip failed for another reason
    (no such version, the network, ...). A failed metadata step (`setup.py egg_info`) counts only with a
    cause this module knows, since a plain Python error there is no missing system package."""
    package = _failed_package(output)
    cause, debian, evidence = _cause(output)
    if package is None:
        if _SUBPROCESS not in output or not cause:
            return None
        package = _last_started(output)
        if package is None:
            return None
    header = _HEADER.search(output)
    missing = header.group(1) if header and cause.startswith(header.group(1)) and not debian else ""
    return BuildFailure(package, cause, tuple(dict.fromkeys(debian + KNOWN.get(package.lower(), ()))),
                        evidence or _last_output_line(output), missing)


def _last_output_line(output: str) -> str:
    """The build's last line before pip's `[end of output]` (its own error, mostly), or ''."""
    before = output[:output.find("[end of output]")] if "[end of output]" in output else ""
    lines = [line.strip() for line in before.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _failed_package(output: str) -> str | None:
    found = _FAILED_WHEEL.search(output) or _FAILED_TO_BUILD.search(output)
    return found.group(1) if found else None


def _last_started(output: str) -> str | None:
    """The package pip was working on when its subprocess failed: the last `Collecting X`/`Processing x`."""
    before = output[:output.find(_SUBPROCESS)]
    started = _STARTED.findall(before)
    return requirement_name(started[-1]) if started else None


def requirement_name(spec: str) -> str:
    """`psycopg2==2.9.9` -> psycopg2; `./sd/psycopg2-2.9.9.tar.gz` -> psycopg2; `./tiny` -> tiny."""
    if "/" in spec or re.search(r"\.(tar\.gz|tar\.bz2|zip|whl)\Z", spec):
        base = re.sub(r"\.(tar\.gz|tar\.bz2|zip|whl)\Z", "", posixpath.basename(spec.rstrip("/")))
        return re.sub(r"-\d.*\Z", "", base) or base
    found = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec)
    return found.group(0) if found else spec


def _line_of(output: str, found: re.Match[str]) -> str:
    start = output.rfind("\n", 0, found.start()) + 1
    end = output.find("\n", found.end())
    return output[start:end if end >= 0 else None].strip()


def _cause(output: str) -> tuple[str, tuple[str, ...], str]:
    """(why, the Debian packages for it, pip's line that says so); ("", (), "") when unknown."""
    for pattern, cause, debian in CAUSES:
        found = pattern.search(output)
        if found:
            program = next((g for g in found.groups() if g), "")
            return cause.format(posixpath.basename(program)), debian, _line_of(output, found)
    header = _HEADER.search(output)
    if header:
        name = header.group(1)
        package = HEADERS.get(name) or next((p for key, p in HEADERS.items()
                                             if key.endswith("/") and name.startswith(key)), None)
        return f"{name} not found", (package,) if package else (), _line_of(output, header)
    libs = list(dict.fromkeys(_PILLOW.findall(output)))
    if libs:
        return (f"the headers or library files for {', '.join(libs)} not found",
                tuple(PILLOW_LIBS[lib] for lib in libs if lib in PILLOW_LIBS), _line_of(output, _PILLOW.search(output)))
    return "", (), ""


def build_error(host: str, failure: BuildFailure, configured: tuple[str, ...]) -> str:
    """The deploy's error for `failure` on `host`: what failed to build and why (pip's own line), the Debian
    packages to add to roles.yaml's app.build_packages (`configured`: what it has now), and how to apply them."""
    have = set(configured) | (set(BASE) if configured else set())
    wanted = tuple(p for p in failure.debian if p not in have)
    lines = [f"{host}: pip install: {failure.package} has no wheel for this host, and building it from source "
             f"failed" + (f": {failure.cause}" if failure.cause else "")]
    if failure.evidence:
        lines.append(f"  pip: {failure.evidence}")
    if wanted or not (configured or failure.missing):
        own = tuple(p for p in wanted if p not in BASE)
        add = ", ".join(dict.fromkeys(configured + (own or ("python3-dev",))))
        lines.append(f"likely Debian packages: {' '.join(dict.fromkeys(BASE + wanted))}: add them to roles.yaml "
                     f"as app.build_packages: [{add}] (build-essential and python3-dev come with any)")
    if failure.missing:
        lines.append(f"whipup does not know which Debian package provides {failure.missing} (`apt-file search "
                     f"{failure.missing}` or packages.debian.org finds it): add that package to roles.yaml's "
                     f"app.build_packages" + (f" (now [{', '.join(configured)}])" if configured else ""))
    elif not wanted and configured:
        lines.append(f"roles.yaml's app.build_packages is [{', '.join(configured)}] (with build-essential and "
                     f"python3-dev): are they installed? (not if `fab configure` has not run since they were added)")
    lines.append("then `fab configure` (it installs them on the app and worker nodes) and deploy again"
                 + (f"; or require {WHEELED[failure.package.lower()]}, which has wheels"
                    if failure.package.lower() in WHEELED else ""))
    return "\n".join(lines)
