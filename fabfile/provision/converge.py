"""provision / create_node: the order of the calls.

0. preflight (preflight.check): every check that could fail the run, before its first mutating call;
   all failures in one ProvisionError, nothing created;
1. shared, serially: cluster key pair, subnet, every role's security group, then rules
   (groups first, since rules reference each other);
2. per role, in parallel threads: AMI, launch what is missing, start what is stopped,
   wait running, termination protection, data volumes (volumes.py: found by tag or made, attached),
   elastic IPs;
3. known_hosts for every node, from the host keys in the state dir;
4. per role, in parallel: wait for pinned SSH (skipped with wait_ssh=False), then data volumes mounted.
Per-role failures are collected and raised together as one ProvisionError.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, TypeVar

from ..config import Config, RoleConfig
from ..errors import ProvisionError
from ..naming import TAG_INDEX, node_name, tag_dict
from ..nodes import GONE_STATES, Node, connect_address, find_nodes, node_from_instance
from ..state import known_hosts_path, write_public
from ..exposure import public_warnings
from ..monitor.grants import monitor_grants
from . import builders, preflight, volumes
from . import ec2 as ops
from .iam import launch_profile
from .keys import ensure_host_key, ensure_identity, known_hosts_line, read_host_public
from .ready import wait_for_ssh
from .timing import DEFAULT_TIMING, Timing

Log = Callable[[str], None]
T = TypeVar("T")


@dataclass(frozen=True)
class Shared:
    public_key: str            # the cluster key, authorized on every node
    subnet: ops.Subnet
    group_ids: dict[str, str]  # role -> security group id
    instance_profiles: Mapping[str, str] = field(default_factory=dict)  # role -> profile (iam.py), on aws


def checked(ec2, cfg: Config, log: Log, role: str | None = None, *, python: str | None = None) -> Config:
    """What roles.yaml opens to the world with `public: true` (said every run), then the preflight checks;
    the config with `ami: auto` resolved for the project's Python (`python`, a constraint or None)."""
    for line in public_warnings(cfg):
        log(line)
    return preflight.check(ec2, cfg, role=role, log=log, python=python).config


def prepare(ec2, cfg: Config, timing: Timing, log: Log, profiles=()) -> Shared:
    """Key pair, subnet and security groups (with reconciled rules) for every role; the instance profiles
    (`profiles`: iam.AppProfile, one per purpose) made or found."""
    cluster = cfg.cluster
    public_key = ensure_identity(cfg)
    if ops.ensure_key_pair(ec2, cluster.name, public_key, timing):
        log(f"key pair {cluster.name}-key imported")
    subnet = ops.resolve_subnet(ec2, cluster)
    groups = ops.ensure_groups(ec2, cluster.name, subnet.vpc_id, cfg.role_names, timing)
    group_ids = {role: g["GroupId"] for role, g in groups.items()}
    for role in cfg.roles:
        added, revoked = ops.reconcile_group(
            ec2, groups[role.name], builders.desired_grants(role, cluster.admin_cidr, group_ids,
                                                         tls=cluster.site.tls)
            | monitor_grants(cfg, role.name, group_ids))
        if added or revoked:
            log(f"{role.name}: security group {group_ids[role.name]}: +{added} -{revoked} rules")
    by_role = {role: name for p in profiles for name in (p.ensure(log),) for role in p.purpose.roles}
    return Shared(public_key=public_key, subnet=subnet, group_ids=group_ids, instance_profiles=by_role)


def _attach_profile(ec2, role: str, instances: list[dict], profile: str | None, log: Log) -> None:
    """A node launched before its role had an instance profile gets it now (no restart: its credentials
    appear in the instance metadata within seconds)."""
    if profile is None:
        return
    for instance in instances:
        if not instance.get("IamInstanceProfile") and instance["State"]["Name"] in ("pending", "running", "stopped"):
            ec2.associate_iam_instance_profile(IamInstanceProfile={"Name": profile}, InstanceId=instance["InstanceId"])
            log(f"{role}: instance profile {profile} attached to {instance['InstanceId']}")


def converge_role(ec2, cfg: Config, role: RoleConfig, shared: Shared, timing: Timing, log: Log,
                  *, indexes: Iterable[int] | None = None) -> list[Node]:
    """Make nodes `indexes` (default: 0..count-1) of `role` exist and run; the role's nodes after."""
    cluster = cfg.cluster.name
    wanted = list(range(role.count) if indexes is None else indexes)
    instances = ops.role_instances(ec2, cluster, role.name)
    retired: dict[str, list[str]] = {}
    live: dict[str, dict] = {}
    for instance in instances:
        index = tag_dict(instance).get(TAG_INDEX, "")
        if instance["State"]["Name"] in GONE_STATES:
            retired.setdefault(index, []).append(instance["InstanceId"])
        else:
            live[index] = instance
    missing = [i for i in wanted if str(i) not in live]
    launched = []
    if missing:
        image = ops.find_image(ec2, role.ami)
        for index in missing:
            name = node_name(cluster, role.name, index)
            params = builders.run_instances_params(
                cfg.cluster, role, index, image=image, subnet_id=shared.subnet.id,
                group_id=shared.group_ids[role.name],
                user_data=builders.user_data(shared.public_key, ensure_host_key(cfg, name)),
                instance_profile=launch_profile(role.name, shared.instance_profiles),
            )
            tokens = builders.client_tokens(cluster, role.name, index, retired.get(str(index), []))
            launched.append(ops.launch(ec2, params, tokens))
            log(f"{role.name}: launched {name} {launched[-1]} ({role.instance_type}, {image.id})")
    existing = [node_from_instance(i) for i in live.values()]
    _attach_profile(ec2, role.name, list(live.values()), launch_profile(role.name, shared.instance_profiles), log)
    ops.start(ec2, existing, timing)
    ops.wait_running(ec2, launched + [n.instance_id for n in existing if n.state != "running"], timing)
    nodes = find_nodes(ec2, cluster, role=role.name)
    ids = [n.instance_id for n in nodes]
    if ops.ensure_termination_protection(ec2, ids, role.termination_protection):
        log(f"{role.name}: termination protection set to {role.termination_protection}")
    volumes.ensure_role(ec2, cfg, role, nodes, log, timing)
    if role.elastic_ip and ops.ensure_elastic_ips(ec2, cluster, role.name, nodes):
        log(f"{role.name}: elastic IPs associated")
        nodes = find_nodes(ec2, cluster, role=role.name)
    if indexes is None:
        for extra in (n for n in nodes if n.index >= role.count or n.index < 0):
            log(f"{role.name}: {extra.name} ({extra.instance_id}) is beyond count {role.count}: left as it is")
    return nodes


def known_hosts_text(cfg: Config, nodes: list[Node]) -> tuple[str, dict[str, str]]:
    """known_hosts content for `nodes`, and {node name: problem} for those that cannot be pinned."""
    lines, problems = [], {}
    for node in sorted(nodes, key=lambda n: n.name):
        public = read_host_public(cfg, node.name)
        if public is None:
            problems[node.name] = (f"{node.instance_id}: no host key in the state dir (launched from another "
                                   f"machine?); terminate it and provision again")
            continue
        try:
            lines.append(known_hosts_line(connect_address(cfg, node), public))
        except ProvisionError as exc:
            problems[node.name] = str(exc)
    return "".join(f"{line}\n" for line in lines), problems


def pin_known_hosts(ec2, cfg: Config) -> tuple[list[Node], dict[str, str]]:
    """Rewrite the cluster's known_hosts from its live nodes, and save them as the node list the next task
    starts from (inventory: a launch or a start changes it); (nodes, {node name: problem})."""
    from .. import inventory

    nodes = find_nodes(ec2, cfg.cluster.name)
    inventory.save(cfg, nodes)
    text, problems = known_hosts_text(cfg, nodes)
    path = known_hosts_path(cfg)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        write_public(path, text)
    return nodes, problems


def each(items: Iterable[T], fn: Callable[[T], object], key: Callable[[T], str]) -> tuple[dict, dict]:
    """Run fn over items in parallel threads; ({key: result}, {key: error message})."""
    items = list(items)
    results: dict = {}
    errors: dict = {}
    if not items:
        return results, errors
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        futures = {key(item): pool.submit(fn, item) for item in items}
    for name, future in futures.items():
        exc = future.exception()
        if exc is None:
            results[name] = future.result()
        else:
            errors[name] = str(exc) if isinstance(exc, ProvisionError) else f"{type(exc).__name__}: {exc}"
    return results, errors


def wait_nodes(cfg: Config, nodes: list[Node], timing: Timing) -> dict[str, str]:
    """Wait for SSH on `nodes`, roles in parallel; {role: error}."""
    roles = sorted({n.role for n in nodes})
    _, errors = each(roles, lambda role: [wait_for_ssh(cfg, n, timing) for n in nodes if n.role == role],
                     key=lambda role: role)
    return errors


def failure(errors: dict[str, str]) -> ProvisionError:
    lines = "\n".join(f"  {name}: {message}" for name, message in sorted(errors.items()))
    return ProvisionError(f"provisioning failed ({len(errors)} problem{'s' if len(errors) > 1 else ''}):\n{lines}")


def provision(ec2, cfg: Config, *, wait_ssh: bool = True, timing: Timing = DEFAULT_TIMING,
              log: Log = print, python: str | None = None, profiles=()) -> list[Node]:
    """Bring every role to its count of running, reachable nodes; the cluster's nodes. `python`: the
    project's Python constraint, for `ami: auto` (None: Debian 12); `profiles`: as for `prepare`."""
    cfg = checked(ec2, cfg, log, python=python)
    shared = prepare(ec2, cfg, timing, log, profiles)
    _, errors = each(cfg.roles, lambda role: converge_role(ec2, cfg, role, shared, timing, log),
                     key=lambda role: role.name)
    nodes, problems = pin_known_hosts(ec2, cfg)
    errors.update(problems)
    if wait_ssh:
        ready = [n for n in nodes if n.role in cfg.role_names and n.role not in errors and n.name not in errors]
        errors.update(wait_nodes(cfg, ready, timing))
        if not errors:
            volumes.mount_all(ec2, cfg, ready, log)
    if errors:
        raise failure(errors)
    return nodes


def next_free_index(nodes: list[Node]) -> int:
    taken = {n.index for n in nodes}
    return next(i for i in range(len(taken) + 1) if i not in taken)


def create_node(ec2, cfg: Config, role_name: str, *, wait_ssh: bool = True, timing: Timing = DEFAULT_TIMING,
                log: Log = print, python: str | None = None, profiles=()) -> Node:
    """Launch one more node of a role, at its lowest free index; the new node (`python`, `profiles` as for
    provision)."""
    cfg.role(role_name)
    cfg = checked(ec2, cfg, log, role=role_name, python=python)
    role = cfg.role(role_name)
    shared = prepare(ec2, cfg, timing, log, profiles)
    index = next_free_index(find_nodes(ec2, cfg.cluster.name, role=role.name))
    if index >= role.count:
        log(f"{role.name}: node {index} is beyond count {role.count} in {cfg.path.name}; "
            f"raise the count to keep it declared")
    nodes = converge_role(ec2, cfg, role, shared, timing, log, indexes=[index])
    node = next((n for n in nodes if n.index == index), None)
    if node is None:
        raise ProvisionError(f"{node_name(cfg.cluster.name, role.name, index)}: launched but not listed yet; "
                             f"run provision again")
    _, problems = pin_known_hosts(ec2, cfg)
    if node.name in problems:
        raise ProvisionError(f"{node.name}: {problems[node.name]}")
    if wait_ssh:
        wait_for_ssh(cfg, node, timing)
        volumes.mount_all(ec2, cfg, [node], log)
    return node
