"""A botocore data directory holding only the EC2 operations a node lookup makes (issue 16, the no-op floor).

botocore parses EC2's whole service model (~600 operations) to make an ec2 client: ~0.15 CPU-s, in the
cloud lookup that a no-op configure forks alongside its SSH work, and on its critical path. `slim_client`
makes the client from a model keeping DescribeInstances (its input, output and paginator) and nothing
else, written once per botocore version from botocore's own model (`slim_model`, pure) under the state dir.
The requests and the parsed answers are botocore's own: the shapes are copied, not rewritten. Any trouble
making it (a read-only state dir, a botocore that lays its data out otherwise) gives the full client.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

SERVICE = "ec2"
OPERATIONS = ("DescribeInstances",)


def _shapes_of(shapes: dict, name: str, found: set[str]) -> None:
    """Every shape `name` refers to, transitively, into `found`."""
    stack = [name]
    while stack:
        shape = stack.pop()
        if shape in found or shape not in shapes:
            continue
        found.add(shape)
        spec = shapes[shape]
        refs = [m["shape"] for m in spec.get("members", {}).values()]
        refs += [spec[k]["shape"] for k in ("member", "key", "value") if k in spec]
        stack.extend(refs)


def slim_model(model: dict, paginators: dict, operations=OPERATIONS) -> tuple[dict, dict]:
    """(service model, paginators) keeping only `operations` and the shapes they use."""
    ops = {name: model["operations"][name] for name in operations}
    found: set[str] = set()
    for op in ops.values():
        for key in ("input", "output"):
            if key in op:
                _shapes_of(model["shapes"], op[key]["shape"], found)
        for error in op.get("errors", []):
            _shapes_of(model["shapes"], error["shape"], found)
    slim = {**model, "operations": ops, "shapes": {k: v for k, v in model["shapes"].items() if k in found}}
    pages = {"pagination": {k: v for k, v in paginators.get("pagination", {}).items() if k in operations}}
    return slim, pages


def slim_dir(cache: Path, loader) -> Path:
    """`cache/botocore-<version>`: a data directory with the slim EC2 model, made if missing."""
    import botocore

    root = cache / f"botocore-{botocore.__version__}"
    version = loader.determine_latest_version(SERVICE, "service-2")
    place = root / SERVICE / version
    if not (place / "service-2.json").is_file():
        from botocore.loaders import create_loader

        full = create_loader()              # not `loader`: it would keep the whole model cached for the client
        model = full.load_service_model(SERVICE, "service-2", version)
        pages = full.load_service_model(SERVICE, "paginators-1", version)
        slim, slim_pages = slim_model(model, pages)
        place.mkdir(parents=True, exist_ok=True)
        for name, data in (("paginators-1.json", slim_pages), ("service-2.json", slim)):   # the model last
            tmp = place / f"{name}.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(data))
            os.replace(tmp, place / name)
    return root


def slim_client(cloud, cache: Path):
    """`cloud`'s ec2 client knowing only OPERATIONS (the full one if the slim model cannot be made)."""
    loader = cloud.session._session.get_component("data_loader")
    try:
        root = slim_dir(cache, loader)
    except (OSError, ValueError, KeyError, AttributeError):
        return cloud.client(SERVICE)
    loader.search_paths.insert(0, str(root))
    return cloud.client(SERVICE)
