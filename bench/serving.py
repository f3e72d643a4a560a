#!/usr/bin/env python3
"""GET /traefik under load: the host's server against nginx, same bytes.

Starts `serve_fixture` (the real engine, publisher and hyper server holding
the configuration of N synthetic instances) and nginx serving the files it
wrote (traefik.json and traefik.json.gz, sendfile, keepalive, gzip_static),
each pinned to one core, and runs wrk pinned to the other core against each,
interleaved, for three cases: plain 200, gzip 200 (what Traefik's Go client
asks for) and 304 with If-None-Match. Prints one JSON object on stdout.

Usage: serving.py --fixture PATH [--instances 10000] [--duration 10]
                  [--connections 64] [--rounds 2] [--server-cpu 1 --client-cpu 0]
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

LUA = r'''
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"bytes":%d,"duration_us":%d,"mean_us":%.1f,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"errors":%d,"non2xx3xx":%d}\n',
    summary.requests, summary.bytes, summary.duration, latency.mean,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.timeout, e.status))
end
'''

NGINX = '''
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_timeout 65;
  keepalive_requests 100000000;
  default_type application/json;
  client_body_temp_path {dir}/tmp;
  proxy_temp_path {dir}/tmp;
  fastcgi_temp_path {dir}/tmp;
  uwsgi_temp_path {dir}/tmp;
  scgi_temp_path {dir}/tmp;
  gzip_vary on;
  server {{
    listen 127.0.0.1:{port};
    location = /traefik {{
      alias {dir}/traefik.json;
      gzip_static on;
      add_header Cache-Control no-cache;
    }}
  }}
}}
'''


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_http(url, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                r.read()
                return r.headers
        except OSError:
            time.sleep(0.1)
    raise SystemExit("%s did not answer" % url)


def head(url, headers):
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            body = r.read()
            return r.status, r.headers, len(body)
    except urllib.error.HTTPError as e:
        return e.code, e.headers, 0


def wrk(args, url, headers, lua):
    cmd = ["taskset", "-c", str(args.client_cpu), "wrk", "-t1", "-c%d" % args.connections,
           "-d%ds" % args.duration, "--timeout", "10s", "-s", lua]
    for k, v in headers.items():
        cmd += ["-H", "%s: %s" % (k, v)]
    cmd.append(url)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("WRKJSON "):
            r = json.loads(line[8:])
            r["rps"] = round(r["requests"] / (r["duration_us"] / 1e6), 1)
            r["bytes_per_response"] = round(r["bytes"] / max(r["requests"], 1), 1)
            return r
    raise SystemExit("wrk gave no summary:\n" + out)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixture", required=True, help="the serve_fixture bench executable")
    ap.add_argument("--instances", type=int, default=10000)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--server-cpu", type=int, default=1)
    ap.add_argument("--client-cpu", type=int, default=0)
    ap.add_argument("--workdir")
    args = ap.parse_args()

    d = os.path.abspath(args.workdir or tempfile.mkdtemp(prefix="bench-serving-"))
    os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
    lua = os.path.join(d, "summary.lua")
    with open(lua, "w") as f:
        f.write(LUA)

    host_port, nginx_port = free_port(), free_port()
    fixture_log = open(os.path.join(d, "fixture.log"), "w")
    fixture = subprocess.Popen(
        ["taskset", "-c", str(args.server_cpu), args.fixture, "--instances", str(args.instances),
         "--listen", "127.0.0.1:%d" % host_port, "--out", d],
        stdout=subprocess.PIPE, stderr=fixture_log, text=True)
    info = json.loads(fixture.stdout.readline())
    nginx_conf = os.path.join(d, "nginx.conf")
    with open(nginx_conf, "w") as f:
        f.write(NGINX.format(dir=d, port=nginx_port))
    nginx = subprocess.Popen(["taskset", "-c", str(args.server_cpu), "nginx", "-c", nginx_conf, "-p", d],
                             stderr=open(os.path.join(d, "nginx.out"), "w"))
    try:
        urls = {"host": "http://127.0.0.1:%d/traefik" % host_port,
                "nginx": "http://127.0.0.1:%d/traefik" % nginx_port}
        for u in urls.values():
            wait_http(u)
        # The validators each server hands out, for the 304 case.
        etags = {}
        check = {}
        for name, u in urls.items():
            st, h, n = head(u, {})
            st_gz, h_gz, n_gz = head(u, {"Accept-Encoding": "gzip"})
            etags[name] = h_gz.get("ETag")
            check[name] = {"status": st, "body": n, "gzip_status": st_gz, "gzip_body": n_gz,
                           "gzip_encoding": h_gz.get("Content-Encoding")}
        assert check["host"]["body"] == check["nginx"]["body"] == info["body_bytes"], check
        assert check["host"]["gzip_body"] == check["nginx"]["gzip_body"] == info["gzip_bytes"], check
        cases = {
            "identity": lambda name: {},
            "gzip": lambda name: {"Accept-Encoding": "gzip"},
            "not_modified": lambda name: {"Accept-Encoding": "gzip", "If-None-Match": etags[name]},
        }
        pids = {"host": fixture.pid, "nginx": None}
        results = {c: {"host": [], "nginx": []} for c in cases}
        for _ in range(args.rounds):
            for case, hdrs in cases.items():
                for name in ("host", "nginx"):
                    r = wrk(args, urls[name], hdrs(name), lua)
                    results[case][name].append(r)
        summary = {}
        for case, by in results.items():
            best = {n: max(rs, key=lambda r: r["rps"]) for n, rs in by.items()}
            summary[case] = {
                "host": best["host"], "nginx": best["nginx"],
                "rps_ratio": round(best["host"]["rps"] / best["nginx"]["rps"], 3),
                "p99_ratio": round(best["host"]["p99_us"] / max(best["nginx"]["p99_us"], 1), 3),
            }
        rss = {}
        with open("/proc/%d/status" % fixture.pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    rss[k] = int(v.split()[0])
        json.dump({"instances": args.instances, "connections": args.connections,
                   "duration_s": args.duration, "rounds": args.rounds,
                   "server_cpu": args.server_cpu, "client_cpu": args.client_cpu,
                   "body_bytes": info["body_bytes"], "gzip_bytes": info["gzip_bytes"],
                   "fixture_setup_ms": info["setup_ms"], "fixture_rss_kib": rss,
                   "check": check, "summary": summary, "rounds_raw": results},
                  sys.stdout, indent=1)
        print()
    finally:
        nginx.send_signal(signal.SIGQUIT)
        fixture.send_signal(signal.SIGTERM)
        for p in (nginx, fixture):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
