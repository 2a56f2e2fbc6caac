"""Phase `remote` of benches/run (issue 16): wsm against a remote swarm over SSH.

One netns host (tests/fixtures/netns-host) with its own dockerd and sshd, a swarm of one, and a
stack of one service with one running task (`sleep` in localhost:5000/wavelet:latest, loaded on
the host), reached as `DOCKER_HOST=ssh://root@<ip>` with a private key and known_hosts (an `ssh`
wrapper first on PATH adds `-F <config>`, for wsm and the Docker CLI alike). The same stack file
is deployed on the local engine for the local comparison.

Rows:
  R1  `wsm run batch.rhai` (10 `stack status` calls) on the remote stack, against 10 ×
      `docker -H ssh://root@<ip> stack ps <stack>` in sequence. wsm's shared master
      (WSM_SSH_PERSIST, default 60 s) is warm after the untimed warm-up, as it is for a user
      who ran a command in the last minute.
  R1' the same batch with WSM_SSH_PERSIST=0: a fresh SSH handshake in every run (cold).
  R2  the same batch, remote against local (same stack file on the local engine).
  R3  one `wsm stack status` process, remote against one `docker -H ssh://… stack ps`.

Everything is removed at the end, also on failure or Ctrl-C: the masters (`ssh -O exit`), the
host (`netns-host down`), the local stack.
"""

import glob
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NETNS_HOST = os.path.join(ROOT, "tests", "fixtures", "netns-host")
IMAGE = "localhost:5000/wavelet:latest"
COMPOSE = f"""services:
  app:
    image: {IMAGE}
    command: ["sleep", "1000000"]
"""


class RemoteBed:
    """The host, its swarm and stack, the SSH identity; `down()` undoes all of it."""

    def __init__(self, h, bench):
        self.h, self.bench = h, bench
        self.dir = os.path.join(bench.tmp, "remote")
        os.makedirs(os.path.join(self.dir, "bin"))
        self.name = f"wsmbench{bench.rid}r"
        self.up_done = False
        self.local_stack = None

    def sh(self, argv, timeout=120):
        r = self.h.run(argv, timeout=timeout, capture=True)
        if r.code != 0:
            raise self.h.HarnessError(f"{' '.join(argv[:4])}… exited {r.code}: {r.err.strip()[-400:]}")
        return r.out

    def up(self):
        h, d = self.h, self.dir
        key = os.path.join(d, "id")
        self.sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "wsm-bench", "-f", key])
        known = os.path.join(d, "known_hosts")
        with open(os.path.join(d, "ssh_config"), "w") as f:
            f.write(f"Host *\n  IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {known}\n"
                    "  GlobalKnownHostsFile /dev/null\n")
        wrapper = os.path.join(d, "bin", "ssh")
        with open(wrapper, "w") as f:
            f.write(f"#!/bin/sh\nexec /usr/bin/ssh -F {d}/ssh_config \"$@\"\n")
        os.chmod(wrapper, 0o755)
        env = None
        for index in range(200, 245):
            r = h.run([NETNS_HOST, "up", self.name, str(index), "--sshd", key + ".pub"], timeout=120, capture=True)
            if r.code == 0:
                env = dict(l.split("=", 1) for l in r.out.splitlines() if "=" in l)
                break
            if "already used" not in r.err:
                raise h.HarnessError(f"netns-host up: {r.err.strip()[-400:]}")
        if env is None:
            raise h.HarnessError("no free netns-host index")
        self.up_done = True
        self.ip = env["IP"]
        self.sock = f"unix://{env['STATE_DIR']}/docker.sock"
        with open(env["SSH_KNOWN_HOSTS"]) as src, open(known, "w") as dst:
            dst.write(src.read())
        h.log(f"remote host {self.name} at {self.ip}: swarm init, loading {IMAGE}")
        self.sh(["docker", "-H", self.sock, "swarm", "init", "--advertise-addr", self.ip])
        self.sh([NETNS_HOST, "load-image", self.name, IMAGE], timeout=300)
        compose = os.path.join(d, "stack.yml")
        with open(compose, "w") as f:
            f.write(COMPOSE)
        self.stack = f"wsmbench{self.bench.rid}rs"
        self.sh(["docker", "-H", self.sock, "stack", "deploy", "--resolve-image", "never", "-c", compose, self.stack])
        self.local_stack = f"wsmbench{self.bench.rid}ls"
        self.bench.created.append(self.local_stack)
        self.sh(["docker", "stack", "deploy", "--resolve-image", "never", "-c", compose, self.local_stack])
        cfg = self.bench.cfg
        with open(os.path.join(cfg, "stacks", self.stack), "w") as f:
            f.write(f"DOCKER_HOST=ssh://root@{self.ip}\nWSM_COMPOSE_FILES={compose}\n")
        with open(os.path.join(cfg, "stacks", self.local_stack), "w") as f:
            f.write(f"WSM_COMPOSE_FILES={compose}\n")
        for hostargs, stack in ((["-H", self.sock], self.stack), ([], self.local_stack)):
            argv = ["docker", *hostargs, "stack", "ps", "--format", "{{.CurrentState}}", stack]
            h.wait_until(f"the task of {stack} running", lambda: "Running" in self.sh(argv), 120)
        self.env = dict(self.bench.env, PATH=f"{d}/bin:{os.environ.get('PATH', '')}")
        for stack in (self.stack, self.local_stack):
            with open(os.path.join(d, f"batch-{stack}.rhai"), "w") as f:
                f.write(f"for i in 0..10 {{ wsm(\"stack -s {stack} status\"); }}\n")

    def batch(self, stack):
        return self.bench.wsm("run", os.path.join(self.dir, f"batch-{stack}.rhai"))

    def close_masters(self):
        state = self.bench.env.get("XDG_STATE_HOME", "")
        for sock in glob.glob(os.path.join(state, "wsm", "ssh", "m-*")):
            if sock.endswith((".log", ".lock")):
                continue
            subprocess.run([os.path.join(self.dir, "bin", "ssh"), "-S", sock, "-O", "exit", "none"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=20)

    def down(self):
        try:
            self.close_masters()
        except Exception as e:
            self.h.log(f"closing the SSH masters failed: {e}")
        if self.up_done:
            subprocess.run([NETNS_HOST, "down", self.name], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=180)
            self.up_done = False


def ssh_processes(ip):
    out = subprocess.run(["pgrep", "-f", rf"^(\S*/)?ssh .*{ip.replace('.', '[.]')}( |$)"],
                         capture_output=True, text=True).stdout
    return len(out.split())


def phase_remote(h, bench):
    """Runs the rows; `h` is the harness module (run, alternate, med, fmt_s, log, …)."""
    bed = RemoteBed(h, bench)
    bench.extra_cleanups.append(bed.down)
    bed.up()
    pairs = bench.args.pairs
    rep = bench.report
    cli = lambda: h.run_seq([["docker", "-H", f"ssh://root@{bed.ip}", "stack", "ps", bed.stack]] * 10, bed.env)
    warm = lambda: h.run(bed.batch(bed.stack), bed.env)

    ra, rb = h.alternate("remote batch", rep, pairs, warm, cli)
    ma, mb = h.med([r.seconds for r in ra]), h.med([r.seconds for r in rb])
    rep.add("R1 remote: 10 `stack status` in one batch file (ssh://, shared master warm)", h.fmt_s(ma),
            f"{h.fmt_s(mb)} (10 × `docker -H ssh://… stack ps`)", f"A/B = {ma / mb:.2f}", "A/B ≤ 0.2", ma / mb <= 0.2)
    h.log(f"ssh processes for {bed.ip} after the warm runs: {ssh_processes(bed.ip)}")

    cold = lambda: h.run(bed.batch(bed.stack), dict(bed.env, WSM_SSH_PERSIST="0"))
    rc, rb2 = h.alternate("remote batch cold", rep, pairs, cold, cli, warmup=False)
    mc, mb2 = h.med([r.seconds for r in rc]), h.med([r.seconds for r in rb2])
    rep.add("R1' remote, cold: the same with WSM_SSH_PERSIST=0 (a new SSH handshake per run)", h.fmt_s(mc),
            f"{h.fmt_s(mb2)} (10 × `docker -H ssh://… stack ps`)", f"A/B = {mc / mb2:.2f}", "-", None)

    local = lambda: h.run(bed.batch(bed.local_stack), bed.env)
    ra2, rl = h.alternate("remote vs local batch", rep, pairs, warm, local)
    mr, ml = h.med([r.seconds for r in ra2]), h.med([r.seconds for r in rl])
    rep.add("R2 the same batch, remote against local (same stack file)", f"{h.fmt_s(mr)} (remote)",
            f"{h.fmt_s(ml)} (local)", f"remote/local = {mr / ml:.2f}", "≤ 2", mr / ml <= 2)

    one = lambda: h.run(bench.wsm("stack", "-s", bed.stack, "status"), bed.env)
    one_cli = lambda: h.run(["docker", "-H", f"ssh://root@{bed.ip}", "stack", "ps", bed.stack], env=bed.env)
    r1, r2 = h.alternate("remote single status", rep, pairs, one, one_cli)
    m1, m2 = h.med([r.seconds for r in r1]), h.med([r.seconds for r in r2])
    rep.add("R3 one `wsm stack status` process, remote (shared master warm)", h.fmt_s(m1),
            f"{h.fmt_s(m2)} (one `docker -H ssh://… stack ps`)", f"A/B = {m1 / m2:.2f}", "-", None)
    n = ssh_processes(bed.ip)
    h.log(f"ssh processes for {bed.ip} at the end (the shared master): {n}")
    rep.samples["remote ssh processes at the end"] = n
