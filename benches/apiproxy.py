#!/usr/bin/env python3
"""A logging proxy for the Docker Engine API on a unix socket (benchmark helper, stdlib only).

    apiproxy.py --listen /tmp/x/proxy.sock --log /tmp/x/requests.log [--upstream /var/run/docker.sock]

Clients (wsm, the docker CLI) point DOCKER_HOST at unix://<listen>. Every byte is passed through
unchanged; the client-to-engine direction is also parsed as HTTP/1.1 so that each request is
logged as one line:

    <ms since start> <connection number> <METHOD> <path>

each new connection as `<ms> <connection number> CONNECT`, the first byte of the engine's answer
on a connection as `<ms> <n> ANSWER` and its end as `<ms> <n> CLOSE` (timings for profiling).
After a request that takes over the connection (exec start, attach: `Upgrade:` or a hijacked
stream) parsing stops for that connection. The benchmark counts the lines of the log between
runs: round trips and connections.
"""

import argparse
import asyncio
import itertools
import os
import sys
import time


class Log:
    def __init__(self, path):
        self.f = open(path, "a", buffering=1)
        self.t0 = time.monotonic()

    def line(self, text):
        self.f.write(f"{(time.monotonic() - self.t0) * 1000:.1f} {text}\n")


class RequestParser:
    """Feeds on the client's bytes; calls `on_request(method, path)` for each request head."""

    def __init__(self, on_request):
        self.buf = b""
        self.body_left = 0  # bytes of a Content-Length body still to skip
        self.chunked = False
        self.raw = False  # the connection was taken over; stop parsing
        self.on_request = on_request

    def feed(self, data):
        if self.raw:
            return
        self.buf += data
        while self.buf and not self.raw:
            if self.body_left:
                n = min(self.body_left, len(self.buf))
                self.buf = self.buf[n:]
                self.body_left -= n
                continue
            if self.chunked:
                if not self._skip_chunk():
                    return
                continue
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buf = self.buf[:end].decode("latin-1"), self.buf[end + 4:]
            lines = head.split("\r\n")
            parts = lines[0].split(" ")
            method, path = (parts + ["", ""])[:2]
            self.on_request(method, path)
            headers = {}
            for h in lines[1:]:
                k, _, v = h.partition(":")
                headers[k.strip().lower()] = v.strip()
            if "upgrade" in headers or (
                method == "POST" and (path.split("?")[0].endswith("/start") and "/exec/" in path
                                      or path.split("?")[0].endswith("/attach"))):
                self.raw = True
                return
            if headers.get("transfer-encoding", "").lower() == "chunked":
                self.chunked = True
            else:
                self.body_left = int(headers.get("content-length", "0") or 0)

    def _skip_chunk(self):
        """Skips one chunk of a chunked body; False when more bytes are needed."""
        end = self.buf.find(b"\r\n")
        if end < 0:
            return False
        size = int(self.buf[:end].split(b";")[0] or b"0", 16)
        need = end + 2 + size + 2
        if len(self.buf) < need:
            return False
        self.buf = self.buf[need:]
        if size == 0:
            self.chunked = False
        return True


async def pipe(reader, writer, observe=None, first=None):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            if observe:
                observe(data)
            if first:
                first()
                first = None
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.write_eof()
        except (OSError, RuntimeError):
            writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--upstream", default="/var/run/docker.sock")
    args = ap.parse_args()
    log = Log(args.log)
    numbers = itertools.count(1)

    async def handle(cr, cw):
        n = next(numbers)
        log.line(f"{n} CONNECT")
        try:
            ur, uw = await asyncio.open_unix_connection(args.upstream)
        except OSError as e:
            log.line(f"{n} UPSTREAM-ERROR {e}")
            cw.close()
            return
        parser = RequestParser(lambda m, p: log.line(f"{n} {m} {p}"))
        await asyncio.gather(pipe(cr, uw, parser.feed),
                             pipe(ur, cw, first=lambda: log.line(f"{n} ANSWER")))
        log.line(f"{n} CLOSE")
        cw.close()
        uw.close()

    if os.path.exists(args.listen):
        os.unlink(args.listen)
    server = await asyncio.start_unix_server(handle, path=args.listen)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
