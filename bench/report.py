#!/usr/bin/env python3
"""Turns the benchmarks' raw outputs into bench/results.json and results.md.

  report.py criterion target/criterion/generate   > generate.json
  report.py report target/bench results.json results.md
"""

import datetime
import json
import os
import platform
import subprocess
import sys


def criterion(d):
    sizes = {}
    # wasm-unchecked: the component compiled without the deadline's checks,
    # a reference for what the deadline costs (absent in older runs).
    for side in ("wasm", "native", "wasm-unchecked"):
        if side == "wasm-unchecked" and not os.path.isdir(os.path.join(d, side)):
            continue
        for n in sorted(os.listdir(os.path.join(d, side)), key=int):
            with open(os.path.join(d, side, n, "new", "estimates.json")) as f:
                e = json.load(f)
            s = sizes.setdefault(n, {"instances": int(n)})
            s[side + "_ms"] = round(e["mean"]["point_estimate"] / 1e6, 3)
            s[side + "_median_ms"] = round(e["median"]["point_estimate"] / 1e6, 3)
            s[side + "_ci_ms"] = [round(e["mean"]["confidence_interval"][k] / 1e6, 3) for k in ("lower_bound", "upper_bound")]
            s[side + "_us_per_instance"] = round(e["mean"]["point_estimate"] / 1e3 / int(n), 3)
    for s in sizes.values():
        s["ratio"] = round(s["wasm_ms"] / s["native_ms"], 3)
        if "wasm-unchecked_ms" in s:
            s["unchecked_ratio"] = round(s["wasm-unchecked_ms"] / s["native_ms"], 3)
            s["deadline_share"] = round(1 - s["wasm-unchecked_ms"] / s["wasm_ms"], 3)
    lin = {}
    for side in ("wasm", "native"):
        per = [s[side + "_us_per_instance"] for s in sizes.values()]
        lin[side] = round(max(per) / min(per), 3)
    return {"sizes": list(sizes.values()), "per_instance_spread": lin}


def machine():
    info = {"cores": os.cpu_count(), "kernel": platform.release()}
    try:
        info["cores_allowed"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                info["memory_mib"] = int(line.split()[1]) // 1024
    with open("/proc/loadavg") as f:
        info["loadavg_at_report"] = f.read().split()[:3]
    for k, cmd in (("rustc", ["rustc", "-V"]), ("git", ["git", "rev-parse", "--short", "HEAD"]),
                   ("nginx", ["nginx", "-v"]), ("wrk", ["wrk", "-v"])):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True)
            info[k] = (p.stdout + p.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            pass
    return info


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


ATTACK_NAMES = {"idle": "2,000 idle connections", "slowloris": "2,000 slowloris connections",
                "headers": "64 KiB headers flood", "flood": "new-connection flood"}


def verdict(ok):
    return "**met**" if ok else "**MISSED**"


def report(out, results_json, results_md):
    prev = load(results_json) or {}
    res = {"generated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "machine": machine()}
    for part in ("generate", "serving", "abuse", "footprint", "footprint100k", "policies", "lab"):
        fresh = load(os.path.join(out, part + ".json"))
        res[part] = fresh if fresh is not None else prev.get(part)
        if fresh is None and part in prev:
            res.setdefault("carried_over", []).append(part)
    targets = []
    g = res.get("generate")
    if g:
        for s in g["sizes"]:
            targets.append({"id": "1", "what": "generate %dk instances: wasm / native" % (s["instances"] // 1000),
                            "target": "<= 1.3x", "value": s["ratio"], "met": s["ratio"] <= 1.3,
                            "detail": "wasm %.1f ms, native %.1f ms" % (s["wasm_ms"], s["native_ms"])})
        w = g["per_instance_spread"]["wasm"]
        targets.append({"id": "1", "what": "generate: linear (per-instance cost, max/min over 1k-50k, wasm)",
                        "target": "<= 1.3x", "value": w, "met": w <= 1.3,
                        "detail": "native %.2fx" % g["per_instance_spread"]["native"]})
    sv = res.get("serving")
    if sv:
        names = {"identity": "GET /traefik 200 (identity)", "gzip": "GET /traefik 200 (gzip)",
                 "not_modified": "GET /traefik 304 (If-None-Match)"}
        for case, s in sv["summary"].items():
            h, n = s["host"], s["nginx"]
            targets.append({"id": "2", "what": names[case] + ": req/s host / nginx", "target": ">= 1.0x",
                            "value": s["rps_ratio"], "met": s["rps_ratio"] >= 1.0,
                            "detail": "%.0f vs %.0f req/s" % (h["rps"], n["rps"])})
            targets.append({"id": "2", "what": names[case] + ": p99 host / nginx", "target": "<= 1.5x",
                            "value": s["p99_ratio"], "met": s["p99_ratio"] <= 1.5,
                            "detail": "%.1f vs %.1f ms" % (h["p99_us"] / 1000, n["p99_us"] / 1000)})
    ab = res.get("abuse")
    if ab:
        base = ab["baseline"]["all"]
        for p in ab["phases"]:
            if p["name"] == "unattacked":
                continue
            targets.append({"id": "12", "what": "abuse, %s: Traefik's poll p99 / unattacked" % ATTACK_NAMES[p["name"]],
                            "target": "<= 2.0x", "value": p["p99_ratio"], "met": p["p99_ratio"] <= 2.0,
                            "detail": "%.2f vs %.2f ms; %d polls, %d failed, %d reconnected" % (
                                p["poll"]["all"]["p99_ms"], base["p99_ms"], p["poll"]["all"]["n"], p["poll_errors"],
                                p["poll_reconnects"])})
            growth = p["rss_growth_kib"] / 1024
            targets.append({"id": "12", "what": "abuse, %s: server VmRSS peak - first unattacked" % ATTACK_NAMES[p["name"]],
                            "target": "<= 64 MiB", "value": round(growth, 1), "met": growth <= 64,
                            "detail": "%.1f MiB after the attack" % (p["vm_rss_kib"]["after"] / 1024)})
    fp = res.get("footprint")
    if fp:
        m = fp["median"]
        # Issue 10's rule: steady RSS, and the peak within 1.5x of it. A
        # process that compiled the module (no cache) is reported beside it.
        rss = m["warm_cache"]["vm_rss_kib_steady"] / 1024
        hwm = m["warm_cache"]["vm_hwm_kib_steady"] / 1024
        targets.append({"id": "5", "what": "host memory, %d instances: steady VmRSS (warm compile cache)" % fp["instances"],
                        "target": "<= 64 MiB", "value": round(rss, 1), "met": rss <= 64,
                        "detail": "after compiling the module (no cache): VmRSS %.1f MiB, VmHWM %.1f MiB" % (
                            m["no_cache"]["vm_rss_kib_steady"] / 1024, m["no_cache"]["vm_hwm_kib_steady"] / 1024)})
        targets.append({"id": "5", "what": "host memory, %d instances: peak / steady" % fp["instances"],
                        "target": "<= 1.5x", "value": round(hwm / max(rss, 1), 2), "met": hwm <= 1.5 * rss,
                        "detail": "VmHWM %.1f MiB" % hwm})
        warm = m["warm_cache"]["openstack_answer_to_first_config_ms"]
        targets.append({"id": "5", "what": "start-up: OpenStack's answer -> first config, warm compile cache",
                        "target": "<= 300 ms", "value": warm, "met": warm <= 300,
                        "detail": "spawn -> config %.0f ms; without cache %.0f ms after the answer, %.0f ms from spawn" % (
                            m["warm_cache"]["spawn_to_first_config_ms"],
                            m["no_cache"]["openstack_answer_to_first_config_ms"],
                            m["no_cache"]["spawn_to_first_config_ms"])})
    big = res.get("footprint100k")
    if big:
        w = big["median"]["warm_cache"]
        n = "%dk" % (big["instances"] // 1000)
        first = w["spawn_to_first_config_ms"]
        targets.append({"id": "5", "what": "%s instances: start -> first config (loopback fake Nova, default engine settings)" % n,
                        "target": "<= 15000 ms", "value": first, "met": first <= 15000,
                        "detail": "%.0f ms after OpenStack's answer" % w["openstack_answer_to_first_config_ms"]})
        rss = w["vm_rss_kib_steady"] / 1024
        targets.append({"id": "5", "what": "%s instances: steady VmRSS" % n, "target": "<= 384 MiB",
                        "value": round(rss, 1), "met": rss <= 384, "detail": ""})
        peak = w["vm_hwm_kib_after_change"] / max(w["vm_rss_kib_steady"], 1)
        targets.append({"id": "5", "what": "%s instances: peak / steady memory" % n, "target": "<= 1.5x",
                        "value": round(peak, 2), "met": peak <= 1.5,
                        "detail": "VmHWM %.1f MiB" % (w["vm_hwm_kib_after_change"] / 1024)})
        one = w["one_change_ms"]
        targets.append({"id": "5", "what": "%s instances: one changed VM, Nova's answer -> served" % n,
                        "target": "<= 250 ms", "value": one, "met": one <= 250,
                        "detail": "median of %d runs" % big["rounds"]})
    lab = res.get("lab")
    if lab:
        c = lab["cost"]
        targets.append({"id": "3", "what": "OpenStack requests per steady refresh (%d VMs)" % lab["servers"],
                        "target": "<= 2", "value": c["steady_requests"], "met": c["steady_requests"] <= 2,
                        "detail": "full listing: %d requests" % c["full_requests"]})
        pct = 100 * c["bytes_ratio"]
        targets.append({"id": "3", "what": "OpenStack bytes per steady refresh / full listing",
                        "target": "<= 5%", "value": round(pct, 3), "met": pct <= 5,
                        "detail": "%d vs %d bytes" % (c["steady_bytes"], c["full_bytes"])})
        ff = lab.get("fleet_freshness")
        if ff:
            targets.append({"id": "11", "what": "fleet freshness Nova -> all 3 replicas via etcd + Redis, p95 (%d changes, %d VMs)" % (len(ff["samples"]), lab["servers"]),
                            "target": "<= %d ms" % ff["target_ms"], "value": round(ff["p95_ms"]), "met": ff["p95_ms"] <= ff["target_ms"],
                            "detail": "p50 %.0f ms; HTTP provider in the same run: p50 %.0f, p95 %.0f ms" % (
                                ff["p50_ms"], lab["freshness"]["p50_ms"], lab["freshness"]["p95_ms"])})
        fr = lab["freshness"]
        targets.append({"id": "4", "what": "freshness Nova -> Traefik p95 (%d changes)" % len(fr["samples"]),
                        "target": "<= %d ms" % fr["target_ms"], "value": round(fr["p95_ms"]), "met": fr["p95_ms"] <= fr["target_ms"],
                        "detail": "p50 %.0f ms, max %.0f ms" % (fr["p50_ms"], fr["max_ms"])})
    res["targets"] = targets
    with open(results_json, "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    with open(results_md, "w") as f:
        f.write(markdown(res))


def markdown(r):
    m = r["machine"]
    L = ["# Benchmark results", "",
         "Generated by `bench/run.sh` at %s on %s; raw figures in `results.json`." % (r["generated_at"], m.get("git", "?")), "",
         "Machine: %s cores (%s), %s MiB memory, %s, Linux %s, load average %s when the report was written." % (
             m["cores"], m.get("cpu", "?"), m["memory_mib"], m.get("rustc", ""), m["kernel"], " ".join(m["loadavg_at_report"])), ""]
    if r.get("carried_over"):
        L += ["Carried over from the previous run (not re-run): %s." % ", ".join(r["carried_over"]), ""]
    L += ["## Targets", "", "| # | What | Target | Measured | Verdict | Detail |", "|---|---|---|---|---|---|"]
    for t in r["targets"]:
        L.append("| %s | %s | %s | %s | %s | %s |" % (t["id"], t["what"], t["target"], t["value"], verdict(t["met"]), t["detail"]))
    g = r.get("generate")
    if g:
        L += ["", "## 1. Route generation (criterion, mean of 10 samples)", "",
              "| Instances | wasm (ms) | native (ms) | wasm / native | wasm µs/instance | native µs/instance |",
              "|---|---|---|---|---|---|"]
        for s in g["sizes"]:
            L.append("| %d | %.1f | %.1f | %.2f | %.2f | %.2f |" % (s["instances"], s["wasm_ms"], s["native_ms"], s["ratio"],
                                                               s["wasm_us_per_instance"], s["native_us_per_instance"]))
        if all("unchecked_ratio" in s for s in g["sizes"]):
            L += ["", "What the deadline costs: the same component compiled without wasmtime's epoch checks "
                  "(a check at every function entry and loop header), a reference the host never runs.", "",
                  "| Instances | wasm without checks (ms) | its ratio to native | share of the wasm time the checks take |",
                  "|---|---|---|---|"]
            for s in g["sizes"]:
                L.append("| %d | %.1f | %.2f | %.0f %% |" % (s["instances"], s["wasm-unchecked_ms"], s["unchecked_ratio"],
                                                           100 * s["deadline_share"]))
    sv = r.get("serving")
    if sv:
        L += ["", "## 2. Serving GET /traefik, %d instances (%d connections, %d s, wrk on CPU %d, server on CPU %d, best of %d rounds)" % (
            sv["instances"], sv["connections"], sv["duration_s"], sv["client_cpu"], sv["server_cpu"], sv["rounds"]), "",
              "Body: %d bytes, gzip: %d bytes (%.1f%%)." % (sv["body_bytes"], sv["gzip_bytes"], 100.0 * sv["gzip_bytes"] / sv["body_bytes"]), "",
              "| Case | Server | req/s | p50 (ms) | p99 (ms) | bytes/response on the wire | errors |", "|---|---|---|---|---|---|---|"]
        for case, s in sv["summary"].items():
            for name in ("host", "nginx"):
                x = s[name]
                L.append("| %s | %s | %.0f | %.2f | %.2f | %.0f | %d |" % (case, name, x["rps"], x["p50_us"] / 1000, x["p99_us"] / 1000,
                                                                     x["bytes_per_response"], x["errors"] + x["non2xx3xx"]))
    ab = r.get("abuse")
    if ab:
        L += ["", "## 12. Abuse of the endpoint, %d instances (`bench/abuse.py`, %g s per phase, one run)" % (
            ab["instances"], ab["phase_seconds"]), "",
              "Traefik's poll from one keep-alive connection every %d ms (gzip 200 and 304 alternately) on CPU %d alone; "
              "server on CPU %d with the attacker beside it at nice 10; %s. Open files limit: soft %s, hard %s, %s for the run. "
              "Unattacked phases alternate with the attacks; the baseline pools them (p50 %.2f ms, p99 %.2f ms over %d polls). "
              "Load average %s at the end." % (
                  ab["interval_s"] * 1000, ab["client_cpu"], ab["server_cpu"], ab["limits"], ab["nofile"]["soft_default"],
                  ab["nofile"]["hard"], "raised to %s" % ab["nofile"]["soft_raised_to"], ab["baseline"]["all"]["p50_ms"],
                  ab["baseline"]["all"]["p99_ms"], ab["baseline"]["all"]["n"], " ".join(ab["loadavg_at_end"])), "",
              "| Phase | polls | p50 (ms) | p99 (ms) | p99 / baseline | 304 p99 (ms) | failed | reconnects | VmRSS before / peak / after (MiB) | server fds | attacker |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
        for p in ab["phases"]:
            a = p["attacker"] or {}
            what = ", ".join("%s %s" % (k, v) for k, v in a.items() if k not in ("kind", "seconds", "bytes_received", "ready_at"))
            v = p["vm_rss_kib"]
            L.append("| %s | %d | %.2f | %.2f | %.2f | %.2f | %d | %d | %.1f / %.1f / %.1f | %d | %s |" % (
                ATTACK_NAMES.get(p["name"], p["name"]), p["poll"]["all"]["n"], p["poll"]["all"]["p50_ms"], p["poll"]["all"]["p99_ms"],
                p["p99_ratio"], p["poll"]["not_modified"]["p99_ms"], p["poll_errors"], p["poll_reconnects"],
                v["before"] / 1024, v["peak"] / 1024, v["after"] / 1024, p["server_fds_at_end"], what or "-"))
    fp = r.get("footprint")
    if fp:
        L += ["", "## 5. Footprint and start-up, %d instances (median of %d starts)" % (fp["instances"], fp["rounds"]), "",
              "| Compile cache | spawn -> first config (ms) | OpenStack answer -> first config (ms) | VmRSS first / steady (MiB) | VmHWM steady (MiB) |",
              "|---|---|---|---|---|"]
        for k, name in (("no_cache", "none"), ("cold_cache", "empty (compiles, writes)"), ("warm_cache", "warm")):
            x = fp["median"][k]
            L.append("| %s | %.0f | %.0f | %.1f / %.1f | %.1f |" % (name, x["spawn_to_first_config_ms"], x["openstack_answer_to_first_config_ms"],
                                                              x["vm_rss_kib_first"] / 1024, x["vm_rss_kib_steady"] / 1024, x["vm_hwm_kib_steady"] / 1024))
    po = r.get("policies")
    if po:
        L += ["", "## 6. Route policies in other languages (`bench/policies.sh`, %d instances, median of %d; cold: of %d)" % (
            po["instances"], po["rounds"], po["cold_rounds"]), "",
              "Wall time of one `traefik-openstack render --instances FILE` each; generate = render %d instances - load." % po["instances"], "",
              "| Module | size (MiB) | compile, no cache (ms) | load, warm cache (ms) | render %d (ms) | generate %d (ms) |" % (
                  po["instances"], po["instances"]), "|---|---|---|---|---|---|"]
        for name, x in po["modules"].items():
            L.append("| %s | %.1f | %d | %d | %d | %d |" % (name, x["bytes"] / 2**20, x["cold_ms"], x["warm_ms"], x["render_ms"], x["generate_ms"]))
    lab = r.get("lab")
    if lab:
        c = lab["cost"]
        L += ["", "## 3. OpenStack API cost, %d VMs in the lab (real Keystone + Nova)" % lab["servers"], "",
              "| Refresh | requests | response bytes | host-side ms (median) |", "|---|---|---|---|",
              "| first (auth + version + full listing) | %s | %s | %s |" % (c["first_refresh"]["requests"], c["first_refresh"]["bytes"], c["first_refresh"]["ms"]),
              "| steady, changes-since (median of %d) | %s | %s | %s |" % (c["steady"]["n"], c["steady_requests"], c["steady_bytes"], c["steady"]["ms"]["median"]),
              "| full listing every refresh (median of %d) | %s | %s | %s |" % (c["full_listing"]["n"], c["full_requests"], c["full_bytes"], c["full_listing"]["ms"]["median"]),
              "", "Lab proxy in front of Nova: %.2f requests per steady refresh." % c["proxy_requests_per_steady_refresh"]]
        fr = lab["freshness"]
        L += ["", "## 4. Freshness with real Traefik", "",
              "refresh_interval %d ms, Traefik pollInterval %d ms, providersThrottleDuration %d ms: target p95 <= %d ms." % (
                  fr["refresh_interval_ms"], fr["poll_interval_ms"], fr["throttle_ms"], fr["target_ms"]), "",
              "| Change | n | p50 (ms) | p95 (ms) | max (ms) |", "|---|---|---|---|---|"]
        for kind in ("metadata", "delete", None):
            ms = sorted(s["ms"] for s in fr["samples"] if kind is None or s["kind"] == kind)
            if ms:
                p = lambda q: ms[int(round(q * (len(ms) - 1)))]
                L.append("| %s | %d | %.0f | %.0f | %.0f |" % (kind or "all", len(ms), p(0.5), p(0.95), ms[-1]))
        ff = lab.get("fleet_freshness")
        if ff:
            L += ["", "### Through etcd and Redis to three replicas (same run, other VMs)", "",
                  "The host publishes to etcd and Redis; three Traefik replicas read them (two `providers.etcd`, one "
                  "`providers.redis`) and poll no sidecar. A change counts once **all three** show it.", "",
                  "| Provider | Change | n | p50 (ms) | p95 (ms) | max (ms) |", "|---|---|---|---|---|---|"]
            for name, f in (("http, one Traefik", fr), ("etcd + Redis, three replicas", ff)):
                for kind in ("metadata", "delete", None):
                    ms = sorted(s["ms"] for s in f["samples"] if kind is None or s["kind"] == kind)
                    if ms:
                        p = lambda q: ms[int(round(q * (len(ms) - 1)))]
                        L.append("| %s | %s | %d | %.0f | %.0f | %.0f |" % (name, kind or "all", len(ms), p(0.5), p(0.95), ms[-1]))
    notes = os.path.join(os.path.dirname(os.path.abspath(__file__)), "NOTES.md")
    if os.path.exists(notes):
        with open(notes) as f:
            L += ["", f.read().strip()]
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    if sys.argv[1] == "criterion":
        json.dump(criterion(sys.argv[2]), sys.stdout, indent=1)
        print()
    elif sys.argv[1] == "report":
        report(*sys.argv[2:5])
    else:
        sys.exit(__doc__)
