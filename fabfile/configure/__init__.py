"""Host configuration (`fab configure`): each node made what its role says, in one round trip for facts.

- `facts`: ONE shell command per host printing every fact (packages, managed files' sha256, services, init
  system, the app user, PostgreSQL's role and database), and its pure parser;
- `want`: what a node should be, as dataclasses (`Desired`); `desired`, `templates`: that, from roles.yaml and
  the Jinja2 templates (rendered locally);
- `plan`: PURE, desired + facts -> actions (none when the host is right);
- `commands`: pure builders of every remote command (shlex-quoted; secrets only on stdin);
- `checks`: pure builders of each service's own check of its changed config on a staged copy (nginx -t -c,
  supervisord's parser, postgres -C and a scratch cluster for pg_hba.conf), run in the files stage before
  anything is installed;
- `apply`: thin, one command per stage with work; `run`: all hosts in parallel; `report`: text;
- `lock`: the run under the cluster's deploy lock (refused or waited for while a deploy holds it), audited;
- `dbsize`: PostgreSQL's max_connections for the cluster's shape (the db node's conf.d file);
- `tasks`: `fab configure [--role ROLE] [--dry-run] [--wait [--wait-timeout S]] [--break-lock]`.
"""
