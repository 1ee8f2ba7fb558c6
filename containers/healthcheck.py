"""Container healthcheck: exit 0 when the Vox server in this container is ready (/api/ready).

Ready means the model store is readable and every --preload model's runner answers a round
trip; a frozen runner makes the container unhealthy while the process still serves
/api/health (liveness), which an orchestrator should use for restarts instead.
"""

import json
import os
import sys
import urllib.error
import urllib.request

# The server may bind 0.0.0.0 or 127.0.0.1; loopback reaches it either way.
port = os.environ.get("VOX_PORT", "11435")
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/ready", timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except urllib.error.HTTPError as exc:  # 503: not ready, with the reason
    try:
        reason = json.loads(exc.read()).get("reason", exc.reason)
    except ValueError:
        reason = exc.reason
    print(f"not ready: {reason}", file=sys.stderr)
    sys.exit(1)
except OSError as exc:
    print(f"unhealthy: {exc}", file=sys.stderr)
    sys.exit(1)
