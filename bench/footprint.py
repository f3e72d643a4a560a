#!/usr/bin/env python3
"""Footprint and start-up of the real `traefik-openstack serve` binary.

A minimal Keystone + Nova (stdlib HTTP server, in this process) answers with
N servers (default 10,000), each with 8 Traefik labels in its metadata, the
same synthetic cloud as guest/src/synthetic.rs. The host runs with the same
templated `[routes]` as the generate bench. We measure:

- start-up: process spawn -> first 200 on /traefik, and the part of it after
  OpenStack's answer (the last page of /servers/detail written by the fake),
  with an empty compile cache and with a warm one;
- memory: VmRSS and VmHWM from /proc/<pid>/status once the first
  configuration is served and after a few steady refreshes;
- with --change, one-change latency: the fake's changes-since answer then
  carries one modified server (a router priority of 77), and we time from
  that answer to the served configuration carrying it (polled with
  If-None-Match, so each poll is a 304 until the configuration changes).

Prints one JSON object on stdout. Usage:
  footprint.py --bin target/release/traefik-openstack [--instances 10000]
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PROJECT = "a6944d763bf64ee6a275f1263fae0352"

ROUTES_TOML = r'''
[routes]
default_rule = "Host(`{{ normalize .Name }}.apps.example.com`)"
address = "floating"
entry_points = ["web", "websecure"]

[routes.default_labels]
"traefik.http.routers.{{ normalize .Name }}-http.rule" = "Host(`{{ normalize .Name }}.apps.example.com`)"
"traefik.http.routers.{{ normalize .Name }}-http.entrypoints" = "web"
"traefik.http.routers.{{ normalize .Name }}-http.middlewares" = "to-https"
"traefik.http.middlewares.to-https.redirectscheme.scheme" = "https"
"traefik.http.routers.{{ normalize .Name }}-https.rule" = "Host(`{{ normalize .Name }}.apps.example.com`) || Host(`{{ .ID }}.id.example.com`)"
"traefik.http.routers.{{ normalize .Name }}-https.entrypoints" = "websecure"
"traefik.http.routers.{{ normalize .Name }}-https.tls" = "true"
"traefik.http.services.{{ normalize .Name }}.loadbalancer.server.port" = "{{ default \"80\" .Metadata.port }}"
'''


def server(i):
    name = "vm-%05d" % i
    ip = lambda base: "%d.%d.%d.%d" % (base, (i >> 16) & 255, (i >> 8) & 255, i & 255)
    meta = {
        "port": "8080",
        "traefik.enable": "true",
        "traefik.http.routers.%s-https.tls.certresolver" % name: "letsencrypt",
        "traefik.http.routers.%s-https.middlewares" % name: "%s-headers" % name,
        "traefik.http.middlewares.%s-headers.headers.customrequestheaders.X-Instance" % name: name,
        "traefik.http.services.%s.loadbalancer.passhostheader" % name: "true",
        "traefik.http.services.%s.loadbalancer.healthcheck.path" % name: "/healthz",
        "traefik.http.services.%s.loadbalancer.healthcheck.interval" % name: "10s",
        "traefik.http.routers.%s-https.priority" % name: "10",
    }
    sid = "%08x-0000-4000-8000-%012x" % (i, i)
    return {
        "id": sid,
        "name": name,
        "status": "ACTIVE",
        "tenant_id": PROJECT,
        "user_id": "user",
        "created": "2026-01-01T00:00:00Z",
        "updated": "2026-01-01T00:00:00Z",
        "OS-EXT-AZ:availability_zone": "nova",
        "OS-EXT-STS:vm_state": "active",
        "flavor": {"original_name": "m1.small", "vcpus": 1, "ram": 2048, "disk": 20},
        "image": {"id": "c2ab9a6e-2fd5-4dc9-a3ab-000000000001"},
        "metadata": meta,
        "tags": ["team-%d" % (i % 7)],
        "description": None,
        "addresses": {
            "private": [
                {"addr": ip(10), "version": 4, "OS-EXT-IPS:type": "fixed",
                 "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:%02x:%02x:%02x" % ((i >> 16) & 255, (i >> 8) & 255, i & 255)},
                {"addr": ip(100), "version": 4, "OS-EXT-IPS:type": "floating",
                 "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:%02x:%02x:%02x" % ((i >> 16) & 255, (i >> 8) & 255, i & 255)},
            ]
        },
        "links": [],
    }


class Fake:
    """State shared with the handler: pages and what happened when."""

    def __init__(self, n, page):
        self.servers = [server(i) for i in range(n)]
        self.page = page
        self.events = []  # (wall time, what)
        self.lock = threading.Lock()
        self.port = None
        # A server that changes-since reports, once set (see --change).
        self.changed = None

    def note(self, what):
        with self.lock:
            self.events.append((time.time(), what))


def handler_for(fake):
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def reply(self, code, doc, headers=()):
            body = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            self.rfile.read(n)
            if not self.path.startswith("/v3/auth/tokens"):
                return self.reply(404, {})
            now = datetime.now(timezone.utc)
            ts = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
            compute = "http://127.0.0.1:%d/v2.1" % fake.port
            token = {"token": {
                "methods": ["password"], "issued_at": ts(now),
                "expires_at": ts(now + timedelta(hours=1)),
                "project": {"id": PROJECT, "name": "bench", "domain": {"id": "default", "name": "Default"}},
                "user": {"id": "user", "name": "bench", "domain": {"id": "default", "name": "Default"}},
                "catalog": [{"type": "compute", "name": "nova", "id": "c", "endpoints": [
                    {"interface": "public", "region": "RegionOne", "region_id": "RegionOne",
                     "url": compute, "id": "e"}]}],
            }}
            fake.note("token")
            self.reply(201, token, [("X-Subject-Token", "bench-token")])

        def do_GET(self):
            u = urlparse(self.path)
            path = u.path.rstrip("/")
            if path in ("", "/v3", "/v2.1"):
                return self.reply(200, {"version": {
                    "id": "v2.1", "status": "CURRENT", "version": "2.100",
                    "min_version": "2.1", "links": []}})
            if path != "/v2.1/servers/detail":
                return self.reply(404, {"itemNotFound": {"message": path}})
            q = parse_qs(u.query)
            if "changes-since" in q:
                changed = fake.changed
                self.reply(200, {"servers": [changed] if changed else []})
                fake.note("change_sent" if changed else "changes")
                return
            limit = int(q.get("limit", ["1000"])[0])
            start = 0
            if "marker" in q:
                ids = [s["id"] for s in fake.servers]
                start = ids.index(q["marker"][0]) + 1
            chunk = fake.servers[start:start + limit]
            doc = {"servers": chunk}
            last = start + limit >= len(fake.servers)
            if not last:
                doc["servers_links"] = [{"rel": "next", "href": "http://nova.invalid/v2.1/servers/detail?marker=" + chunk[-1]["id"]}]
            self.reply(200, doc)
            if last:
                fake.note("listing_done")

    return H


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def status_kib(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


def get_status(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def changed_server(fake):
    """The middle server with its https router's priority set to 77."""
    i = len(fake.servers) // 2
    s = json.loads(json.dumps(fake.servers[i]))
    name = s["name"]
    s["metadata"]["traefik.http.routers.%s-https.priority" % name] = "77"
    s["updated"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return s


def one_change(fake, url, timeout=60):
    """Milliseconds from the changes-since answer with one changed server
    to the served configuration carrying it."""
    with urllib.request.urlopen(url, timeout=30) as r:
        etag = r.headers["ETag"]
        r.read()
    with fake.lock:
        fake.events.clear()
    fake.changed = changed_server(fake)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            req = urllib.request.Request(url, headers={"If-None-Match": etag})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    seen = time.time()
                    body = r.read()
            except urllib.error.HTTPError as e:
                if e.code != 304:
                    raise
                time.sleep(0.002)
                continue
            if b'"priority":77' not in body:
                raise SystemExit("the configuration changed without the change")
            with fake.lock:
                sent = [t for t, w in fake.events if w == "change_sent"]
            return round((seen - sent[0]) * 1000, 1)
        raise SystemExit("the change was not served within %d s" % timeout)
    finally:
        fake.changed = None


def run_once(args, fake, cache_dir, workdir, label):
    port = free_port()
    cfg = os.path.join(workdir, "host-%s.toml" % label)
    with open(cfg, "w") as f:
        f.write('[server]\nlisten = "127.0.0.1:%d"\n\n' % port)
        f.write('[openstack]\nrefresh_interval = "%s"\n\n' % args.refresh)
        # The default 1 s budget is too short for 10k labelled instances
        # (see results); the bench measures memory and start-up, not that.
        f.write('[engine]\ncache_dir = "%s"\ntimeout = "%s"\n' % (cache_dir, args.engine_timeout))
        f.write(ROUTES_TOML)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update({
        "OS_AUTH_URL": "http://127.0.0.1:%d/v3" % fake.port,
        "OS_USERNAME": "bench", "OS_PASSWORD": "bench", "OS_PROJECT_NAME": "bench",
        "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default",
        "OS_REGION_NAME": "RegionOne", "RUST_LOG": os.environ.get("BENCH_RUST_LOG", "warn"),
    })
    with fake.lock:
        fake.events.clear()
    log = open(os.path.join(workdir, "host-%s.log" % label), "w")
    spawned = time.time()
    proc = subprocess.Popen([args.bin, "serve", "--config", cfg], env=env,
                            stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    url = "http://127.0.0.1:%d/traefik" % port
    first = None
    try:
        deadline = spawned + 120
        while time.time() < deadline:
            if proc.poll() is not None:
                raise SystemExit("host exited (%s); see %s" % (proc.returncode, log.name))
            if get_status(url) == 200:
                first = time.time()
                break
            time.sleep(0.002)
        if first is None:
            raise SystemExit("no configuration within 120 s; see %s" % log.name)
        at_first = status_kib(proc.pid)
        time.sleep(args.steady)
        steady = status_kib(proc.pid)
        with fake.lock:
            events = list(fake.events)
        done = [t for t, w in events if w == "listing_done"]
        token = [t for t, w in events if w == "token"]
        result = {
            "spawn_to_first_config_ms": round((first - spawned) * 1000, 1),
            "spawn_to_first_request_ms": round((token[0] - spawned) * 1000, 1) if token else None,
            "openstack_answer_to_first_config_ms": round((first - done[0]) * 1000, 1) if done else None,
            "vm_rss_kib_first": at_first["VmRSS"],
            "vm_hwm_kib_first": at_first["VmHWM"],
            "vm_rss_kib_steady": steady["VmRSS"],
            "vm_hwm_kib_steady": steady["VmHWM"],
            "steady_refreshes": sum(1 for _, w in events if w == "changes"),
        }
        if args.change:
            result["one_change_ms"] = one_change(fake, url)
            after = status_kib(proc.pid)
            result["vm_rss_kib_after_change"] = after["VmRSS"]
            result["vm_hwm_kib_after_change"] = after["VmHWM"]
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, type=os.path.abspath)
    ap.add_argument("--instances", type=int, default=10000)
    ap.add_argument("--page-size", type=int, default=1000)
    ap.add_argument("--refresh", default="2s")
    ap.add_argument("--steady", type=float, default=7.0, help="seconds of steady refreshes before the second reading")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--engine-timeout", default="10s")
    ap.add_argument("--change", action="store_true", help="also time one changed server (warm cache runs)")
    ap.add_argument("--only-warm", action="store_true", help="skip the no-cache and cold-cache runs")
    ap.add_argument("--workdir")
    args = ap.parse_args()

    workdir = os.path.abspath(args.workdir or tempfile.mkdtemp(prefix="bench-footprint-"))
    os.makedirs(workdir, exist_ok=True)
    fake = Fake(args.instances, args.page_size)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(fake))
    fake.port = httpd.server_address[1]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    cache = os.path.join(workdir, "module-cache")
    shutil.rmtree(cache, ignore_errors=True)
    runs = {"no_cache": [], "cold_cache": [], "warm_cache": []}
    if args.only_warm:
        del runs["no_cache"], runs["cold_cache"]
    for r in range(args.rounds):
        if not args.only_warm:
            runs["no_cache"].append(run_once(args, fake, "", workdir, "nocache%d" % r))
            shutil.rmtree(cache, ignore_errors=True)
            runs["cold_cache"].append(run_once(args, fake, cache, workdir, "cold%d" % r))
        elif r == 0:
            shutil.rmtree(cache, ignore_errors=True)
            run_once(args, fake, cache, workdir, "fill")
        runs["warm_cache"].append(run_once(args, fake, cache, workdir, "warm%d" % r))
    httpd.shutdown()

    def med(rows, key):
        v = sorted(x[key] for x in rows if x[key] is not None)
        return v[len(v) // 2] if v else None

    summary = {}
    for k, rows in runs.items():
        summary[k] = {key: med(rows, key) for key in rows[0]}
    json.dump({"instances": args.instances, "rounds": args.rounds, "median": summary, "runs": runs},
              sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
