"""Phase `wan` of benches/run (issue 28, item 1): the remote manager of phase `remote` behind a
link of 50 and of 150 ms round-trip time.

This kernel has no netem qdisc, so the delay is a userspace TCP proxy written for the
benchmark (`DelayProxy`, below): it listens on 127.0.0.1 and passes each connection to the
netns host's sshd, holding every chunk read for half the RTT before writing it on, in each
direction, order preserved (a chunk is written only after the ones before it). Both tools reach
the host through it: an ssh_config `Host wan<rtt>` entry names the proxy's port and the host's
key (HostKeyAlias), and DOCKER_HOST=ssh://root@wan<rtt> is set for wsm and the Docker CLI alike.

Rows, at each RTT: `stack ls`, `status` against `docker stack ps`, `ps`, `services`, wsm over its
shared SSH master (warm after the untimed warm-up), the CLI with `-H ssh://` (a new SSH
connection per command, as it always is). The round trips each command costs are estimated from
the two RTTs: (time at 150 ms - time at 50 ms) / 100 ms, for both tools. And one cold first
command (no master yet: WSM_SSH_PERSIST=0) against the CLI.

The rows that change or move something (`WanExtras`, below), at each RTT, their setup made
untimed through the host's own Docker socket (never through the proxy):
  - `logs --tail 100` of one service whose task printed LOG_LINES lines, against
    `docker service logs --tail 100`;
  - a copy of a --wan-mib MiB directory out of a running container, `wsm stack cp
    <nodeId>:/data DIR` against `docker cp <container>:/data DIR` (the general data path under
    `dump-db`: a Wavelet stack on the netns host would need its images loaded there and a
    database written, which this phase does not do);
  - a 30-service `deploy -c` from nothing (benches/deploy30.py's file, with the image the host
    has): A `wsm stack deploy` (waits itself, monitor window included), B `docker stack deploy
    -d` then `docker service ls` over the same ssh:// every 0.5 s until every service runs 1/1,
    as deploy30's B; and the deploy call alone, `wsm stack deploy -d` against B's `deploy -d`;
  - `rm` of the stack that deploy made, each tool removing its own: A `wsm stack rm` (returns
    when tasks, containers and networks are gone), B `docker stack rm` (returns at once,
    --detach is its default); the time until B's stack is gone, seen on the host's socket, is
    reported beside it. Between runs the stack is removed completely (untimed).
Everything of these rows lives on the netns host or in the run's temporary directory, so the
phase's clean-up (`netns-host down`) removes it also on failure or Ctrl-C.
"""

import asyncio
import os
import shutil
import socket
import threading
import time

import deploy30
import remote

RTTS = (0.050, 0.150)
LOG_LINES = 300
NS_LABEL = "com.docker.stack.namespace"


class DelayProxy:
    """127.0.0.1:<port> -> (host, 22), each chunk held rtt/2 per direction, in order."""

    def __init__(self, host, rtt, port=22):
        self.host, self.port, self.half = host, port, rtt / 2
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.listen_port = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("the delay proxy did not start")

    def _run(self):
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.server = server
        self.listen_port = server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    async def _pipe(self, reader, writer):
        queue = asyncio.Queue()

        async def read():
            while True:
                data = await reader.read(65536)
                await queue.put((self.loop.time() + self.half, data))
                if not data:
                    return

        async def write():
            while True:
                due, data = await queue.get()
                delay = due - self.loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if not data:
                    try:
                        writer.write_eof()
                    except OSError:
                        pass
                    return
                writer.write(data)
                await writer.drain()

        try:
            await asyncio.gather(read(), write())
        except (ConnectionError, OSError):
            pass

    async def _client(self, creader, cwriter):
        try:
            ureader, uwriter = await asyncio.open_connection(self.host, self.port)
        except OSError:
            cwriter.close()
            return
        for w in (cwriter, uwriter):  # the delay is ours alone: no Nagle on top of it
            w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await asyncio.gather(self._pipe(creader, uwriter), self._pipe(ureader, cwriter))
        except asyncio.CancelledError:
            pass  # stop(): ends as a finished task, which the stream's own callback expects
        for w in (cwriter, uwriter):
            w.close()

    def stop(self):
        async def halt():
            self.server.close()
            # Cancelled and awaited, so that no connection's task is left pending at exit.
            tasks = [t for t in asyncio.all_tasks(self.loop) if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.loop.stop()
        if self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(halt(), self.loop)
            self.thread.join(10)


AUX_COMPOSE = """services:
  log:
    image: {image}
    command: ["sh", "-c", "seq -f 'wsmbench log line %g of {lines}, as a service prints while it works' 1 {lines}; exec sleep 1000000"]
  data:
    image: {image}
    command: ["sleep", "1000000"]
"""


def tree_bytes(top):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(top) for f in fs)


class WanExtras:
    """The rows that need more on the host than the remote bed's one task: a stack `<rid>wa`
    (a service that printed LOG_LINES lines, a service holding --wan-mib MiB under /data) and
    deploy30's file, deployed and removed as `<rid>w30`. Setup and clean-up go through the
    host's own Docker socket (`bed.sock`), never through the delay proxy."""

    def __init__(self, h, bench, bed, mib):
        self.h, self.bench, self.bed, self.mib = h, bench, bed, max(1, mib)
        self.dir = os.path.join(bed.dir, "wan")
        os.makedirs(self.dir, exist_ok=True)
        self.aux = f"wsmbench{bench.rid}wa"
        self.d30 = f"wsmbench{bench.rid}w30"
        self.d30_file = os.path.join(self.dir, "deploy30.yml")
        self.dest = os.path.join(self.dir, "cp")

    def host(self, *args, timeout=120):
        """The host's Docker CLI on its own socket; raises on failure (setup)."""
        return self.bed.sh(["docker", "-H", self.bed.sock, *args], timeout)

    def host_try(self, *args, timeout=60):
        return self.h.run(["docker", "-H", self.bed.sock, *args], timeout=timeout, capture=True)

    def labelled(self, what, stack):
        args = {"services": ["service", "ls", "-q"], "containers": ["ps", "-aq"], "networks": ["network", "ls", "-q"]}[what]
        return self.host_try(*args, "--filter", f"label={NS_LABEL}={stack}").out.split()

    def running(self, service):
        return self.host("ps", "-q", "--no-trunc", "--filter", f"label=com.docker.swarm.service.name={service}").split()

    def up(self):
        h, cfg = self.h, self.bench.cfg
        aux_file = os.path.join(self.dir, "aux.yml")
        with open(aux_file, "w") as f:
            f.write(AUX_COMPOSE.format(image=remote.IMAGE, lines=LOG_LINES))
        # deploy30's file with the image the host has (it reaches no registry).
        with open(self.d30_file, "w") as f:
            f.write(deploy30.compose_text(image=remote.IMAGE))
        for name in (self.aux, self.d30):  # no host in the config: DOCKER_HOST comes from the environment
            with open(os.path.join(cfg, "stacks", name), "w") as f:
                f.write("")
        h.log(f"wan: stack {self.aux} on the host (log lines, {self.mib} MiB under /data)")
        self.host("stack", "deploy", "--resolve-image", "never", "-c", aux_file, self.aux)
        h.wait_until(f"the tasks of {self.aux} running",
                     lambda: self.running(f"{self.aux}_log") and self.running(f"{self.aux}_data"), 120)
        log_cid = self.running(f"{self.aux}_log")[0]
        h.wait_until(f"{LOG_LINES} lines in the log service's container",
                     lambda: len(self.host("logs", log_cid).splitlines()) >= LOG_LINES, 60)
        self.data_cid = self.running(f"{self.aux}_data")[0]
        files = max(1, self.mib // 64)
        self.host("exec", self.data_cid, "sh", "-c",
                  f"mkdir -p /data && for i in $(seq 1 {files}); do head -c {self.mib // files}M /dev/urandom > /data/blob$i; done",
                  timeout=600)
        self.data_bytes = int(self.host("exec", self.data_cid, "sh", "-c", "cat /data/* | wc -c").strip())

    def teardown(self, stack, deadline_s=180):
        """Removes everything of `stack` on the host, wsm's records in its store too; False
        when something is still there at the deadline."""
        self.host_try("stack", "rm", stack)
        names = self.host_try("config", "ls", "--format", "{{.Name}}").out.split()
        ours = [n for n in names if n.startswith("wsm-") and (f".{stack}." in n or n.endswith(stack))]
        if ours:
            self.host_try("config", "rm", *ours)
        end = time.monotonic() + deadline_s
        while True:
            services, cids, nets = (self.labelled(w, stack) for w in ("services", "containers", "networks"))
            if services:
                self.host_try("service", "rm", *services)
            if cids:
                self.host_try("rm", "-f", *cids)
            if nets and not cids:
                self.host_try("network", "rm", *nets)
            if not services and not cids and not nets:
                return True
            if time.monotonic() > end:
                self.h.log(f"wan: {stack} still on the host after {deadline_s} s: {services} {cids} {nets}")
                return False
            time.sleep(0.5)

    def gone(self, stack):
        return not any(self.labelled(w, stack) for w in ("services", "containers", "networks"))

    def all_running(self, env=None):
        """Every service of the 30 runs 1/1: on the host's socket, or over ssh:// with `env`."""
        argv = ["service", "ls", "--filter", f"label={NS_LABEL}={self.d30}", "--format", "{{.Replicas}}"]
        if env is None:
            reps = self.host_try(*argv).out.split()
        else:
            reps = self.h.run(["docker", *argv], env, timeout=120, capture=True).out.split()
        return len(reps) == deploy30.SERVICES and all(x == "1/1" for x in reps)

    # -- the timed parts ------------------------------------------------------------------------

    def logs(self, env, ms, pairs):
        h, rep = self.h, self.bench.report
        wargs = self.bench.wsm("stack", "-s", self.aux, "logs", "--tail", "100", "log")
        cargs = ["docker", "service", "logs", "--tail", "100", f"{self.aux}_log"]
        lines = [len(h.run(argv, env, timeout=300, capture=True).out.splitlines()) for argv in (wargs, cargs)]
        ra, rb = h.alternate(f"wan {ms} logs", rep, pairs, lambda: h.run(wargs, env, timeout=300),
                             lambda: h.run(cargs, env, timeout=300))
        return ra, rb, f"lines printed: wsm {lines[0]}, CLI {lines[1]}"

    def copy(self, env, ms, pairs):
        h, rep = self.h, self.bench.report
        copied = {}

        def timed(label, argv):
            shutil.rmtree(self.dest, ignore_errors=True)
            os.makedirs(self.dest)
            r = h.run(argv, env, timeout=600)
            copied.setdefault(label, tree_bytes(self.dest))
            shutil.rmtree(self.dest, ignore_errors=True)
            return r

        ra, rb = h.alternate(f"wan {ms} cp {self.mib} MiB", rep, pairs,
                             lambda: timed("wsm", self.bench.wsm("stack", "-s", self.aux, "cp", "data:/data", self.dest)),
                             lambda: timed("CLI", ["docker", "cp", f"{self.data_cid}:/data", self.dest]))
        for label, n in copied.items():
            if n < self.data_bytes:
                h.log(f"wan {ms} cp: {label} copied {n} bytes of {self.data_bytes}")
        return ra, rb, f"bytes copied: wsm {copied.get('wsm')}, CLI {copied.get('CLI')} of {self.data_bytes}"

    def deploy_rm(self, env, ms, pairs):
        """`pairs` times, each from nothing: A deploys and removes; A' deploys with -d (the
        deploy call alone; removed untimed); B deploys and removes. Returns lists of seconds:
        a_deploy, a_call, b_deploy, b_call, a_rm, b_rm, b_gone."""
        h, wsm, stack = self.h, self.bench.wsm, self.d30
        out = {k: [] for k in ("a_deploy", "a_call", "b_deploy", "b_call", "a_rm", "b_rm", "b_gone")}
        codes = {k: [] for k in out}
        for i in range(1, pairs + 1):
            for tool in ("A", "A'", "B"):
                if not self.teardown(stack):
                    raise h.HarnessError(f"could not remove {stack} from the host between runs")
                if tool == "A":
                    r = h.run(wsm("stack", "deploy", "-c", self.d30_file, "--resolve-image", "never",
                                  "--timeout", "240", stack), env, timeout=300)
                    deploy_s = r.seconds
                elif tool == "A'":
                    r = h.run(wsm("stack", "deploy", "-d", "-c", self.d30_file, "--resolve-image", "never", stack),
                              env, timeout=300)
                    out["a_call"].append(r.seconds)
                    codes["a_call"].append(r.code)
                    if r.code != 0:
                        h.log(f"wan {ms} deploy30 A' run {i} exited {r.code}: {r.err.strip()[-300:]}")
                    continue
                else:
                    t0 = time.perf_counter()
                    r = h.run(["docker", "stack", "deploy", "-d", "--resolve-image", "never", "-c", self.d30_file, stack],
                              env, timeout=300)
                    out["b_call"].append(r.seconds)
                    codes["b_call"].append(r.code)
                    if r.code == 0:  # as a script would: poll over the same ssh:// every 0.5 s
                        h.wait_until("every service of the CLI's deploy to run 1/1", lambda: self.all_running(env), 240, 0.5)
                    deploy_s = time.perf_counter() - t0
                key = tool.lower()
                out[f"{key}_deploy"].append(deploy_s)
                codes[f"{key}_deploy"].append(r.code)
                if r.code != 0:
                    h.log(f"wan {ms} deploy30 {tool} run {i} exited {r.code}: {r.err.strip()[-300:]}")
                # rm removes a running stack: wait (untimed, on the host's socket) if the deploy did not.
                if not self.all_running():
                    h.log(f"wan {ms} deploy30 {tool} run {i}: returned before every service ran 1/1")
                    h.wait_until("every service of the deploy to run 1/1", self.all_running, 240, 0.5)
                if tool == "A":
                    r = h.run(wsm("stack", "rm", stack), env, timeout=300)
                    if not self.gone(stack):
                        h.log(f"wan {ms} rm A run {i}: wsm returned with some of {stack} still on the host")
                else:
                    t0 = time.perf_counter()
                    r = h.run(["docker", "stack", "rm", stack], env, timeout=300)
                    h.wait_until(f"{stack} gone from the host", lambda: self.gone(stack), 180, 0.1)
                    out["b_gone"].append(time.perf_counter() - t0)
                out[f"{key}_rm"].append(r.seconds)
                codes[f"{key}_rm"].append(r.code)
                if r.code != 0:
                    h.log(f"wan {ms} rm {tool} run {i} exited {r.code}: {r.err.strip()[-300:]}")
        self.teardown(stack)
        self.bench.report.samples[f"wan {ms} deploy30 and rm"] = dict(
            {k: [round(x, 4) for x in v] for k, v in out.items()}, codes=codes)
        return out


EXTRA_LABELS = ("logs --tail 100", "cp", "deploy -c (30)", "deploy -d call", "rm")


def extra_rows(h, rep, extras, env, rtt, pairs, medians):
    """The rows of `WanExtras` at one RTT; their medians (A, B) into `medians` under EXTRA_LABELS."""
    ms = int(rtt * 1000)
    at50 = rtt == 0.050
    ra, rb, note = extras.logs(env, ms, pairs)
    ma, mb = h.med([r.seconds for r in ra]), h.med([r.seconds for r in rb])
    medians[(rtt, "logs --tail 100")] = (ma, mb)
    rep.add(f"W {ms} ms RTT: `logs --tail 100` of a service that printed {LOG_LINES} lines", h.fmt_s(ma),
            f"{h.fmt_s(mb)} (`docker -H ssh:// service logs --tail 100`)", f"A/B = {ma / mb:.2f}; {note}",
            "A/B ≤ 0.3" if at50 else "-", (ma / mb <= 0.3) if at50 else None)

    ra, rb, note = extras.copy(env, ms, pairs)
    ma, mb = h.med([r.seconds for r in ra]), h.med([r.seconds for r in rb])
    medians[(rtt, "cp")] = (ma, mb)
    mib = extras.data_bytes / 2**20
    rep.add(f"W {ms} ms RTT: {mib:.0f} MiB out of a container (`stack cp <nodeId>:/data DIR`; dump-db's data path)",
            f"{h.fmt_s(ma)} ({mib / ma:.0f} MiB/s)", f"{h.fmt_s(mb)} ({mib / mb:.0f} MiB/s, `docker -H ssh:// cp`)",
            f"A/B = {ma / mb:.2f}; {note}", "-", None)

    out = extras.deploy_rm(env, ms, pairs)
    ad, ac, bd, bc = (h.med(out[k]) for k in ("a_deploy", "a_call", "b_deploy", "b_call"))
    ar, br, bg = h.med(out["a_rm"]), h.med(out["b_rm"]), h.med(out["b_gone"])
    medians[(rtt, "deploy -c (30)")] = (ad, bd)
    medians[(rtt, "deploy -d call")] = (ac, bc)
    medians[(rtt, "rm")] = (ar, br)
    rep.add(f"W {ms} ms RTT: `deploy -c` of {deploy30.SERVICES} services from nothing (wsm waits the monitor window)",
            h.fmt_s(ad), f"{h.fmt_s(bd)} (`docker -H ssh:// stack deploy -d`, then `service ls` over ssh:// every 0.5 s "
            f"until all 1/1)", f"A/B = {ad / bd:.2f}", "A/B ≤ 0.3" if at50 else "-", (ad / bd <= 0.3) if at50 else None)
    rep.add(f"W {ms} ms RTT: the same `deploy -c`, the deploy call alone (-d: no wait)", h.fmt_s(ac),
            f"{h.fmt_s(bc)} (`docker -H ssh:// stack deploy -d`)", f"A/B = {ac / bc:.2f}", "-", None)
    rep.add(f"W {ms} ms RTT: `rm` of that stack (each tool removes what it deployed)",
            f"{h.fmt_s(ar)} (returns when all is gone)",
            f"{h.fmt_s(br)} (`docker -H ssh:// stack rm`, returns at once; gone after {h.fmt_s(bg)}, seen on the host)",
            f"A/B = {ar / br:.2f}; A/B(gone) = {ar / bg:.2f}", "-", None)


def phase_wan(h, bench):
    bed = remote.RemoteBed(h, bench)
    bench.extra_cleanups.append(bed.down)
    proxies = []
    bench.extra_cleanups.append(lambda: [p.stop() for p in proxies])
    bed.up()
    pairs = max(3, bench.args.pairs // 2)
    rep = bench.report
    with open(os.path.join(bed.dir, "ssh_config")) as f:
        base = f.read()
    hosts = {}
    for rtt in RTTS:
        p = DelayProxy(bed.ip, rtt)
        proxies.append(p)
        hosts[rtt] = f"wan{int(rtt * 1000)}"
        base = (f"Host {hosts[rtt]}\n  HostName 127.0.0.1\n  Port {p.listen_port}\n  HostKeyAlias {bed.ip}\n"
                + base)
    with open(os.path.join(bed.dir, "ssh_config"), "w") as f:
        f.write(base)
    # The stack's config must not name the host: DOCKER_HOST comes from the environment.
    with open(os.path.join(bench.cfg, "stacks", bed.stack), "w") as f:
        f.write("")
    extras = WanExtras(h, bench, bed, bench.args.wan_mib)
    extras.up()

    commands = [
        ("stack ls", ("stack", "ls"), ["stack", "ls"]),
        ("status", ("stack", "-s", bed.stack, "status"), ["stack", "ps", bed.stack]),
        ("ps", ("stack", "-s", bed.stack, "ps"), ["stack", "ps", bed.stack]),
        ("services", ("stack", "-s", bed.stack, "services"), ["stack", "services", bed.stack]),
    ]
    medians = {}
    for rtt in RTTS:
        env = dict(bed.env, DOCKER_HOST=f"ssh://root@{hosts[rtt]}")
        ms = int(rtt * 1000)
        for label, wargs, cargs in commands:
            ra, rb = h.alternate(f"wan {ms} {label}", rep, pairs,
                                 lambda: h.run(bench.wsm(*wargs), env, timeout=300),
                                 lambda: h.run(["docker", *cargs], env, timeout=300))
            ma, mb = h.med([r.seconds for r in ra]), h.med([r.seconds for r in rb])
            medians[(rtt, label)] = (ma, mb)
            rep.add(f"W {ms} ms RTT: `{label}` (shared master warm)", h.fmt_s(ma),
                    f"{h.fmt_s(mb)} (`docker -H ssh:// {' '.join(cargs[:2])}`)", f"A/B = {ma / mb:.2f}",
                    "A/B ≤ 0.3" if rtt == 0.050 else "-", (ma / mb <= 0.3) if rtt == 0.050 else None)
        extra_rows(h, rep, extras, env, rtt, pairs, medians)
        if rtt == 0.050:
            bed.close_masters()
            cold_env = dict(env, WSM_SSH_PERSIST="0")
            rc, rb = h.alternate(f"wan {ms} cold status", rep, pairs,
                                 lambda: h.run(bench.wsm("stack", "-s", bed.stack, "status"), cold_env, timeout=300),
                                 lambda: h.run(["docker", "stack", "ps", bed.stack], env, timeout=300), warmup=False)
            mc, mb = h.med([r.seconds for r in rc]), h.med([r.seconds for r in rb])
            rep.add(f"W {ms} ms RTT: cold first `status` (no master: WSM_SSH_PERSIST=0)", h.fmt_s(mc),
                    f"{h.fmt_s(mb)} (`docker -H ssh:// stack ps`)", f"A/B = {mc / mb:.2f}", "A/B ≤ 1.0", mc / mb <= 1.0)
    trips = []
    lo, hi = RTTS
    for label, _, _ in commands:
        (a1, b1), (a2, b2) = medians[(lo, label)], medians[(hi, label)]
        trips.append(f"{label}: wsm {(a2 - a1) / (hi - lo):.1f}, CLI {(b2 - b1) / (hi - lo):.1f}")
    rep.add("W round trips per command ((t at 150 ms - t at 50 ms) / 100 ms)", "; ".join(trips), "-",
            "estimated", "(reported)", None)
    trips = []
    for label in EXTRA_LABELS:
        (a1, b1), (a2, b2) = medians[(lo, label)], medians[(hi, label)]
        trips.append(f"{label}: wsm {(a2 - a1) / (hi - lo):.1f}, CLI {(b2 - b1) / (hi - lo):.1f}")
    rep.add("W round trips per command, the rows that change or move something (same estimate)",
            "; ".join(trips), "-", "estimated; deploy and rm include the engine's own time, which moves between runs",
            "(reported)", None)
    for p in proxies:
        p.stop()
    proxies.clear()
    bed.down()
