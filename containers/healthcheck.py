"""Container healthcheck: exit 0 when the Vox server on this container answers /api/health."""

import os
import sys
import urllib.request

# The server may bind 0.0.0.0 or 127.0.0.1; loopback reaches it either way.
port = os.environ.get("VOX_PORT", "11435")
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError as exc:
    print(f"unhealthy: {exc}", file=sys.stderr)
    sys.exit(1)
