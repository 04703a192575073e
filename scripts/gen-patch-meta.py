#!/usr/bin/env python3
"""Generate crates/kedge-api/src/patch_meta.json from the Kubernetes API schemas.

Strategic merge patch (crates/kedge-api/src/smp.rs), and later server-side
apply and server-side field validation, need to know, for every field of every
built-in kind, what it is (an object of a named definition, a map, a list, a
scalar) and how it merges (`x-kubernetes-patch-merge-key`,
`x-kubernetes-patch-strategy`, `x-kubernetes-list-type`,
`x-kubernetes-list-map-keys`, `x-kubernetes-map-type`, ...). Upstream takes
these from the Go struct tags; the same facts are published in the OpenAPI
definitions, which the PyPI package `kubernetes-validate` ships as JSON
schema, one directory per Kubernetes minor.

This script installs nothing. Run it with a Python that has
`kubernetes-validate` installed (a throw-away venv outside the repo), or point
`--schema-dir` at a directory holding `_definitions.json`:

    python3 -m venv /tmp/kv
    /tmp/kv/bin/pip install kubernetes-validate==1.37.0
    /tmp/kv/bin/python scripts/gen-patch-meta.py --k8s-version 1.33

Output: minified JSON, small enough to `include_str!`:

    {"_": "<notice>",
     "gvk": {"<apiVersion>/<Kind>": "<definition>", ...},
     "defs": {"<definition>": {"p": {"<property>": NODE, ...},
                               "m": "atomic"|"granular",   (x-kubernetes-map-type, optional)
                               "u": 1},                    (preserve unknown fields, optional)
              ...}}

`<apiVersion>` is `version` for the core group and `group/version` otherwise,
as in an object's `apiVersion`. Descriptions, formats, enums and `required`
are dropped. A NODE is either a string or an object:

* a string of one letter is a scalar: "s" string, "i" integer, "n" number,
  "b" boolean, "x" int-or-string, "q" quantity (string or number), "a" any
  JSON value (free-form: RawExtension, JSON, FieldsV1, empty structs);
* any other string names a definition (an object with known properties);
* an object has exactly one of "r" (a definition name), "i" (array: the item
  NODE), "v" (map: the value NODE of additionalProperties), "t" (a scalar
  letter as above), and optionally the metadata "k" (patch merge key),
  "s" (patch strategy, e.g. "merge,retainKeys"), "l" (list type: atomic, set,
  map), "lk" (list map keys), "m" (map type: atomic, granular), "u" (1:
  preserve unknown fields).

Definitions with no properties (IntOrString, Quantity, Time, RawExtension,
...) are not emitted: references to them become the scalar letter.

Only kinds a client creates, updates, patches or applies are roots: `...List`
kinds and the `WatchEvent` and `DeleteOptions` envelopes (which carry a GVK
for every group version) are left out, and so is every definition that no
root reaches.
"""

import argparse
import importlib.metadata
import importlib.util
import json
import os
import sys

PACKAGE = "kubernetes-validate"
MODULE = "kubernetes_validate"
DEFAULT_OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..",
    "crates",
    "kedge-api",
    "src",
    "patch_meta.json",
)

# Definitions without properties that are scalars on the wire.
SCALAR_DEFINITIONS = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": "x",
    "io.k8s.apimachinery.pkg.api.resource.Quantity": "q",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Time": "s",
    "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime": "s",
}

EXTENSIONS = {
    "x-kubernetes-patch-merge-key": "k",
    "x-kubernetes-patch-strategy": "s",
    "x-kubernetes-list-type": "l",
    "x-kubernetes-list-map-keys": "lk",
    "x-kubernetes-map-type": "m",
}

KNOWN_STRATEGIES = {"merge", "replace", "retainKeys"}
KNOWN_LIST_TYPES = {"atomic", "set", "map"}
KNOWN_MAP_TYPES = {"atomic", "granular"}

# Keys of a property schema that carry nothing this table needs.
IGNORED_KEYS = {
    "description",
    "format",
    "enum",
    "default",
    "required",
    "x-kubernetes-unions",
    "x-kubernetes-group-version-kind",
}


# Kinds whose definitions are never the body of a create, update or patch.
EXCLUDED_KINDS = {"WatchEvent", "DeleteOptions"}


def is_root_kind(kind):
    return kind not in EXCLUDED_KINDS and not kind.endswith("List")


class SchemaError(Exception):
    pass


def schema_dir_from_package(k8s_version):
    spec = importlib.util.find_spec(MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise SchemaError(
            "%s is not installed for %s; install it into a venv "
            "(see this script's docstring) or pass --schema-dir" % (PACKAGE, sys.executable)
        )
    package_dir = list(spec.submodule_search_locations)[0]
    path = os.path.join(package_dir, "kubernetes-json-schema", "v%s.0-local" % k8s_version)
    if not os.path.isdir(path):
        raise SchemaError("%s has no schemas for Kubernetes %s (%s)" % (PACKAGE, k8s_version, path))
    return path


def package_version():
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def scalar_letter(types, where):
    if isinstance(types, str):
        types = [types]
    types = [t for t in types if t != "null"]
    if types == ["string"]:
        return "s"
    if types == ["integer"]:
        return "i"
    if types == ["number"]:
        return "n"
    if types == ["boolean"]:
        return "b"
    if types == ["object"] or types == []:
        return "a"
    raise SchemaError("%s: unexpected scalar type %r" % (where, types))


def ref_name(ref, where):
    prefix = "#/$defs/"
    if not ref.startswith(prefix):
        raise SchemaError("%s: unexpected $ref %r" % (where, ref))
    return ref[len(prefix):]


class Generator:
    def __init__(self, definitions):
        self.definitions = definitions
        self.aliases = {}
        for name, schema in definitions.items():
            if "properties" in schema:
                continue
            if name in SCALAR_DEFINITIONS:
                self.aliases[name] = SCALAR_DEFINITIONS[name]
            elif "additionalProperties" in schema or "items" in schema:
                raise SchemaError("%s: a definition without properties that is a map or list" % name)
            else:
                # RawExtension, JSON, FieldsV1, JSONSchemaPropsOr*, empty
                # structs: the table cannot say more than "any JSON value".
                self.aliases[name] = "a"

    def node(self, schema, where):
        unknown = set(schema) - IGNORED_KEYS - set(EXTENSIONS) - {
            "$ref",
            "items",
            "additionalProperties",
            "type",
            "x-kubernetes-preserve-unknown-fields",
            "x-kubernetes-int-or-string",
        }
        if unknown:
            raise SchemaError("%s: unsupported schema keys %s" % (where, sorted(unknown)))

        out = {}
        if "$ref" in schema:
            name = ref_name(schema["$ref"], where)
            if name in self.aliases:
                out["t"] = self.aliases[name]
            elif name in self.definitions:
                out["r"] = name
            else:
                raise SchemaError("%s: $ref to unknown definition %s" % (where, name))
        elif "items" in schema:
            out["i"] = self.node(schema["items"], where + "[]")
        elif isinstance(schema.get("additionalProperties"), dict):
            out["v"] = self.node(schema["additionalProperties"], where + "{}")
        elif schema.get("x-kubernetes-int-or-string"):
            out["t"] = "x"
        else:
            out["t"] = scalar_letter(schema.get("type", []), where)

        for key, short in EXTENSIONS.items():
            if key in schema:
                out[short] = schema[key]
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            out["u"] = 1
        self.check(out, where)

        # A node that is nothing but a reference or a scalar is written as a string.
        if set(out) == {"r"}:
            return out["r"]
        if set(out) == {"t"}:
            return out["t"]
        return out

    @staticmethod
    def check(node, where):
        for strategy in node.get("s", "").split(",") if "s" in node else []:
            if strategy not in KNOWN_STRATEGIES:
                raise SchemaError("%s: unknown patch strategy %r" % (where, strategy))
        if "l" in node and node["l"] not in KNOWN_LIST_TYPES:
            raise SchemaError("%s: unknown list type %r" % (where, node["l"]))
        if "m" in node and node["m"] not in KNOWN_MAP_TYPES:
            raise SchemaError("%s: unknown map type %r" % (where, node["m"]))
        if "lk" in node and not (
            isinstance(node["lk"], list) and all(isinstance(k, str) for k in node["lk"])
        ):
            raise SchemaError("%s: list map keys must be strings" % where)
        if "k" in node and not isinstance(node["k"], str):
            raise SchemaError("%s: patch merge key must be a string" % where)

    def definition(self, name, schema):
        out = {"p": {}}
        for prop in sorted(schema["properties"]):
            out["p"][prop] = self.node(schema["properties"][prop], "%s.%s" % (name, prop))
        map_type = schema.get("x-kubernetes-map-type")
        if map_type is not None:
            if map_type not in KNOWN_MAP_TYPES:
                raise SchemaError("%s: unknown map type %r" % (name, map_type))
            out["m"] = map_type
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            out["u"] = 1
        return out

    def gvks(self):
        out = {}
        for name in sorted(self.definitions):
            for gvk in self.definitions[name].get("x-kubernetes-group-version-kind", []):
                group, version, kind = gvk.get("group", ""), gvk["version"], gvk["kind"]
                if not is_root_kind(kind):
                    continue
                api_version = "%s/%s" % (group, version) if group else version
                key = "%s/%s" % (api_version, kind)
                if key in out and out[key] != name:
                    raise SchemaError("%s is the kind of both %s and %s" % (key, out[key], name))
                if name in self.aliases:
                    raise SchemaError("%s names %s, which has no properties" % (key, name))
                out[key] = name
        return out

    def table(self):
        gvks = self.gvks()
        all_defs = {}
        for name in sorted(self.definitions):
            if name not in self.aliases:
                all_defs[name] = self.definition(name, self.definitions[name])
        # Keep what the roots reach.
        reached, pending = set(), sorted(set(gvks.values()))
        while pending:
            name = pending.pop()
            if name in reached:
                continue
            reached.add(name)
            for prop in all_defs[name]["p"].values():
                pending.extend(referenced_definitions(prop))
        defs = {name: d for name, d in all_defs.items() if name in reached}
        return {"gvk": gvks, "defs": defs}


def referenced_definitions(node):
    """The definition names a NODE refers to, through items and map values."""
    if isinstance(node, str):
        return [] if len(node) == 1 else [node]
    for key in ("r", "i", "v"):
        if key in node:
            return [node[key]] if key == "r" else referenced_definitions(node[key])
    return []


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k8s-version", default="1.33", help="Kubernetes minor, e.g. 1.33")
    parser.add_argument("--schema-dir", help="directory with _definitions.json (default: the installed package's)")
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args()

    try:
        schema_dir = args.schema_dir or schema_dir_from_package(args.k8s_version)
        with open(os.path.join(schema_dir, "_definitions.json")) as f:
            definitions = json.load(f)["$defs"]
        table = Generator(definitions).table()
    except (SchemaError, OSError, KeyError, ValueError) as e:
        print("gen-patch-meta: %s" % e, file=sys.stderr)
        return 1

    notice = (
        "GENERATED by scripts/gen-patch-meta.py from %s %s (Kubernetes %s schemas; "
        "upstream OpenAPI definitions Copyright The Kubernetes Authors, Apache-2.0). Do not edit. "
        "Regenerate: python3 -m venv /tmp/kv && /tmp/kv/bin/pip install %s==%s && "
        "/tmp/kv/bin/python scripts/gen-patch-meta.py --k8s-version %s"
        % (PACKAGE, package_version(), args.k8s_version, PACKAGE, package_version(), args.k8s_version)
    )
    out = {"_": notice}
    out.update(table)
    text = json.dumps(out, separators=(",", ":"), sort_keys=False, ensure_ascii=True)
    with open(args.out, "w") as f:
        f.write(text)
        f.write("\n")
    print(
        "wrote %s: %d definitions, %d kinds, %d bytes"
        % (os.path.normpath(args.out), len(table["defs"]), len(table["gvk"]), len(text) + 1)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
