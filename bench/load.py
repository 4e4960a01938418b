#!/usr/bin/env python3
"""The chained kinds of traffic for bench/load.sh, which wrk cannot do (a second request that
depends on the first one's answer, on another port). Python 3.7+, standard library only.

  upload    POST /v1/keys at the gate for a one-time write key (max_uses 1), then PUT a body to
            the store with it and x-valet-sha256; good: 201, then 200 or 201 whose JSON names
            the body's size and SHA-256. Names are reused (each worker cycles through 16), so
            the disk use stays bounded and most PUTs replace a blob.
  delegate  GET /files/load/{small,medium}.bin at the gate (no redirect followed), then the
            307's Location at the store; good: 307, then 200 with the known SHA-256.
  verify    every VERIFY_EVERY seconds: a one-time read key for a blob this run uploaded, used
            twice; good: 201, 200 with the uploaded bytes, then 403 key_exhausted.

Each worker keeps one keep-alive connection to the gate and one to the store. Latency is the
whole chain. At the end, for each kind, the lines bench/load.sh reads (see bench/load.lua).
"""

import argparse
import asyncio
import collections
import hashlib
import json
import os
import sys
import time
import urllib.parse


class Conn:
    """One keep-alive HTTP/1.1 connection, reopened after an error or a `Connection: close`."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, method, target, headers=(), body=b"", timeout=30.0):
        try:
            return await asyncio.wait_for(self._request(method, target, headers, body), timeout)
        except BaseException:
            self.close()
            raise

    async def _request(self, method, target, headers, body):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}",
                f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await self.writer.drain()
        line = await self.reader.readline()
        if not line:
            raise ConnectionError("connection closed before the answer")
        status = int(line.split()[1])
        fields = {}
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            fields[name.strip().lower()] = value.strip()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            data = b""
        elif "content-length" in fields:
            data = await self.reader.readexactly(int(fields["content-length"]))
        elif fields.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                if size == 0:
                    while (await self.reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            data = b"".join(parts)
        else:
            data = await self.reader.read()
            fields["connection"] = "close"
        if fields.get("connection", "").lower() == "close":
            self.close()
        return status, fields, data


class Kind:
    """What one kind of traffic saw."""

    def __init__(self, name):
        self.name = name
        self.latencies = []  # microseconds, one per chain
        self.statuses = collections.Counter()  # every answer of every step
        self.wrong = 0  # chains with an unexpected status or body
        self.errors = 0  # socket errors and timeouts
        self.samples = []  # a few descriptions of what went wrong

    def note(self, what):
        self.wrong += 1
        if len(self.samples) < 5:
            self.samples.append(what)

    def report(self, duration_us):
        lat = sorted(self.latencies)

        def pct(p):
            if not lat:
                return 0
            return lat[min(len(lat) - 1, int(len(lat) * p / 100))]

        statuses = ",".join(f"{k}:{v}" for k, v in sorted(self.statuses.items()))
        print(f"LOAD_RESULT kind={self.name} requests={len(lat)} duration_us={duration_us} "
              f"p50_us={pct(50)} p99_us={pct(99)} max_us={lat[-1] if lat else 0} "
              f"wrong={self.wrong} errors={self.errors} statuses={statuses}")
        hist = collections.Counter(bucket(v) for v in lat)
        print(f"LOAD_HIST kind={self.name} " + ",".join(f"{b}:{c}" for b, c in sorted(hist.items())))
        for s in self.samples:
            print(f"LOAD_NOTE kind={self.name} {s}", file=sys.stderr)


def bucket(us):
    """Exact below 1 ms, then 3 significant digits (as in bench/load.lua)."""
    if us < 1000:
        return us
    scale = 1
    while us >= 1000 * scale:
        scale *= 10
    return us // scale * scale


class Load:
    def __init__(self, args):
        self.args = args
        self.gate = urllib.parse.urlsplit(args.gate)
        self.store = urllib.parse.urlsplit(args.store)
        self.auth = ("Authorization", f"Bearer {args.admin_key}")
        self.kinds = {k: Kind(k) for k in ("upload", "delegate", "verify")}
        self.blobs = {}  # name -> sha256 hex of the delegate blobs
        for spec in args.blob:
            name, digest = spec.split("=")
            self.blobs[name] = digest
        # Upload bodies: 1 KiB to 64 KiB of random bytes, hashed once.
        self.bodies = []
        for size in (1024, 4096, 16384, 65536):
            data = os.urandom(size)
            self.bodies.append((data, hashlib.sha256(data).hexdigest()))
        self.uploaded = {}  # name -> body index, for verify
        self.end = 0.0

    def conn(self, url):
        return Conn(url.hostname, url.port)

    async def issue(self, gate, kind, resource, ops, max_uses):
        body = json.dumps(
            {"resource": resource, "ops": ops, "max_uses": max_uses, "ttl": "1m"}).encode()
        status, _, data = await gate.request(
            "POST", "/v1/keys", [self.auth, ("Content-Type", "application/json")], body)
        kind.statuses[status] += 1
        if status != 201:
            kind.note(f"issue {resource}: {status} {data[:200]!r}")
            return None
        try:
            return json.loads(data)["token"]
        except (ValueError, KeyError):
            kind.note(f"issue {resource}: 201 without a token: {data[:200]!r}")
            return None

    async def run_chains(self, kind, step, pause=0.0):
        """Runs `step` again and again until the end, `pause` seconds apart, timing each chain."""
        gate, store = self.conn(self.gate), self.conn(self.store)
        seq = 0
        while time.monotonic() < self.end:
            if pause:
                await asyncio.sleep(pause)
                if time.monotonic() >= self.end:
                    break
            t0 = time.perf_counter()
            try:
                done = await step(gate, store, seq)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
                # ValueError: an answer that is not HTTP.
                kind.errors += 1
                if len(kind.samples) < 5:
                    kind.samples.append(f"socket error: {e!r}")
                await asyncio.sleep(0.01)
                continue
            if done:
                kind.latencies.append(int((time.perf_counter() - t0) * 1e6))
            seq += 1
        gate.close()
        store.close()

    def upload_step(self, worker):
        kind = self.kinds["upload"]

        async def step(gate, store, seq):
            name = f"load/up/{worker}/{seq % 16}.bin"
            index = (worker + seq) % len(self.bodies)
            data, digest = self.bodies[index]
            token = await self.issue(gate, kind, f"blob:files/{name}", ["write"], 1)
            if token is None:
                return True
            status, _, answer = await store.request(
                "PUT", f"/blob/files/{name}?vk={token}",
                [("Content-Type", "application/octet-stream"), ("x-valet-sha256", digest)], data)
            kind.statuses[status] += 1
            if status not in (200, 201):
                kind.note(f"PUT {name}: {status} {answer[:200]!r}")
                return True
            try:
                meta = json.loads(answer)
            except ValueError:
                meta = {}
            if meta.get("sha256") != digest or meta.get("size") != len(data):
                kind.note(f"PUT {name}: answered {meta}, sent {len(data)} bytes {digest}")
                return True
            self.uploaded[name] = index
            return True

        return step

    def delegate_step(self, worker):
        kind = self.kinds["delegate"]
        names = sorted(self.blobs)

        async def step(gate, store, seq):
            name = names[(worker + seq) % len(names)]
            status, fields, answer = await gate.request("GET", f"/files/{name}", [self.auth])
            kind.statuses[status] += 1
            location = fields.get("location", "")
            target = urllib.parse.urlsplit(location)
            if status != 307 or (target.hostname, target.port) != (self.store.hostname, self.store.port):
                kind.note(f"GET /files/{name}: {status} location={location!r} {answer[:200]!r}")
                return True
            status, _, data = await store.request("GET", f"{target.path}?{target.query}")
            kind.statuses[status] += 1
            if status != 200 or hashlib.sha256(data).hexdigest() != self.blobs[name]:
                kind.note(f"GET {target.path}: {status}, {len(data)} bytes, wrong digest")
            return True

        return step

    def verify_step(self):
        kind = self.kinds["verify"]

        async def step(gate, store, seq):
            if not self.uploaded:
                return False
            names = sorted(self.uploaded)
            name = names[seq % len(names)]
            token = await self.issue(gate, kind, f"blob:files/{name}", ["read"], 1)
            if token is None:
                return True
            status, _, data = await store.request("GET", f"/blob/files/{name}?vk={token}")
            kind.statuses[status] += 1
            # The blob may have been replaced meanwhile by its worker: any of the bodies.
            if status != 200 or data not in [b for b, _ in self.bodies]:
                kind.note(f"GET {name} with a one-time key: {status}, {len(data)} bytes")
                return True
            status, _, answer = await store.request("GET", f"/blob/files/{name}?vk={token}")
            kind.statuses[status] += 1
            if status != 403 or b"key_exhausted" not in answer:
                kind.note(f"second GET {name} with a one-time key: {status} {answer[:200]!r}")
            return True

        return step

    async def main(self):
        start = time.monotonic()
        self.end = start + self.args.seconds
        tasks = [self.run_chains(self.kinds["upload"], self.upload_step(w))
                 for w in range(self.args.upload_conns)]
        tasks += [self.run_chains(self.kinds["delegate"], self.delegate_step(w))
                  for w in range(self.args.delegate_conns)]
        tasks.append(self.run_chains(self.kinds["verify"], self.verify_step(),
                                     pause=self.args.verify_every))
        await asyncio.gather(*tasks)
        duration_us = int((time.monotonic() - start) * 1e6)
        for kind in self.kinds.values():
            kind.report(duration_us)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gate", required=True, help="http://HOST:PORT")
    p.add_argument("--store", required=True, help="http://HOST:PORT")
    p.add_argument("--admin-key", required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--upload-conns", type=int, default=4)
    p.add_argument("--delegate-conns", type=int, default=4)
    p.add_argument("--verify-every", type=float, default=0.2)
    p.add_argument("--blob", action="append", default=[],
                   help="NAME=SHA256 of a blob under files/ for the delegate kind (repeat)")
    args = p.parse_args()
    if not args.blob:
        p.error("at least one --blob")
    asyncio.run(Load(args).main())


if __name__ == "__main__":
    main()
