"""The monitor node (roles.yaml role `monitor`, settings in the top-level `monitor:` block).

- config.py   the `monitor:` block as a frozen MonitorConfig; whether the role is on; what every node gets
- context.py  PURE: what the Prometheus/Alertmanager/blackbox templates see (scrape targets from the nodes)
- grants.py   PURE: the security group rules the monitor needs on every role's group
- status.py   PURE: the Prometheus HTTP API query `fab status` runs on the monitor node, and its parser
- receiver.py the webhook receiver that turns a lost app/proxy node's alert into `fab recover ROLE`
- daemon.py   the receiver as a process of this machine: started by whip-up, stopped by destroy
"""
