"""Phase `overhead` of benches/run (issue 28, item 4): wsm's time beyond the engine's own
timestamps, at the end of a deploy and per dependency level.

Three deploys from nothing, each alternated with `docker stack deploy --detach=false` of the
same file (which waits for the same monitor window), the stack removed completely between runs:
- `start` of a Wavelet stack (3 wavelet tasks, with health checks; B deploys the file of
  `wsm stack -s S compose`);
- the 30-service file of phase deploy30 (`wsm stack deploy -c`);
- a `depends_on`-ordered file: LEVELS levels of 2 sleeping services, each level depending on
  the one before with `condition: service_started` (the CLI refuses the long form: it gets the
  short form, which it ignores, creating everything at once; its column is there for the
  window, not the order).

`docker stack deploy --detach=false` waits for its services one after the other, each for its
own monitor window, so the CLI's run of the 30-service file takes about 170 s: it runs once
(WSMBENCH_OVERHEAD_CLI30=N for N runs, 0 for none). WSMBENCH_OVERHEAD_ONLY=ordered (or
wavelet, 30-service) runs one case; WSMBENCH_OVERHEAD_CLI=0 runs no CLI deploy at all (to compare
wsm builds).

After each run, before the teardown, the engine's own timestamps are read (Engine API, same
host, same clock): every service's `CreatedAt` and, per task of the current spec, the
`Status.Timestamp` of its running state. Reported (medians):
- before: the tool's start -> the first service's `CreatedAt` (start-up, plan, network);
- engine: the first `CreatedAt` -> the last task's running timestamp;
- after: the last task running -> the tool's return. Both tools then wait for the monitor
  window (`UpdateConfig.Monitor`, 5 s by default) of every new task, so "beyond the window" is
  the return minus max(task running + its service's window): what the tool adds after the
  engine's own time and the window;
- per level (ordered deploy, wsm): level k's first `CreatedAt` minus level k-1's last task
  running: how long wsm takes to see a level reached and write the next.
"""

import json
import os
import socket
import time
import urllib.parse
from datetime import datetime

import deploy30

LEVELS = 4
PER_LEVEL = 2
IMAGE = "localhost:5000/wavelet-stack-base:latest"


def api_get(path, timeout=30):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect("/var/run/docker.sock")
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n".encode())
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    if b"chunked" in head.lower():
        out, rest = b"", body
        while rest:
            size_s, _, rest = rest.partition(b"\r\n")
            size = int(size_s.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2:]
        body = out
    return json.loads(body)


def ts(s):
    """RFC 3339 with nanoseconds -> epoch seconds."""
    s = s.replace("Z", "+00:00")
    main, _, frac_tz = s.partition(".")
    if frac_tz:
        i = 0
        while i < len(frac_tz) and frac_tz[i].isdigit():
            i += 1
        frac, tz = frac_tz[:i], frac_tz[i:]
        return datetime.fromisoformat(main + tz).timestamp() + float("0." + frac)
    return datetime.fromisoformat(s).timestamp()


def engine_times(stack, ns_label):
    """{service name: (created, [running timestamps of its current tasks], window s)}."""
    flt = urllib.parse.quote(json.dumps({"label": [f"{ns_label}={stack}"]}))
    services = api_get(f"/services?filters={flt}")
    tasks = api_get(f"/tasks?filters={flt}")
    out = {}
    for svc in services:
        mon = (svc["Spec"].get("UpdateConfig") or {}).get("Monitor") or 5_000_000_000
        version = svc["Version"]["Index"]
        runs = [ts(t["Status"]["Timestamp"]) for t in tasks
                if t["ServiceID"] == svc["ID"] and t["Status"]["State"] == "running"
                and t.get("DesiredState") == "running"
                and t.get("Version", {}).get("Index", 0) >= 0 and version >= 0]
        out[svc["Spec"]["Name"]] = (ts(svc["CreatedAt"]), runs, mon / 1e9)
    return out


def split(t0, t1, times):
    """(before, engine, after, beyond the window) seconds for one run."""
    created = min(c for c, _, _ in times.values())
    runs = [(r, w) for _, rs, w in times.values() for r in rs]
    last = max(r for r, _ in runs)
    window_end = max(r + w for r, w in runs)
    return created - t0, last - created, t1 - last, t1 - window_end


def ordered_text(stack_levels=LEVELS, per=PER_LEVEL):
    lines = ["services:"]
    for lv in range(1, stack_levels + 1):
        for j in range(1, per + 1):
            lines += [f"  l{lv}s{j}:", f"    image: {IMAGE}", '    entrypoint: ["sleep", "infinity"]',
                      "    stop_grace_period: 1s"]
            if lv > 1:
                lines.append("    depends_on:")
                for k in range(1, per + 1):
                    lines += [f"      l{lv - 1}s{k}:", "        condition: service_started"]
    return "\n".join(lines) + "\n"


def ordered_text_cli(stack_levels=LEVELS, per=PER_LEVEL):
    """The same services for the CLI, which refuses the long form of depends_on: the short form
    (a list), which it accepts and ignores."""
    lines = ["services:"]
    for lv in range(1, stack_levels + 1):
        for j in range(1, per + 1):
            lines += [f"  l{lv}s{j}:", f"    image: {IMAGE}", '    entrypoint: ["sleep", "infinity"]',
                      "    stop_grace_period: 1s"]
            if lv > 1:
                lines.append("    depends_on: [" + ", ".join(f"l{lv - 1}s{k}" for k in range(1, per + 1)) + "]")
    return "\n".join(lines) + "\n"


def levels_gaps(stack, times):
    """Per level k >= 2: level k's first CreatedAt minus level k-1's last task running."""
    by = {}
    for name, (c, rs, _) in times.items():
        lv = int(name[len(stack) + 2:].split("s")[0])
        first, last = by.get(lv, (float("inf"), float("-inf")))
        by[lv] = (min(first, c), max([last] + rs))
    return [by[k][0] - by[k - 1][1] for k in sorted(by) if k - 1 in by]


def phase_overhead(h, bench):
    pairs = max(1, bench.args.converge_pairs)
    rep = bench.report

    wv = bench.stack("ovw", 3)
    wcompose = os.path.join(bench.tmp, "overhead-wavelet.yml")
    with open(wcompose, "w") as f:
        f.write(h.must(bench.wsm("stack", "-s", wv, "compose"), env=bench.env))
    d30 = f"wsmbench{bench.rid}ov30"
    dord = f"wsmbench{bench.rid}ovdep"
    bench.created += [d30, dord]
    f30 = os.path.join(bench.tmp, "overhead-d30.yml")
    ford = os.path.join(bench.tmp, "overhead-ordered.yml")
    with open(f30, "w") as f:
        f.write(deploy30.compose_text())
    with open(ford, "w") as f:
        f.write(ordered_text())
    ford_cli = os.path.join(bench.tmp, "overhead-ordered-cli.yml")
    with open(ford_cli, "w") as f:
        f.write(ordered_text_cli())

    cases = [
        ("wavelet `start` (3 wavelet tasks)", wv,
         lambda: bench.wsm("stack", "-s", wv, "start"), wcompose, pairs),
        (f"{deploy30.SERVICES}-service `deploy -c`", d30,
         lambda: bench.wsm("stack", "deploy", "-c", f30, "--timeout", "240", d30), f30,
         int(os.environ.get("WSMBENCH_OVERHEAD_CLI30", "1"))),  # the CLI's run takes ~170 s
        (f"`depends_on`-ordered deploy, {LEVELS} levels × {PER_LEVEL}", dord,
         lambda: bench.wsm("stack", "deploy", "-c", ford, "--timeout", "240", dord), ford_cli, pairs),
    ]
    only = os.environ.get("WSMBENCH_OVERHEAD_ONLY")  # e.g. "ordered": one case (a quick re-run)
    if os.environ.get("WSMBENCH_OVERHEAD_CLI") == "0":  # wsm's runs only (comparing wsm builds)
        cases = [(label, stack, argv, compose, 0) for label, stack, argv, compose, _ in cases]
    for label, stack, wsm_argv, compose, b_runs in cases:
        if only and only not in label:
            continue
        samples = {"A": [], "B": []}
        gaps = []
        for i in range(pairs):
            for side in ("A", "B") if i < b_runs else ("A",):
                if not bench.teardown(stack):
                    raise h.HarnessError(f"could not remove {stack} between runs")
                argv = wsm_argv() if side == "A" else ["docker", "stack", "deploy", "--detach=false",
                                                       "-c", compose, stack]
                t0 = time.time()
                r = h.run(argv, bench.env if side == "A" else None, timeout=300, capture=True)
                t1 = time.time()
                if r.code != 0:
                    h.log(f"overhead {label} {side} run {i}: exit {r.code}: {r.err.strip()[-300:]}")
                    continue
                try:
                    times = engine_times(stack, h.NS_LABEL)
                    parts = split(t0, t1, times)
                except (ValueError, KeyError, OSError) as e:
                    h.log(f"overhead {label} {side} run {i}: engine timestamps unreadable: {e!r}")
                    continue
                samples[side].append(parts)
                h.log(f"overhead {label} {side}: total {t1 - t0:.2f} s; before {parts[0]:.3f}, engine "
                      f"{parts[1]:.3f}, after {parts[2]:.3f}, beyond window {parts[3]:.3f}")
                if side == "A" and stack == dord:
                    g = levels_gaps(stack, times)
                    gaps.append(g)
                    h.log(f"overhead ordered: per-level gaps {[round(x, 3) for x in g]}")
        bench.teardown(stack)
        rep.samples[f"overhead {label}"] = {k: [[round(x, 4) for x in p] for p in v] for k, v in samples.items()}
        if not samples["A"] or (b_runs and not samples["B"]):
            rep.add(f"O {label}", "n/a", "n/a", "runs failed (see the log)", "-", None)
            continue
        m = {k: [h.med([p[j] for p in v]) for j in range(4)] for k, v in samples.items() if v}
        cell = lambda x: (f"before {x[0] * 1000:.0f} ms, engine {x[1]:.2f} s, after {x[2]:.2f} s "
                          f"(beyond the window {x[3] * 1000:.0f} ms)")
        rep.add(f"O {label}: tool start → first CreatedAt / engine / last running → return",
                cell(m["A"]) + f" ({len(samples['A'])} runs)",
                cell(m["B"]) + f" (`docker stack deploy --detach=false`, {len(samples['B'])} runs)" if "B" in m else "-",
                f"A beyond the window {m['A'][3] * 1000:.0f} ms"
                + (f", B {m['B'][3] * 1000:.0f} ms" if "B" in m else ""),
                "≤ 150 ms beyond the engine", m["A"][3] <= 0.150)
        if gaps:
            per = [h.med([g[k] for g in gaps if len(g) > k]) for k in range(max(len(g) for g in gaps))]
            rep.samples["overhead per-level gaps"] = [[round(x, 4) for x in g] for g in gaps]
            rep.add(f"O′ ordered deploy: level k−1's last task running → level k's first CreatedAt",
                    ", ".join(f"{x * 1000:.0f} ms" for x in per), "- (the CLI does not order)",
                    f"median over levels {h.med(per) * 1000:.0f} ms", "≤ 100 ms per level",
                    max(per) <= 0.100)
