"""Example route policy in Python: each ACTIVE instance gets one router,
Host(`<name>.<domain>`), to its floating (else fixed) address.

`route` is plain Python on dicts, so `python3 test_app.py` runs it natively;
the `Policy` class at the bottom is the component's export and only converts
between it and the WIT records.
"""

import json
import re

# One DNS label, lowercase. Names are written by tenants: anything else could
# change the meaning of the rule (a backtick ends the Host string).
LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
NAME = re.compile(LABEL)
DOMAIN = re.compile(rf"{LABEL}(?:\.{LABEL})*")
ENTRY_POINT = re.compile(r"[A-Za-z0-9_-]+")
KEYS = ("domain", "entry_points", "port")


class SettingsError(Exception):
    pass


def quote(s):
    # the same quoting as JSON.stringify, so both example policies agree
    return json.dumps(s, ensure_ascii=False)


def parse_settings(text):
    try:
        s = json.loads(text)
    except ValueError as e:
        raise SettingsError(f"settings: not JSON: {e}") from None
    if not isinstance(s, dict):
        raise SettingsError("settings: expected a table")
    for key in sorted(s):
        if key not in KEYS:
            raise SettingsError(f"settings: unknown key {quote(key)} (known: {', '.join(KEYS)})")
    domain = s.get("domain")
    # fullmatch: `$` would let a trailing newline through
    if not isinstance(domain, str) or len(domain) > 253 or not DOMAIN.fullmatch(domain):
        raise SettingsError("settings: domain: expected a lowercase DNS name, e.g. \"apps.example.com\"")
    port = s.get("port", 80)
    if type(port) is not int or not 1 <= port <= 65535:
        raise SettingsError("settings: port: expected an integer from 1 to 65535")
    entry_points = s.get("entry_points", [])
    if not isinstance(entry_points, list) or not all(
        isinstance(e, str) and ENTRY_POINT.fullmatch(e) for e in entry_points
    ):
        raise SettingsError("settings: entry_points: expected a list of entry point names")
    return domain, port, entry_points


def pick_address(addresses):
    """Floating before fixed, then IPv4 before IPv6, network, ip: the result
    must not depend on the order Nova lists them in."""
    for kind in ("floating", "fixed"):
        found = sorted(
            (a["version"] != 4, a["network"], a["ip"], a["version"])
            for a in addresses
            if a["kind"] == kind
        )
        if found:
            _, _, ip, version = found[0]
            return f"[{ip}]" if version == 6 else ip
    return None


def route(settings, instances):
    """settings: JSON text; instances: dicts shaped like the golden cases'
    instances.json. Returns {config, diagnostics, routes} with config as
    JSON text; raises SettingsError for bad settings."""
    domain, port, entry_points = parse_settings(settings)
    diagnostics, candidates = [], []
    for inst in sorted(instances, key=lambda i: i["id"]):
        iid, name, status = inst.get("id", ""), inst.get("name", ""), inst.get("status", "")

        def skip(level, message):
            diagnostics.append({"instance_id": iid, "level": level, "message": message})

        if status.upper() != "ACTIVE":
            skip("info", f"skipped: status {status}")
        elif not NAME.fullmatch(name):
            skip("warning", f"skipped: name {quote(name)} is not a lowercase DNS label")
        elif len(name) + 1 + len(domain) > 253:
            skip("warning", f"skipped: {name}.{domain} is longer than 253 characters")
        elif (address := pick_address(inst.get("addresses", []))) is None:
            skip("info", "skipped: no address")
        else:
            candidates.append((iid, name, address))

    # Two instances with one name would fight over one router: neither wins.
    uses = {}
    for _, name, _ in candidates:
        uses[name] = uses.get(name, 0) + 1
    routers, services, routes = {}, {}, []
    for iid, name, address in candidates:
        if uses[name] > 1:
            diagnostics.append({
                "instance_id": iid,
                "level": "error",
                "message": f"dropped: name {quote(name)} is used by {uses[name]} instances",
            })
            continue
        router = {"rule": f"Host(`{name}.{domain}`)", "service": name}
        if entry_points:
            router["entryPoints"] = entry_points
        routers[name] = router
        services[name] = {"loadBalancer": {"servers": [{"url": f"http://{address}:{port}"}]}}
        routes.append({"instance_id": iid, "address": address, "routers": [name]})

    diagnostics.sort(key=lambda d: d["instance_id"])
    config = {"http": {"routers": routers, "services": services}} if routers else {}
    # Traefik skips a reload when the body's hash is unchanged: same input,
    # same bytes.
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return {"config": text, "diagnostics": diagnostics, "routes": routes}


class Policy:
    """The export of world `route-policy`. The bindings (`wit_world`,
    `componentize_py_types`) exist only inside the component, hence the
    imports in the method."""

    def generate(self, settings, instances):
        from componentize_py_types import Err
        from wit_world.imports.types import (
            AddressKind, Diagnostic, InstanceRoutes, Level, Output,
        )

        plain = [
            {
                "id": i.id,
                "name": i.name,
                "status": i.status,
                "addresses": [
                    {
                        "network": a.network,
                        "ip": a.ip,
                        "version": a.version,
                        "kind": "floating" if a.kind == AddressKind.FLOATING else "fixed",
                    }
                    for a in i.addresses
                ],
            }
            for i in instances
        ]
        try:
            out = route(settings, plain)
        except SettingsError as e:
            raise Err(str(e))
        # the host logs a module's stdout, one line per line
        print(f"python policy: {len(out['routes'])} of {len(plain)} instances routed")
        return Output(
            config=out["config"],
            diagnostics=[
                Diagnostic(d["instance_id"], Level[d["level"].upper()], d["message"])
                for d in out["diagnostics"]
            ],
            routes=[
                InstanceRoutes(r["instance_id"], r["address"], r["routers"])
                for r in out["routes"]
            ],
        )
