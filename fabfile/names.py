"""PURE: the names roles.yaml gives, checked against the systems they become names in.

`app.name` becomes
- a Linux system user and its group (`useradd --system --user-group`): at most 32 characters, and not an
  account or group a Debian or Ubuntu cloud image already has (the app would run as that account, or
  useradd would fail on the hosts after provisioning), nor `cluster.ssh.user`, the nodes' login user;
- a PostgreSQL role and database: at most 63 bytes, not the superuser `postgres`, a template database,
  a `pg_` name (reserved) or a word that pg_hba.conf or the role grammar reads specially (`all`, `public`...);
- supervisor program names `<app>-web` / `<app>-worker` (its pattern, [a-z][a-z0-9_]*, keeps them plain).

`cluster.name` and the role names become AWS names and host names: tag values (at most 256 characters),
security group names `<cluster>-<role>` (at most 255, not starting `sg-`), the key pair `<cluster>-key`
(255), and node names `<cluster>-<role>-<index>`, which are host names: one DNS label, at most 63.

Each check raises `Invalid` naming the key path.
"""
from __future__ import annotations

from typing import Iterable

from .naming import group_name, key_pair_name, node_name
from .validate import Invalid, join

LINUX_NAME_MAX = 32        # useradd / groupadd (UT_NAMESIZE)
POSTGRES_NAME_MAX = 63     # NAMEDATALEN - 1, in bytes
AWS_NAME_MAX = 255         # security group and key pair names
TAG_VALUE_MAX = 256
HOST_LABEL_MAX = 63        # one DNS label (RFC 1035)
LARGEST_INDEX = 99         # count is at most 50, and create-node adds at the lowest free index: two digits

# Accounts of a Debian 12 / Ubuntu cloud image with the packages whipup installs (base-passwd, systemd,
# openssh, postgresql, redis, nginx's www-data), and the default login users of common cloud images.
SYSTEM_USERS = frozenset("""
    root daemon bin sys sync games man lp mail news uucp proxy www-data backup list irc gnats nobody _apt
    messagebus sshd polkitd tss uuidd tcpdump _chrony chrony ntp ntpsec _rpc statd dnsmasq avahi usbmux
    syslog lxd landscape pollinate fwupd-refresh dhcpcd _laurel postgres redis nginx
    admin debian ubuntu ec2-user centos fedora cloud-user
""".split())
SYSTEM_GROUPS = frozenset("""
    root daemon bin sys adm tty disk lp mail news uucp man proxy kmem dialout fax voice cdrom floppy tape sudo
    audio dip www-data backup operator list irc src gnats shadow utmp video sasl plugdev staff games users
    nogroup input sgx kvm render crontab netdev messagebus _ssh ssl-cert postgres redis lxd admin wheel
    docker polkitd tss uuidd tcpdump _chrony
""".split())
SYSTEM_PREFIXES = ("systemd-",)

POSTGRES_SPECIAL = {
    "template0": "a PostgreSQL template database",
    "template1": "a PostgreSQL template database",
    "public": "a reserved PostgreSQL role name",
    "none": "a reserved PostgreSQL role name",
    "current_user": "a PostgreSQL role keyword",
    "current_role": "a PostgreSQL role keyword",
    "session_user": "a PostgreSQL role keyword",
    "all": "pg_hba.conf's word for every database and every user",
    "sameuser": "a pg_hba.conf keyword",
    "samerole": "a pg_hba.conf keyword",
    "samegroup": "a pg_hba.conf keyword",
    "replication": "a pg_hba.conf keyword (replication connections)",
}


def check_app_name(name: str, path: str, ssh_user: str) -> None:
    """`app.name` (at key `path`) can be the app's Linux user and group and its PostgreSQL role and database."""
    if len(name) > LINUX_NAME_MAX:
        raise Invalid(path, f"{name[:20]!r}... is {len(name)} characters; it names the app's Linux user and "
                            f"group, and useradd allows {LINUX_NAME_MAX}")
    if len(name.encode("utf-8")) > POSTGRES_NAME_MAX:
        raise Invalid(path, f"{name[:20]!r}... is longer than PostgreSQL's {POSTGRES_NAME_MAX} bytes for a role")
    if name == "postgres":
        raise Invalid(path, "'postgres' is the PostgreSQL superuser's name; pick another")
    if name == ssh_user:
        raise Invalid(path, f"{name!r} is cluster.ssh.user, the nodes' login user; pick another")
    if name.startswith("pg_"):
        raise Invalid(path, f"{name!r}: PostgreSQL reserves role names starting with pg_; pick another")
    if name in POSTGRES_SPECIAL:
        raise Invalid(path, f"{name!r} is {POSTGRES_SPECIAL[name]}; pick another")
    if name in SYSTEM_USERS or name.startswith(SYSTEM_PREFIXES):
        raise Invalid(path, f"{name!r} is a system account on Debian and Ubuntu images (the app would run as "
                            f"it); pick another")
    if name in SYSTEM_GROUPS:
        raise Invalid(path, f"{name!r} is a system group on Debian and Ubuntu images (useradd --user-group "
                            f"makes a group of the app's name); pick another")


def check_cluster_names(cluster: str, roles: Iterable[str], path: str = "roles") -> None:
    """The AWS and host names made of `cluster` and each role name fit their limits; Invalid names
    `cluster.name` or the role (`roles.<role>`) to shorten."""
    if cluster.startswith("sg-"):
        raise Invalid("cluster.name", f"{cluster!r}: security group names <cluster>-<role> may not start "
                                      f"with 'sg-' on AWS; pick another")
    if len(key_pair_name(cluster)) > AWS_NAME_MAX:
        raise Invalid("cluster.name", f"the key pair name is longer than AWS's {AWS_NAME_MAX} characters")
    for role in roles:
        where = join(path, role)
        for what, name, limit in (("the tag value whipup:role", role, TAG_VALUE_MAX),
                                  ("the security group name", group_name(cluster, role), AWS_NAME_MAX)):
            if len(name) > limit:
                raise Invalid(where, f"{what} {name[:40]!r}... is {len(name)} characters; AWS allows {limit}: "
                                     f"shorten the role name")
        node = node_name(cluster, role, LARGEST_INDEX)
        if len(node) > HOST_LABEL_MAX:
            raise Invalid(where, f"node names <cluster>-<role>-<index> are host names of at most "
                                 f"{HOST_LABEL_MAX} characters, and {node!r} is {len(node)}: shorten the role "
                                 f"name or cluster.name")
