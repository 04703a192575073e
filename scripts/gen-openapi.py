#!/usr/bin/env python3
"""Generate crates/kedge-apiserver/openapi/openapi-v1.33.bin.zst.

kedge serves `/openapi/v2` and `/openapi/v3` (discovery plus one document per
group-version) so that stock kubectl validates (`--validate=strict`, the
default), runs `kubectl explain` and computes client-side apply patches as it
does against upstream Kubernetes. This script builds every document kedge
serves, byte for byte, from upstream's published OpenAPI v2 specification.

Source: Kubernetes v1.33 `api/openapi-spec/swagger.json` (the Kubernetes
Authors, Apache License 2.0, https://github.com/kubernetes/kubernetes). The
copy used is the one the official Python client vendors verbatim as
`kubernetes/swagger.json.unprocessed` at tag v33.1.0 of
github.com/kubernetes-client/python (fetched from the kubernetes
release-1.33 branch, June 2025); upstream's file at any v1.33.x tag works
the same way.

What is produced (see crates/kedge-apiserver/openapi/README.md):

* `/openapi/v2`: the upstream document reduced to the group-versions and
  resources kedge serves (KEDGE_RESOURCES below; a unit test in
  crates/kedge-apiserver/src/openapi.rs checks it against kedge-api's
  registry) and the definitions and shared parameters they reference. Served
  as JSON and as the gnostic `openapi.v2.Document` protobuf that client-go's
  `OpenAPISchema()` asks for (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`),
  encoded here from gnostic-models' openapiv2/OpenAPIv2.proto the way
  gnostic's compiler maps JSON to it (vendor extensions become NamedAny whose
  `yaml` holds the value; JSON is valid YAML).
* `/openapi/v3/<gv>`: one OpenAPI 3.0 document per path group (`api`,
  `api/v1`, `apis`, `apis/<group>`, `apis/<group>/<version>`, `version`),
  built from the same routes the way kube-openapi's builder3 builds upstream's
  (parameters inlined and sorted by name, body parameter -> requestBody with
  one entry per consumed media type, responses -> content per produced media
  type, `#/components/schemas/` refs, `$ref` with siblings wrapped in
  `allOf`, Quantity and IntOrString as `oneOf`). Upstream's v3 documents also
  carry `default` values that its v2 document drops; those are absent here
  (kubectl reads none of them).
* Paths under the deprecated `/watch/` prefix are left out (kedge serves
  watches only through `?watch=true`), and so are subresources kedge does not
  serve and group-versions the published spec lacks (NOT_IN_UPSTREAM_SPEC).
* `/openapi/v3` itself: the discovery document
  `{"paths": {"<gv>": {"serverRelativeURL": "/openapi/v3/<gv>?hash=<ETag>"}}}`.

Each JSON document is compact with sorted keys. Each entry's ETag (the
upper-case hex SHA-512 of its bytes, as upstream computes it) is stored in
the bundle's index so that the server needs no hashing code.

Bundle format (then compressed with `zstd -19 --zstd=wlog=20` as one frame;
the 1 MiB window keeps the decoder's memory near 3 MiB, where the default
8 MiB window would make it 12 MiB for about 120 KiB less file):
    b"KOAPI1\\n" then entries, each: u32 BE name length, name (UTF-8),
    u32 BE data length, data. The first entry is "index.json":
    {"source": ..., "version": ..., "etags": {"<entry name>": "<HASH>"}}
    then "v3" (the discovery document), "v3/<gv>" for each group-version
    in sorted order, "v2.pb" and "v2.json". The server reads the stream only
    as far as the entry it needs.

Needs: python3 (3.8+, standard library only) and the `zstd` command
(Debian package zstd).

Usage:
    python3 scripts/gen-openapi.py SWAGGER_JSON \\
        [--out crates/kedge-apiserver/openapi/openapi-v1.33.bin.zst]

    # SWAGGER_JSON, e.g. from a kubernetes-client/python checkout:
    #   git show v33.1.0:kubernetes/swagger.json.unprocessed > /tmp/swagger.json
    # or from kubernetes/kubernetes at a v1.33.x tag:
    #   git show v1.33.1:api/openapi-spec/swagger.json > /tmp/swagger.json
"""

import argparse
import copy
import hashlib
import json
import os
import struct
import subprocess
import sys

K8S_VERSION = "v1.33"
SOURCE = (
    "Kubernetes %s api/openapi-spec/swagger.json (the Kubernetes Authors, "
    "Apache-2.0), via kubernetes-client/python v33.1.0 "
    "kubernetes/swagger.json.unprocessed" % K8S_VERSION
)

# (group, version) -> {plural: [served subresources]}.
# Mirror of kedge-api's registry (crates/kedge-api/src/registry.rs RESOURCES);
# `openapi::tests::documents_cover_the_registry` fails when they drift apart.
# Group-versions that upstream's published v1.33 spec lacks (it holds only the
# APIs enabled by default, e.g. not authentication.k8s.io/v1beta1) are
# listed in NOT_IN_UPSTREAM_SPEC and left out.
KEDGE_RESOURCES = {
    ("", "v1"): {
        "namespaces": ["status", "finalize"],
        "pods": ["attach", "binding", "eviction", "exec", "log", "portforward", "status"],
        "bindings": [],
        "nodes": ["status"],
        "services": ["status"],
        "endpoints": [],
        "configmaps": [],
        "secrets": [],
        "serviceaccounts": ["token"],
        "events": [],
        "podtemplates": [],
        "limitranges": [],
        "resourcequotas": ["status"],
        "persistentvolumes": ["status"],
        "persistentvolumeclaims": ["status"],
        "replicationcontrollers": ["status", "scale"],
    },
    ("apps", "v1"): {
        "deployments": ["status", "scale"],
        "replicasets": ["status", "scale"],
        "daemonsets": ["status"],
        "statefulsets": ["status", "scale"],
        "controllerrevisions": [],
    },
    ("batch", "v1"): {"jobs": ["status"], "cronjobs": ["status"]},
    ("autoscaling", "v2"): {"horizontalpodautoscalers": ["status"]},
    ("autoscaling", "v1"): {"horizontalpodautoscalers": ["status"]},
    ("coordination.k8s.io", "v1"): {"leases": []},
    ("discovery.k8s.io", "v1"): {"endpointslices": []},
    ("events.k8s.io", "v1"): {"events": []},
    ("rbac.authorization.k8s.io", "v1"): {
        "clusterrolebindings": [],
        "clusterroles": [],
        "rolebindings": [],
        "roles": [],
    },
    ("node.k8s.io", "v1"): {"runtimeclasses": []},
    ("scheduling.k8s.io", "v1"): {"priorityclasses": []},
    ("policy", "v1"): {"poddisruptionbudgets": ["status"]},
    ("networking.k8s.io", "v1"): {
        "ingresses": ["status"],
        "ingressclasses": [],
        "networkpolicies": [],
    },
    ("storage.k8s.io", "v1"): {
        "storageclasses": [],
        "csidrivers": [],
        "csinodes": [],
        "csistoragecapacities": [],
        "volumeattachments": ["status"],
    },
    ("admissionregistration.k8s.io", "v1"): {
        "mutatingwebhookconfigurations": [],
        "validatingwebhookconfigurations": [],
        "validatingadmissionpolicies": ["status"],
        "validatingadmissionpolicybindings": [],
    },
    ("apiregistration.k8s.io", "v1"): {"apiservices": ["status"]},
    ("flowcontrol.apiserver.k8s.io", "v1"): {
        "flowschemas": ["status"],
        "prioritylevelconfigurations": ["status"],
    },
    ("certificates.k8s.io", "v1"): {"certificatesigningrequests": ["status", "approval"]},
    ("authentication.k8s.io", "v1"): {"tokenreviews": [], "selfsubjectreviews": []},
    ("authorization.k8s.io", "v1"): {
        "localsubjectaccessreviews": [],
        "selfsubjectaccessreviews": [],
        "selfsubjectrulesreviews": [],
        "subjectaccessreviews": [],
    },
    ("apiextensions.k8s.io", "v1"): {"customresourcedefinitions": ["status"]},
}
NOT_IN_UPSTREAM_SPEC = {("authentication.k8s.io", "v1beta1"): ["selfsubjectreviews"]}

OPS = ["get", "put", "post", "delete", "options", "head", "patch"]


def fail(msg):
    sys.exit("gen-openapi: " + msg)


# ---------------------------------------------------------------------------
# Selecting paths


def gv_prefix(group, version):
    return "/api/" + version if group == "" else "/apis/%s/%s" % (group, version)


def v3_key(path):
    """The v3 discovery key a path belongs to, as upstream splits them."""
    parts = path.strip("/").split("/")
    if parts[0] == "api":
        return "api" if len(parts) == 1 else "api/" + parts[1]
    if parts[0] == "apis":
        return "/".join(parts[: min(len(parts), 3)])
    return parts[0]


def keep_path(path):
    if path in ("/api/", "/apis/", "/version/"):
        return True
    for (group, version), resources in KEDGE_RESOURCES.items():
        if group and path == "/apis/%s/" % group:
            return True
        prefix = gv_prefix(group, version) + "/"
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix):]
        if rest == "":
            return True  # API resource list of the group-version
        parts = rest.split("/")
        if parts[0] == "watch":
            return False
        if parts[0] == "namespaces" and len(parts) >= 3 and parts[1] == "{namespace}":
            parts = parts[2:]
        resource, tail = parts[0], parts[1:]
        if resource not in resources:
            return False
        if len(tail) <= 1:
            return True
        return tail[1] in resources[resource]
    return False


# ---------------------------------------------------------------------------
# References


def collect_refs(node, out):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                out.add(v)
            else:
                collect_refs(v, out)
    elif isinstance(node, list):
        for v in node:
            collect_refs(v, out)


def definition_closure(roots, definitions):
    """Names of the (v2) definitions reachable from refs in `roots`."""
    seen = set()
    todo = []
    refs = set()
    collect_refs(roots, refs)
    todo.extend(refs)
    while todo:
        ref = todo.pop()
        if ref.startswith(V2_DEF):
            name = ref[len(V2_DEF):]
        elif ref.startswith(V3_DEF):
            name = ref[len(V3_DEF):]
        else:
            continue
        if name in seen:
            continue
        if name not in definitions:
            fail("unknown definition %s" % ref)
        seen.add(name)
        more = set()
        collect_refs(definitions[name], more)
        todo.extend(more)
    return seen


# ---------------------------------------------------------------------------
# v2 -> v3, as kube-openapi's builder3 builds upstream's documents

V2_DEF = "#/definitions/"
V3_DEF = "#/components/schemas/"

# Types whose v3 schema differs from their v2 one (OpenAPIV3OneOfTypes in
# apimachinery: resource.Quantity and intstr.IntOrString).
V3_ONE_OF = {
    "io.k8s.apimachinery.pkg.api.resource.Quantity": (
        None,
        [{"type": "string"}, {"type": "number"}],
    ),
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": (
        "int-or-string",
        [{"type": "integer"}, {"type": "string"}],
    ),
}

SCHEMA_KEYS = ("properties", "patternProperties", "definitions")
SCHEMA_LIST_KEYS = ("allOf", "anyOf", "oneOf")
SCHEMA_ONE_KEYS = ("additionalProperties", "additionalItems", "not", "items")


def v3_schema(s):
    """Convert one v2 schema: refs to components, `$ref`+siblings to allOf."""
    if not isinstance(s, dict):
        return s
    out = {}
    for k, v in s.items():
        if k in SCHEMA_KEYS and isinstance(v, dict):
            out[k] = {n: v3_schema(x) for n, x in v.items()}
        elif k in SCHEMA_LIST_KEYS and isinstance(v, list):
            out[k] = [v3_schema(x) for x in v]
        elif k in SCHEMA_ONE_KEYS:
            if isinstance(v, list):
                out[k] = [v3_schema(x) for x in v]
            else:
                out[k] = v3_schema(v)
        elif k == "$ref":
            if not v.startswith(V2_DEF):
                fail("unexpected ref %s" % v)
            out[k] = V3_DEF + v[len(V2_DEF):]
        else:
            out[k] = v
    if "$ref" in out and len(out) > 1:
        ref = out.pop("$ref")
        out["allOf"] = [{"$ref": ref}]
    return out


def v3_definition(name, s):
    s = v3_schema(s)
    if name in V3_ONE_OF:
        fmt, one_of = V3_ONE_OF[name]
        s = {k: v for k, v in s.items() if k not in ("type", "format")}
        if fmt:
            s["format"] = fmt
        s["oneOf"] = one_of
    return s


def v3_parameter(p):
    out = {"in": p["in"], "name": p["name"]}
    if p.get("description"):
        out["description"] = p["description"]
    if p.get("required"):
        out["required"] = True
    schema = {}
    for k in ("type", "format", "uniqueItems", "items", "enum"):
        if k in p:
            schema[k] = p[k]
    out["schema"] = schema
    return out


def resolve_param(p, global_params):
    if "$ref" in p:
        ref = p["$ref"]
        if not ref.startswith("#/parameters/"):
            fail("unexpected parameter ref %s" % ref)
        return global_params[ref[len("#/parameters/"):]]
    return p


def sort_params(ps):
    return sorted(ps, key=lambda p: (p["name"], p["in"]))


def v3_operation(op, global_params):
    out = {}
    if op.get("description"):
        out["description"] = op["description"]
    if op.get("operationId"):
        out["operationId"] = op["operationId"]
    params = [resolve_param(p, global_params) for p in op.get("parameters", [])]
    plain = [v3_parameter(p) for p in params if p["in"] != "body"]
    if plain:
        out["parameters"] = sort_params(plain)
    for p in params:
        if p["in"] == "body":
            schema = v3_schema(p["schema"])
            body = {"content": {m: {"schema": schema} for m in op.get("consumes", [])}}
            if p.get("description"):
                body["description"] = p["description"]
            if p.get("required"):
                body["required"] = True
            out["requestBody"] = body
            break
    responses = {}
    for code, r in op.get("responses", {}).items():
        resp = {"description": r.get("description", "")}
        if "schema" in r:
            schema = v3_schema(r["schema"])
            content = {m: {"schema": schema} for m in op.get("produces", [])}
            if content:
                resp["content"] = content
        responses[code] = resp
    out["responses"] = responses
    if op.get("tags"):
        out["tags"] = op["tags"]
    for k, v in op.items():
        if k.startswith("x-"):
            out[k] = v
    return out


def v3_path_item(item, global_params):
    out = {}
    for k, v in item.items():
        if k in OPS:
            out[k] = v3_operation(v, global_params)
        elif k == "parameters":
            out[k] = sort_params(
                [v3_parameter(resolve_param(p, global_params)) for p in v]
            )
        elif k.startswith("x-"):
            out[k] = v
    return out


def v3_documents(swagger, paths):
    global_params = swagger.get("parameters", {})
    definitions = swagger["definitions"]
    security = {}
    for name, d in swagger.get("securityDefinitions", {}).items():
        security[name] = dict(d)
    groups = {}
    for path, item in paths.items():
        groups.setdefault(v3_key(path), {})[path] = v3_path_item(item, global_params)
    docs = {}
    for key, gpaths in groups.items():
        names = definition_closure(gpaths, definitions)
        components = {
            "schemas": {n: v3_definition(n, definitions[n]) for n in sorted(names)}
        }
        if security:
            components["securitySchemes"] = security
        docs[key] = {
            "components": components,
            "info": swagger["info"],
            "openapi": "3.0.0",
            "paths": gpaths,
        }
    return docs


# ---------------------------------------------------------------------------
# The reduced v2 document


def v2_document(swagger, paths):
    global_params = swagger.get("parameters", {})
    refs = set()
    collect_refs(paths, refs)
    used_params = sorted(
        r[len("#/parameters/"):] for r in refs if r.startswith("#/parameters/")
    )
    params = {n: global_params[n] for n in used_params}
    names = definition_closure([paths, params], swagger["definitions"])
    doc = {}
    for k, v in swagger.items():
        if k == "paths":
            doc[k] = paths
        elif k == "definitions":
            doc[k] = {n: swagger["definitions"][n] for n in sorted(names)}
        elif k == "parameters":
            doc[k] = params
        else:
            doc[k] = v
    return doc


# ---------------------------------------------------------------------------
# gnostic openapi.v2.Document protobuf (gnostic-models openapiv2/OpenAPIv2.proto)


def varint(n):
    out = bytearray()
    if n < 0:
        n += 1 << 64
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f_bytes(num, data):
    return varint(num << 3 | 2) + varint(len(data)) + data


def f_str(num, s):
    if s is None or s == "":
        return b""
    return f_bytes(num, s.encode("utf-8"))


def f_bool(num, b):
    return varint(num << 3) + b"\x01" if b else b""


def f_int(num, n):
    return varint(num << 3) + varint(int(n)) if n else b""


def f_double(num, x):
    return varint(num << 3 | 1) + struct.pack("<d", float(x)) if x else b""


def f_msg(num, data):
    return f_bytes(num, data)


def pb_any(value):
    # gnostic keeps any value as its YAML text; JSON is YAML.
    text = json.dumps(value, ensure_ascii=False, sort_keys=True) + "\n"
    return f_str(2, text)


def pb_extensions(num, obj):
    out = b""
    for k, v in obj.items():
        if k.startswith("x-"):
            out += f_msg(num, f_str(1, k) + f_msg(2, pb_any(v)))
    return out


def pb_schema(s):
    out = b""
    out += f_str(1, s.get("$ref"))
    out += f_str(2, s.get("format"))
    out += f_str(3, s.get("title"))
    out += f_str(4, s.get("description"))
    if "default" in s:
        out += f_msg(5, pb_any(s["default"]))
    out += f_double(6, s.get("multipleOf"))
    out += f_double(7, s.get("maximum"))
    out += f_bool(8, s.get("exclusiveMaximum"))
    out += f_double(9, s.get("minimum"))
    out += f_bool(10, s.get("exclusiveMinimum"))
    out += f_int(11, s.get("maxLength"))
    out += f_int(12, s.get("minLength"))
    out += f_str(13, s.get("pattern"))
    out += f_int(14, s.get("maxItems"))
    out += f_int(15, s.get("minItems"))
    out += f_bool(16, s.get("uniqueItems"))
    out += f_int(17, s.get("maxProperties"))
    out += f_int(18, s.get("minProperties"))
    for r in s.get("required", []):
        out += f_str(19, r)
    for e in s.get("enum", []):
        out += f_msg(20, pb_any(e))
    if "additionalProperties" in s:
        ap = s["additionalProperties"]
        if isinstance(ap, bool):
            item = varint(2 << 3) + (b"\x01" if ap else b"\x00")
        else:
            item = f_msg(1, pb_schema(ap))
        out += f_msg(21, item)
    if "type" in s:
        types = s["type"] if isinstance(s["type"], list) else [s["type"]]
        out += f_msg(22, b"".join(f_str(1, t) for t in types))
    if "items" in s:
        items = s["items"] if isinstance(s["items"], list) else [s["items"]]
        out += f_msg(23, b"".join(f_msg(1, pb_schema(i)) for i in items))
    for a in s.get("allOf", []):
        out += f_msg(24, pb_schema(a))
    if "properties" in s:
        props = b"".join(
            f_msg(1, f_str(1, n) + f_msg(2, pb_schema(p)))
            for n, p in s["properties"].items()
        )
        out += f_msg(25, props)
    out += f_str(26, s.get("discriminator"))
    out += f_bool(27, s.get("readOnly"))
    if "example" in s:
        out += f_msg(30, pb_any(s["example"]))
    out += pb_extensions(31, s)
    unknown = set(s) - {
        "$ref", "format", "title", "description", "default", "multipleOf",
        "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum",
        "maxLength", "minLength", "pattern", "maxItems", "minItems",
        "uniqueItems", "maxProperties", "minProperties", "required", "enum",
        "additionalProperties", "type", "items", "allOf", "properties",
        "discriminator", "readOnly", "example",
    }
    unknown = {k for k in unknown if not k.startswith("x-")}
    if unknown:
        fail("schema keys not encodable: %s" % sorted(unknown))
    return out


# Non-body parameter sub-schemas: field numbers of the shared fields.
# (required, in, description, name, allowEmptyValue, type, format, items,
#  collectionFormat, default, uniqueItems, enum, vendor_extension)
NON_BODY = {
    "header": (1, dict(required=1, in_=2, description=3, name=4, allowEmptyValue=None,
                       type=5, format=6, items=7, collectionFormat=8, default=9,
                       uniqueItems=19, enum=20, ext=22)),
    "formData": (2, dict(required=1, in_=2, description=3, name=4, allowEmptyValue=5,
                         type=6, format=7, items=8, collectionFormat=9, default=10,
                         uniqueItems=20, enum=21, ext=23)),
    "query": (3, dict(required=1, in_=2, description=3, name=4, allowEmptyValue=5,
                      type=6, format=7, items=8, collectionFormat=9, default=10,
                      uniqueItems=20, enum=21, ext=23)),
    "path": (4, dict(required=1, in_=2, description=3, name=4, allowEmptyValue=None,
                     type=5, format=6, items=7, collectionFormat=8, default=9,
                     uniqueItems=19, enum=20, ext=22)),
}


def pb_primitives_items(it):
    out = f_str(1, it.get("type")) + f_str(2, it.get("format"))
    if "items" in it:
        out += f_msg(3, pb_primitives_items(it["items"]))
    out += f_str(4, it.get("collectionFormat"))
    if "default" in it:
        out += f_msg(5, pb_any(it["default"]))
    out += f_bool(15, it.get("uniqueItems"))
    for e in it.get("enum", []):
        out += f_msg(16, pb_any(e))
    out += pb_extensions(18, it)
    return out


def pb_parameter(p):
    if p["in"] == "body":
        body = (
            f_str(1, p.get("description"))
            + f_str(2, p.get("name"))
            + f_str(3, p.get("in"))
            + f_bool(4, p.get("required"))
        )
        if "schema" in p:
            body += f_msg(5, pb_schema(p["schema"]))
        body += pb_extensions(6, p)
        return f_msg(1, body)
    if p["in"] not in NON_BODY:
        fail("parameter location %s" % p["in"])
    oneof, f = NON_BODY[p["in"]]
    sub = f_bool(f["required"], p.get("required"))
    sub += f_str(f["in_"], p.get("in"))
    sub += f_str(f["description"], p.get("description"))
    sub += f_str(f["name"], p.get("name"))
    if f["allowEmptyValue"]:
        sub += f_bool(f["allowEmptyValue"], p.get("allowEmptyValue"))
    sub += f_str(f["type"], p.get("type"))
    sub += f_str(f["format"], p.get("format"))
    if "items" in p:
        sub += f_msg(f["items"], pb_primitives_items(p["items"]))
    sub += f_str(f["collectionFormat"], p.get("collectionFormat"))
    if "default" in p:
        sub += f_msg(f["default"], pb_any(p["default"]))
    sub += f_bool(f["uniqueItems"], p.get("uniqueItems"))
    for e in p.get("enum", []):
        sub += f_msg(f["enum"], pb_any(e))
    sub += pb_extensions(f["ext"], p)
    return f_msg(2, f_msg(oneof, sub))


def pb_parameters_item(p):
    if set(p) == {"$ref"}:
        return f_msg(2, f_str(1, p["$ref"]))
    return f_msg(1, pb_parameter(p))


def pb_operation(op):
    out = b""
    for t in op.get("tags", []):
        out += f_str(1, t)
    out += f_str(2, op.get("summary"))
    out += f_str(3, op.get("description"))
    out += f_str(5, op.get("operationId"))
    for m in op.get("produces", []):
        out += f_str(6, m)
    for m in op.get("consumes", []):
        out += f_str(7, m)
    for p in op.get("parameters", []):
        out += f_msg(8, pb_parameters_item(p))
    if "responses" in op:
        codes = b""
        for code, r in op["responses"].items():
            resp = f_str(1, r.get("description"))
            if "schema" in r:
                resp += f_msg(2, f_msg(1, pb_schema(r["schema"])))
            resp += pb_extensions(5, r)
            codes += f_msg(1, f_str(1, code) + f_msg(2, f_msg(1, resp)))
        codes += pb_extensions(2, op["responses"])
        out += f_msg(9, codes)
    for s in op.get("schemes", []):
        out += f_str(10, s)
    out += f_bool(11, op.get("deprecated"))
    out += pb_extensions(13, op)
    return out


def pb_path_item(item):
    out = f_str(1, item.get("$ref"))
    for i, op in enumerate(OPS):
        if op in item:
            out += f_msg(2 + i, pb_operation(item[op]))
    for p in item.get("parameters", []):
        out += f_msg(9, pb_parameters_item(p))
    out += pb_extensions(10, item)
    return out


def pb_document(doc):
    out = f_str(1, doc.get("swagger"))
    info = doc.get("info")
    if info is not None:
        out += f_msg(2, f_str(1, info.get("title")) + f_str(2, info.get("version"))
                     + f_str(3, info.get("description")) + pb_extensions(7, info))
    out += f_str(3, doc.get("host"))
    out += f_str(4, doc.get("basePath"))
    for k, num in (("schemes", 5), ("consumes", 6), ("produces", 7)):
        for s in doc.get(k, []):
            out += f_str(num, s)
    if "paths" in doc:
        paths = pb_extensions(1, doc["paths"])
        for name, item in doc["paths"].items():
            if not name.startswith("x-"):
                paths += f_msg(2, f_str(1, name) + f_msg(2, pb_path_item(item)))
        out += f_msg(8, paths)
    if "definitions" in doc:
        defs = b"".join(
            f_msg(1, f_str(1, n) + f_msg(2, pb_schema(s)))
            for n, s in doc["definitions"].items()
        )
        out += f_msg(9, defs)
    if "parameters" in doc:
        params = b"".join(
            f_msg(1, f_str(1, n) + f_msg(2, pb_parameter(p)))
            for n, p in doc["parameters"].items()
        )
        out += f_msg(10, params)
    for req in doc.get("security", []):
        entries = b"".join(
            f_msg(1, f_str(1, n) + f_msg(2, b"".join(f_str(1, s) for s in scopes)))
            for n, scopes in req.items()
        )
        out += f_msg(12, entries)
    if "securityDefinitions" in doc:
        items = b""
        for n, d in doc["securityDefinitions"].items():
            if d.get("type") != "apiKey":
                fail("security definition type %s" % d.get("type"))
            key = (f_str(1, d.get("type")) + f_str(2, d.get("name"))
                   + f_str(3, d.get("in")) + f_str(4, d.get("description"))
                   + pb_extensions(5, d))
            items += f_msg(1, f_str(1, n) + f_msg(2, f_msg(2, key)))
        out += f_msg(13, items)
    out += pb_extensions(16, doc)
    return out


# ---------------------------------------------------------------------------


def compact(doc):
    return json.dumps(doc, ensure_ascii=False, sort_keys=True,
                      separators=(",", ":")).encode("utf-8")


def etag(data):
    return hashlib.sha512(data).hexdigest().upper()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("swagger", help="upstream api/openapi-spec/swagger.json (v1.33)")
    ap.add_argument(
        "--out",
        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                             "crates", "kedge-apiserver", "openapi",
                             "openapi-v1.33.bin.zst"),
    )
    args = ap.parse_args()
    with open(args.swagger, encoding="utf-8") as f:
        swagger = json.load(f)
    if swagger.get("swagger") != "2.0":
        fail("not a swagger 2.0 document")

    paths = {p: copy.deepcopy(v) for p, v in sorted(swagger["paths"].items()) if keep_path(p)}
    for (group, version), resources in KEDGE_RESOURCES.items():
        for plural in resources:
            found = any(
                p.startswith(gv_prefix(group, version) + "/") and ("/%s" % plural) in p
                for p in paths
            )
            if not found:
                fail("no path for %s/%s" % (group or "core", plural))

    for (group, version), plurals in NOT_IN_UPSTREAM_SPEC.items():
        print("not in the upstream spec, no document: %s/%s %s"
              % (group or "core", version, ", ".join(plurals)))

    v2 = v2_document(swagger, paths)
    v3 = v3_documents(swagger, paths)

    entries = []
    for key in sorted(v3):
        entries.append(("v3/" + key, compact(v3[key])))
    v2_json = compact(v2)
    # The protobuf shares the JSON's ETag, as upstream's handler does.
    entries.append(("v2.pb", pb_document(v2)))
    entries.append(("v2.json", v2_json))
    etags = {name: etag(data) for name, data in entries}
    etags["v2.pb"] = etags["v2.json"]
    discovery = {
        "paths": {
            key: {"serverRelativeURL": "/openapi/v3/%s?hash=%s" % (key, etags["v3/" + key])}
            for key in v3
        }
    }
    discovery_json = compact(discovery)
    etags["v3"] = etag(discovery_json)
    entries.insert(0, ("v3", discovery_json))
    index = {"source": SOURCE, "version": K8S_VERSION, "etags": etags}
    entries.insert(0, ("index.json", compact(index)))

    raw = bytearray(b"KOAPI1\n")
    for name, data in entries:
        n = name.encode("utf-8")
        raw += struct.pack(">I", len(n)) + n + struct.pack(">I", len(data)) + data
    try:
        packed = subprocess.run(
            ["zstd", "-19", "--zstd=wlog=20", "-q", "-c"], input=bytes(raw), stdout=subprocess.PIPE,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        fail("zstd failed (install the zstd package): %s" % e)
    with open(args.out, "wb") as f:
        f.write(packed)
    for name, data in entries:
        print("%-40s %9d" % (name, len(data)))
    print("%-40s %9d (raw %d)" % (os.path.relpath(args.out), len(packed), len(raw)))


if __name__ == "__main__":
    main()
