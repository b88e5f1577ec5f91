"""The no-op floor (issue 16): the forked lookup's ec2 client knows DescribeInstances only (fabfile/slimmodel.py)."""
from __future__ import annotations

import boto3

from fabfile import slimmodel
from fabfile.cloud import Cloud


def test_the_slim_model_keeps_the_operations_and_every_shape_they_reach():
    shapes = {"In": {"type": "structure", "members": {"F": {"shape": "Filters"}}},
              "Filters": {"type": "list", "member": {"shape": "Filter"}},
              "Filter": {"type": "structure", "members": {"Name": {"shape": "String"}}},
              "Out": {"type": "map", "key": {"shape": "String"}, "value": {"shape": "Filter"}},
              "String": {"type": "string"}, "Unused": {"type": "string"}}
    model = {"metadata": {"protocol": "ec2"}, "shapes": shapes,
             "operations": {"DescribeInstances": {"input": {"shape": "In"}, "output": {"shape": "Out"}},
                            "RunInstances": {"input": {"shape": "Unused"}}}}
    pages = {"pagination": {"DescribeInstances": {"result_key": "R"}, "DescribeImages": {"result_key": "I"}}}
    slim, slim_pages = slimmodel.slim_model(model, pages)
    assert list(slim["operations"]) == ["DescribeInstances"] and slim["metadata"] == model["metadata"]
    assert set(slim["shapes"]) == {"In", "Filters", "Filter", "Out", "String"}
    assert slim_pages == {"pagination": {"DescribeInstances": {"result_key": "R"}}}


def test_the_slim_client_lists_instances_as_the_full_one(aws, tmp_path):
    full = boto3.client("ec2", region_name="us-east-1")
    image = full.describe_images(Owners=["amazon"])["Images"] or [{"ImageId": "ami-12c6146b"}]
    full.run_instances(ImageId=image[0]["ImageId"], MinCount=1, MaxCount=1,
                       TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "k", "Value": "v"}]}])
    cloud = Cloud("aws", "us-east-1", boto3.Session(region_name="us-east-1", aws_access_key_id="testing",
                                                    aws_secret_access_key="testing"), None)
    slim = slimmodel.slim_client(cloud, tmp_path)
    assert slim.meta.service_model.operation_names == ["DescribeInstances"]
    pages = lambda c: [p["Reservations"] for p in c.get_paginator("describe_instances").paginate()]  # noqa: E731
    assert pages(slim) == pages(full)
    again = slimmodel.slim_client(cloud, tmp_path)                   # made once, read back the next time
    assert again.meta.service_model.operation_names == ["DescribeInstances"]
