"""Shared by the benchmarks: a private local cloud, `fab` runs with wall time and peak memory, tables.

Every benchmark brings up its own sandbox (bridge whipbench, port 4690, VPC 10.190.0.0/16), so it never
disturbs a local cloud you are using, and takes it down at the end. Traffic goes only to loopback and to
the hosts it launched.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
import yaml

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Run:
    seconds: float
    peak_rss_mib: float
    stdout: str
    stderr: str
    code: int
    cpu_seconds: float = 0.0         # this fab process: user + system
    machine_busy: float = 0.0        # the whole machine (every sandbox host too), CPU-seconds not idle


def machine_busy_seconds() -> float:
    """CPU-seconds this machine has spent not idle since boot (/proc/stat), all cores together."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)          # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def fab(env: dict, *args: str, check: bool = True, stdin=subprocess.DEVNULL, root: Path = ROOT) -> Run:
    """Run `fab ARGS` in a fresh process (with the fabfile of `root`: another checkout, to compare); wall
    time and that process's peak RSS."""
    start, busy = time.monotonic(), machine_busy_seconds()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen([sys.executable, "-m", "fabric", *args], cwd=root, env=env,
                             stdout=out, stderr=err, stdin=stdin)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        run = Run(seconds, usage.ru_maxrss / 1024, out.read().decode(), err.read().decode(), p.returncode,
                  usage.ru_utime + usage.ru_stime, machine_busy_seconds() - busy)
    if check and run.code != 0:
        raise SystemExit(f"fab {' '.join(args)} exited {run.code}\n{run.stdout}\n{run.stderr}")
    return run


@dataclass
class Sandbox:
    env: dict
    tmp: Path
    vpc: str
    subnet: str

    def ec2(self):
        return boto3.client("ec2", endpoint_url=self.env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    cidr: str = "10.190.0.0/16"

    def roles(self, name: str, *, roles: list[str] | None = None, counts: dict | None = None,
              repo: Path | None = None) -> Path:
        """A roles.yaml for a benchmark cluster: the shipped one, keeping only `roles`, with `counts`."""
        data = yaml.safe_load((ROOT / "roles.yaml").read_text())
        data["cluster"].update(name=name, state_dir=str(self.tmp / "state"), vpc=self.vpc, subnet=self.subnet,
                               admin_cidr=f"{self.env['WHIPUP_SANDBOX_BRIDGE_ADDRESS']}/32")  # SSH comes from there
        data["app"]["repo"] = str(repo or ROOT / "examples" / "demo")
        data.setdefault("configure", {})["templates_dir"] = str(ROOT / "templates")
        if roles is not None:
            data["roles"] = {k: v for k, v in data["roles"].items() if k in roles}
            # ports from dropped roles: from the VPC and this machine instead (with no proxy role, whip-up's
            # check asks app node 0's port 8000 from this machine, i.e. from the bridge address)
            bridge = f"{self.env['WHIPUP_SANDBOX_BRIDGE_ADDRESS']}/32"
            for role in data["roles"].values():
                for rule in role.get("ports", []):
                    src = rule["from"] if isinstance(rule["from"], list) else [rule["from"]]
                    kept = [s for s in src if "/" in s or s in roles]
                    rule["from"] = kept or [self.cidr, bridge]
        for role, count in (counts or {}).items():
            data["roles"][role]["count"] = count
        path = self.tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path


def sandbox_names(number: int | None) -> tuple[dict, str, str]:
    """(sandbox variables, VPC CIDR, subnet CIDR): the benchmarks' own sandbox (None), or test sandbox
    `number`'s (tests/e2e/conftest.py sandbox_env), for a benchmark run beside other local clouds."""
    if number is None:
        return (dict(WHIPUP_SANDBOX_PORT="4690", WHIPUP_SANDBOX_BRIDGE="whipbench",
                     WHIPUP_SANDBOX_BRIDGE_ADDRESS="10.255.190.254", WHIPUP_SANDBOX_PROXY_PORT="8990"),
                "10.190.0.0/16", "10.190.0.0/20")
    if not 1 <= number <= 99:
        raise SystemExit(f"--sandbox: 1-99, not {number}")
    return (dict(WHIPUP_SANDBOX_PORT=str(4600 + number), WHIPUP_SANDBOX_BRIDGE=f"whiptest{number}",
                 WHIPUP_SANDBOX_BRIDGE_ADDRESS=f"10.255.{250 - number}.254",
                 WHIPUP_SANDBOX_PROXY_PORT=str(8900 + number)),
            f"10.{100 + number}.0.0/16", f"10.{100 + number}.1.0/24")


@contextmanager
def private_sandbox(number: int | None = None):
    """A local cloud of the benchmark's own (or test sandbox `number`'s names), down again at the end."""
    # SIGTERM/SIGINT end the benchmark through the `finally` below, which takes the sandbox down
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="whipup-bench-"))
    names, cidr, subnet_cidr = sandbox_names(number)
    env = dict(os.environ, WHIPUP_SANDBOX_STATE=str(tmp / "sandbox"), **names,
               AWS_ENDPOINT_URL=f"http://127.0.0.1:{names['WHIPUP_SANDBOX_PORT']}",
               AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    fab(env, "sandbox.up")
    try:
        ec2 = boto3.client("ec2", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        vpc = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=subnet_cidr,
                                   AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
        # security groups are enforced: instances launched with no group (bench/local_cloud.py) are in the
        # VPC's default group, which lets in only its members; SSH from this machine comes from the bridge
        default = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]},
                                                        {"Name": "group-name", "Values": ["default"]}])
        ec2.authorize_security_group_ingress(
            GroupId=default["SecurityGroups"][0]["GroupId"],
            IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                            "IpRanges": [{"CidrIp": f"{env['WHIPUP_SANDBOX_BRIDGE_ADDRESS']}/32"}]}])
        yield Sandbox(env, tmp, vpc, subnet, cidr)
    finally:
        fab(env, "sandbox.down", check=False)
        subprocess.run(["rm", "-rf", str(tmp)])


def table(title: str, rows: list[tuple[str, str]]) -> str:
    width = max(len(r[0]) for r in rows)
    lines = [f"## {title}", "", f"| {'measure':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {name:<{width}} | {value} |" for name, value in rows]
    return "\n".join(lines)


def machine() -> str:
    mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))
    return f"{os.cpu_count()} cores, {mem / 1024 / 1024:.0f} GiB memory, {os.uname().sysname} {os.uname().release}"


def load_average() -> str:
    """The machine's 1-minute load average now (other work on it shows in every figure)."""
    return Path("/proc/loadavg").read_text().split()[0]


def mutating_calls(stdout: str) -> str:
    """The 'N mutating API calls (...)' line the provisioning tasks print."""
    for line in stdout.splitlines():
        if "mutating API call" in line:
            return line.strip()
    return "?"
