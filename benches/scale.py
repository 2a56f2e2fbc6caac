"""Phase `scale` of benches/run (issue 28, item 2): wsm on a swarm with many stacks.

Setup (not timed): one running stack of 20 tasks (`S20`: 4 services x 5 replicas of a sleep,
deployed with `wsm stack deploy -c`), a stack with 10 revisions (`SH`: one service at 0
replicas deployed 10 times with a changed environment), then 100 stacks of 6 services each,
replicas 0 so that the engine starts no container. The 600 services are made through the
Engine API straight from this process (POST /services/create with the stack label, as
`docker stack deploy` labels them; no network per stack, which keeps 100 overlay networks off
this small machine) and removed by id at the end of the phase, and by the harness's clean-up
on failure or Ctrl-C; every name starts with wsmbench<run id>, so nothing of another run is
touched.

Rows:
- `stack ls` (A) against `docker stack ls` (B), alternating; target A/B <= 0.5.
- `status` and `plan -c` of S20 with the 600 services there, against the same commands before
  they were made (the swarm as it was: its other stacks are counted in the row); target <= 1.2.
  `docker stack ps` of S20 the same way, for the engine's own growth (its label filter reads
  every service).
- `history` of SH (10 revisions); target <= 50 ms.
- Engine API requests of `stack ls`, `status` and `plan` at scale, through the logging proxy.
- wsm's peak RSS over every command of the phase (wait4); target <= 64 MiB.
"""

import concurrent.futures
import json
import os
import socket

STACKS = 100
SERVICES = 6
IMAGE = "localhost:5000/wavelet-stack-base:latest"


def api(method, path, body=None, timeout=60):
    """One Engine API request on /var/run/docker.sock; returns (status, body bytes)."""
    data = json.dumps(body).encode() if body is not None else b""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect("/var/run/docker.sock")
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    return status, rest


def compose20():
    lines = ["services:"]
    for i in range(1, 5):
        lines += [f"  w{i}:", f"    image: {IMAGE}", '    entrypoint: ["sleep", "infinity"]',
                  "    stop_grace_period: 1s", "    deploy:", "      replicas: 5"]
    return "\n".join(lines) + "\n"


def compose_hist(i):
    return (f"services:\n  h:\n    image: {IMAGE}\n    entrypoint: [\"sleep\", \"infinity\"]\n"
            f"    environment:\n      REV: \"{i}\"\n    deploy:\n      replicas: 0\n")


class Many:
    """The 600 services: made in parallel, removed by id (also from the harness's clean-up)."""

    def __init__(self, prefix, h):
        self.prefix, self.h, self.ids = prefix, h, []

    def make(self):
        specs = []
        for i in range(STACKS):
            stack = f"{self.prefix}{i:03d}"
            for j in range(SERVICES):
                specs.append({
                    "Name": f"{stack}_s{j}",
                    "Labels": {self.h.NS_LABEL: stack, "com.docker.stack.image": IMAGE},
                    "TaskTemplate": {"ContainerSpec": {"Image": IMAGE, "Command": ["sleep", "infinity"],
                                                       "Labels": {self.h.NS_LABEL: stack}}},
                    "Mode": {"Replicated": {"Replicas": 0}},
                })

        def one(spec):
            code, body = api("POST", "/services/create", spec)
            if code != 201:
                raise self.h.HarnessError(f"service create {spec['Name']}: {code} {body[:200]!r}")
            return json.loads(body)["ID"]

        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            for fut in [ex.submit(one, s) for s in specs]:
                try:
                    self.ids.append(fut.result())
                except self.h.HarnessError as e:
                    self.h.log(str(e))
        if len(self.ids) != len(specs):
            raise self.h.HarnessError(f"made {len(self.ids)} of {len(specs)} services")

    def remove(self):
        ids, self.ids = self.ids, []
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            list(ex.map(lambda i: api("DELETE", f"/services/{i}"), ids))
        left = self.h.docker("service", "ls", "-q", "--filter", f"name={self.prefix}").out.split()
        if left:  # made by a create whose answer was lost, or from an interrupted earlier pass
            self.h.docker("service", "rm", *left)


def phase_scale(h, bench):
    """`h` is the benches/run module, `bench` its Bench."""
    pairs = max(5, bench.args.pairs)
    s20, sh = f"wsmbench{bench.rid}sc20", f"wsmbench{bench.rid}schist"
    bench.created += [s20, sh]
    many = Many(f"wsmbench{bench.rid}m", h)
    bench.extra_cleanups.append(many.remove)
    rss = {}

    def wsm(*args, env=None):
        r = h.run(bench.wsm(*args), dict(bench.env, **(env or {})), timeout=300)
        key = args[2] if args[:2] == ("stack", "-s") else " ".join(args[:2])
        rss[key] = max(rss.get(key, 0), r.maxrss_kib)
        return r

    f20 = os.path.join(bench.tmp, "scale20.yml")
    with open(f20, "w") as f:
        f.write(compose20())
    h.log(f"scale: deploying {s20} (20 tasks) and 10 revisions of {sh}")
    r = wsm("stack", "deploy", "-c", f20, "--resolve-image", "never", "--timeout", "240", s20)
    if r.code != 0:
        raise h.HarnessError(f"deploy of {s20} failed: {r.err.strip()[-400:]}")
    fh = os.path.join(bench.tmp, "scalehist.yml")
    for i in range(10):
        with open(fh, "w") as f:
            f.write(compose_hist(i))
        r = wsm("stack", "deploy", "-c", fh, "--resolve-image", "never", "--timeout", "120", sh)
        if r.code != 0:
            raise h.HarnessError(f"deploy {i + 1} of {sh} failed: {r.err.strip()[-400:]}")

    def status():
        return wsm("stack", "-s", s20, "status")

    def plan():
        return wsm("stack", "-s", s20, "plan", "-c", f20, "--resolve-image", "never")

    def sample(fn, n):
        fn()  # warm-up
        return h.med([fn().seconds for _ in range(n)])

    others = len(h.docker("service", "ls", "-q").out.split())
    def cli_ps():  # the engine's own growth: the same label-filtered listings, by the CLI
        return h.run(["docker", "stack", "ps", s20])

    base_status, base_plan = sample(status, 2 * pairs + 1), sample(plan, 2 * pairs + 1)
    base_ps = sample(cli_ps, 2 * pairs + 1)
    h.log(f"scale: making {STACKS * SERVICES} services ({STACKS} stacks), replicas 0")
    try:
        many.make()
        total = len(h.docker("service", "ls", "-q").out.split())
        ra, rb = h.alternate("scale stack ls", bench.report, pairs,
                             lambda: wsm("stack", "ls"), lambda: h.run(["docker", "stack", "ls"]))
        ma, mb = h.med([r.seconds for r in ra]), h.med([r.seconds for r in rb])
        bench.report.add(f"S1 `stack ls`, {total} services on the swarm", h.fmt_s(ma),
                         f"{h.fmt_s(mb)} (`docker stack ls`)", f"A/B = {ma / mb:.2f}", "A/B ≤ 0.5", ma / mb <= 0.5)
        for name, fn, base in (("status", status, base_status), ("plan", plan, base_plan)):
            m = sample(fn, 2 * pairs + 1)
            bench.report.add(f"S2 `{name}` of a 20-task stack, {total} services against {others}",
                             h.fmt_s(m), f"{h.fmt_s(base)} (before the {STACKS * SERVICES} were made)",
                             f"ratio = {m / base:.2f}", "≤ 1.2", m / base <= 1.2)
        m = sample(cli_ps, 2 * pairs + 1)
        bench.report.add(f"S2' reference: `docker stack ps` of the 20-task stack, {total} services against {others}",
                         h.fmt_s(m), f"{h.fmt_s(base_ps)} (before)", f"ratio = {m / base_ps:.2f}", "(engine floor)", None)
        m = sample(lambda: wsm("stack", "-s", sh, "history"), 2 * pairs + 1)
        bench.report.add("S3 `history` of a stack with 10 revisions", h.fmt_s(m), "-",
                         f"median of {2 * pairs + 1}", "≤ 50 ms", m <= 0.050)
        counts = []
        for label, argv in (("stack ls", bench.wsm("stack", "ls")),
                            ("status", bench.wsm("stack", "-s", s20, "status")),
                            ("plan", bench.wsm("stack", "-s", s20, "plan", "-c", f20, "--resolve-image", "never"))):
            reqs, conns, kinds, _ = bench.count_requests([argv])
            counts.append(f"{label} {reqs}")
            h.log(f"scale: {label} at {total} services: {reqs} requests on {conns} connections: {kinds}")
        bench.report.add("S4 Engine API requests at scale", ", ".join(counts), "-", "through the logging proxy",
                         "(reported)", None)
    finally:
        h.log("scale: removing the 600 services")
        many.remove()
    peak = max(rss.values()) / 1024 if rss else float("nan")
    bench.report.add("S5 wsm peak RSS, every command of the phase",
                     f"{peak:.1f} MiB", "-", ", ".join(f"{k} {v / 1024:.1f}" for k, v in sorted(rss.items())),
                     "≤ 64 MiB", peak <= 64)
    bench.teardown(sh)
    bench.teardown(s20)
