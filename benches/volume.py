"""Phase `volume` of benches/run (issue 25): the throughput of `wsm stack backup` of a named
volume against `docker cp` of the same data.

Set-up (untimed): a compose stack of one sleeping service `app`
(`localhost:5000/wavelet-stack-base`) mounting the named volume `data` at /data, deployed with
`wsm stack deploy`; then --vol-mib MiB (1024) of /dev/urandom written into /data through
`docker exec`, in files of 64 MiB (incompressible, like compressed tables or media). The stack's
config file sets WSM_BACKUP_DIR to the run's temporary folder (same file system as the
references' output).

Then, with no warm-up (the data was just written and read: the page cache is warm for every
side), `--pairs` rounds alternating:

  A   `wsm stack backup S` (the release build): a helper container mounting the volume read-only,
      the engine's tar stream gzipped on every CPU (a block a level-1 probe finds incompressible
      is stored), each file listed and sha256'd, fsynced, renamed, the archive's sha256 logged.
      The archive is removed after each run (untimed).
  B   `docker cp <container>:/data - > FILE`: the engine's tar stream of the same folder into a
      file; no compression, no checksum, no fsync.
  B2  `docker cp <container>:/data - | gzip -1 > FILE`: what a shell pipeline that compresses
      pays (one CPU for deflate).
  F   the engine's tar stream alone, read to nothing from the socket (benches/dumpfloor.py).
  A0  with --vol-before BINARY: the same backup by another wsm binary (an earlier build), in the
      same rounds, so that a change is measured against what it changed.

Rows: V1 throughput A/B (the issue's target: ≥ 0.8 × `docker cp`'s speed), V2 wsm's peak RSS
(`wait4`'s ru_maxrss; ≤ 64 MiB), V3 the gzip pipeline and V4 the engine's floor, for scale. The
CPU time (user + system, `wait4`) of A and B is reported beside their times. The first archive is
checked untimed with `gzip -t` and `tar -tzf` (file count).

Everything is removed at the end, also on failure or Ctrl-C: the stack and its volume
(`Bench.teardown`, the stack is in `bench.created`), the files under the run's temporary folder.
"""

import glob
import os
import subprocess
import threading
import time

import dumpfloor

IMAGE = "localhost:5000/wavelet-stack-base:latest"
COMPOSE = f"""services:
  app:
    image: {IMAGE}
    entrypoint: ["sleep", "infinity"]
    stop_grace_period: 1s
    volumes: ["data:/data"]
    deploy:
      replicas: 1
volumes:
  data: {{}}
"""
FILE_MIB = 64


class Timed:
    def __init__(self, seconds, code, maxrss_kib, cpu, err=""):
        self.seconds, self.code, self.maxrss_kib, self.cpu, self.err = seconds, code, maxrss_kib, cpu, err


def timed(h, argv, env=None, stdout=subprocess.DEVNULL, timeout=600):
    """Runs one command (in its own process group, killed at the deadline); wall time, exit code,
    peak RSS (KiB) and CPU seconds (user + system, with the children it waited for)."""
    t0 = time.perf_counter()
    p = h.spawn(argv, env, stdout=stdout, stderr=subprocess.PIPE)
    timer = threading.Timer(timeout, lambda: h._kill_group(p))
    timer.start()
    try:
        err = p.stderr.read()
        _, status, usage = os.wait4(p.pid, 0)
    finally:
        timer.cancel()
    dt = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    h.LIVE.discard(p)
    return Timed(dt, p.returncode, usage.ru_maxrss, usage.ru_utime + usage.ru_stime,
                 err.decode(errors="replace"))


def phase_volume(h, bench):
    """`h` is the benches/run module, `bench` its Bench."""
    mib = bench.args.vol_mib
    stack = f"wsmbench{bench.rid}vol"
    bench.created.append(stack)
    work = os.path.join(bench.tmp, "volume")
    backups = os.path.join(work, "backups")
    os.makedirs(backups)
    with open(os.path.join(bench.cfg, "stacks", stack), "w") as f:
        f.write(f"WSM_BACKUP_DIR={backups}\nWSM_DEPLOY_TIMEOUT=120\n")
    compose = os.path.join(work, "stack.yml")
    with open(compose, "w") as f:
        f.write(COMPOSE)
    h.log(f"{stack}: deploying, then {mib} MiB of random files into its volume")
    h.must(bench.wsm("stack", "deploy", "-c", compose, "--timeout", "120", stack), timeout=180, env=bench.env)
    c = h.wait_until("the app task", lambda: (bench.containers(stack, "app") or [None])[0], 60)
    files = max(1, mib // FILE_MIB)
    h.must(["docker", "exec", c, "sh", "-c",
            f"for i in $(seq 1 {files}); do head -c {mib // files}M /dev/urandom > /data/blob$i; done"],
           timeout=900)
    size = int(h.must(["docker", "exec", c, "du", "-sb", "/data"]).split()[0])
    cp_out = os.path.join(work, "cp.tar")
    gz_out = os.path.join(work, "cp.tar.gz")
    state = {"checked": None, "gz_size": 0}

    def logged_seconds():
        """The `seconds=` of every stats line in backups.log: `archive::volume_dump`'s own time
        (helper container made, stream, fsync, rename), without the process around it."""
        out = []
        for log in glob.glob(os.path.join(backups, "**", "backups.log"), recursive=True):
            for line in open(log).read().splitlines():
                out += [float(w[8:]) for w in line.split() if w.startswith("seconds=")]
        return out

    def archives():
        return glob.glob(os.path.join(backups, "**", "*.tar.gz"), recursive=True)

    def check(path):
        t = subprocess.run(["gzip", "-t", path], capture_output=True)
        listing = subprocess.run(["tar", "-tzf", path], capture_output=True, text=True)
        n = sum(1 for line in listing.stdout.splitlines() if not line.endswith("/"))
        ok = t.returncode == 0 and listing.returncode == 0 and n == files
        return f"`gzip -t` {'ok' if t.returncode == 0 else 'FAILED'}, `tar -tzf` {n} files" + ("" if ok else " (NOT as written)")

    def a(binary=None):
        argv = bench.wsm("stack", "backup", stack)
        if binary:
            argv[0] = binary
        r = timed(h, argv, bench.env)
        made = archives()
        if made:
            state["gz_size"] = os.path.getsize(made[0])
            if state["checked"] is None:
                state["checked"] = check(made[0])
                h.log(f"volume: first archive {made[0]}: {state['checked']}")
        elif r.code == 0:
            h.log("volume A: wsm stack backup exited 0 but wrote no archive")
        for f in made:
            os.unlink(f)
        return r

    floors = []

    def b():
        with open(cp_out, "wb") as out:
            r = timed(h, ["docker", "cp", f"{c}:/data", "-"], stdout=out)
        os.unlink(cp_out)
        return r

    def b2():
        r = timed(h, ["sh", "-c", 'docker cp "$1":/data - | gzip -1 > "$2"', "sh", c, gz_out])
        os.unlink(gz_out)
        seconds, _ = dumpfloor.engine_stream(c, "/data")
        floors.append(seconds)
        return r

    ra, rb, rc, r0 = [], [], [], []
    before = bench.args.vol_before
    sides = [(a, ra, "A"), (b, rb, "B"), (b2, rc, "B2")]
    if before:
        sides.insert(1, (lambda: a(before), r0, "A0"))
    load_before = os.getloadavg()
    for i in range(bench.args.pairs):
        for fn, out, label in sides:
            r = fn()
            if r.code != 0:
                h.log(f"volume: {label} run {i + 1} exited {r.code}: {r.err.strip()[-300:]}")
            out.append(r)
    load_after = os.getloadavg()
    # Only A and A0 log; A's lines are those of even rounds when A0 runs too (A first each round).
    dumps = logged_seconds()
    dumps_a = dumps[::2] if before else dumps
    bench.report.samples["volume"] = {
        "A": [round(r.seconds, 4) for r in ra], "B": [round(r.seconds, 4) for r in rb],
        "B2": [round(r.seconds, 4) for r in rc], "floor": [round(x, 4) for x in floors],
        "A_cpu": [round(r.cpu, 3) for r in ra], "B_cpu": [round(r.cpu, 3) for r in rb],
        "A_rss_mib": [round(r.maxrss_kib / 1024, 1) for r in ra],
        "A0": [round(r.seconds, 4) for r in r0], "A0_cpu": [round(r.cpu, 3) for r in r0],
        "A_codes": [r.code for r in ra], "B_codes": [r.code for r in rb], "B2_codes": [r.code for r in rc],
        "A_volume_dump_seconds": dumps_a, "load": [load_before, load_after]}
    h.log(f"volume samples: {bench.report.samples['volume']}")
    med = h.med
    ma, mb, mc, mf = (med([r.seconds for r in ra]), med([r.seconds for r in rb]),
                      med([r.seconds for r in rc]), med(floors))
    ca, cb = med([r.cpu for r in ra]), med([r.cpu for r in rb])
    speed = lambda s: size / s / 2**20
    ratio = speed(ma) / speed(mb)
    ok = all(r.code == 0 for r in ra)
    bench.report.add(f"V1 backup: {size / 2**30:.2f} GiB volume, throughput",
                     f"{speed(ma):.0f} MiB/s ({h.fmt_s(ma)}, CPU {ca:.2f} s)",
                     f"{speed(mb):.0f} MiB/s ({h.fmt_s(mb)}, CPU {cb:.2f} s, `docker cp … - > file`)",
                     f"A/B = {ratio:.2f}; load {load_before[0]:.1f} → {load_after[0]:.1f}",
                     "≥ 0.8", ok and ratio >= 0.8)
    md = med(dumps_a)
    bench.report.add("V1a backup: of which `archive::volume_dump` (its `seconds` in backups.log)",
                     f"{speed(md):.0f} MiB/s ({h.fmt_s(md)})", f"{speed(mb):.0f} MiB/s (`docker cp`)",
                     f"dump/B = {speed(md) / speed(mb):.2f}; the rest of A {h.fmt_s(ma - md)}", "-", None)
    rss = max(r.maxrss_kib for r in ra) / 1024
    bench.report.add("V2 backup: wsm peak RSS", f"{rss:.1f} MiB", "-",
                     f"max of {len(ra)}; archive {state['gz_size'] / 2**20:.0f} MiB, {state['checked']}",
                     "≤ 64 MiB", ok and rss <= 64)
    if r0:
        m0, c0 = med([r.seconds for r in r0]), med([r.cpu for r in r0])
        bench.report.add(f"V1' backup by {os.path.basename(before)} (before), same rounds",
                         f"{speed(m0):.0f} MiB/s ({h.fmt_s(m0)}, CPU {c0:.2f} s)",
                         f"{speed(mb):.0f} MiB/s (`docker cp`)",
                         f"A0/B = {speed(m0) / speed(mb):.2f}; A/A0 time = {ma / m0:.2f}", "-", None)
    bench.report.add("V3 reference: `docker cp … - | gzip -1 > file`",
                     f"{speed(ma):.0f} MiB/s (wsm)", f"{speed(mc):.0f} MiB/s ({h.fmt_s(mc)})",
                     f"A/B2 = {speed(ma) / speed(mc):.2f}", "-", None)
    bench.report.add("V4 floor: the engine's tar stream alone (read to nothing)",
                     f"{speed(mf):.0f} MiB/s ({h.fmt_s(mf)})", f"{speed(mb):.0f} MiB/s (`docker cp`)",
                     f"floor/B = {speed(mf) / speed(mb):.2f}", "-", None)
    bench.teardown(stack)
