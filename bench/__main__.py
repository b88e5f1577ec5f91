"""All benchmarks, one after another: `.venv/bin/python bench` (as root, from the repository root).

Each prints its table; docs/benchmarks.md records a run. They never run in the test suite.
"""
import sys

import deploy
import local_cloud
import provision
import rollback

for name, module in (("local cloud", local_cloud), ("provisioning", provision), ("deploys", deploy),
                     ("rollback", rollback)):
    print(f"\n# {name}\n", flush=True)
    sys.argv = [sys.argv[0]]
    module.main()
