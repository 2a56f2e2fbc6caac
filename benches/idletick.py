"""Phase `idletick` of benches/run (issue 28, item 2): the jobs runner's idle tick with 100
stacks, 20 syncs and 20 update checks defined, on the leader and on a follower.

The runner lease is one per swarm, so this runs on a swarm of its own (a netns host with its own
dockerd, as phase keeper's K2: `keeper.KeeperBed`), never on the local engine's `wsm-jobs`.
Set-up (not measured): STACKS stacks deployed with `wsm stack deploy -c` (one service at 0
replicas each, so their revisions are documents in the store and no container starts), SYNCS of
them synced (`sync add … --every 1h --no-check`, from a bare repository on the local disk) and
UPDATES jobs `updates check` (`jobs add --every 1h`): nothing is due for an hour.

Measured: two `wsm jobs runner` processes of this binary on this machine, each with DOCKER_HOST
on a logging proxy (benches/apiproxy.py) of its own whose upstream is the host's dockerd. The
first takes the lease (the leader: it renews the lease and lists the jobs every refresh); the
second starts once it does and follows (reads the lease each pass). After WARMUP_S both are
counted over the same WINDOW_S: requests per pass (a pass is one `GET /info`, the leadership
question each pass starts with) and per second, and CPU time (utime + stime of the process and
its reaped children, /proc/PID/stat) as a share of one core. Both are a single node's runners:
"follower" here means the runner that does not hold the lease.

The jobs are stored unsigned (no runner container on that host signs them), so the leader
refuses them at its first refresh and keeps them as read; a job read once is kept while its
version stands, so the requests of an idle tick are those of signed jobs.

Everything is removed at the end, also on failure: the runners and proxies, the netns host with
its swarm and documents, the repository (in the run's temporary directory).
"""

import json
import os
import select
import subprocess
import sys
import time

import keeper

STACKS = 100
SYNCS = 20
UPDATES = 20
WARMUP_S = 14.0
WINDOW_S = 60.0
IMAGE = "localhost:5000/wavelet-stack-base:latest"


class IdleBed(keeper.KeeperBed):
    def __init__(self, h, bench):
        self.h, self.bench = h, bench
        self.dir = os.path.join(bench.tmp, "idletick")
        os.makedirs(self.dir)
        self.repo = os.path.join(self.dir, "repo.git")
        self.url = f"file://{self.repo}"
        self.stack = f"wsmbench{bench.rid}i"
        self.synced = False
        self.host = None
        self.host_name = f"wsmbench{bench.rid}i"  # not keeper's, should both phases run
        self.children = []

    def populate(self):
        b, env = self.bench, self.host_env
        compose = os.path.join(self.dir, "one.yml")
        with open(compose, "w") as f:
            f.write(f"services:\n  app:\n    image: {IMAGE}\n    entrypoint: [\"sleep\", \"infinity\"]\n"
                    "    deploy:\n      replicas: 0\n")
        names = [f"{self.stack}{i:03d}" for i in range(STACKS)]
        for n in names:
            with open(os.path.join(b.cfg, "stacks", n), "w") as f:
                f.write("")
        self.h.log(f"idletick: deploying {STACKS} stacks (0 replicas) on the host's swarm")
        todo = list(names)
        while todo:  # four at a time
            batch, todo = todo[:4], todo[4:]
            procs = [(n, self.h.spawn(b.wsm("stack", "deploy", "-c", compose, "--resolve-image", "never",
                                            "--timeout", "120", n), env, stderr=subprocess.PIPE)) for n in batch]
            for n, p in procs:
                _, err = p.communicate(timeout=180)
                self.h.LIVE.discard(p)
                if p.returncode != 0:
                    raise self.h.HarnessError(f"deploy of {n} on the host failed: {err.decode()[-300:]}")
        for n in names[:SYNCS]:
            self.sh(b.wsm("sync", "add", n, "--repo", self.url, "--every", "1h", "--no-check"), env)
        for i in range(UPDATES):
            self.sh(b.wsm("jobs", "add", "--every", "1h", f"upd-{i}", "updates", "check", names[i % SYNCS]), env)
        return len(json.loads(self.sh(b.wsm("jobs", "ls", "--json"), env)))

    def proxy(self, label):
        sock = os.path.join(self.dir, f"proxy-{label}.sock")
        logf = os.path.join(self.dir, f"proxy-{label}.log")
        open(logf, "w").close()
        p = self.h.spawn([sys.executable, self.h.PROXY, "--listen", sock, "--log", logf, "--upstream", self.sock],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.children.append(p)
        ready, _, _ = select.select([p.stdout], [], [], 10)
        if not ready or p.stdout.readline().strip() != b"ready":
            raise self.h.HarnessError("the API proxy did not start")
        return sock, logf

    def runner(self, label, sock):
        errf = os.path.join(self.dir, f"runner-{label}.err")
        env = dict(self.bench.env, DOCKER_HOST=f"unix://{sock}", WSM_JOBS_KEY_FILE=self.key)
        p = self.h.spawn(self.bench.wsm("jobs", "runner"), env, stderr=open(errf, "wb"))
        self.children.append(p)
        return p, errf


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime, stime, cutime, cstime are fields 14-17 (1-based); after the ")" they start at 11.
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def count(logf, start, end):
    reqs, passes, kinds = 0, 0, {}
    for line in open(logf).read().splitlines()[start:end]:
        _, _, what = line.split(" ", 2)
        if what in ("CONNECT", "ANSWER", "CLOSE") or what.startswith("UPSTREAM"):
            continue
        reqs += 1
        method, path = (what.split(" ", 1) + [""])[:2]
        base = path.split("?")[0]
        if method == "GET" and base.endswith("/info"):
            passes += 1
        segs = base.split("/")
        if segs[-1].startswith("wsm-state-"):
            segs[-1] = segs[-1].split(".")[0] + ".*"
        key = method + " " + "/".join("{id}" if len(x) >= 20 and not x.startswith("wsm-state-") else x for x in segs)
        kinds[key] = kinds.get(key, 0) + 1
    return reqs, passes, kinds


def phase_idletick(h, bench):
    bed = IdleBed(h, bench)
    bench.extra_cleanups.append(bed.host_down)
    rep = bench.report
    bed.make_repo()
    bed.host_up()
    jobs = bed.populate()
    h.log(f"idletick: {jobs} jobs defined; starting the leader")
    try:
        lsock, llog = bed.proxy("leader")
        leader, lerr = bed.runner("leader", lsock)
        h.wait_until("the first runner holding the lease", lambda: b"holds the lease" in open(lerr, "rb").read()
                     or leader.poll() is not None, 60)
        if leader.poll() is not None:
            raise h.HarnessError(f"the runner exited {leader.returncode}: {open(lerr).read()[-400:]}")
        fsock, flog = bed.proxy("follower")
        follower, ferr = bed.runner("follower", fsock)
        h.log(f"idletick: follower started; {WARMUP_S:.0f} s warm-up, then {WINDOW_S:.0f} s counted")
        time.sleep(WARMUP_S)
        if follower.poll() is not None:
            raise h.HarnessError(f"the follower exited {follower.returncode}: {open(ferr).read()[-400:]}")
        start = {k: keeper.lines(f) for k, f in (("leader", llog), ("follower", flog))}
        cpu0 = {"leader": cpu_seconds(leader.pid), "follower": cpu_seconds(follower.pid)}
        t0 = time.monotonic()
        time.sleep(WINDOW_S)
        cpu1 = {"leader": cpu_seconds(leader.pid), "follower": cpu_seconds(follower.pid)}
        elapsed = time.monotonic() - t0
        end = {k: keeper.lines(f) for k, f in (("leader", llog), ("follower", flog))}
        holds = b"holds the lease" in open(ferr, "rb").read()
    finally:
        for p in list(bed.children):
            bed.stop(p)
    if holds:
        h.log("idletick: the follower took the lease during the run; its row is not a follower's")
    for role, logf in (("leader", llog), ("follower", flog)):
        reqs, passes, kinds = count(logf, start[role], end[role])
        cpu = cpu1[role] - cpu0[role]
        share = cpu / elapsed
        rep.samples[f"idletick {role}"] = dict(kinds, passes=passes, cpu_s=round(cpu, 3), window_s=round(elapsed, 1))
        h.log(f"idletick {role}: {reqs} requests in {passes} passes over {elapsed:.0f} s, CPU {cpu:.2f} s: {kinds}")
        per = reqs / passes if passes else float("nan")
        goal, met = (("≤ 5 requests per idle tick", per <= 5) if role == "follower"
                     else ("≤ 1 % of one core", share <= 0.01))
        rep.add(f"I jobs runner idle, {role}: {STACKS} stacks, {jobs} jobs ({SYNCS} syncs, {UPDATES} update checks)",
                f"{per:.2f} requests/tick ({reqs} in {passes} passes, {reqs / elapsed:.2f}/s)",
                f"CPU {cpu:.2f} s in {elapsed:.0f} s",
                f"{share * 100:.2f} % of one core, {cpu * 60 / elapsed:.2f} CPU-s per minute", goal, met)
