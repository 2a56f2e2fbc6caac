#!/usr/bin/env python3
"""`wsm serve` under load (issue 29): CLIENTS browsers holding a stack's live page for SECONDS.

A stack of one sleeping service with 20 replicas is deployed with the Docker CLI. `wsm serve`
runs on a free loopback port; CLIENTS threads each hold `/events?page=/stacks/NAME` open (the
page's server-sent events) and, on each `change`, fetch the page again as the page's script does.
Every 10 s the service is scaled 20 → 19 → 20 (`docker service scale -d`), so the clients have
something to follow. wsm's CPU time (utime+stime from /proc/PID/stat) and RSS (VmRSS sampled each
second, VmHWM at the end) are reported, with the changes and fetches the clients saw and what
`/metrics` says of the engine event streams wsm opened (one for all clients) and of the clients.
A benchmark: it reports, it never fails. Everything is removed at the end, also on failure or
Ctrl-C (wsm's process group, the stack).

    benches/serve_load.py [--wsm target/release/wsm] [--clients 50] [--seconds 60]
"""

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = "localhost:5000/wavelet-stack-base:latest"
REPLICAS = 20


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True).stdout


def http(port, path):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode(errors="replace")


class Client(threading.Thread):
    def __init__(self, port, page, stop):
        super().__init__(daemon=True)
        self.port, self.page, self.stop = port, page, stop
        self.changes = self.fetches = 0
        self.error = None

    def run(self):
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            s.sendall(f"GET /events?page={self.page} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            buf = b""
            while not self.stop.is_set():
                try:
                    chunk = s.recv(4096)
                except socket.timeout:
                    continue
                if not chunk:
                    self.error = "closed"
                    return
                buf += chunk
                while b"\n\n" in buf:
                    event, buf = buf.split(b"\n\n", 1)
                    if b"event: change" in event:
                        self.changes += 1
                        status, _ = http(self.port, self.page)
                        self.fetches += status == 200
            s.close()
        except Exception as e:  # a benchmark reports
            self.error = repr(e)


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_kib(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wsm", default=os.path.join(ROOT, "target/release/wsm"))
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60)
    a = ap.parse_args()
    name = "wsmbenchserve" + secrets.token_hex(3)
    tmp = tempfile.TemporaryDirectory()
    compose = os.path.join(tmp.name, "stack.yml")
    with open(compose, "w") as f:
        f.write(f'version: "3.8"\nservices:\n  web:\n    image: {IMAGE}\n    command: ["sleep", "3600"]\n'
                f"    stop_grace_period: 1s\n    deploy:\n      replicas: {REPLICAS}\n")
    serve = None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sh("docker", "stack", "deploy", "--resolve-image", "never", "-c", compose, name)
        service = f"{name}_web"
        deadline = time.time() + 180
        while sh("docker", "service", "ls", "--filter", f"name={service}", "--format", "{{.Replicas}}").strip() != f"{REPLICAS}/{REPLICAS}":
            if time.time() > deadline:
                raise SystemExit("the stack did not converge")
            time.sleep(1)
        os.makedirs(os.path.join(tmp.name, "config"), exist_ok=True)
        serve = subprocess.Popen([a.wsm, "-C", os.path.join(tmp.name, "config"), "serve", "--listen", "127.0.0.1:0"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                 process_group=0)
        line = serve.stderr.readline()
        port = int(line.rsplit(":", 1)[1].strip("/\n "))
        threading.Thread(target=lambda: [sys.stderr.write(l) for l in serve.stderr], daemon=True).start()
        page = f"/stacks/{name}"
        while True:
            try:
                if http(port, page)[0] == 200:
                    break
            except ConnectionRefusedError:
                if serve.poll() is not None:
                    raise SystemExit(f"wsm serve ended ({serve.returncode})")
            time.sleep(0.2)
        stop = threading.Event()
        clients = [Client(port, page, stop) for _ in range(a.clients)]
        for c in clients:
            c.start()
        time.sleep(1)
        cpu0, t0 = cpu_seconds(serve.pid), time.time()
        rss = []
        next_scale, scaled = t0 + 10, False
        while time.time() - t0 < a.seconds:
            rss.append(status_kib(serve.pid, "VmRSS"))
            if time.time() >= next_scale:
                sh("docker", "service", "scale", "-d", f"{service}={REPLICAS - 1 if not scaled else REPLICAS}")
                scaled, next_scale = not scaled, next_scale + 10
            time.sleep(1)
        cpu1, t1 = cpu_seconds(serve.pid), time.time()
        _, metrics = http(port, "/metrics")
        hwm = status_kib(serve.pid, "VmHWM")
        stop.set()
        m = {l.split()[0]: l.split()[1] for l in metrics.splitlines() if l.startswith("wsm_serve_")}
        errors = [c.error for c in clients if c.error]
        print(f"wsm serve, {a.clients} clients on {page} ({REPLICAS} tasks, scaled every 10 s), {t1 - t0:.0f} s:")
        print(f"  CPU: {cpu1 - cpu0:.2f} s ({100 * (cpu1 - cpu0) / (t1 - t0):.1f} % of one core)")
        print(f"  RSS: median {sorted(rss)[len(rss) // 2] / 1024:.1f} MiB, max sampled {max(rss) / 1024:.1f} MiB, VmHWM {hwm / 1024:.1f} MiB (goal <= 64 MiB)")
        print(f"  changes seen per client: min {min(c.changes for c in clients)}, max {max(c.changes for c in clients)}; pages fetched: {sum(c.fetches for c in clients)}")
        print(f"  /metrics: engine event streams {m.get('wsm_serve_engine_event_streams')}, clients {m.get('wsm_serve_clients')}")
        print(f"  client errors: {len(errors)} {errors[:3]}")
    finally:
        if serve is not None:
            try:
                os.killpg(serve.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            serve.wait()
        sh("docker", "stack", "rm", name, check=False)


if __name__ == "__main__":
    main()
