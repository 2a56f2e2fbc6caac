"""Phase `keeper` of benches/run (issue 24): what the keeper costs when there is nothing to do.

K1  A sync with nothing new. A bare repository on the local disk (`git init --bare`), one commit
    with a compose file of one sleeping service, `wsm sync add NAME --repo file://…` and one
    `wsm sync now NAME` (deploys; untimed). Then, alternating A B C after an untimed warm-up:
      A  `wsm sync now NAME` (nothing new: it asks the branch's head and returns),
      B  `git ls-remote file://… refs/heads/main` alone (the floor of asking),
      C  `git fetch --depth 1` of the branch into a fresh `git init` folder (made untimed).
    The issue's target: A ≤ 0.3 s + C. The service's version is read with the Docker CLI before
    the first and after the last A: nothing new must change nothing.
K1' The Engine API requests of one A, through benches/apiproxy.py (DOCKER_HOST on its socket).
K2  The jobs runner's idle tick, requests per tick, with 0 and with 40 jobs defined (20 syncs
    `sync add … --every 1h --no-check`, so 20 jobs `sync-NAME`, and 20 jobs `upd-N`; nothing is
    due for an hour). The runner lease is one per swarm, and a runner that holds it refuses the
    jobs it cannot verify in their runs documents: on the shared local engine a benchmark runner
    would take the lease from the runner of a test running beside it. So K2 runs on a swarm of
    its own, a netns host (tests/fixtures/netns-host) with its own dockerd. `wsm jobs runner`
    runs on this machine with DOCKER_HOST on a logging proxy whose upstream is that dockerd, and
    WSM_JOBS_KEY_FILE on a key made here. After a warm-up (it takes the lease and writes the
    runs documents of the jobs it sees first), the requests of a window of idle passes are
    counted; a pass is one read of the lease document, so passes are counted in the same log.
    Counts do not depend on load, so 0 and 40 are measured one after the other, not alternated.

Everything is removed at the end, also on failure or Ctrl-C: the runner and proxy (their process
groups), the netns host (`netns-host down`, with its swarm and documents), the local stack and its
store documents (`wsm sync rm`, then any `wsm-state-*` config naming the stack), the repository.
"""

import json
import os
import re
import secrets
import select
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NETNS_HOST = os.path.join(ROOT, "tests", "fixtures", "netns-host")
IMAGE = "localhost:5000/wavelet-stack-node:latest"
COMPOSE = f"""services:
  app:
    image: {IMAGE}
    entrypoint: ["sleep", "3600"]
    stop_grace_period: 1s
"""
SYNCS = 20
UPDATE_JOBS = 20
WARMUP_S = 14.0  # more than one refresh of the runner (10 s) after it takes the lease
WINDOW_S = 30.0  # three refreshes
# The runner before issue 24's benchmark: it read every job's document at every refresh. Its
# script, from this checkout's history, runs on the same binary (WSM_SCRIPT_PATH) as the row
# that compares.
BEFORE = "e033f77"


class KeeperBed:
    def __init__(self, h, bench):
        self.h, self.bench = h, bench
        self.dir = os.path.join(bench.tmp, "keeper")
        os.makedirs(self.dir)
        self.repo = os.path.join(self.dir, "repo.git")
        self.url = f"file://{self.repo}"
        self.stack = f"wsmbench{bench.rid}k"
        self.synced = False
        self.host = None
        self.children = []

    def sh(self, argv, env=None, timeout=120):
        r = self.h.run(argv, env, timeout=timeout, capture=True)
        if r.code != 0:
            raise self.h.HarnessError(f"{' '.join(argv[:6])}… exited {r.code}: {(r.err + r.out).strip()[-400:]}")
        return r.out

    # -- K1 ----------------------------------------------------------------------------------

    def make_repo(self):
        work = os.path.join(self.dir, "work")
        git = ["git", "-c", "user.name=wsm bench", "-c", "user.email=bench@wsm.invalid"]
        self.sh(["git", "init", "-q", "--bare", self.repo])
        self.sh(["git", "init", "-q", "-b", "main", work])
        with open(os.path.join(work, "compose.yaml"), "w") as f:
            f.write(COMPOSE)
        self.sh([*git, "-C", work, "add", "-A"])
        self.sh([*git, "-C", work, "commit", "-qm", "One sleeping service"])
        self.sh([*git, "-C", work, "push", "-q", self.url, "main"])

    def sync_up(self):
        b = self.bench
        with open(os.path.join(b.cfg, "stacks", self.stack), "w") as f:
            f.write("WSM_DEPLOY_TIMEOUT=120\n")
        b.created.append(self.stack)
        self.synced = True
        self.sh(b.wsm("sync", "add", self.stack, "--repo", self.url), b.env)
        self.h.log(f"{self.stack}: first sync (deploys one sleeping service)")
        self.sh(b.wsm("sync", "now", self.stack), b.env, timeout=300)

    def service_version(self):
        r = self.h.docker("service", "inspect", "--format", "{{.Version.Index}}", f"{self.stack}_app")
        return r.out.strip() if r.code == 0 else f"(none: {r.err.strip()[-100:]})"

    def sync_down(self):
        if not self.synced:
            return
        b = self.bench
        self.h.run(b.wsm("sync", "rm", self.stack), b.env, timeout=60)
        # Whatever document names the stack (sync, sync-state, history, lock), ours alone.
        names = self.h.docker("config", "ls", "--format", "{{.Name}}").out.split()
        ours = [n for n in names if n.startswith("wsm-state-") and re.search(rf"\b{self.stack}\b", n)]
        if ours:
            self.h.docker("config", "rm", *ours)
        self.synced = False

    # -- K2 ----------------------------------------------------------------------------------

    def host_up(self):
        h = self.h
        name = getattr(self, "host_name", f"wsmbench{self.bench.rid}k")
        self.host = name  # `down` of a host that never came up is harmless
        for index in range(150, 200):
            r = h.run([NETNS_HOST, "up", name, str(index)], timeout=120, capture=True)
            if r.code == 0:
                env = dict(l.split("=", 1) for l in r.out.splitlines() if "=" in l)
                break
            if "already used" not in r.err:
                raise h.HarnessError(f"netns-host up: {r.err.strip()[-400:]}")
        else:
            raise h.HarnessError("no free netns-host index")
        self.sock = f"{env['STATE_DIR']}/docker.sock"
        h.log(f"keeper host {name} at {env['IP']}: swarm init")
        self.sh(["docker", "-H", f"unix://{self.sock}", "swarm", "init", "--advertise-addr", env["IP"]])
        self.key = os.path.join(self.dir, "jobs.key")
        with open(self.key, "w") as f:
            f.write(secrets.token_hex(32))
        os.chmod(self.key, 0o600)
        self.host_env = dict(self.bench.env, DOCKER_HOST=f"unix://{self.sock}")

    def host_down(self):
        for p in self.children:
            self.stop(p)
        if self.host:
            subprocess.run([NETNS_HOST, "down", self.host], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=180)
            self.host = None

    def stop(self, p, grace=10):
        """SIGTERM (the runner gives its lease up), then SIGKILL of the group at the deadline."""
        if p.poll() is None:
            try:
                os.killpg(p.pid, 15)
            except ProcessLookupError:
                pass
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                self.h._kill_group(p)
                p.wait()
        self.h.LIVE.discard(p)
        if p in self.children:
            self.children.remove(p)

    def add_jobs(self):
        b, env = self.bench, self.host_env
        names = []
        for i in range(SYNCS):
            n = f"{self.stack}s{i}"
            with open(os.path.join(b.cfg, "stacks", n), "w") as f:
                f.write("")
            names.append(n)
        for n in names:
            self.sh(b.wsm("sync", "add", n, "--repo", self.url, "--every", "1h", "--no-check"), env)
        for i in range(UPDATE_JOBS):
            self.sh(b.wsm("jobs", "add", "--every", "1h", f"upd-{i}", "updates", "check", names[i % len(names)]), env)
        listed = self.sh(b.wsm("jobs", "ls", "--json"), env)
        return names, listed

    def before_runner(self):
        """A script folder holding the runner of BEFORE (WSM_SCRIPT_PATH puts it before the
        bundled one); None when this checkout cannot show it."""
        r = self.h.run(["git", "-C", ROOT, "show", f"{BEFORE}:stdlib/jobs_runner.rhai"], capture=True)
        if r.code != 0:
            self.h.log(f"no runner of {BEFORE} to compare with: {r.err.strip()[-200:]}")
            return None
        folder = os.path.join(self.dir, "before")
        os.makedirs(os.path.join(folder, "stdlib"), mode=0o755)
        with open(os.path.join(folder, "stdlib", "jobs_runner.rhai"), "w") as f:
            f.write(r.out)
        return folder

    def idle_ticks(self, label, script_path=None):
        """Runs the runner through a fresh proxy; counts the requests of WINDOW_S of idle passes
        after WARMUP_S. Returns (requests, passes, refreshes, kinds)."""
        h = self.h
        sock = os.path.join(self.dir, f"proxy-{label}.sock")
        logf = os.path.join(self.dir, f"proxy-{label}.log")
        open(logf, "w").close()
        proxy = h.spawn([sys.executable, h.PROXY, "--listen", sock, "--log", logf, "--upstream", self.sock],
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.children.append(proxy)
        try:
            ready, _, _ = select.select([proxy.stdout], [], [], 10)
            if not ready or proxy.stdout.readline().strip() != b"ready":
                raise h.HarnessError("the API proxy did not start")
            errf = open(os.path.join(self.dir, f"runner-{label}.err"), "wb")
            env = dict(self.bench.env, DOCKER_HOST=f"unix://{sock}", WSM_JOBS_KEY_FILE=self.key)
            if script_path:
                env["WSM_SCRIPT_PATH"] = script_path
            runner = h.spawn(self.bench.wsm("jobs", "runner"), env, stderr=errf)
            self.children.append(runner)
            try:
                h.wait_until("the runner holding the lease", lambda: b"holds the lease" in
                             open(errf.name, "rb").read() or runner.poll() is not None, 60)
                if runner.poll() is not None:
                    raise h.HarnessError(f"the runner exited {runner.returncode}: {open(errf.name).read()[-400:]}")
                h.log(f"runner ({label}) holds the lease; {WARMUP_S:.0f} s warm-up, then {WINDOW_S:.0f} s counted")
                time.sleep(WARMUP_S)
                start = lines(logf)
                time.sleep(WINDOW_S)
                end = lines(logf)
            finally:
                self.stop(runner)
                errf.close()
        finally:
            self.stop(proxy)
        reqs, kinds, passes, refreshes = 0, {}, 0, 0
        for line in open(logf).read().splitlines()[start:end]:
            ms, _, what = line.split(" ", 2)
            if what in ("CONNECT", "ANSWER", "CLOSE") or what.startswith("UPSTREAM"):
                continue
            reqs += 1
            method, path = (what.split(" ", 1) + [""])[:2]
            base = path.split("?")[0]
            if method == "GET" and base.endswith("/info"):
                passes += 1  # each pass asks who leads: GET /info, then GET /nodes
            if method == "GET" and base.endswith("/configs"):
                refreshes += 1
            segs = base.split("/")
            doc = segs[-1]
            if doc.startswith("wsm-state-"):  # a store document by name: its kind, not its id
                segs[-1] = doc.split(".")[0] + (".*" if "." in doc else "")
            key = method + " " + "/".join("{id}" if len(x) >= 20 and not x.startswith("wsm-state-") else x
                                          for x in segs)
            kinds[key] = kinds.get(key, 0) + 1
        return reqs, passes, refreshes, kinds

    def remove_jobs(self, names):
        b, env = self.bench, self.host_env
        for n in names:
            self.h.run(b.wsm("sync", "rm", n), env, timeout=60)
        for i in range(UPDATE_JOBS):
            self.h.run(b.wsm("jobs", "rm", f"upd-{i}"), env, timeout=60)


def lines(path):
    """How many whole lines the proxy's log holds now (it writes one line at a time)."""
    with open(path, "rb") as f:
        return f.read().count(b"\n")


def phase_keeper(h, bench):
    bed = KeeperBed(h, bench)
    bench.extra_cleanups.append(bed.host_down)
    bench.extra_cleanups.append(bed.sync_down)
    rep, pairs = bench.report, bench.args.pairs
    bed.make_repo()

    # K1 ---------------------------------------------------------------------------------------
    bed.sync_up()
    v0 = bed.service_version()
    r = h.run(bench.wsm("sync", "now", "--json", bed.stack), bench.env, capture=True)
    h.log(f"sync now with nothing new: exit {r.code}: {r.out.strip()[:300]}")
    fresh = os.path.join(bed.dir, "fetch")
    ls_remote = ["git", "ls-remote", bed.url, "refs/heads/main"]
    fetch = ["git", "-C", fresh, "fetch", "-q", "--depth", "1", bed.url, "refs/heads/main"]
    ra, rb, rc = [], [], []
    for i in range(pairs + 1):
        a = h.run(bench.wsm("sync", "now", bed.stack), bench.env)
        b = h.run(ls_remote)
        subprocess.run(["rm", "-rf", fresh])
        subprocess.run(["git", "init", "-q", fresh], check=True)
        c = h.run(fetch)
        for x, out, label in ((a, ra, "A"), (b, rb, "B"), (c, rc, "C")):
            if x.code != 0:
                h.log(f"sync nothing new: {label} run {i} exited {x.code}: {x.err.strip()[-300:]}")
            if i > 0:
                out.append(x)
    rep.samples["keeper sync nothing new"] = {k: [round(x.seconds, 4) for x in v] for k, v in
                                              (("A", ra), ("B", rb), ("C", rc))}
    v1 = bed.service_version()
    ma, mb, mc = (h.med([x.seconds for x in v]) for v in (ra, rb, rc))
    rep.add("K1 keeper: `sync now` with nothing new (file:// repository)", h.fmt_s(ma),
            f"{h.fmt_s(mb)} (`git ls-remote`); {h.fmt_s(mc)} (`git fetch --depth 1`)",
            f"A − C = {h.fmt_s(ma - mc)}; service version {v0} → {v1}", "A ≤ 0.3 s + C",
            ma <= 0.3 + mc)
    n, conns, kinds, _ = bench.count_requests([bench.wsm("sync", "now", bed.stack)])
    rep.samples["keeper sync nothing new requests"] = kinds
    rep.add("K1' Engine API requests of one `sync now` with nothing new", f"{n} ({conns} conn.)", "-",
            ", ".join(f"{k} ×{v}" for k, v in sorted(kinds.items())), "-", None)
    bed.sync_down()
    bench.created.remove(bed.stack)
    bench.teardown(bed.stack)

    # K2 ---------------------------------------------------------------------------------------
    bed.host_up()
    before = bed.before_runner()
    variants = [("now", None)] + ([("before", before)] if before else [])
    results = {}
    for v, path in variants:
        results[(v, 0)] = bed.idle_ticks(f"{v}, 0 jobs", path)
    names, listed = bed.add_jobs()
    count = len(json.loads(listed))
    for v, path in variants:
        results[(v, count)] = bed.idle_ticks(f"{v}, {count} jobs", path)
    for (v, k), (reqs, passes, refreshes, kinds) in results.items():
        rep.samples[f"keeper idle tick, runner {v}, {k} jobs"] = dict(kinds, passes=passes, refreshes=refreshes)
        h.log(f"idle runner ({v}), {k} jobs: {reqs} requests in {passes} passes ({refreshes} lists): {kinds}")
    for v, _ in variants:
        r0, rn = results[(v, 0)], results[(v, count)]
        p0, pn = (x[0] / x[1] if x[1] else float("nan") for x in (r0, rn))
        # Over the same number of passes, the jobs may cost at most one request per refresh more.
        extra = (pn - p0) * rn[1]
        what = "this build" if v == "now" else f"the runner of {BEFORE}"
        rep.add(f"K2 jobs runner ({what}), idle: API requests per tick, {count} jobs against 0",
                f"{pn:.2f}/tick ({rn[0]} in {rn[1]} passes, {rn[2]} lists)",
                f"{p0:.2f}/tick ({r0[0]} in {r0[1]} passes, {r0[2]} lists)",
                f"+{pn - p0:.2f}/tick for {count} jobs", "≤ +1 per refresh (the list)",
                extra <= rn[2] + 0.5)
    bed.remove_jobs(names)
