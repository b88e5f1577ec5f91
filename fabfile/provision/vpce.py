"""The S3 gateway VPC endpoint of the cluster's VPC (app.media: s3, cluster.target: aws).

The bucket's read policy matches `aws:SourceVpc`, which S3 sees only for requests through a VPC endpoint: the
proxy's nginx reads /media/ through it (and the app's S3 traffic stays off the internet). An endpoint for S3
already in the VPC (whoever made it) is used as it is, with the subnet's route table added if it lacks it;
one whipup creates is tagged with the cluster, and destroy removes only such a one. The sandbox has no VPC
routing: nothing here runs there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..naming import TAG_CLUSTER, cluster_tags, tag_dict, tags
from .builders import cluster_filter

Log = Callable[[str], None]


def s3_service(region: str) -> str:
    return f"com.amazonaws.{region}.s3"


def find_endpoints_params(vpc_id: str, region: str) -> dict:
    return {"Filters": [{"Name": "vpc-id", "Values": [vpc_id]},
                        {"Name": "service-name", "Values": [s3_service(region)]},
                        {"Name": "vpc-endpoint-type", "Values": ["Gateway"]},
                        {"Name": "vpc-endpoint-state", "Values": ["pending", "available"]}]}


def create_endpoint_params(cluster: str, vpc_id: str, region: str, route_table_ids: list[str]) -> dict:
    return {"VpcEndpointType": "Gateway", "VpcId": vpc_id, "ServiceName": s3_service(region),
            "RouteTableIds": sorted(route_table_ids),
            "TagSpecifications": [{"ResourceType": "vpc-endpoint",
                                   "Tags": tags(cluster_tags(cluster, Name=f"{cluster}-s3"))}]}


def pick_route_tables(by_subnet: list[dict], main: list[dict]) -> list[str]:
    """The subnet's route tables: those associated with it, else the VPC's main table."""
    chosen = by_subnet or main
    return sorted(t["RouteTableId"] for t in chosen)


def route_tables(ec2, vpc_id: str, subnet_id: str) -> list[str]:
    by_subnet = ec2.describe_route_tables(
        Filters=[{"Name": "association.subnet-id", "Values": [subnet_id]}])["RouteTables"]
    main = [] if by_subnet else ec2.describe_route_tables(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "association.main", "Values": ["true"]}])["RouteTables"]
    return pick_route_tables(by_subnet, main)


@dataclass(frozen=True)
class S3Endpoint:
    ec2: object
    cluster: str
    region: str

    def ensure(self, vpc_id: str, subnet_id: str, log: Log = print) -> str:
        """The endpoint's id: found (its route tables completed) or created, tagged with the cluster."""
        tables = route_tables(self.ec2, vpc_id, subnet_id)
        found = self.ec2.describe_vpc_endpoints(**find_endpoints_params(vpc_id, self.region))["VpcEndpoints"]
        if not found:
            created = self.ec2.create_vpc_endpoint(**create_endpoint_params(self.cluster, vpc_id, self.region, tables))
            endpoint_id = created["VpcEndpoint"]["VpcEndpointId"]
            log(f"media: S3 gateway endpoint {endpoint_id} created in {vpc_id} ({', '.join(tables)})")
            return endpoint_id
        endpoint = min(found, key=lambda e: e["VpcEndpointId"])
        missing = sorted(set(tables) - set(endpoint.get("RouteTableIds") or []))
        if missing:
            self.ec2.modify_vpc_endpoint(VpcEndpointId=endpoint["VpcEndpointId"], AddRouteTableIds=missing)
            log(f"media: S3 gateway endpoint {endpoint['VpcEndpointId']}: route table(s) {', '.join(missing)} added")
        else:
            owner = "" if tag_dict(endpoint).get(TAG_CLUSTER) == self.cluster else " (not whipup's: kept on destroy)"
            log(f"media: S3 gateway endpoint {endpoint['VpcEndpointId']} already ok{owner}")
        return endpoint["VpcEndpointId"]


def tagged_endpoints(ec2, cluster: str) -> list[str]:
    """The endpoints tagged with the cluster (what destroy removes), read-only."""
    found = ec2.describe_vpc_endpoints(Filters=cluster_filter(cluster))["VpcEndpoints"]
    return sorted(e["VpcEndpointId"] for e in found if e.get("State", "").lower() not in ("deleted", "deleting"))
