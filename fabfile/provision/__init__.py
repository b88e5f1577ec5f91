"""The cloud half: key pair, security groups, nodes and elastic IPs, kept as roles.yaml says.

builders  pure: API parameters, permission sets, user-data
keys      ed25519 keys (cluster identity, per-node host keys), known_hosts lines
ec2       thin calls: look up, create, reconcile
preflight what would fail a run, checked before its first mutating call
converge  provision / create_node: the order of the calls, roles in parallel
ready     wait until a node answers SSH with its pinned host key
destroy   plan and remove everything tagged with the cluster
accounting  count mutating API calls
tasks     the fab tasks
"""
