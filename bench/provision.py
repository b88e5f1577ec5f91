"""Provisioning figures on the local cloud: wall time for 1 role and for the 4 default roles, and the
API calls of a first run and of a re-run.

Run as root from the repository root:  .venv/bin/python bench/provision.py
"""
from __future__ import annotations

from common import fab, machine, mutating_calls, private_sandbox, table


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
        rows.append(("peak RSS of the fab process (4 roles)", f"{run.peak_rss_mib:.0f} MiB"))
    print(f"machine: {machine()}\n")
    print(table("provisioning on the local cloud", rows))


if __name__ == "__main__":
    main()
