"""roles.yaml `monitor:`: where alerts go and whether a lost node rebuilds itself.

    monitor:
      webhooks: [https://hooks.example.com/whipup]      # Alertmanager POSTs every alert (firing, resolved)
      email: {to: ops@example.com, from: whipup@example.com, smarthost: smtp.example.com:587,
              username: apikey, password_file: ~/.whipup/smtp-password}    # the last two: a relay with login
      recover: false        # true: NodeDown of an app or proxy node runs `fab recover ROLE` by itself
      backup_max_age: 26h   # BackupTooOld fires past this (null: no backup alert)
      receiver_port: 9097   # where the recovery receiver's tunnel listens on the monitor node (loopback)

The block does nothing while the `monitor` role has count 0 (the shipped roles.yaml); `count: 1` turns it on.
Parsed by config.py into `Config.monitor`; errors carry the key path (`monitor.webhooks[0]: ...`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..validate import Invalid, boolean, file_path, integer, list_of, mapping, shown, string, text_file

MONITOR_ROLE = "monitor"
NODE_EXPORTER = "prometheus-node-exporter"       # package and service, on every node while the role is on
NODE_EXPORTER_PORT = 9100
DEFAULT_BACKUP_MAX_AGE = 26 * 3600               # a nightly schedule plus two hours of slack
DEFAULT_RECEIVER_PORT = 9097
MONITOR_PORTS = {9090: "Prometheus", 9093: "Alertmanager", 9094: "Alertmanager's cluster port",
                 9100: "node_exporter", 9115: "blackbox_exporter"}      # what listens on the monitor node

# an http(s) URL of printable ASCII without spaces or quotes (it is rendered into YAML and never into a shell)
URL = re.compile(r"\Ahttps?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~!$&()*+,;=:@%/?-]*)?\Z", re.ASCII)
EMAIL = re.compile(r"\A[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\Z", re.ASCII)
HOST_PORT = re.compile(r"\A[A-Za-z0-9.-]+:[0-9]{1,5}\Z", re.ASCII)
USERNAME = re.compile(r"\A[A-Za-z0-9._%+@-]{1,128}\Z", re.ASCII)

_KEYS = ("webhooks", "email", "recover", "backup_max_age", "receiver_port")
_EMAIL_KEYS = ("to", "from", "smarthost", "require_tls", "username", "password_file")


@dataclass(frozen=True)
class EmailSettings:
    to: str
    sender: str                 # roles.yaml `from`
    smarthost: str              # host:port of the SMTP relay
    require_tls: bool = True
    username: str | None = None           # SMTP login, with the password read from `password_file` (this machine)
    password_file: Path | None = None     # copied to the monitor node 0640 root:prometheus (smtp.py), never rendered


@dataclass(frozen=True)
class MonitorConfig:
    webhooks: tuple[str, ...] = ()
    email: EmailSettings | None = None
    recover: bool = False
    backup_max_age: int | None = DEFAULT_BACKUP_MAX_AGE   # seconds; None: no BackupTooOld alert
    receiver_port: int = DEFAULT_RECEIVER_PORT


def parse_monitor(value: Any, path: str, root: Path = Path(".")) -> MonitorConfig:
    from ..appconfig import duration

    if value is None:
        return MonitorConfig()
    m = mapping(value, path, _KEYS)
    age = m.get("backup_max_age", DEFAULT_BACKUP_MAX_AGE)
    return MonitorConfig(
        webhooks=tuple(dict.fromkeys(list_of(m.get("webhooks", []), f"{path}.webhooks", _url))),
        email=None if m.get("email") is None else _email(m["email"], f"{path}.email", root),
        recover=boolean(m.get("recover", False), f"{path}.recover"),
        backup_max_age=None if age is None else duration(age, f"{path}.backup_max_age", hi=31 * 24 * 3600),
        receiver_port=_receiver_port(m.get("receiver_port", DEFAULT_RECEIVER_PORT), f"{path}.receiver_port"),
    )


def _receiver_port(value: Any, path: str) -> int:
    port = integer(value, path, 1024, 65535)
    if port in MONITOR_PORTS:
        raise Invalid(path, f"{port} is taken on the monitor node by {MONITOR_PORTS[port]}; choose another port")
    return port


def check_role(roles, path: str = "roles") -> None:
    """One monitor node at most: two Prometheus would each send every alert (and each start a recovery)."""
    for role in roles:
        if role.name == MONITOR_ROLE and role.count > 1:
            raise Invalid(f"{path}.{MONITOR_ROLE}.count", f"at most 1 (one Prometheus for the cluster), got {role.count}")


def _url(value: Any, path: str) -> str:
    text = string(value, path, what="an http(s) URL")
    if not URL.fullmatch(text):
        raise Invalid(path, f"expected an http(s) URL without spaces or quotes, got {shown(text)}")
    return text


def _email(value: Any, path: str, root: Path) -> EmailSettings:
    m = mapping(value, path, _EMAIL_KEYS, required=("to", "from", "smarthost"))
    if ("username" in m) != ("password_file" in m):
        given, missing = ("username", "password_file") if "username" in m else ("password_file", "username")
        raise Invalid(f"{path}.{missing}", f"required with {given} (an SMTP login is both)")
    username = None if m.get("username") is None else string(m["username"], f"{path}.username", USERNAME,
                                                                "an SMTP user name (printable, no spaces or quotes)")
    password = None
    if m.get("password_file") is not None:
        password = file_path(m["password_file"], f"{path}.password_file", root, must_exist=True)
        text = text_file(password, f"{path}.password_file").strip()
        if not text or "\n" in text:
            raise Invalid(f"{path}.password_file", f"{password}: expected the password on one line")
    return EmailSettings(
        to=string(m["to"], f"{path}.to", EMAIL, "an email address"),
        sender=string(m["from"], f"{path}.from", EMAIL, "an email address"),
        smarthost=string(m["smarthost"], f"{path}.smarthost", HOST_PORT, "host:port of an SMTP relay"),
        require_tls=boolean(m.get("require_tls", True), f"{path}.require_tls"),
        username=username, password_file=password,
    )


def enabled(cfg) -> bool:
    """Whether the cluster has a monitor node: the role exists with count 1."""
    return any(r.name == MONITOR_ROLE and r.count > 0 for r in cfg.roles)


def node_packages(cfg) -> tuple[str, ...]:
    """What every node installs for the monitor: node_exporter (nothing while the role is off)."""
    return (NODE_EXPORTER,) if enabled(cfg) else ()


def node_services(cfg) -> tuple[str, ...]:
    return (NODE_EXPORTER,) if enabled(cfg) else ()
