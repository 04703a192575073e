#!/usr/bin/env python3
"""Generate crates/kedge-api/src/k8s_proto_schema.json from upstream Kubernetes.

kedge decodes Kubernetes protobuf request bodies (what stock kubectl sends for
its typed commands) into the JSON form the upstream apiserver would produce.
The decoder in crates/kedge-api/src/protobuf.rs is driven by this schema.

Inputs, all under SRC (a Kubernetes checkout's `staging/src`, i.e. the
directory that holds `k8s.io/api`, `k8s.io/apimachinery` and
`k8s.io/apiextensions-apiserver`):

* the `generated.proto` files listed in PROTO_FILES: field numbers, proto
  types, repeated/map shape;
* the Go API types (`*.go`, not tests, next to each proto file): the JSON
  field names (they differ from the proto names in a few places, such as
  `uid`/`uID` or `$ref`/`ref`), `omitempty`, pointer-ness and `,inline`
  embedding, which decide what Go's encoding/json prints and which a
  .proto file cannot express. Fields are emitted in Go struct order so that
  the decoded JSON has the key order upstream prints.

Output: minified JSON
    {"_": "<notice>", "m": {"<message full name>": [[number, "jsonName", "kind", flags], ...]}}
kind: a proto scalar type name (string, bool, int32, int64, uint32, uint64,
double, float, bytes, ...), a message full name (no leading dot), or
"map:<key scalar>:<value kind>".
flags: 1 omitempty, 2 Go pointer, 4 embedded with `json:",inline"`,
8 repeated.

Usage:
    python3 scripts/gen-k8s-proto-schema.py SRC --k8s-version v1.33.13 \
        [--out crates/kedge-api/src/k8s_proto_schema.json]
"""

import argparse
import json
import os
import re
import sys

# (proto file relative to SRC)
PROTO_FILES = [
    "k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto",
    "k8s.io/apimachinery/pkg/api/resource/generated.proto",
    "k8s.io/apimachinery/pkg/util/intstr/generated.proto",
    "k8s.io/apimachinery/pkg/runtime/generated.proto",
    "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1/generated.proto",
] + [
    "k8s.io/api/%s/generated.proto" % gv
    for gv in [
        "core/v1",
        "apps/v1",
        "batch/v1",
        "coordination/v1",
        "discovery/v1",
        "events/v1",
        "rbac/v1",
        "node/v1",
        "scheduling/v1",
        "policy/v1",
        "networking/v1",
        "storage/v1",
        "certificates/v1",
        "autoscaling/v1",
        "autoscaling/v2",
        # kubectl create token / auth can-i / auth whoami send these.
        "authentication/v1",
        "authorization/v1",
        "admissionregistration/v1",
        "flowcontrol/v1",
    ]
]

SCALARS = {
    "double", "float", "int32", "int64", "uint32", "uint64", "sint32",
    "sint64", "fixed32", "fixed64", "sfixed32", "sfixed64", "bool",
    "string", "bytes",
}

F_OMITEMPTY, F_POINTER, F_INLINE, F_REPEATED = 1, 2, 4, 8

# Go types with hand-written protobuf and JSON marshalling; protobuf.rs maps
# them specially, so their Go structs carry no protobuf field tags.
CUSTOM_MARSHALLED = {
    "k8s.io.apimachinery.pkg.apis.meta.v1.Time",
    "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime",
    "k8s.io.apimachinery.pkg.api.resource.Quantity",
    "k8s.io.apimachinery.pkg.api.resource.QuantityValue",
}


def strip_proto_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


TOKEN = re.compile(r'\s*(map\s*<\s*[\w.]+\s*,\s*[\w.]+\s*>|"[^"]*"|[\w.]+|[{}=;<>,\[\]])')


def tokenize(text):
    pos, out = 0, []
    while True:
        m = TOKEN.match(text, pos)
        if not m:
            if text[pos:].strip():
                raise SystemExit("cannot tokenize near: %r" % text[pos:pos + 60])
            return out
        out.append(m.group(1))
        pos = m.end()


def parse_proto(path):
    """Return (package, [(message name, [(label, type, name, number)])])."""
    toks = tokenize(strip_proto_comments(open(path, encoding="utf-8").read()))
    package, messages, i = None, [], 0
    while i < len(toks):
        t = toks[i]
        if t in ("syntax", "import", "option"):
            while toks[i] != ";":
                i += 1
            i += 1
        elif t == "package":
            package = toks[i + 1]
            i += 3
        elif t == "message":
            name, fields = toks[i + 1], []
            if toks[i + 2] != "{":
                raise SystemExit("%s: expected { after message %s" % (path, name))
            i += 3
            while toks[i] != "}":
                if toks[i].startswith("map"):
                    label, typ = "map", toks[i]
                    i += 1
                elif toks[i] in ("optional", "repeated", "required"):
                    label, typ = toks[i], toks[i + 1]
                    i += 2
                else:
                    raise SystemExit("%s: unsupported construct %r in %s" % (path, toks[i], name))
                fname, eq, num = toks[i], toks[i + 1], toks[i + 2]
                if eq != "=" or toks[i + 3] != ";":
                    raise SystemExit("%s: bad field %s.%s" % (path, name, fname))
                fields.append((label, typ, fname, int(num)))
                i += 4
            messages.append((name, fields))
            i += 1
        else:
            raise SystemExit("%s: unsupported top-level token %r" % (path, t))
    if not package:
        raise SystemExit("%s: no package" % path)
    return package, messages


GO_TYPE_START = re.compile(r"^type\s+(\w+)\s+struct\s*\{\s*$")


def parse_go_structs(directory):
    """Go structs of a package: name -> [dict(number, json, omitempty, pointer, inline)] in order."""
    structs = {}
    for fn in sorted(os.listdir(directory)):
        if not fn.endswith(".go") or fn.endswith("_test.go") or fn.startswith("zz_generated") \
                or fn == "generated.pb.go":
            continue
        lines = open(os.path.join(directory, fn), encoding="utf-8").read().split("\n")
        i = 0
        while i < len(lines):
            m = GO_TYPE_START.match(lines[i])
            i += 1
            if not m:
                continue
            fields, depth = [], 1
            while i < len(lines) and depth > 0:
                line = lines[i]
                i += 1
                code = line.split("//", 1)[0] if "`" not in line else line
                if code.strip().startswith("//"):
                    continue
                depth += code.count("{") - code.count("}")
                if depth != 1 or "`" not in code:
                    continue
                pre, tag = code.split("`", 2)[0:2]
                toks = pre.split()
                if len(toks) == 2:
                    gotype = toks[1]
                elif len(toks) == 1:
                    gotype = toks[0]  # embedded
                else:
                    continue
                jm = re.search(r'json:"([^"]*)"', tag)
                pm = re.search(r'protobuf:"([^"]*)"', tag)
                if not pm or pm.group(1) == "-":
                    continue
                parts = pm.group(1).split(",")
                jparts = (jm.group(1) if jm else "").split(",")
                fields.append({
                    "number": int(parts[1]),
                    "json": jparts[0],
                    "omitempty": "omitempty" in jparts[1:],
                    "inline": "inline" in jparts[1:],
                    "pointer": gotype.startswith("*"),
                })
            structs[m.group(1)] = fields
    return structs


def resolve(typ, package, known):
    if typ in SCALARS:
        return typ
    if typ.startswith("."):
        full = typ[1:]
    elif typ in known.get(package, ()):
        full = package + "." + typ
    else:
        full = typ  # already qualified relative to the root
    pkg, _, name = full.rpartition(".")
    if name not in known.get(pkg, ()):
        raise SystemExit("unresolved type %s (in package %s)" % (typ, package))
    return full


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", help="directory holding k8s.io/{api,apimachinery,apiextensions-apiserver}")
    ap.add_argument("--k8s-version", required=True, help="upstream tag the files come from, e.g. v1.33.13")
    ap.add_argument("--out", default=os.path.normpath(os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "crates", "kedge-api", "src", "k8s_proto_schema.json")))
    args = ap.parse_args()

    parsed = []
    for rel in PROTO_FILES:
        path = os.path.join(args.src, rel)
        package, messages = parse_proto(path)
        parsed.append((os.path.dirname(path), package, messages))
    known = {}
    for _, package, messages in parsed:
        known.setdefault(package, set()).update(name for name, _ in messages)

    out, warnings = {}, []
    for directory, package, messages in parsed:
        go = parse_go_structs(directory)
        for name, fields in messages:
            by_num = {}
            for label, typ, fname, num in fields:
                if label == "map":
                    k, v = [s.strip() for s in typ[typ.index("<") + 1:-1].split(",")]
                    kind = "map:%s:%s" % (resolve(k, package, known), resolve(v, package, known))
                    flags = 0
                else:
                    kind = resolve(typ, package, known)
                    flags = F_REPEATED if label == "repeated" else 0
                by_num[num] = [num, fname, kind, flags]
            gofields = go.get(name)
            order = []
            if gofields is None:
                # Not a Go struct (Verbs, ExtraValue, Timestamp...): the decoder
                # special-cases those it must; default to "omitempty, pointer".
                for f in by_num.values():
                    f[3] |= F_OMITEMPTY | F_POINTER
                order = sorted(by_num)
            else:
                for g in gofields:
                    f = by_num.get(g["number"])
                    if f is None:
                        warnings.append("%s.%s: Go field %d has no proto field" % (package, name, g["number"]))
                        continue
                    if g["json"] and g["json"] != "-":
                        f[1] = g["json"]
                    f[3] |= (F_OMITEMPTY if g["omitempty"] else 0) | (F_POINTER if g["pointer"] else 0) \
                        | (F_INLINE if g["inline"] else 0)
                    order.append(g["number"])
                for num in sorted(by_num):
                    if num not in order:
                        if package + "." + name not in CUSTOM_MARSHALLED:
                                warnings.append("%s.%s: proto field %d not in Go struct" % (package, name, num))
                        by_num[num][3] |= F_OMITEMPTY | F_POINTER
                        order.append(num)
            out[package + "." + name] = [by_num[n] for n in order]

    notice = ("GENERATED by scripts/gen-k8s-proto-schema.py from Kubernetes %s (staging/src/k8s.io/{api,"
              "apimachinery,apiextensions-apiserver} generated.proto and Go API types), Copyright The Kubernetes "
              "Authors, Apache-2.0. Do not edit. Regenerate: python3 scripts/gen-k8s-proto-schema.py "
              "<kubernetes>/staging/src --k8s-version %s" % (args.k8s_version, args.k8s_version))
    text = json.dumps({"_": notice, "m": out}, separators=(",", ":"), sort_keys=False)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    for w in warnings:
        print("warning: " + w, file=sys.stderr)
    print("%s: %d messages, %d bytes" % (args.out, len(out), len(text) + 1), file=sys.stderr)


if __name__ == "__main__":
    main()
