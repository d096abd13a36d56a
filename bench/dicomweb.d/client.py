#!/usr/bin/env python3
"""The HTTP client of bench/dicomweb: one keep-alive connection per server, standard
library only (http.client), the same code for pacs and Orthanc. Each command checks every
answer (status, count of results, parts, bytes, image size) and appends one JSON line of
timings to --out; a wrong answer is an error (exit status 1), not a slow one.

    client.py qido     --base URL --queries FILE --runs N ...   QIDO-RS PatientName searches
    client.py wado     --base URL --path P --runs N ...         WADO-RS retrieve, MB/s (curl)
    client.py get      --base URL --path P --runs N ...         metadata / rendered latency
    client.py loopback --bytes B --out F                        raw TCP over 127.0.0.1
    client.py ceiling  --bytes B --runs N --out F               the clients' HTTP ceiling

The bearer token (pacs) is read from the environment variable named by --token-env, never
from the command line. Times are on a monotonic clock, from sending the request to having
read the last byte of the answer; checks of the answer run outside the timed window.
WADO-RS retrieves are timed with curl (see cmd_wado), the same for both servers.
"""
import argparse
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse

BUF = 1 << 20


class Client:
    def __init__(self, base, token_env=None, server="pacs"):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port
        self.prefix = u.path.rstrip("/")
        self.headers = {"Accept-Encoding": "identity", "User-Agent": "pacs-bench/1"}
        if token_env:
            token = os.environ.get(token_env)
            if not token:
                sys.exit(f"client: ${token_env} is empty")
            self.headers["Authorization"] = "Bearer " + token
        self.server = server
        self.conn = None
        self.buf = bytearray(BUF)
        self.view = memoryview(self.buf)

    def _connect(self):
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=300)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def get(self, path, accept, consume=None):
        """GET PREFIX+PATH; returns (seconds, status, response, body). With CONSUME, the
        body is streamed, not kept: CONSUME(response) gives a callable fed (buffer, n) for
        each chunk read (None for an answer to be read whole), and body is that callable."""
        for attempt in (0, 1):
            if self.conn is None:
                self._connect()
            try:
                t0 = time.perf_counter()
                self.conn.request("GET", self.prefix + path, headers={**self.headers, "Accept": accept})
                r = self.conn.getresponse()
                sink = consume(r) if consume else None
                if sink is None:
                    body = r.read()
                else:
                    while True:
                        n = r.readinto(self.view)
                        if not n:
                            break
                        sink(self.buf, n)
                    body = sink
                t1 = time.perf_counter()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A keep-alive connection the server had closed: once more, on a new one.
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
                continue
            if r.getheader("Connection", "").lower() == "close":
                self.conn.close()
                self.conn = None
            return t1 - t0, r.status, r, body
        raise AssertionError("unreachable")


def fail(msg):
    print(f"client: {msg}", file=sys.stderr)
    sys.exit(1)


def emit(out, rec):
    with open(out, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def common(p):
    p.add_argument("--base", required=True, help="DICOMweb root, e.g. http://127.0.0.1:8080/dicom-web")
    p.add_argument("--server", required=True)
    p.add_argument("--token-env")
    p.add_argument("--runs", type=int, required=True)
    p.add_argument("--rep", type=int, default=1)
    p.add_argument("--tag", default="")
    p.add_argument("--out", required=True)


# --- QIDO -------------------------------------------------------------------------------
def qido_path(value, limit, raw):
    # Orthanc 1.10 does not percent-decode query values (bench/dicomweb): it gets them
    # as they are (ASCII only); pacs gets RFC 3986 percent-encoding.
    v = value if raw else urllib.parse.quote(value, safe="*")
    return f"/studies?PatientName={v}&limit={limit}"


def cmd_qido(a):
    c = Client(a.base, a.token_env, a.server)
    queries = json.load(open(a.queries, encoding="utf-8"))
    key = "orthanc" if a.server == "orthanc" else "pacs"
    todo = [q for q in queries if q.get(key) is not None]
    for q in todo:
        if a.raw_values and not q["value"].isascii():
            fail(f"cannot send {q['value']!r} unencoded")
    paths = {q["label"]: qido_path(q["value"], a.limit, a.raw_values) for q in todo}
    times = {q["label"]: [] for q in todo}

    def check(q, status, body):
        if status != 200:
            fail(f"{a.server} {paths[q['label']]}: HTTP {status}: {body[:300]!r}")
        got = len(json.loads(body))
        want = min(q[key], a.limit)
        if got != want:
            fail(f"{a.server} {paths[q['label']]}: {got} results, expected {want}")
    for _ in range(a.warmup):
        for q in todo:
            _, st, _, body = c.get(paths[q["label"]], "application/dicom+json")
            check(q, st, body)
    # Round robin over the queries, so that noise spreads evenly over them.
    for _ in range(a.runs):
        for q in todo:
            s, st, _, body = c.get(paths[q["label"]], "application/dicom+json")
            check(q, st, body)
            times[q["label"]].append(s * 1000)
    for q in todo:
        emit(a.out, {"kind": "qido", "set": a.tag, "server": a.server, "rep": a.rep,
                     "label": q["label"], "value": q["value"], "path": paths[q["label"]],
                     "results": min(q[key], a.limit), "matches": q[key], "ms": times[q["label"]]})


# --- WADO-RS retrieve -------------------------------------------------------------------
class PartCounter:
    """Counts multipart delimiters (--BOUNDARY) and bytes in a streamed body, without
    copying it: a delimiter is counted in the chunk it ends in."""

    def __init__(self, boundary):
        self.delim = b"--" + boundary.encode()
        self.tail = b""
        self.count = 0
        self.bytes = 0
        self.end = b""

    def __call__(self, buf, n):
        k = len(self.delim) - 1
        self.bytes += n
        if self.tail:  # delimiters that straddle the previous chunk and this one
            self.count += (self.tail + bytes(buf[:min(k, n)])).count(self.delim)
        self.count += buf.count(self.delim, 0, n)
        self.tail = (self.tail + bytes(buf[max(0, n - k):n]))[-k:]
        keep = len(self.delim) + 8
        self.end = (self.end + bytes(buf[max(0, n - keep):n]))[-keep:]


def boundary_of(content_type):
    m = re.search(r'boundary="?([^";]+)"?', content_type or "")
    return m.group(1) if m else None


def checked_retrieve(c, a):
    """One retrieve read by this client, every part counted: (seconds, bytes)."""
    def sink(r):
        b = boundary_of(r.getheader("Content-Type"))
        return PartCounter(b) if r.status == 200 and b else None
    secs, st, r, pc = c.get(a.path, a.accept, consume=sink)
    if not isinstance(pc, PartCounter):
        fail(f"{a.server} {a.path}: HTTP {st}, Content-Type {r.getheader('Content-Type')!r}: {pc[:300]!r}")
    parts = pc.count - 1
    if not pc.end.rstrip().endswith(pc.delim + b"--"):
        fail(f"{a.server}: the multipart body does not end with its closing delimiter")
    if parts != a.expect_parts:
        fail(f"{a.server}: {parts} parts, expected {a.expect_parts}")
    lo, hi = a.object_bytes * 0.98, a.object_bytes * 1.02 + a.expect_parts * 2048
    if not lo <= pc.bytes <= hi:
        fail(f"{a.server}: {pc.bytes} bytes for {a.object_bytes} bytes of objects")
    return secs, pc.bytes


def curl_get(url, headers):
    """One GET by curl, body discarded: (seconds, bytes, status). Headers go through
    standard input (a token never shows on a command line)."""
    p = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-H", "@-", "-w", "%{http_code} %{size_download} %{time_total}", url],
        input="".join(f"{k}: {v}\n" for k, v in headers.items()), capture_output=True, text=True)
    if p.returncode != 0:
        fail(f"curl {url}: exit status {p.returncode}: {p.stderr.strip()}")
    code, size, secs = p.stdout.split()
    return float(secs), int(size), int(code)


def cmd_wado(a):
    """The first retrieve is read and checked by this client (parts, bytes); the timed
    ones are by curl (this Python client tops out near 1.3 GB/s over loopback, below what
    a server can send), each checked for status and exactly the same byte count."""
    c = Client(a.base, a.token_env, a.server)
    py_secs, size = checked_retrieve(c, a)
    if c.conn:
        c.conn.close()
    url = f"http://{c.host}:{c.port}{c.prefix}{a.path}"
    headers = {k: v for k, v in c.headers.items() if k != "Accept-Encoding"}
    headers["Accept"] = a.accept
    for _ in range(a.runs):
        secs, n, code = curl_get(url, headers)
        if code != 200 or n != size:
            fail(f"{a.server} {a.path}: curl got HTTP {code}, {n} bytes (the checked retrieve had {size})")
        emit(a.out, {"kind": "wado", "server": a.server, "rep": a.rep, "seconds": secs,
                     "bytes": n, "client": "curl"})
    emit(a.out, {"kind": "wado-python", "server": a.server, "rep": a.rep, "seconds": py_secs,
                 "bytes": size, "client": "python"})


# --- metadata, rendered -----------------------------------------------------------------
def jpeg_size(b):
    """(width, height) from a JPEG's SOF marker, or None."""
    if b[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(b):
        if b[i] != 0xFF:
            return None
        m = b[i + 1]
        if m in (0xC0, 0xC1, 0xC2):
            return int.from_bytes(b[i + 7:i + 9], "big"), int.from_bytes(b[i + 5:i + 7], "big")
        i += 2 + int.from_bytes(b[i + 2:i + 4], "big")
    return None


def cmd_get(a):
    c = Client(a.base, a.token_env, a.server)

    def check(status, r, body):
        if status != 200:
            fail(f"{a.server} {a.path}: HTTP {status}: {body[:300]!r}")
        if a.expect == "json-array":
            n = len(json.loads(body))
            if n != a.expect_count:
                fail(f"{a.server} {a.path}: {n} items, expected {a.expect_count}")
        elif a.expect == "jpeg":
            ct = r.getheader("Content-Type", "")
            size = jpeg_size(body)
            if not ct.startswith("image/jpeg") or size != (a.width, a.height):
                fail(f"{a.server} {a.path}: {ct!r}, JPEG size {size}, expected {a.width}×{a.height}")
    first = None
    if a.first:
        s, st, r, body = c.get(a.path, a.accept)
        check(st, r, body)
        first = s * 1000
    for _ in range(a.warmup):
        _, st, r, body = c.get(a.path, a.accept)
        check(st, r, body)
    times, size = [], 0
    for _ in range(a.runs):
        s, st, r, body = c.get(a.path, a.accept)
        check(st, r, body)
        times.append(s * 1000)
        size = len(body)
    emit(a.out, {"kind": a.tag, "server": a.server, "rep": a.rep, "first_ms": first,
                 "ms": times, "bytes": size})


# --- physical limits --------------------------------------------------------------------
def cmd_loopback(a):
    """Raw TCP over 127.0.0.1: one process writes BYTES, another reads them (MB/s)."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    port = ls.getsockname()[1]
    pid = os.fork()
    if pid == 0:
        s, _ = ls.accept()
        buf = bytearray(BUF)
        while s.recv_into(buf):
            pass
        s.sendall(b"k")
        os._exit(0)
    ls.close()
    s = socket.create_connection(("127.0.0.1", port))
    chunk = b"\x5a" * BUF
    n = a.bytes // BUF
    t0 = time.perf_counter()
    for _ in range(n):
        s.sendall(chunk)
    s.shutdown(socket.SHUT_WR)
    s.recv(1)  # the reader has everything
    secs = time.perf_counter() - t0
    os.waitpid(pid, 0)
    emit(a.out, {"kind": "loopback", "bytes": n * BUF, "seconds": secs})


def cmd_ceiling(a):
    """A trivial HTTP server (another process) sends BYTES as a chunked multipart body
    from memory; this client, then curl, read it as they read a WADO-RS answer: the most
    each client and loopback allow, with no storage and no DICOM work on the server."""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    port = ls.getsockname()[1]
    chunk_size = 256 * 1024
    pid = os.fork()
    if pid == 0:
        payload = b"\x5a" * chunk_size
        framed = b"%x\r\n" % chunk_size + payload + b"\r\n"
        first = b"--ceiling\r\n"
        last = b"\r\n--ceiling--\r\n"
        while True:
            s, _ = ls.accept()
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            f = s.makefile("rb")
            while True:
                line = f.readline()
                if not line:
                    break
                if line.startswith(b"QUIT"):
                    os._exit(0)
                while f.readline() not in (b"\r\n", b"\n", b""):
                    pass
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: multipart/related; boundary=ceiling\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n")
                s.sendall(b"%x\r\n" % len(first) + first + b"\r\n")
                for _ in range(a.bytes // chunk_size):
                    s.sendall(framed)
                s.sendall(b"%x\r\n" % len(last) + last + b"\r\n0\r\n\r\n")
            s.close()
    ls.close()
    c = Client(f"http://127.0.0.1:{port}", server="ceiling")
    for i in range(a.runs + 1):
        secs, st, r, pc = c.get("/", "*/*", consume=lambda r: PartCounter("ceiling"))
        if st != 200 or pc.count != 2:
            fail(f"ceiling: HTTP {st}, {pc.count} delimiters")
        if i:  # the first is a warm-up
            emit(a.out, {"kind": "ceiling-python", "bytes": pc.bytes, "seconds": secs})
    c.conn.close()
    for i in range(a.runs):
        secs, n, code = curl_get(f"http://127.0.0.1:{port}/", {"Accept": "*/*"})
        if code != 200:
            fail(f"ceiling: curl got HTTP {code}")
        emit(a.out, {"kind": "ceiling-curl", "bytes": n, "seconds": secs})
    q = socket.create_connection(("127.0.0.1", port))
    q.sendall(b"QUIT\r\n")
    q.close()
    os.waitpid(pid, 0)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("qido")
    common(q)
    q.add_argument("--queries", required=True)
    q.add_argument("--limit", type=int, default=100)
    q.add_argument("--warmup", type=int, default=3)
    q.add_argument("--raw-values", action="store_true")
    w = sub.add_parser("wado")
    common(w)
    w.add_argument("--path", required=True)
    w.add_argument("--accept", required=True)
    w.add_argument("--expect-parts", type=int, required=True)
    w.add_argument("--object-bytes", type=int, required=True)
    g = sub.add_parser("get")
    common(g)
    g.add_argument("--path", required=True)
    g.add_argument("--accept", required=True)
    g.add_argument("--expect", choices=["json-array", "jpeg"], required=True)
    g.add_argument("--expect-count", type=int)
    g.add_argument("--width", type=int)
    g.add_argument("--height", type=int)
    g.add_argument("--first", action="store_true", help="time the first request apart (cold)")
    g.add_argument("--warmup", type=int, default=2)
    lb = sub.add_parser("loopback")
    lb.add_argument("--bytes", type=int, default=1 << 30)
    lb.add_argument("--out", required=True)
    ce = sub.add_parser("ceiling")
    ce.add_argument("--bytes", type=int, required=True)
    ce.add_argument("--runs", type=int, default=3)
    ce.add_argument("--out", required=True)
    a = p.parse_args()
    {"qido": cmd_qido, "wado": cmd_wado, "get": cmd_get, "loopback": cmd_loopback,
     "ceiling": cmd_ceiling}[a.cmd](a)


if __name__ == "__main__":
    main()
