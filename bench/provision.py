"""Provisioning figures on the local cloud: wall time for 1 role and for the 4 default roles, the
API calls of a first run and of a re-run, and the re-run's preflight stage.

Run as root from the repository root:  .venv/bin/python bench/provision.py
"""
from __future__ import annotations

from common import fab, machine, mutating_calls, private_sandbox, table


def preflight_time(stdout: str) -> str:
    """The time of the preflight stage, from provision's `preflight: 0.06 s` line."""
    return next((line.split(": ", 1)[1] for line in stdout.splitlines() if line.startswith("preflight: ")), "-")


def main() -> None:
    rows = []
    with private_sandbox() as sb:
        one = sb.roles("bench-one", roles=["app"])
        run = fab(sb.env, "provision", "--config", str(one))
        rows.append(("provision, 1 role (app), to SSH ready", f"{run.seconds:.1f} s"))
        rows.append(("  its mutating API calls", mutating_calls(run.stdout)))
        four = sb.roles("bench-four")
        run = fab(sb.env, "provision", "--config", str(four))
        rows.append(("provision, 4 default roles, to SSH ready", f"{run.seconds:.1f} s"))
        rows.append(("  its mutating API calls (first run)", mutating_calls(run.stdout)))
        again = fab(sb.env, "provision", "--config", str(four))
        rows.append(("re-run on the complete cluster", f"{again.seconds:.1f} s"))
        rows.append(("  its mutating API calls (re-run)", mutating_calls(again.stdout)))
        rows.append(("  its preflight stage (re-run)", preflight_time(again.stdout)))
        rows.append(("peak RSS of the fab process (4 roles)", f"{run.peak_rss_mib:.0f} MiB"))
    print(f"machine: {machine()}\n")
    print(table("provisioning on the local cloud", rows))


if __name__ == "__main__":
    main()
