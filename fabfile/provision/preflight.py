"""Preflight: what would make `provision` or `create_node` fail, found before their first mutating call.

Every check runs, and every failure is reported at once in one ProvisionError, a line each, naming the
roles.yaml key it comes from (`roles.yaml: roles.app.instance_type: t3.smal is not offered in us-east-1
(did you mean t3.small?)`).  Nothing here changes anything: the region and the SSH keys are checked
locally (no call), then the cloud is asked with one read call per kind of check, all in parallel threads:

  DescribeInstances                  the account's live instances: what this run launches and starts, how
                                     many run already
  DescribeAccountAttributes          max-instances, when the account reports it
  DescribeInstanceTypeOfferings      every role's instance type, in one call (the full list only on a miss,
                                     for the suggestion)
  DescribeImages                     one per distinct AMI spec, resolved as launch resolves it
  DescribeSubnets (and DescribeVpcs) the network launch uses

An AMI or instance type problem of a role that launches nothing this run is a warning, not a failure: a
re-run on a complete cluster is not blocked by, say, an AMI deregistered since its nodes were launched.
"""
from __future__ import annotations

import difflib
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from botocore.exceptions import ClientError

from ..config import AmiSpec, Config, RoleConfig
from ..naming import TAG_CLUSTER, TAG_INDEX, TAG_ROLE, tag_dict
from ..nodes import GONE_STATES
from ..state import identity_paths
from . import builders
from ..errors import ProvisionError
from .images import ImageChoice
from .images import resolve as resolve_images
from .keys import fingerprint, public_key_parts

Log = Callable[[str], None]
LIVE_STATES = ("pending", "running", "stopping", "stopped")
DENIED = ("UnauthorizedOperation", "AccessDenied", "AccessDeniedException")


@dataclass(frozen=True)
class Problem:
    key: str                          # the roles.yaml key path, e.g. roles.app.instance_type
    detail: str
    roles: tuple[str, ...] = ()       # the roles it concerns: fatal only if one of them launches ("": always)


@dataclass(frozen=True)
class Plan:
    """What the run would do to the account's instance count."""
    launches: dict[str, int]          # role -> nodes to launch
    starts: int                       # stopped nodes of the cluster it would start
    running: int                      # pending or running instances in the region, all clusters


@dataclass(frozen=True)
class Report:
    seconds: float
    plan: Plan | None
    warnings: tuple[str, ...] = field(default=())
    config: Config | None = None      # the config checked: `ami: auto` resolved (provision/images.py)
    image: ImageChoice | None = None  # what auto chose, and why


def suggestion(word: str, options) -> str:
    """ " (did you mean X?)" with the closest option, every equally close one named ("X or Y"); or ""."""
    scored = [(difflib.SequenceMatcher(None, word, o).ratio(), o) for o in options]
    best = max((score for score, _ in scored), default=0.0)
    if best < 0.6:
        return ""
    return f" (did you mean {' or '.join(sorted(o for score, o in scored if score == best)[:3])}?)"


# --- local checks ---------------------------------------------------------------------------

def known_regions(cfg: Config) -> tuple[str, ...]:
    """The regions the target serves: botocore's EC2 regions (every partition), or the local cloud's one.

    The same set as boto3's Session().get_available_regions("ec2", partition), read from botocore's endpoint
    data alone (0.03 s; the Session way loads the EC2 service model too, 0.15 s)."""
    if cfg.cluster.target == "sandbox":
        from ..sandbox.settings import load_settings

        return (load_settings().region,)
    from botocore.loaders import create_loader
    from botocore.regions import EndpointResolver

    resolver = EndpointResolver(create_loader().load_data("endpoints"))
    return tuple(sorted({region for partition in resolver.get_available_partitions()
                         for region in resolver.get_available_endpoints("ec2", partition)}))


def region_problems(cfg: Config) -> list[Problem]:
    region, known = cfg.cluster.region, known_regions(cfg)
    if region in known:
        return []
    hint = suggestion(region, known)
    if cfg.cluster.target == "sandbox":
        detail = f"{region} is not served by the local cloud{hint}; it serves {known[0]} (WHIPUP_SANDBOX_REGION)"
    else:
        detail = f"{region} is not an EC2 region{hint}"
    return [Problem("cluster.region", detail)]


def _read(path: Path, key: str) -> tuple[str | None, Problem | None]:
    try:
        return path.read_bytes().decode("utf-8"), None
    except OSError as exc:
        return None, Problem(key, f"{path}: cannot be read ({exc.strerror or type(exc).__name__})")
    except UnicodeDecodeError:
        return None, Problem(key, f"{path}: is not a text file")


def public_key_problem(path: Path, key: str) -> tuple[str | None, Problem | None]:
    """The public key line of `path`, or why it is not one OpenSSH line (never quoting the file)."""
    text, problem = _read(path, key)
    if text is None:
        return None, problem
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "PRIVATE KEY" in text:
        return None, Problem(key, f"{path}: holds a private key, not a public one")
    if len(lines) != 1:
        return None, Problem(key, f"{path}: expected one OpenSSH public key line (ssh-ed25519 AAAA... comment), "
                                  f"found {len(lines)} lines")
    try:
        public_key_parts(lines[0])
    except ValueError:
        return None, Problem(key, f"{path}: is not an OpenSSH public key line (ssh-ed25519 AAAA... comment)")
    return lines[0], None


def private_key_problem(path: Path, key: str):
    """(paramiko key, None) or (None, why paramiko cannot load it); no key material in the message."""
    import paramiko

    text, problem = _read(path, key)
    if text is None:
        return None, problem
    try:
        return paramiko.PKey.from_path(path), None
    except (paramiko.PasswordRequiredException, TypeError):
        return None, Problem(key, f"{path}: is protected by a passphrase; whipup logs in without an agent "
                                  f"and needs an unencrypted key")
    except Exception as exc:  # noqa: BLE001 -- ValueError, SSHException, UnknownKeyType...: all mean "not a key"
        return None, Problem(key, f"{path}: is not a private key paramiko can load ({type(exc).__name__})")


def key_problems(cfg: Config) -> list[Problem]:
    """cluster.ssh's key pair (or the pair generated in the state dir, once it exists) reads, parses, matches."""
    private, public = identity_paths(cfg)
    generated = cfg.cluster.ssh.public_key is None
    if generated and not (private.exists() and public.exists()):
        return []          # provision generates the pair
    suffix = " (null: the pair whipup generated)" if generated else ""
    public_key, private_key = f"cluster.ssh.public_key{suffix}", f"cluster.ssh.private_key{suffix}"
    line, bad_public = public_key_problem(public, public_key)
    pkey, bad_private = private_key_problem(private, private_key)
    problems = [p for p in (bad_public, bad_private) if p is not None]
    if line is not None and pkey is not None and public_key_parts(line)[1] != pkey.get_base64():
        problems.append(Problem(private_key, f"{private}: does not match cluster.ssh.public_key {public} "
                                             f"({fingerprint(f'{pkey.get_name()} {pkey.get_base64()}')} vs "
                                             f"{fingerprint(line)})"))
    return problems


# --- cloud checks ---------------------------------------------------------------------------

def live_instances(ec2) -> list[dict]:
    """Every instance of the region that is not gone (any cluster's, and none of whipup's)."""
    filters = [{"Name": "instance-state-name", "Values": list(LIVE_STATES)}]
    return [instance
            for page in ec2.get_paginator("describe_instances").paginate(Filters=filters)
            for reservation in page["Reservations"]
            for instance in reservation["Instances"]]


def plan_of(cfg: Config, instances: list[dict], role: str | None) -> Plan:
    """What provision (role None) or create_node(role) would launch and start, given the live instances."""
    ours = [(tag_dict(i), i["State"]["Name"]) for i in instances if i["State"]["Name"] not in GONE_STATES]
    ours = [(tags, state) for tags, state in ours if tags.get(TAG_CLUSTER) == cfg.cluster.name]
    launches, starts = {}, 0
    for r in cfg.roles if role is None else [cfg.role(role)]:
        nodes = [(tags, state) for tags, state in ours if tags.get(TAG_ROLE) == r.name]
        indexes = {tags.get(TAG_INDEX) for tags, _ in nodes}
        launches[r.name] = 1 if role else sum(1 for k in range(r.count) if str(k) not in indexes)
        starts += sum(1 for _, state in nodes if state in ("stopping", "stopped"))
    running = sum(1 for i in instances if i["State"]["Name"] in ("pending", "running"))
    return Plan(launches=launches, starts=starts, running=running)


def max_instances(ec2) -> int | None:
    """The account's max-instances attribute, if it reports one."""
    answer = ec2.describe_account_attributes(AttributeNames=["max-instances"])["AccountAttributes"]
    for attribute in answer:
        if attribute.get("AttributeName") == "max-instances":
            values = [v.get("AttributeValue", "") for v in attribute.get("AttributeValues", [])]
            if values and values[0].isdigit():
                return int(values[0])
    return None


def limit_problems(plan: Plan, limit: int | None, region: str) -> list[Problem]:
    wanted = sum(plan.launches.values()) + plan.starts
    if limit is None or wanted == 0 or plan.running + wanted <= limit:
        return []
    launching = [name for name, n in plan.launches.items() if n]
    key = f"roles.{launching[0]}.count" if len(launching) == 1 else "roles.*.count"
    what = f"launch {sum(plan.launches.values())} instance(s) (" + ", ".join(
        f"{name} {plan.launches[name]}" for name in launching) + ")"
    if plan.starts:
        what += f" and start {plan.starts} stopped"
    return [Problem(key, f"this run would {what}, with {plan.running} running or pending in {region}: "
                         f"{plan.running + wanted} > the account's max-instances {limit}")]


def ami_key(cfg: Config, role: RoleConfig) -> str:
    return "cluster.ami" if role.ami == cfg.cluster.ami else f"roles.{role.name}.ami"


def image_problem(ec2, ami: AmiSpec, key: str, roles: tuple[str, ...], region: str) -> Problem | None:
    """None if `ami` resolves, as launch resolves it (by id, or the newest available match), to an image
    that is available."""
    try:
        images = ec2.describe_images(**builders.describe_images_params(ami))["Images"]
    except ClientError as exc:
        if ami.id is None or not exc.response["Error"]["Code"].startswith("InvalidAMIID"):
            raise
        images = []
    if ami.id is not None:
        if not images:
            return Problem(f"{key}.id", f"{ami.id} does not exist in {region}", roles)
        state = images[0].get("State", "available")
        if state != "available":
            return Problem(f"{key}.id", f"{ami.id} is {state}, not available", roles)
        return None
    if not images:
        hint = " (fab sandbox.up builds and registers it)" if ami.name.endswith("-whipup-sandbox") else ""
        return Problem(key if ami.auto else f"{key}.name", ("auto chose an image that is not there: " if ami.auto
                       else "") + f"no available image named {ami.name!r} owned by {ami.owner} in {region}{hint}",
                       roles)
    return None


def offered_types(ec2, types: list[str] | None) -> set[str]:
    """The region's offered instance types among `types` (None: all of them)."""
    kwargs: dict = {"LocationType": "region"}
    if types is not None:
        kwargs["Filters"] = [{"Name": "instance-type", "Values": types}]
    pages = ec2.get_paginator("describe_instance_type_offerings").paginate(**kwargs)
    return {o["InstanceType"] for page in pages for o in page["InstanceTypeOfferings"]}


def type_problems(ec2, roles: list[RoleConfig], region: str) -> list[Problem]:
    wanted = sorted({r.instance_type for r in roles})
    missing = set(wanted) - offered_types(ec2, wanted)
    if not missing:
        return []
    everything = sorted(offered_types(ec2, None))      # only on a miss: the suggestion needs the full list
    problems = []
    for role in (r for r in roles if r.instance_type in missing):
        problems.append(Problem(f"roles.{role.name}.instance_type", f"{role.instance_type} is not offered in "
                                f"{region}{suggestion(role.instance_type, everything)}", (role.name,)))
    return problems


def _code(exc: ClientError) -> str:
    return exc.response["Error"]["Code"]


def network_problems(ec2, cfg: Config) -> list[Problem]:
    """The subnet launch would use exists (and lies in cluster.vpc), as `ec2.resolve_subnet` finds it."""
    cluster, region = cfg.cluster, cfg.cluster.region
    if cluster.subnet is not None:
        try:
            found = ec2.describe_subnets(SubnetIds=[cluster.subnet])["Subnets"]
        except ClientError as exc:
            if not _code(exc).startswith("InvalidSubnetID"):
                raise
            found = []
        if not found:
            return [Problem("cluster.subnet", f"{cluster.subnet} does not exist in {region}")]
        if cluster.vpc != "default" and found[0]["VpcId"] != cluster.vpc:
            return [Problem("cluster.subnet", f"{cluster.subnet} is in {found[0]['VpcId']}, "
                                              f"not cluster.vpc {cluster.vpc}")]
        return []
    if cluster.vpc == "default":
        vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
        if not vpcs:
            return [Problem("cluster.vpc", f"is 'default', but {region} has no default VPC; "
                                           f"set cluster.vpc and cluster.subnet")]
        filters = [{"Name": "vpc-id", "Values": [vpcs[0]["VpcId"]]}, {"Name": "default-for-az", "Values": ["true"]}]
        if not ec2.describe_subnets(Filters=filters)["Subnets"]:
            return [Problem("cluster.subnet", f"is null, but the default VPC {vpcs[0]['VpcId']} has no default "
                                              f"subnet; set cluster.subnet")]
        return []
    if ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [cluster.vpc]}])["Subnets"]:
        return []
    try:
        ec2.describe_vpcs(VpcIds=[cluster.vpc])
    except ClientError as exc:
        if not _code(exc).startswith("InvalidVpcID"):
            raise
        return [Problem("cluster.vpc", f"{cluster.vpc} does not exist in {region}")]
    return [Problem("cluster.subnet", f"is null, but VPC {cluster.vpc} has no subnet; set cluster.subnet")]


# --- the stage ------------------------------------------------------------------------------

def _submit_cloud_checks(pool: ThreadPoolExecutor, ec2, cfg: Config, roles: list[RoleConfig]) -> dict[str, Future]:
    region = cfg.cluster.region
    jobs: dict[str, Future] = {"network": pool.submit(network_problems, ec2, cfg)}   # in roles.yaml's order
    specs: dict[tuple[str, AmiSpec], list[str]] = {}
    for role in roles:
        specs.setdefault((ami_key(cfg, role), role.ami), []).append(role.name)
    for (key, ami), names in specs.items():
        jobs[f"AMI {key}"] = pool.submit(image_problem, ec2, ami, key, tuple(names), region)
    jobs["instance types"] = pool.submit(type_problems, ec2, roles, region)
    jobs["instances"] = pool.submit(live_instances, ec2)
    jobs["limit"] = pool.submit(max_instances, ec2)
    return jobs


def _results(jobs: dict[str, Future], warnings: list[str]) -> dict:
    """Each job's result; a check the credentials may not make (access denied) is skipped with a warning."""
    results: dict[str, object] = {}
    for name, job in jobs.items():
        exc = job.exception()
        if isinstance(exc, ClientError) and _code(exc) in DENIED and name in ("limit", "instance types"):
            warnings.append(f"preflight: {name} not checked ({_code(exc)})")
            results[name] = None if name == "limit" else []
        elif exc is not None:
            raise exc
        else:
            results[name] = job.result()
    return results


def cloud_problems(ec2, cfg: Config, role: str | None, warnings: list[str]) -> tuple[Plan, list[Problem]]:
    """The cloud's checks, in parallel; (the run's plan, problems)."""
    roles = list(cfg.roles) if role is None else [cfg.role(role)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = _results(_submit_cloud_checks(pool, ec2, cfg, roles), warnings)
    plan = plan_of(cfg, results.pop("instances"), role)
    limit = results.pop("limit")
    problems: list[Problem] = []
    for found in results.values():
        problems.extend([found] if isinstance(found, Problem) else found or [])
    return plan, problems + limit_problems(plan, limit, cfg.cluster.region)


def failure(cfg: Config, problems: list[Problem], skipped: bool) -> ProvisionError:
    lines = "\n".join(f"  {cfg.path.name}: {p.key}: {p.detail}" for p in problems)
    note = "\n  (the checks that ask the cloud did not run: the region must be right first)" if skipped else ""
    n = len(problems)
    return ProvisionError(f"preflight: {n} problem{'s' if n > 1 else ''}, nothing was created:\n{lines}{note}")


def check(ec2, cfg: Config, *, role: str | None = None, log: Log = print, python: str | None = None) -> Report:
    """Run every check for provision (role None) or create_node(role); raise one ProvisionError listing
    every failure, or log the warnings and the time taken and return the report. `ami: auto` is resolved
    first for the project's Python (`python`, a constraint or None), and the image it chose said, with why;
    the report carries the resolved config."""
    start = time.monotonic()
    cfg, image = resolve_images(cfg, python)
    if image is not None:
        log(image.describe())
    warnings: list[str] = []
    problems = region_problems(cfg) + key_problems(cfg)
    plan = None
    if not any(p.key == "cluster.region" for p in problems):
        plan, found = cloud_problems(ec2, cfg, role, warnings)
        problems += found
    fatal = [p for p in problems if plan is None or not p.roles or any(plan.launches.get(r) for r in p.roles)]
    if fatal:
        raise failure(cfg, fatal, skipped=plan is None)
    for p in problems:
        who = f"role {p.roles[0]} launches" if len(p.roles) == 1 else f"roles {', '.join(p.roles)} launch"
        warnings.append(f"{cfg.path.name}: {p.key}: {p.detail} ({who} nothing this run; a new node would fail)")
    report = Report(seconds=time.monotonic() - start, plan=plan, warnings=tuple(warnings), config=cfg, image=image)
    for w in report.warnings:
        log(f"warning: {w}")
    log(f"preflight: {report.seconds:.2f} s")
    return report
