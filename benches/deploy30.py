"""Phase `deploy30` of benches/run: a 30-service compose stack file deployed from nothing.

A = `wsm stack deploy -c FILE S` (waits itself until every service runs n/n).
B = `docker stack deploy -d -c FILE S`, then `docker service ls` every 0.5 s until every
service shows n/n, as a script would.

The file uses only a locally built image (`localhost:5000/wavelet-stack-base`, running a
sleep), one replica per service, no ports, on the stack's default overlay network. Between runs
the stack is removed completely (`Bench.teardown`: services, containers force-removed, network,
volumes, wsm's revisions; every wait has a deadline).
"""

import os
import time

SERVICES = 30
IMAGE = "localhost:5000/wavelet-stack-base:latest"


def compose_text(n=SERVICES, image=IMAGE):
    lines = ['version: "3.8"', "services:"]
    for i in range(1, n + 1):
        lines += [
            f"  s{i:02d}:",
            f"    image: {image}",
            '    entrypoint: ["sleep", "infinity"]',
            "    stop_grace_period: 1s",
            "    deploy:",
            "      replicas: 1",
        ]
    return "\n".join(lines) + "\n"


def run_phase(bench, h):
    """`bench` is the harness's Bench; `h` the benches/run module (run, docker, alternate, …)."""
    pairs = max(3, bench.args.converge_pairs)
    stack = f"wsmbench{bench.rid}d30"
    bench.created.append(stack)
    path = os.path.join(bench.tmp, "deploy30.yml")
    with open(path, "w") as f:
        f.write(compose_text())

    def all_running():
        r = h.docker("service", "ls", "--filter", f"label={h.NS_LABEL}={stack}",
                     "--format", "{{.Replicas}}")
        reps = r.out.split()
        return len(reps) == SERVICES and all(x == "1/1" for x in reps)

    def fresh(label):
        if not bench.teardown(stack):
            raise h.HarnessError(f"could not remove {stack} between runs")

    def a():
        r = h.run(bench.wsm("stack", "deploy", "-c", path, "--timeout", "240", stack),
                  bench.env, timeout=300)
        if r.code == 0 and not all_running():
            h.log("deploy30 A: wsm deploy returned but not every service runs 1/1")
        return r

    def b():
        t0 = time.perf_counter()
        r = h.run(["docker", "stack", "deploy", "-d", "-c", path, stack], timeout=120)
        if r.code == 0:
            h.wait_until("every service of the detached deploy to run", all_running, 240, 0.5)
        return h.Result(time.perf_counter() - t0, r.code, 0, "", r.err)

    ra, rb = h.alternate("deploy30", bench.report, pairs, a, b, between=fresh, warmup=False)
    ma, mb = h.med([r.seconds for r in ra]), h.med([r.seconds for r in rb])
    bench.report.add(f"2d deploy of a {SERVICES}-service stack file from nothing",
                     h.fmt_s(ma), f"{h.fmt_s(mb)} (`docker stack deploy -d`, poll `service ls` 0.5 s)",
                     f"A/B = {ma / mb:.2f}", "A/B ≤ 0.5", ma / mb <= 0.5)
    bench.teardown(stack)
