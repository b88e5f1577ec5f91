"""roles.yaml into frozen dataclasses, every value checked.

`load_config(path)` is the only entry point tasks need.  Every error is a
`ConfigError` whose message starts with the file name and the key path
(`roles.yaml: roles.app.ports[0].port: ...`), raised before any API call.
Relative paths resolve against the directory of roles.yaml (`Config.root`).
The generic readers (`string`, `integer`, `mapping`, ...) are in `fabfile.validate`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import exposure, names
from .monitor.config import MonitorConfig, check_role, parse_monitor
from .tls.config import NO_SITE, SiteConfig, parse_site, with_site_packages
from .dataconfig import PG_DATA, BackupConfig, VolumeConfig, parse_backup, parse_volume  # noqa: F401
from .appconfig import STRATEGIES, AppConfig, parse_app  # noqa: F401  (AppConfig, STRATEGIES: re-exported)
from .validate import (AMI_ID, AMI_OWNER, INSTANCE_TYPE, OWNER, PACKAGE, REGION, SERVICE,
                       SUBNET_ID, USER, VPC_ID, Invalid, absolute, boolean, choice, cidr, integer, join, key_file,
                       list_of, load_yaml, local_path, mapping, octal_mode, own_directory, relative, shown, string,
                       type_name, utf8_text)

TARGETS = ("sandbox", "aws")
CONNECT_MODES = ("auto", "public", "private")
ACTIONS = ("reload", "restart")
SSH_PORT = 22

_CLUSTER_NAME = re.compile(r"\A[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?\Z", re.ASCII)   # matched whole (fullmatch)
_ROLE_NAME = re.compile(r"\A[a-z][a-z0-9-]*\Z", re.ASCII)


class ConfigError(Exception):
    """roles.yaml (or a --target override) is not usable; the message names file and key."""


@dataclass(frozen=True)
class AmiSpec:
    id: str | None = None
    name: str | None = None
    owner: str = "self"
    auto: bool = False         # roles.yaml `ami: auto`: provision picks by the project's Python and fills in
                               # name and owner (provision/images.py: resolve); auto stays set, for messages

    @property
    def unresolved(self) -> bool:
        return self.auto and self.id is None and self.name is None


AUTO_AMI = AmiSpec(auto=True)


@dataclass(frozen=True)
class SshConfig:
    user: str
    public_key: Path | None
    private_key: Path | None
    connect: str


@dataclass(frozen=True)
class ClusterConfig:
    name: str
    region: str
    target: str
    ssh: SshConfig
    admin_cidr: str
    vpc: str
    subnet: str | None
    ami: AmiSpec
    state_dir: Path
    admin_public: bool = False     # SSH from admin_cidr 0.0.0.0/0 or ::/0 is meant
    site: SiteConfig = NO_SITE     # domain, aliases, tls, acme, hsts (fabfile/tls/config.py)


@dataclass(frozen=True)
class PortRule:
    port: int
    cidrs: tuple[str, ...]
    roles: tuple[str, ...]
    public: bool = False       # open to 0.0.0.0/0 or ::/0, and meant to be (roles.yaml `public: true`)


@dataclass(frozen=True)
class TemplateSpec:
    src: str
    dest: str
    notify: str | None
    action: str
    owner: str
    mode: str


@dataclass(frozen=True)
class RoleConfig:
    name: str
    count: int
    instance_type: str
    root_volume_gb: int
    elastic_ip: bool
    termination_protection: bool
    ports: tuple[PortRule, ...]
    packages: tuple[str, ...]
    templates: tuple[TemplateSpec, ...]
    services: tuple[str, ...]
    ami: AmiSpec               # the role's own, or the cluster's
    volume: VolumeConfig | None = None
    backup: BackupConfig = BackupConfig()


@dataclass(frozen=True)
class ConfigureSettings:
    templates_dir: Path        # the tree of .j2 files mirroring remote paths
    apt_max_age_hours: int     # apt-get update when the package lists are older than this


@dataclass(frozen=True)
class Config:
    path: Path
    root: Path
    cluster: ClusterConfig
    app: AppConfig
    packages: tuple[str, ...]
    roles: tuple[RoleConfig, ...]
    configure: ConfigureSettings
    monitor: MonitorConfig = MonitorConfig()   # roles.yaml `monitor:` (fabfile/monitor/config.py)

    @property
    def role_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.roles)

    def role(self, name: str) -> RoleConfig:
        for role in self.roles:
            if role.name == name:
                return role
        raise ConfigError(f"unknown role {name!r} (roles: {', '.join(sorted(self.role_names))})")


def load_config(path: str | Path) -> Config:
    """Read and validate roles.yaml; raise ConfigError naming the file and key."""
    path = Path(path)
    try:
        text = utf8_text(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"{path.name}: cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:    # not UTF-8: the message says what it is and how to fix it
        raise ConfigError(f"{path.name}: {exc}") from None
    return parse_config(text, path.resolve())


def parse_config(text: str, path: Path) -> Config:
    """Validate roles.yaml text; `path` names the file and anchors relative paths."""
    try:
        data = load_yaml(text)
        return _config(data, path)
    except Invalid as exc:
        raise ConfigError(f"{path.name}: {exc}") from None


def with_target(cfg: Config, target: str | None) -> Config:
    """The config with cluster.target replaced by a --target override (None: unchanged)."""
    if target is None:
        return cfg
    if target not in TARGETS:
        raise ConfigError(f"--target: unknown target {target!r} (expected one of: {', '.join(TARGETS)})")
    return replace(cfg, cluster=replace(cfg.cluster, target=target))


# --- sections ----------------------------------------------------------------------------

_TOP_KEYS = ("cluster", "app", "packages", "roles", "configure", "monitor")
_CLUSTER_KEYS = ("name", "region", "target", "ssh", "admin_cidr", "admin_public", "vpc", "subnet", "ami",
                 "state_dir", "domain", "aliases", "tls", "acme", "hsts")
_SSH_KEYS = ("user", "public_key", "private_key", "connect")
_AMI_KEYS = ("id", "name", "owner")
_ROLE_KEYS = ("count", "instance_type", "root_volume_gb", "elastic_ip", "termination_protection",
              "ports", "packages", "templates", "services", "ami", "volume", "backup")
_PORT_KEYS = ("port", "from", "public")
_TEMPLATE_KEYS = ("src", "dest", "notify", "action", "owner", "mode")
_CONFIGURE_KEYS = ("templates_dir", "apt_max_age_hours")


def _config(data: Any, path: Path) -> Config:
    if data is None:
        raise Invalid("", "empty file (expected the keys cluster, app, roles)")
    top = mapping(data, "", _TOP_KEYS, required=("cluster", "app", "roles"))
    root = path.parent
    cluster = _cluster(top["cluster"], "cluster", root)
    app = parse_app(top["app"], "app", root)
    packages = list_of(top.get("packages", []), "packages", _package)
    roles = with_site_packages(_roles(top["roles"], "roles", cluster.ami), cluster.site)
    configure = _configure(top.get("configure", {}), "configure", root)
    monitor = parse_monitor(top.get("monitor"), "monitor", root)
    check_role(roles)
    names.check_app_name(app.name, "app.name", cluster.ssh.user)
    names.check_cluster_names(cluster.name, (r.name for r in roles))
    return Config(path=path, root=root, cluster=cluster, app=app, packages=packages, roles=roles,
                  configure=configure, monitor=monitor)


def check_templates(cfg: Config) -> None:
    """Every template a role names exists: tasks that will configure hosts call this before any API call."""
    templates_dir = cfg.configure.templates_dir
    needed = [(f"roles.{r.name}.templates[{i}].src", t.src) for r in cfg.roles for i, t in enumerate(r.templates)]
    if needed and not templates_dir.is_dir():
        raise ConfigError(f"{cfg.path.name}: configure.templates_dir: {templates_dir} is not a directory")
    for where, src in needed:
        if not (templates_dir / src).is_file():
            raise ConfigError(f"{cfg.path.name}: {where}: no such template: {templates_dir / src}")


def _configure(value: Any, path: str, root: Path) -> ConfigureSettings:
    m = mapping(value, path, _CONFIGURE_KEYS)
    return ConfigureSettings(
        templates_dir=local_path(m.get("templates_dir", "templates"), f"{path}.templates_dir", root,
                                 what="a directory path"),
        apt_max_age_hours=integer(m.get("apt_max_age_hours", 24), f"{path}.apt_max_age_hours", 0, 24 * 365),
    )


def _cluster(value: Any, path: str, root: Path) -> ClusterConfig:
    m = mapping(value, path, _CLUSTER_KEYS, required=("name",))
    subnet = m.get("subnet")
    admin_cidr = cidr(m.get("admin_cidr", "10.255.255.254/32"), f"{path}.admin_cidr")
    admin_public = boolean(m.get("admin_public", False), f"{path}.admin_public")
    exposure.check_admin(admin_cidr, admin_public, path)
    return ClusterConfig(
        name=string(m["name"], f"{path}.name", _CLUSTER_NAME,
                    "a name of [a-z0-9-] (1-40 characters, no leading or trailing '-')"),
        region=string(m.get("region", "us-east-1"), f"{path}.region", REGION, "a region like us-east-1"),
        target=choice(m.get("target", "sandbox"), f"{path}.target", TARGETS),
        ssh=_ssh(m.get("ssh", {}), f"{path}.ssh", root),
        admin_cidr=admin_cidr,
        admin_public=admin_public,
        vpc=_vpc(m.get("vpc", "default"), f"{path}.vpc"),
        subnet=None if subnet is None else string(subnet, f"{path}.subnet", SUBNET_ID,
                                                  "a subnet id like subnet-0abc1234"),
        ami=_ami(m.get("ami", "auto"), f"{path}.ami"),
        state_dir=own_directory(local_path(m.get("state_dir", ".whipup"), f"{path}.state_dir", root,
                                           what="a directory path"), f"{path}.state_dir"),
        site=parse_site(m, path, root),
    )


def _vpc(value: Any, path: str) -> str:
    if value == "default":
        return value
    return string(value, path, VPC_ID, "'default' or a vpc id like vpc-0abc1234")


def _ssh(value: Any, path: str, root: Path) -> SshConfig:
    m = mapping(value, path, _SSH_KEYS)
    public, private = m.get("public_key"), m.get("private_key")
    if public is not None and private is None:
        raise Invalid(f"{path}.private_key", "required when public_key is set")
    if private is not None and public is None:
        raise Invalid(f"{path}.public_key", "required when private_key is set")
    return SshConfig(
        user=string(m.get("user", "admin"), f"{path}.user", USER, "a login name like admin"),
        public_key=None if public is None else key_file(public, f"{path}.public_key", root),
        private_key=None if private is None else key_file(private, f"{path}.private_key", root),
        connect=choice(m.get("connect", "auto"), f"{path}.connect", CONNECT_MODES),
    )


def _ami(value: Any, path: str) -> AmiSpec:
    if value == "auto":
        return AUTO_AMI
    if isinstance(value, str):
        raise Invalid(path, f"expected auto, {{id: ami-...}} or {{name: ..., owner: ...}}, got {shown(value)}")
    m = mapping(value, path, _AMI_KEYS)
    if "id" in m:
        if len(m) > 1:
            raise Invalid(path, "give either id, or name (with owner), not both")
        return AmiSpec(id=string(m["id"], f"{path}.id", AMI_ID, "an image id like ami-0abc1234"))
    if "name" not in m:
        raise Invalid(path, "expected {id: ami-...} or {name: ..., owner: ...}")
    return AmiSpec(
        name=string(m["name"], f"{path}.name", what="an image name pattern"),
        owner=string(m.get("owner", "self"), f"{path}.owner", AMI_OWNER,
                     "self, amazon, aws-marketplace or a 12-digit account id"),
    )


def _package(value: Any, path: str) -> str:
    return string(value, path, PACKAGE, "a Debian package name")


def _service(value: Any, path: str) -> str:
    return string(value, path, SERVICE, "a systemd service name")


def _roles(value: Any, path: str, cluster_ami: AmiSpec) -> tuple[RoleConfig, ...]:
    if not isinstance(value, dict) or not value:
        raise Invalid(path, f"expected a mapping of role names to roles, got {type_name(value)}")
    role_names = tuple(value)
    for name in role_names:
        if not isinstance(name, str) or not _ROLE_NAME.fullmatch(name):
            raise Invalid(join(path, str(name)), "role names must match [a-z][a-z0-9-]*")
    roles = tuple(_role(name, value[name], f"{path}.{name}", role_names, cluster_ami) for name in role_names)
    if not any(role.count for role in roles):
        raise Invalid(path, "every role has count 0: nothing would be launched")
    return roles


def _role(name: str, value: Any, path: str, role_names: tuple[str, ...], cluster_ami: AmiSpec) -> RoleConfig:
    m = mapping(value, path, _ROLE_KEYS, required=("instance_type",))
    services = list_of(m.get("services", []), f"{path}.services", _service)
    return RoleConfig(
        name=name,
        count=integer(m.get("count", 1), f"{path}.count", 0, 50),
        instance_type=string(m["instance_type"], f"{path}.instance_type", INSTANCE_TYPE,
                             "an instance type like t3.small"),
        root_volume_gb=integer(m.get("root_volume_gb", 8), f"{path}.root_volume_gb", 1, 16384),
        elastic_ip=boolean(m.get("elastic_ip", False), f"{path}.elastic_ip"),
        termination_protection=boolean(m.get("termination_protection", False), f"{path}.termination_protection"),
        ports=list_of(m.get("ports", []), f"{path}.ports", lambda v, p: _port_rule(v, p, role_names)),
        packages=list_of(m.get("packages", []), f"{path}.packages", _package),
        templates=list_of(m.get("templates", []), f"{path}.templates", lambda v, p: _template(v, p, services)),
        services=services,
        ami=_ami(m["ami"], f"{path}.ami") if "ami" in m else cluster_ami,
        volume=parse_volume(name, m["volume"], f"{path}.volume") if m.get("volume") is not None else None,
        backup=parse_backup(m.get("backup", {}), f"{path}.backup"),
    )


def _port_rule(value: Any, path: str, role_names: tuple[str, ...]) -> PortRule:
    m = mapping(value, path, _PORT_KEYS, required=("port", "from"))
    port = integer(m["port"], f"{path}.port", 1, 65535)
    public = boolean(m.get("public", False), f"{path}.public")
    if port == SSH_PORT:
        raise Invalid(f"{path}.port", "port 22 is managed by whipup (SSH from cluster.admin_cidr); remove this rule")
    sources = m["from"]
    if isinstance(sources, list):
        if not sources:
            raise Invalid(f"{path}.from", "expected a CIDR, a role name or a non-empty list of those")
        items = [(s, f"{path}.from[{i}]") for i, s in enumerate(sources)]
    else:
        items = [(sources, f"{path}.from")]
    checked = [(_source(source, where, role_names), where) for source, where in items]
    exposure.check_port_rule(port, checked, public, path)
    cidrs = [source for source, _ in checked if source not in role_names]
    roles = [source for source, _ in checked if source in role_names]
    return PortRule(port=port, cidrs=tuple(dict.fromkeys(cidrs)), roles=tuple(dict.fromkeys(roles)), public=public)


def _source(value: Any, path: str, role_names: tuple[str, ...]) -> str:
    """One `ports[].from`: a CIDR (normalised) or a role name."""
    if not isinstance(value, str) or not value:
        raise Invalid(path, f"expected a CIDR or a role name, got {type_name(value)}")
    if value[0] in "0123456789" or ":" in value:
        return cidr(value, path)
    if value not in role_names:
        raise Invalid(path, f"unknown role {shown(value)} (roles: {', '.join(sorted(role_names))})")
    return value


def _template(value: Any, path: str, services: tuple[str, ...]) -> TemplateSpec:
    m = mapping(value, path, _TEMPLATE_KEYS, required=("src",))
    src = relative(m["src"], f"{path}.src")
    if not src.endswith(".j2"):
        raise Invalid(f"{path}.src", f"expected a template name ending in .j2, got {src!r}")
    dest = absolute(m["dest"], f"{path}.dest") if m.get("dest") is not None else "/" + src[: -len(".j2")]
    notify = m.get("notify")
    if notify is not None:
        _service(notify, f"{path}.notify")
        if notify not in services:
            raise Invalid(f"{path}.notify",
                          f"{notify!r} is not one of this role's services ({', '.join(services) or 'none'})")
    return TemplateSpec(
        src=src,
        dest=dest,
        notify=notify,
        action=choice(m.get("action", "restart"), f"{path}.action", ACTIONS),
        owner=string(m.get("owner", "root"), f"{path}.owner", OWNER, "a user name or user:group"),
        mode=octal_mode(m.get("mode", "0644"), f"{path}.mode"),
    )
