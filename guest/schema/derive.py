#!/usr/bin/env python3
"""Derives the label schema (guest/src/schema/generated.rs) from Traefik's source.

Traefik decodes container labels with github.com/traefik/paerser into the Go
structs of pkg/config/dynamic. This script reads those structs at a pinned tag
of a local Traefik git mirror, applies paerser's rules for each Go type, and
writes the tables the guest's label decoder uses. It also copies Traefik's
reference list of labels (docker-labels.yml), which the guest's tests decode.

    python3 guest/schema/derive.py [--check] [--repo GIT_DIR] [--tag TAG]

--check writes nothing and exits 1 if a checked-in file differs from what
this script would write. The Traefik git directory is --repo, else
$TRAEFIK_GIT_DIR, else target/traefik.git in the workspace, e.g. from

    git clone --bare https://github.com/traefik/traefik target/traefik.git

Without one, --check compares the checked-in files with each other only (the
tag's tables can't be read).

Python 3 standard library only; no Go toolchain.
"""

import argparse
import os
import re
import subprocess
import sys

TAG = "v3.7.9"
MODULE = "github.com/traefik/traefik/v3"
DYNAMIC = "pkg/config/dynamic"
REFERENCE = "docs/content/reference/dynamic-configuration/docker-labels.yml"

HERE = os.path.dirname(os.path.abspath(__file__))
GUEST = os.path.dirname(HERE)
OUT_RS = os.path.join(GUEST, "src", "schema", "generated.rs")
OUT_YML = os.path.join(HERE, "traefik-%s-docker-labels.yml" % TAG)
DEFAULT_REPO = os.path.join(os.path.dirname(GUEST), "target", "traefik.git")

# The public tables: Rust name -> Go type in pkg/config/dynamic.
ROOTS = [
    ("ROUTER", "Router"),
    ("TCP_ROUTER", "TCPRouter"),
    ("UDP_ROUTER", "UDPRouter"),
    ("HTTP_SERVICE", "Service"),
    ("TCP_SERVICE", "TCPService"),
    ("UDP_SERVICE", "UDPService"),
    ("MIDDLEWARE", "Middleware"),
    ("TCP_MIDDLEWARE", "TCPMiddleware"),
]

# paerser's own types (github.com/traefik/paerser/types), by what its filler
# does with them: types.Duration is an int64 parsed as seconds or, failing
# that, by time.ParseDuration.
PAERSER_TYPES = "github.com/traefik/paerser/types"
PAERSER_KINDS = {"Duration": "Duration"}

SIGNED = {"int", "int64"}  # paerser: strconv.ParseInt(v, 10, 64)
UNSUPPORTED_SCALARS = {
    # Would need a narrower range check or another Kind; none is used today.
    "int8", "int16", "int32", "uint", "uint8", "uint16", "uint32", "uint64",
    "uintptr", "float32", "float64", "byte", "rune",
}


class DeriveError(Exception):
    pass


def git(repo, *args):
    return subprocess.run(
        ["git", "-C", repo, *args], check=True, capture_output=True
    ).stdout


# ---------------------------------------------------------------------------
# A small reader for the Go declarations these packages use: `import` blocks,
# `type Name struct { ... }` with one field per line, and `type Name Other`.


class GoField:
    def __init__(self, names, typ, tags, embedded):
        self.names = names
        self.typ = typ
        self.tags = tags
        self.embedded = embedded


class GoPackage:
    def __init__(self, path):
        self.path = path  # directory in the repo
        self.structs = {}  # name -> [GoField]
        self.named = {}  # name -> underlying type expression
        self.imports = {}  # type name -> {alias: import path} of its file


def parse_tags(raw):
    tags = {}
    for m in re.finditer(r'([\w-]+):"((?:[^"\\]|\\.)*)"', raw):
        tags[m.group(1)] = m.group(2)
    return tags


def strip_comment(line):
    # Only whole-line and trailing `//` comments outside backquoted tags.
    out, in_tag, in_str = [], False, False
    i = 0
    while i < len(line):
        c = line[i]
        if c == "`" and not in_str:
            in_tag = not in_tag
        elif c == '"' and not in_tag:
            in_str = not in_str
        elif c == "/" and not in_tag and not in_str and line[i : i + 2] == "//":
            break
        out.append(c)
        i += 1
    return "".join(out).strip()


def parse_imports(src):
    imports = {}
    block = re.search(r"^import \((.*?)^\)", src, re.S | re.M)
    lines = block.group(1).splitlines() if block else []
    lines += re.findall(r'^import (\w* *"[^"]+")', src, re.M)
    for line in lines:
        m = re.match(r'\s*(\w+)?\s*"([^"]+)"', line)
        if not m:
            continue
        path = m.group(2)
        alias = m.group(1) or path.rstrip("/").split("/")[-1]
        imports[alias] = path
    return imports


def parse_go_file(src, pkg):
    imports = parse_imports(src)
    lines = src.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^type (\w+) struct\s*\{\s*(\})?\s*$", line)
        if m:
            name, fields = m.group(1), []
            i += 1
            if not m.group(2):
                while not lines[i].startswith("}"):
                    text = strip_comment(lines[i])
                    i += 1
                    if not text:
                        continue
                    fields.append(parse_field(text, name))
            pkg.structs[name] = fields
            pkg.imports[name] = imports
        else:
            m = re.match(r"^type (\w+) (?!struct\b|interface\b)([^=]+?)\s*$", line)
            if m:
                pkg.named[m.group(1)] = m.group(2).strip()
                pkg.imports[m.group(1)] = imports
            elif re.match(r"^type\s*\(", line):
                raise DeriveError("%s: grouped type declarations are not read" % pkg.path)
        i += 1


def parse_field(text, owner):
    tag_m = re.search(r"`([^`]*)`\s*$", text)
    tags = parse_tags(tag_m.group(1)) if tag_m else {}
    decl = text[: tag_m.start()].strip() if tag_m else text
    if re.search(r"\bstruct\s*\{", decl):
        raise DeriveError("%s: inline struct types are not read: %s" % (owner, text))
    m = re.match(r"^((?:\w+\s*,\s*)*\w+)\s+(\S.*)$", decl)
    if not m:
        return GoField([], decl, tags, True)  # embedded: `Type` or `pkg.Type`
    names = [n.strip() for n in m.group(1).split(",")]
    return GoField(names, m.group(2).strip(), tags, False)


class Source:
    """Go packages of the Traefik repo at one tag, read on demand."""

    def __init__(self, repo, tag):
        self.repo, self.tag = repo, tag
        self.packages = {}
        self.replace = self._replaces()

    def _replaces(self):
        gomod = git(self.repo, "show", "%s:go.mod" % self.tag).decode()
        out = {}
        for m in re.finditer(r"^\s*(?:replace\s+)?(\S+)\s+=>\s+(\./\S+)\s*$", gomod, re.M):
            out[m.group(1)] = m.group(2)[2:]
        return out

    def dir_of(self, import_path):
        if import_path in self.replace:
            return self.replace[import_path]
        if import_path == MODULE or import_path.startswith(MODULE + "/"):
            return import_path[len(MODULE) + 1 :]
        return None

    def package(self, path):
        if path not in self.packages:
            pkg = GoPackage(path)
            names = git(self.repo, "ls-tree", "--name-only", "%s:%s" % (self.tag, path))
            for f in sorted(names.decode().split()):
                if not f.endswith(".go") or f.endswith("_test.go") or f.startswith("zz_generated"):
                    continue
                src = git(self.repo, "show", "%s:%s/%s" % (self.tag, path, f)).decode()
                parse_go_file(src, pkg)
            self.packages[path] = pkg
        return self.packages[path]


# ---------------------------------------------------------------------------
# Go types to Kinds, with paerser's rules (parser/nodes_metadata.go and
# parser/element_fill.go):
# - a label path segment is matched to the Go field name, case-insensitively;
#   `label-slice-as-struct:"x"` replaces that name by `x`, and the slice
#   gets one element, filled from `x.*`;
# - `label:"-"` fields are skipped;
# - a struct, pointer to struct or map with no child label is an error
#   unless tagged `label:"allowEmpty"`; then `=true` creates it and any
#   other value leaves it out;
# - []T of scalars: the value split at commas, each part trimmed;
# - []Struct: `name[i].*`, one element per distinct index;
# - map[string]T: the next segment is the key, kept as written;
#   map[string]any: everything below is kept as a raw nested map of strings.


class Deriver:
    def __init__(self, src):
        self.src = src
        self.tables = {}  # const name -> list of (name, kind expr)
        self.order = []
        self.const_of = {}  # (pkg path, type) -> const name
        self.origin = {}  # const name -> "pkg/type"
        self.label_only = []  # (struct, field) with json:"-" that labels set

    def resolve(self, pkg, owner, expr):
        """(package, type name, [modifiers]) for a type expression."""
        expr = expr.strip()
        if expr.startswith("*"):
            return self.resolve(pkg, owner, expr[1:])
        m = re.match(r"^(\w+)\.(\w+)$", expr)
        if m:
            alias, name = m.groups()
            imp = pkg.imports[owner].get(alias)
            if imp is None:
                raise DeriveError("%s: unknown package %s" % (owner, alias))
            return imp, name
        return pkg.path, expr

    def kind(self, pkg, owner, expr, ctx):
        """The Rust Kind expression for a Go type expression in pkg."""
        expr = expr.strip()
        if expr.startswith("*"):
            return self.kind(pkg, owner, expr[1:], ctx)
        if expr == "string":
            return "Str"
        if expr == "bool":
            return "Bool"
        if expr in SIGNED:
            return "Int"
        if expr in UNSUPPORTED_SCALARS:
            raise DeriveError("%s: Go type %s needs a new Kind" % (ctx, expr))
        if expr.startswith("[]"):
            elem = expr[2:]
            ek = self.kind(pkg, owner, elem, ctx)
            if ek == "Str":
                return "List"
            if ek.startswith("Struct"):
                return "Indexed(%s)" % self.struct_const(pkg, owner, elem)
            raise DeriveError("%s: slice of %s needs a new Kind" % (ctx, elem))
        m = re.match(r"^map\[(\w+)\](.+)$", expr)
        if m:
            if m.group(1) != "string":
                raise DeriveError("%s: map key %s" % (ctx, m.group(1)))
            if m.group(2) in ("any", "interface{}"):
                # paerser keeps what is below as a raw map of strings.
                return "Any"
            ek = self.kind(pkg, owner, m.group(2), ctx)
            if ek in ("Str", "Int", "Any"):
                return "Map(&%s)" % ek
            raise DeriveError("%s: map of %s needs a new Kind" % (ctx, m.group(2)))
        path, name = self.resolve(pkg, owner, expr)
        if path == PAERSER_TYPES and name in PAERSER_KINDS:
            return PAERSER_KINDS[name]
        if not re.match(r"^\w+$", name):
            raise DeriveError("%s: unread type %s" % (ctx, expr))
        d = path if path == pkg.path else self.src.dir_of(path)
        if d is None:
            raise DeriveError("%s: type %s from outside the repository" % (ctx, expr))
        p = self.src.package(d)
        if name in p.structs:
            return "Struct"  # the caller makes the table
        if name in p.named:
            under = p.named[name]
            # A named map of any is paerser's raw map (PluginConf).
            return self.kind(p, name, under, ctx + " (%s)" % name)
        raise DeriveError("%s: type %s not found in %s" % (ctx, expr, d))

    def struct_const(self, pkg, owner, expr):
        path, name = self.resolve(pkg, owner, expr.lstrip("*"))
        d = path if path == pkg.path else self.src.dir_of(path)
        key = (d, name)
        if key not in self.const_of:
            const = const_name(d, name)
            if const in self.tables:
                raise DeriveError("two tables named %s" % const)
            self.const_of[key] = const
            self.tables[const] = None  # reserved; filled below (cycles)
            self.tables[const] = self.fields(self.src.package(d), name)
            self.origin[const] = "%s.%s" % (d, name)
            self.order.append(const)
        return self.const_of[key]

    def fields(self, pkg, name):
        out = []
        for f in pkg.structs[name]:
            label = f.tags.get("label", "")
            if label == "-":
                continue
            if f.embedded:
                # paerser looks into exported embedded structs for the field.
                path, ename = self.resolve(pkg, name, f.typ.lstrip("*"))
                d = path if path == pkg.path else self.src.dir_of(path)
                if d is None:
                    raise DeriveError("%s: embedded %s from outside" % (name, f.typ))
                out.extend(self.fields(self.src.package(d), ename))
                continue
            for go_name in f.names:
                if not go_name[0].isupper():
                    continue
                ctx = "%s.%s.%s" % (pkg.path, name, go_name)
                out.append(self.field(pkg, name, go_name, f, label, ctx))
        seen = set()
        for n, _ in out:
            if n.lower() in seen:
                raise DeriveError("%s: two options spelled %s" % (name, n))
            seen.add(n.lower())
        return out

    def field(self, pkg, owner, go_name, f, label, ctx):
        json_name = f.tags.get("json", "").split(",")[0]
        as_struct = f.tags.get("label-slice-as-struct", "")
        k = self.kind(pkg, owner, f.typ, ctx)
        if as_struct:
            if not k.startswith("Indexed("):
                raise DeriveError("%s: label-slice-as-struct on a non-struct slice" % ctx)
            # One element, its options under `as_struct.`; the JSON name is
            # the label's, as the policy builds the list itself.
            sub = k[len("Indexed(") : -1]
            return (as_struct, "Struct { fields: %s, allow_empty: false }" % sub)
        if json_name in ("", "-"):
            # Labels reach it (paerser uses the Go name); Traefik's JSON
            # does not: keep the label spelling, for the policy to use.
            name = go_name[0].lower() + go_name[1:]
            self.label_only.append((owner, go_name))
        else:
            if json_name.lower() != go_name.lower():
                raise DeriveError(
                    "%s: label name %s and JSON name %s differ" % (ctx, go_name, json_name)
                )
            name = json_name
        if k == "Struct":
            sub = self.struct_const(pkg, owner, f.typ)
            allow = "true" if label == "allowEmpty" else "false"
            k = "Struct { fields: %s, allow_empty: %s }" % (sub, allow)
        return (name, k)


def const_name(d, name):
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).upper()
    if d != DYNAMIC:
        snake = d.rstrip("/").split("/")[-1].upper() + "_" + snake
    return snake


# ---------------------------------------------------------------------------


def render(src, deriver, commit):
    roots = {}
    for public, go in ROOTS:
        deriver.const_of.setdefault((DYNAMIC, go), public)
    for public, go in ROOTS:
        roots[public] = deriver.fields(src.package(DYNAMIC), go)
        deriver.tables[public] = roots[public]
        deriver.origin[public] = "%s.%s" % (DYNAMIC, go)
    lines = [
        "// @generated by guest/schema/derive.py from traefik %s" % src.tag,
        "// (commit %s): the Go structs of %s/*.go" % (commit, DYNAMIC),
        "// and the types they use, read with paerser's label rules.",
        "// DO NOT EDIT: change derive.py and run `python3 guest/schema/derive.py`.",
        "//",
        "// The runtime pin may be a later patch release of the same minor version;",
        "// patch releases do not change options.",
        "",
        "use super::Field;",
        "use super::Kind::*;",
        "",
        "/// Traefik's Git tag and commit the tables were derived from.",
        "#[allow(dead_code)]",
        'pub const TRAEFIK_TAG: &str = "%s";' % src.tag,
        "#[allow(dead_code)]",
        'pub const TRAEFIK_COMMIT: &str = "%s";' % commit,
    ]
    if deriver.label_only:
        lines += ["", "// Label-only options (`json:\"-\"`, set through labels only):"]
        for owner, go_name in deriver.label_only:
            lines.append("// - %s.%s" % (owner, go_name))

    def table(const, fields, public):
        lines.append("")
        lines.append("/// `%s`" % deriver.origin[const])
        vis = "pub " if public else ""
        lines.append("%sconst %s: &[Field] = &[" % (vis, const))
        for n, k in fields:
            lines.append('    ("%s", %s),' % (n, k))
        lines.append("];")

    for public, _ in ROOTS:
        table(public, roots[public], True)
    for const in sorted(deriver.order):
        if const not in roots:
            table(const, deriver.tables[const], False)
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare, write nothing")
    ap.add_argument("--repo", default=os.environ.get("TRAEFIK_GIT_DIR", DEFAULT_REPO))
    ap.add_argument("--tag", default=TAG)
    args = ap.parse_args()
    if args.tag != TAG:
        sys.exit("derive.py: the tag is pinned to %s; change TAG in the script" % TAG)

    if not os.path.isdir(args.repo):
        if args.check:
            # Without the mirror, check what can be checked offline: the
            # generated header names the tag of the checked-in reference.
            with open(OUT_RS) as f:
                head = f.read(200)
            ok = ("traefik %s" % TAG) in head and os.path.exists(OUT_YML)
            print("derive.py: no Traefik mirror at %s; header check only: %s"
                  % (args.repo, "ok" if ok else "FAILED"))
            sys.exit(0 if ok else 1)
        sys.exit("derive.py: no Traefik git mirror at %s" % args.repo)

    try:
        src = Source(args.repo, args.tag)
        commit = git(args.repo, "rev-parse", "%s^{commit}" % args.tag).decode().strip()
        rs = render(src, Deriver(src), commit)
        yml = git(args.repo, "show", "%s:%s" % (args.tag, REFERENCE))
    except DeriveError as e:
        sys.exit("derive.py: %s" % e)

    wanted = [(OUT_RS, rs.encode()), (OUT_YML, yml)]
    if args.check:
        stale = []
        for path, data in wanted:
            try:
                with open(path, "rb") as f:
                    same = f.read() == data
            except FileNotFoundError:
                same = False
            if not same:
                stale.append(os.path.relpath(path, GUEST))
        if stale:
            print("derive.py: out of date: %s; run python3 guest/schema/derive.py"
                  % ", ".join(stale), file=sys.stderr)
            sys.exit(1)
        print("derive.py: up to date with traefik %s (%s)" % (args.tag, commit))
        return
    for path, data in wanted:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        print("wrote %s" % os.path.relpath(path, GUEST))


if __name__ == "__main__":
    main()
