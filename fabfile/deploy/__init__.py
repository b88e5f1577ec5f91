"""Deploy the Django app of roles.yaml: releases, code delivery, venvs, switch, reload, health gate, rollback.

Pure decisions and command builders:
- `releases`, `prompts`: names, what to prune, how to reload, quick-update's answers;
- `commands`, `manage`, `supervisor`, `lock`: every remote command as a string, each value quoted (tested by
  exact string); `lock` also holds the lock's and the audit log's records; `scripts/` the remote programs.
- `source`: the code to deploy: a local git repo (or a subdirectory of one) pushed to a bare mirror on
  each host over pinned SSH (strategy push), or fetched by the hosts (strategy git).
Thin runners, one concern each:
- `cluster`: the connected nodes and how a step runs on many at once; `guard`: the lock and the audit log;
- `planning`: the options and the plan; `stages`, `health`, `reload`: what a deploy does, stage by stage;
- `engine`: the deploy as a list of those stages and its failure path; `rollback`; `report` (fab releases).
- `tasks`: `fab deploy`, `quick-update`, `rollback`, `releases` (`whip-up-full-system` is fabfile/whipup.py, above).

The remote layout is the contract in docs/remote-layout.md, in code fabfile/layout.py (shared with configure).
"""
