"""Names and tags of everything whipup creates: the one place they are spelled.

Every resource carries `whipup:cluster`; nodes (and their volumes and elastic
IPs) also carry `whipup:role` and `whipup:index`.  Lookups go by these tags,
so resources whipup did not tag are never found, changed or deleted.
"""
from __future__ import annotations

TAG_CLUSTER = "whipup:cluster"
TAG_ROLE = "whipup:role"
TAG_INDEX = "whipup:index"


def node_name(cluster: str, role: str, index: int) -> str:
    return f"{cluster}-{role}-{index}"


def group_name(cluster: str, role: str) -> str:
    return f"{cluster}-{role}"


def key_pair_name(cluster: str) -> str:
    return f"{cluster}-key"


def tags(mapping: dict[str, str]) -> list[dict[str, str]]:
    """{"k": "v"} as the API's [{"Key": "k", "Value": "v"}]."""
    return [{"Key": k, "Value": v} for k, v in mapping.items()]


def cluster_tags(cluster: str, **extra: str) -> dict[str, str]:
    return {TAG_CLUSTER: cluster, **extra}


def node_tags(cluster: str, role: str, index: int) -> dict[str, str]:
    return {"Name": node_name(cluster, role, index), TAG_CLUSTER: cluster, TAG_ROLE: role, TAG_INDEX: str(index)}


def tag_filters(mapping: dict[str, str]) -> list[dict]:
    """Describe* filters matching every tag in `mapping`."""
    return [{"Name": f"tag:{k}", "Values": [v]} for k, v in mapping.items()]


def tag_dict(resource: dict) -> dict[str, str]:
    """A described resource's Tags list as a dict."""
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}
