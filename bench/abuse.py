#!/usr/bin/env python3
"""Abuse of the endpoint on loopback: does Traefik's poll stay fast?

Starts `serve_fixture` (the real publisher and hyper server, default
`[server]` limits, the configuration of N synthetic instances) pinned to one
core, and polls GET /traefik from this process on the other core the way
Traefik does: one keep-alive connection, `Accept-Encoding: gzip`, every
`--interval`, alternating a full 200 and a 304 with If-None-Match; a poll
whose connection the server closed reconnects and retries once, as Go's
client does. The poll latency (p50/p99) is measured unattacked, then under
each attack run by a second process (`abuse.py attack KIND`) at nice 10 on
the server's core, the poller alone on the other: on two cores the poller
cannot share a core with the attacker without measuring its own scheduling
(a loopback connect's kernel work runs on the connecting core whatever its
nice), and an attacker's packets cost the server's machine anyway:

  idle       2,000 connections that send nothing, reopened when closed
  slowloris  2,000 connections sending a request head a byte a second
  headers    requests with 64 KiB headers, 4 at a time, back to back
  flood      connect + reset, as fast as one process can

with an unattacked phase before and after each attack; the baseline is the
unattacked phases pooled. The server's VmRSS is sampled throughout (before,
peak during, after each phase) with VmHWM.

Prints one JSON object on stdout. Usage:
  abuse.py --fixture PATH [--instances 10000] [--phase-seconds 10]
           [--interval 0.02] [--connections 2000] [--server-cpu 1 --client-cpu 0]
"""

import argparse
import http.client
import json
import os
import resource
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

ATTACKS = ("idle", "slowloris", "headers", "flood")


def raise_nofile(want):
    """Raises the soft open files limit (inherited by the children) to
    `want` or the hard limit; returns (soft before, hard, soft now)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = soft
    if soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return soft, hard, new


def reset_close(s):
    # An abortive close (RST): no TIME_WAIT, so the attacker never runs out
    # of ephemeral ports.
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()


# ---------------------------------------------------------------- attacks

class Stop:
    def __init__(self):
        self.flag = False
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "flag", True))


def hold(addr, n, slowloris, stop, stats):
    """Keeps `n` connections open, reopening each one the server closes;
    with `slowloris`, each sends a request line and then a header byte a
    second, never finishing."""
    sel = selectors.DefaultSelector()
    head = b"GET /traefik HTTP/1.1\r\nHost: fixture\r\nX-Slow: "

    def open_one():
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(addr)
        except BlockingIOError:
            pass
        except OSError:
            stats["connect_errors"] += 1
            s.close()
            return
        stats["opened"] += 1
        sel.register(s, selectors.EVENT_READ, {"sent": 0})

    for _ in range(n):
        open_one()
    print("READY", flush=True)
    last_trickle = 0.0
    while not stop.flag:
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if data:
                stats["bytes_received"] += len(data)
                continue
            stats["closed_by_server"] += 1
            sel.unregister(s)
            s.close()
            open_one()
        now = time.time()
        if slowloris and now - last_trickle >= 1.0:
            last_trickle = now
            for key in list(sel.get_map().values()):
                st = key.data
                byte = head[st["sent"]:st["sent"] + 1] or b"a"
                try:
                    key.fileobj.send(byte)
                    st["sent"] += 1
                except OSError:
                    pass
    for key in list(sel.get_map().values()):
        reset_close(key.fileobj)


def big_headers(addr, stop, stats, lock):
    pad = b"a" * (64 * 1024)
    req = b"GET /traefik HTTP/1.1\r\nHost: fixture\r\nX-Pad: " + pad + b"\r\n\r\n"
    while not stop.flag:
        s = socket.socket()
        s.settimeout(10)
        try:
            s.connect(addr)
            try:
                s.sendall(req)
            except OSError:
                pass
            answer = s.recv(64)
            key = "answered_431" if answer.startswith(b"HTTP/1.1 431") else "other_answer"
        except OSError:
            key = "reset"
        reset_close(s)
        with lock:
            stats[key] += 1


def flood(addr, stop, stats):
    while not stop.flag:
        s = socket.socket()
        try:
            s.connect(addr)
            stats["connected"] += 1
        except OSError:
            stats["connect_errors"] += 1
        reset_close(s)


def attack(kind, addr, n):
    stop = Stop()
    stats = {"kind": kind, "opened": 0, "connect_errors": 0, "closed_by_server": 0,
             "bytes_received": 0, "answered_431": 0, "other_answer": 0, "reset": 0, "connected": 0}
    started = time.time()
    if kind in ("idle", "slowloris"):
        raise_nofile(n + 256)
        hold(addr, n, kind == "slowloris", stop, stats)
    elif kind == "headers":
        lock = threading.Lock()
        threads = [threading.Thread(target=big_headers, args=(addr, stop, stats, lock)) for _ in range(4)]
        print("READY", flush=True)
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    elif kind == "flood":
        print("READY", flush=True)
        flood(addr, stop, stats)
    stats["seconds"] = round(time.time() - started, 1)
    stats = {k: v for k, v in stats.items() if v or k in ("kind", "seconds")}
    print(json.dumps(stats), flush=True)


# ---------------------------------------------------------------- the poller

class Poller:
    """Traefik's side: one keep-alive connection, reopened when closed."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.conn = None
        self.reconnects = 0
        self.etag = None

    def get(self, headers):
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                if self.etag is not None:
                    self.reconnects += 1
            try:
                self.conn.request("GET", "/traefik", headers=headers)
                r = self.conn.getresponse()
                body = r.read()
                return r.status, r.getheader("ETag"), len(body)
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise

    def phase(self, seconds, interval):
        lat = {"gzip": [], "not_modified": []}
        errors = 0
        end = time.time() + seconds
        n = 0
        while time.time() < end:
            case = "gzip" if n % 2 == 0 else "not_modified"
            headers = {"Accept-Encoding": "gzip"}
            if case == "not_modified":
                headers["If-None-Match"] = self.etag
            t0 = time.perf_counter()
            try:
                status, etag, _ = self.get(headers)
                ok = status == (200 if case == "gzip" else 304)
            except (OSError, http.client.HTTPException):
                ok = False
            dt = time.perf_counter() - t0
            if ok:
                lat[case].append(dt * 1000)
            else:
                errors += 1
            n += 1
            time.sleep(interval)
        return lat, errors


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    return round(xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))], 3)


def summary(lat):
    out = {}
    every = lat["gzip"] + lat["not_modified"]
    for name, xs in list(lat.items()) + [("all", every)]:
        out[name] = {"n": len(xs), "p50_ms": pct(xs, 0.5), "p99_ms": pct(xs, 0.99),
                     "max_ms": round(max(xs), 3) if xs else None}
    return out


def status_kib(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


class RssSampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.go = pid, 0, True

    def run(self):
        while self.go:
            self.peak = max(self.peak, status_kib(self.pid)["VmRSS"])
            time.sleep(0.05)


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "attack":
        host, port = sys.argv[3].rsplit(":", 1)
        attack(sys.argv[2], (host, int(port)), int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixture", required=True, help="the serve_fixture bench executable")
    ap.add_argument("--instances", type=int, default=10000)
    ap.add_argument("--phase-seconds", type=float, default=10)
    ap.add_argument("--interval", type=float, default=0.02)
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--server-cpu", type=int, default=1)
    ap.add_argument("--client-cpu", type=int, default=0)
    ap.add_argument("--attacker-cpu", type=int, default=None,
                    help="default: the server's core (see the module doc)")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    if args.attacker_cpu is None:
        args.attacker_cpu = args.server_cpu

    nofile_soft, nofile_hard, nofile_now = raise_nofile(args.connections + 1024)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    if args.workdir:
        os.makedirs(args.workdir, exist_ok=True)
    log = open(os.path.join(args.workdir, "fixture.log"), "w") if args.workdir else subprocess.DEVNULL
    fixture = subprocess.Popen(
        ["taskset", "-c", str(args.server_cpu), args.fixture, "--instances", str(args.instances),
         "--listen", "127.0.0.1:%d" % port],
        stdout=subprocess.PIPE, stderr=log, text=True)
    attacker = None
    try:
        info = json.loads(fixture.stdout.readline())
        os.sched_setaffinity(0, {args.client_cpu})
        poller = Poller("127.0.0.1", port)
        status, poller.etag, size = poller.get({"Accept-Encoding": "gzip"})
        assert status == 200 and size == info["gzip_bytes"], (status, size, info)
        # Warm both paths before measuring.
        poller.phase(1, args.interval)
        phases = []
        # Unattacked between attacks: the baseline is all of them pooled,
        # so it sees the same drift of a shared machine as the attacks.
        order = ["unattacked"]
        for a in ATTACKS:
            order += [a, "unattacked"]
        baseline = {"gzip": [], "not_modified": []}
        for name in order:
            rss_before = status_kib(fixture.pid)
            attacker_stats = None
            if name in ATTACKS:
                attacker = subprocess.Popen(
                    ["taskset", "-c", str(args.attacker_cpu), "nice", "-n", "10", sys.executable,
                     os.path.abspath(__file__), "attack", name, "127.0.0.1:%d" % port, str(args.connections)],
                    stdout=subprocess.PIPE, text=True)
                line = attacker.stdout.readline()
                assert line.strip() == "READY", "attacker %s: %r" % (name, line)
                time.sleep(1)  # let the attack settle in
            sampler = RssSampler(fixture.pid)
            sampler.start()
            reconnects = poller.reconnects
            lat, errors = poller.phase(args.phase_seconds, args.interval)
            if name == "unattacked":
                for k in baseline:
                    baseline[k] += lat[k]
            fds_during = open_fds(fixture.pid)
            sampler.go = False
            sampler.join()
            if attacker is not None:
                attacker.send_signal(signal.SIGTERM)
                out, _ = attacker.communicate(timeout=30)
                attacker_stats = json.loads(out.strip().splitlines()[-1])
                attacker = None
                time.sleep(1)
            rss_after = status_kib(fixture.pid)
            phases.append({
                "name": name, "poll": summary(lat), "poll_errors": errors,
                "poll_reconnects": poller.reconnects - reconnects,
                "server_fds_at_end": fds_during,
                "vm_rss_kib": {"before": rss_before["VmRSS"], "peak": max(sampler.peak, rss_before["VmRSS"]),
                               "after": rss_after["VmRSS"]},
                "vm_hwm_kib_after": rss_after["VmHWM"],
                "attacker": attacker_stats,
            })
            print("%-16s p50 %6.2f ms  p99 %6.2f ms  errors %d  reconnects %d  rss %d -> %d kB" % (
                name, phases[-1]["poll"]["all"]["p50_ms"], phases[-1]["poll"]["all"]["p99_ms"], errors,
                phases[-1]["poll_reconnects"], rss_before["VmRSS"], sampler.peak), file=sys.stderr)
        base = summary(baseline)
        for p in phases:
            p["p99_ratio"] = round(p["poll"]["all"]["p99_ms"] / base["all"]["p99_ms"], 3)
            p["rss_growth_kib"] = p["vm_rss_kib"]["peak"] - phases[0]["vm_rss_kib"]["before"]
        json.dump({"instances": args.instances, "phase_seconds": args.phase_seconds,
                   "interval_s": args.interval, "connections": args.connections,
                   "server_cpu": args.server_cpu, "client_cpu": args.client_cpu,
                   "attacker_cpu": args.attacker_cpu,
                   "limits": "serve_fixture: server::Limits::default() (request_timeout 10s, "
                             "max_connections 512, max_header_bytes 16384)",
                   "nofile": {"soft_default": nofile_soft, "hard": nofile_hard, "soft_raised_to": nofile_now},
                   "gzip_bytes": info["gzip_bytes"], "baseline": base,
                   "loadavg_at_end": open("/proc/loadavg").read().split()[:3],
                   "phases": phases}, sys.stdout, indent=1)
        print()
    finally:
        if attacker is not None:
            attacker.kill()
        fixture.send_signal(signal.SIGTERM)
        try:
            fixture.wait(10)
        except subprocess.TimeoutExpired:
            fixture.kill()


if __name__ == "__main__":
    main()
