"""Deploy the Django app of roles.yaml: releases, code delivery, venvs, switch, reload, health gate, rollback.

- `releases`, `lock`, `prompts`: pure decisions (names, what to prune, how to reload, answers).
- `commands`: every remote command as a string, each value shlex-quoted (tested by exact string).
- `source`: the code to deploy: a local git repo (or a subdirectory of one) pushed to a bare mirror on
  each host over pinned SSH (strategy push), or fetched by the hosts (strategy git).
- `engine`: thin runners: per-node steps in parallel, the lock, the health gate, automatic rollback.
- `tasks`: `fab deploy`, `quick-update`, `rollback`, `releases` (`whip-up-full-system` is fabfile/whipup.py, above).

The remote layout is the contract in docs/remote-layout.md, in code fabfile/layout.py (shared with configure).
"""
