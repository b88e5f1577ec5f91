"""The health check of a release before it gets any traffic, run in the release on an app node.

Django's test client, with the real settings, database and environment; argv[1] is the Host header the
proxy's probe sends, argv[2] the path (app.health_path).  Prints one JSON line: {"code": <status>,
"body": <the first 2000 characters>, "location": <a redirect's Location, or "">}.
"""
import json
import sys

import django

django.setup()

from django.test import Client  # noqa: E402  (after setup)

response = Client(raise_request_exception=False).get(sys.argv[2], HTTP_HOST=sys.argv[1])
body = b"".join(response.streaming_content) if response.streaming else response.content
print(json.dumps({"code": response.status_code, "body": body.decode("utf-8", "replace")[:2000],
                  "location": response.get("Location", "")}))
