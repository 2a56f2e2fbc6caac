"""The floors under dump-db (issue 16), measured in the same rounds as dump-db and `docker cp`:

- the engine: `GET /containers/{id}/archive?path=…` read to the end and thrown away, straight
  from the Docker socket (no CLI, no unpacking, no disk): how fast the engine produces the tar;
- the disk: as many bytes as the archive written to a file and fsynced (`dd conv=fsync`): what a
  durable dump costs at least, which `docker cp` (page cache only, no fsync) does not pay.
"""

import http.client
import os
import socket
import subprocess
import time
import urllib.parse


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def engine_stream(container, path, sock="/var/run/docker.sock", timeout=600):
    """Seconds to read the archive of `path` in `container` from the engine; and its bytes."""
    conn = _UnixHTTP(sock, timeout)
    started = time.monotonic()
    conn.request("GET", f"/containers/{container}/archive?path={urllib.parse.quote(path)}")
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"GET archive: {resp.status} {resp.read()[:200]!r}")
    n = 0
    buf = bytearray(1 << 20)
    while True:
        k = resp.readinto(buf)
        if not k:
            break
        n += k
    seconds = time.monotonic() - started
    conn.close()
    return seconds, n


def disk(directory, nbytes, timeout=600):
    """Seconds to write `nbytes` (rounded up to MiB) into a new file in `directory` and fsync it."""
    f = os.path.join(directory, "wsmbench-disk-floor")
    mib = max(1, (nbytes + (1 << 20) - 1) >> 20)
    started = time.monotonic()
    subprocess.run(["dd", "if=/dev/zero", f"of={f}", "bs=1M", f"count={mib}", "conv=fsync"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout)
    seconds = time.monotonic() - started
    os.unlink(f)
    return seconds
