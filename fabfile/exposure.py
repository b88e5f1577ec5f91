"""PURE: what roles.yaml opens to the whole internet, and the word the user must give for it.

A port rule from 0.0.0.0/0 or ::/0 on any port but 80 and 443 (the database's 5432, the broker's 6379,
anything) is refused unless the rule says `public: true`; SSH from a `cluster.admin_cidr` of 0.0.0.0/0 or
::/0 needs `cluster.admin_public: true`.  A `public: true` where nothing is open to the world is refused
too (it would say something untrue).  What is allowed that way is printed by provision each run
(`public_warnings`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from .validate import WORLD, Invalid

if TYPE_CHECKING:
    from .config import Config

WEB_PORTS = (80, 443)     # open to the world without a word: what a site is for


def world(cidrs: Iterable[str]) -> tuple[str, ...]:
    """The CIDRs of `cidrs` that are the whole internet (normalised, as `validate.cidr` returns them)."""
    return tuple(c for c in cidrs if c in WORLD)


def check_port_rule(port: int, sources: list[tuple[str, str]], public: bool, path: str) -> None:
    """`sources`: (normalised CIDR or role name, its key path) of the rule at `path`."""
    open_to = [(source, where) for source, where in sources if source in WORLD]
    if open_to and not public and port not in WEB_PORTS:
        source, where = open_to[0]
        raise Invalid(where, f"port {port} would be open to {source}, the whole internet; if that is meant, "
                             f"say so with public: true in this rule ({path}.public: true)")
    if public and not open_to:
        raise Invalid(f"{path}.public", f"true, but the rule is not open to {' or '.join(WORLD)}; remove it")


def check_admin(admin_cidr: str, public: bool, path: str = "cluster") -> None:
    """SSH comes from `admin_cidr` on every node."""
    if admin_cidr in WORLD and not public:
        raise Invalid(f"{path}.admin_cidr", f"{admin_cidr} opens SSH (port 22) on every node to the whole "
                                            f"internet; name the network you connect from (like "
                                            f"203.0.113.7/32), or allow it with {path}.admin_public: true")
    if public and admin_cidr not in WORLD:
        raise Invalid(f"{path}.admin_public", f"true, but admin_cidr {admin_cidr} is not {' or '.join(WORLD)}; "
                                              f"remove it")


def public_warnings(cfg: Config) -> list[str]:
    """One line for each opening roles.yaml allows with `public: true` (or `admin_public: true`)."""
    lines = []
    if cfg.cluster.admin_public:
        lines.append(f"warning: every role: port 22 (SSH) is open to {cfg.cluster.admin_cidr} "
                     f"(cluster.admin_public: true)")
    for role in cfg.roles:
        for i, rule in enumerate(role.ports):
            if rule.public:
                lines.append(f"warning: {role.name}: port {rule.port} is open to {', '.join(world(rule.cidrs))} "
                             f"(roles.{role.name}.ports[{i}].public: true)")
    return lines
