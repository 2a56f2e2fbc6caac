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
"""

import asyncio
import os
import socket
import threading

import remote

RTTS = (0.050, 0.150)


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
        await asyncio.gather(self._pipe(creader, uwriter), self._pipe(ureader, cwriter))
        for w in (cwriter, uwriter):
            w.close()

    def stop(self):
        def halt():
            self.server.close()
            for task in asyncio.all_tasks(self.loop):
                task.cancel()
            self.loop.call_soon(self.loop.stop)
        self.loop.call_soon_threadsafe(halt)
        self.thread.join(10)


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
    for p in proxies:
        p.stop()
    proxies.clear()
    bed.down()
