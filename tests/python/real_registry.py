"""The workspace's own registry (`streamguard-registry`, the binary of `registry/`) as a child
process for the binding tests: 127.0.0.1 on a port the OS picks (the binary prints its address),
a temporary SQLite file, admin and telemetry tokens, stopped by its PID. `bindings/test.sh`
builds the binary and passes its path in STREAMGUARD_REGISTRY_BIN."""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request

ADMIN = "placement-admin-token-0001"
SUPER = "placement-super-token-0001"
# Engines send it as their auth_token: placement claims are authenticated like telemetry.
TELEMETRY = "placement-telemetry-token-0001"
START_WAIT = 15.0
PREFIX = "streamguard-registry listening on "

PROVIDERS = [
    {"name": "agora", "isActive": True, "priority": 1, "config": {"appId": "a-1"}},
    {"name": "zegocloud", "isActive": True, "priority": 2, "config": {}},
    {"name": "webrtc", "isActive": True, "priority": 3, "config": {}},
]


class RealRegistry:
    """One registry process seeded with `providers` (registry create bodies)."""

    def __init__(self, binary, providers=PROVIDERS):
        self.dir = tempfile.mkdtemp(prefix="sg-placement-")
        seed = os.path.join(self.dir, "seed.json")
        with open(seed, "w") as f:
            json.dump({"providers": providers}, f)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMGUARD_")}
        env.update(
            STREAMGUARD_REGISTRY_ADDR="127.0.0.1:0",
            STREAMGUARD_REGISTRY_DB=os.path.join(self.dir, "registry.db"),
            STREAMGUARD_REGISTRY_SEED=seed,
            STREAMGUARD_ADMIN_TOKEN=ADMIN,
            STREAMGUARD_SUPER_ADMIN_TOKEN=SUPER,
            STREAMGUARD_TELEMETRY_TOKEN=TELEMETRY,
            # Two engines polling one registry from one address: no per-client budget.
            STREAMGUARD_RATE_LIMIT_PER_SEC="0",
            RUST_LOG="warn",
        )
        self.stderr = open(os.path.join(self.dir, "stderr.txt"), "wb")
        self.proc = subprocess.Popen(
            [binary], env=env, stdout=subprocess.PIPE, stderr=self.stderr, stdin=subprocess.DEVNULL
        )
        first = []
        reader = threading.Thread(target=lambda: first.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(START_WAIT)
        line = first[0].decode().strip() if first else ""
        if not line.startswith(PREFIX):
            self.close()
            raise RuntimeError(f"registry did not start within {START_WAIT}s: {line!r}; {self.log()}")
        # Keep draining stdout so the child never blocks on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        self.url = line[len(PREFIX):]
        self.base_url = f"{self.url}/api"

    def log(self):
        with open(os.path.join(self.dir, "stderr.txt"), errors="replace") as f:
            return f.read()[-2000:]

    def request(self, method, path, body=None, token=None):
        """(status, parsed JSON body or None) of one request to the registry."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                raw, status = resp.read(), resp.status
        except urllib.error.HTTPError as e:
            raw, status = e.read(), e.code
        return status, (json.loads(raw) if raw else None)

    def placement(self, stream_id):
        """The stream's placement (`provider`, `epoch`, `standby`, `live`), or None (404)."""
        status, body = self.request("GET", f"/api/streaming/streams/{stream_id}")
        if status == 404:
            return None
        assert status == 200, (status, body)
        return body["data"]

    def telemetry(self, **event):
        """Report a session event as another client would (counts towards `activeStreams`)."""
        status, body = self.request("POST", "/api/streaming/sessions/events", event, TELEMETRY)
        assert status == 200, (status, body)

    def close(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(START_WAIT)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(START_WAIT)
        self.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)
