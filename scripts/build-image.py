#!/usr/bin/env python3
"""Build a single-layer container image tarball from a root filesystem directory.

No registry, no Docker, Python 3 standard library only. The output is one tar
file that is at the same time

  * an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/...``),
    the index entry annotated with ``org.opencontainers.image.ref.name`` and
    ``io.containerd.image.name`` (both the full ``name:tag``), and
  * a ``docker save`` view of the same blobs (``manifest.json`` with
    ``Config``/``RepoTags``/``Layers`` paths into ``blobs/sha256/``, plus the
    legacy ``repositories`` file),

so ``ctr images import`` (which prefers the OCI layout when ``oci-layout`` is
present), importers that only read ``manifest.json``, and ``docker load``
all accept it.

The build is reproducible: entries sorted by path, every mtime fixed (to
``--mtime`` or ``$SOURCE_DATE_EPOCH``, default 0), uid/gid 0 with empty user
and group names, gzip without a name and with mtime 0, JSON with sorted keys.
The same rootfs (same contents and permission bits) and the same options give
the same digests. Hard links inside the rootfs are kept as hard links; the
mode bits of each file are taken from the rootfs as they are.

Example:

    scripts/build-image.py --rootfs ROOT --name kedge.local/pause:3.10 \\
        --entrypoint /pause --user 65535:65535 --output pause.tar

prints the manifest digest (what ``ctr images ls`` shows as DIGEST and what
CRI reports as the image's repo digest) on stdout; ``--json`` prints the
config digest (the image ID) and the other details too.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import stat
import sys
import tarfile

MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# uname -m -> (GOARCH, variant)
ARCHES = {
    "x86_64": ("amd64", None),
    "amd64": ("amd64", None),
    "aarch64": ("arm64", None),
    "arm64": ("arm64", None),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "riscv64": ("riscv64", None),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
    "i686": ("386", None),
    "i386": ("386", None),
}


class BuildError(Exception):
    pass


def canonical_json(obj):
    """Deterministic JSON bytes: sorted keys, no insignificant whitespace."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def split_name(name):
    """'registry/repo:tag' -> ('registry/repo', 'tag'); the tag is required."""
    if "@" in name:
        raise BuildError(f"--name must be name:tag, not a digest reference: {name!r}")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon <= slash:
        raise BuildError(f"--name must carry a tag (name:tag): {name!r}")
    repo, tag = name[:colon], name[colon + 1 :]
    if not repo or not tag:
        raise BuildError(f"--name must be name:tag: {name!r}")
    if repo != repo.lower():
        raise BuildError(f"repository names must be lower case: {repo!r}")
    return repo, tag


def walk_sorted(root):
    """Yield (archive name, absolute path) for everything below root, sorted.

    Sorted by the path's components (so 'a/b' comes before 'a.b'), directories
    before what they contain. Symlinks to directories are not followed.
    """

    def rec(rel_parts):
        here = os.path.join(root, *rel_parts) if rel_parts else root
        try:
            names = sorted(os.listdir(here))
        except OSError as e:
            raise BuildError(f"cannot list {here}: {e}") from e
        for n in names:
            parts = rel_parts + [n]
            full = os.path.join(here, n)
            yield "/".join(parts), full
            st = os.lstat(full)
            if stat.S_ISDIR(st.st_mode):
                yield from rec(parts)

    yield from rec([])


def build_layer_tar(rootfs, mtime):
    """Return the uncompressed layer tar (bytes) of rootfs, normalised."""
    buf = io.BytesIO()
    # PAX format only adds extended headers where ustar cannot express a
    # field (long names, big sizes); nothing time- or host-dependent.
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for arcname, full in walk_sorted(rootfs):
            st = os.lstat(full)
            if stat.S_ISSOCK(st.st_mode):
                print(f"build-image: skipping socket {arcname}", file=sys.stderr)
                continue
            # gettarinfo records hard links (same inode seen twice, nlink > 1)
            # as LNKTYPE pointing at the first name, which the sorted walk
            # makes deterministic.
            ti = tar.gettarinfo(full, arcname=arcname)
            ti.uid = 0
            ti.gid = 0
            ti.uname = ""
            ti.gname = ""
            ti.mtime = int(mtime)
            ti.mode = stat.S_IMODE(st.st_mode)
            ti.pax_headers = {}
            if ti.isreg():
                with open(full, "rb") as f:
                    tar.addfile(ti, f)
            else:
                tar.addfile(ti)
    return buf.getvalue()


def gzip_bytes(data):
    out = io.BytesIO()
    # filename='' and mtime=0: the gzip header holds nothing host-specific.
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return out.getvalue()


def rfc3339(epoch):
    import datetime

    return datetime.datetime.fromtimestamp(int(epoch), tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_labels(items):
    labels = {}
    for item in items or []:
        if "=" not in item:
            raise BuildError(f"--label must be KEY=VALUE: {item!r}")
        k, v = item.split("=", 1)
        labels[k] = v
    return labels


def exec_form(values):
    """--entrypoint/--cmd values: either the words themselves, or one JSON array
    (needed for words that start with '-', e.g. --cmd='["sh","-c","echo hi"]')."""
    if values and len(values) == 1 and values[0].lstrip().startswith("["):
        try:
            parsed = json.loads(values[0])
        except json.JSONDecodeError as e:
            raise BuildError(f"not a JSON array: {values[0]!r}: {e}") from e
        if not isinstance(parsed, list) or not all(isinstance(x, str) for x in parsed):
            raise BuildError(f"must be a JSON array of strings: {values[0]!r}")
        return parsed
    return list(values)


def build(args):
    repo, tag = split_name(args.name)
    if not os.path.isdir(args.rootfs):
        raise BuildError(f"--rootfs {args.rootfs!r} is not a directory")

    if args.mtime is not None:
        mtime = args.mtime
    else:
        mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))

    machine = args.arch or platform.machine()
    arch, variant = ARCHES.get(machine, (machine, None))
    if args.variant:
        variant = args.variant

    layer_tar = build_layer_tar(args.rootfs, mtime)
    diff_id = "sha256:" + sha256_hex(layer_tar)
    if args.compression == "gzip":
        layer_blob = gzip_bytes(layer_tar)
        layer_mt = MT_OCI_LAYER_GZIP
    else:
        layer_blob = layer_tar
        layer_mt = MT_OCI_LAYER_TAR
    layer_digest = "sha256:" + sha256_hex(layer_blob)

    env = list(args.env) if args.env else [DEFAULT_PATH]
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, DEFAULT_PATH)

    container_config = {"Env": env}
    if args.entrypoint:
        container_config["Entrypoint"] = exec_form(args.entrypoint)
    if args.cmd:
        container_config["Cmd"] = exec_form(args.cmd)
    if args.workdir:
        container_config["WorkingDir"] = args.workdir
    if args.user:
        container_config["User"] = args.user
    if args.stop_signal:
        container_config["StopSignal"] = args.stop_signal
    labels = parse_labels(args.label)
    if labels:
        container_config["Labels"] = labels
    if args.expose:
        container_config["ExposedPorts"] = {p if "/" in p else p + "/tcp": {} for p in args.expose}

    created = rfc3339(mtime)
    config = {
        "architecture": arch,
        "os": "linux",
        "created": created,
        "config": container_config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": f"kedge scripts/build-image.py ({args.name})"}],
    }
    if variant:
        config["variant"] = variant
    config_bytes = canonical_json(config)
    config_digest = "sha256:" + sha256_hex(config_bytes)

    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "config": {"mediaType": MT_OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": [{"mediaType": layer_mt, "digest": layer_digest, "size": len(layer_blob)}],
    }
    manifest_bytes = canonical_json(manifest)
    manifest_digest = "sha256:" + sha256_hex(manifest_bytes)

    plat = {"architecture": arch, "os": "linux"}
    if variant:
        plat["variant"] = variant
    index = {
        "schemaVersion": 2,
        "mediaType": MT_OCI_INDEX,
        "manifests": [
            {
                "mediaType": MT_OCI_MANIFEST,
                "digest": manifest_digest,
                "size": len(manifest_bytes),
                "platform": plat,
                "annotations": {
                    # containerd reads this one first (what `ctr export` writes);
                    "io.containerd.image.name": args.name,
                    # the OCI one, as the full name: ctr import leaves a full
                    # reference as it is, but would prefix a bare tag with
                    # "import-<date>".
                    "org.opencontainers.image.ref.name": args.name,
                },
            }
        ],
    }

    blob = lambda d: "blobs/sha256/" + d.split(":", 1)[1]  # noqa: E731
    docker_manifest = [{"Config": blob(config_digest), "RepoTags": [args.name], "Layers": [blob(layer_digest)]}]
    # Legacy `docker load` fallback; value is the image ID (config digest hex).
    repositories = {repo: {tag: config_digest.split(":", 1)[1]}}

    files = [
        ("oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"})),
        ("index.json", canonical_json(index)),
        ("manifest.json", canonical_json(docker_manifest)),
        ("repositories", canonical_json(repositories)),
        (blob(config_digest), config_bytes),
        (blob(manifest_digest), manifest_bytes),
        (blob(layer_digest), layer_blob),
    ]
    dirs = ["blobs", "blobs/sha256"]

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = [(d, None) for d in dirs] + files
        # Unique, sorted; blobs deduplicate by name (identical content).
        seen = {}
        for name, data in entries:
            seen[name] = data
        for name in sorted(seen):
            data = seen[name]
            ti = tarfile.TarInfo(name)
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            ti.mtime = int(mtime)
            if data is None:
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                tar.addfile(ti)
            else:
                ti.type = tarfile.REGTYPE
                ti.mode = 0o644
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
    archive = out.getvalue()

    tmp = args.output + ".tmp"
    with open(tmp, "wb") as f:
        f.write(archive)
    os.replace(tmp, args.output)

    return {
        "name": args.name,
        "output": args.output,
        "manifest_digest": manifest_digest,
        "config_digest": config_digest,
        "layer_digest": layer_digest,
        "diff_id": diff_id,
        "layer_size": len(layer_blob),
        "layer_uncompressed_size": len(layer_tar),
        "archive_size": len(archive),
        "architecture": arch + ("/" + variant if variant else ""),
    }


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Build a reproducible single-layer OCI (+docker save) image tarball from a rootfs directory."
    )
    p.add_argument("--rootfs", required=True, help="root filesystem directory (becomes the one layer)")
    p.add_argument("--name", required=True, help="image reference name:tag, e.g. kedge.local/busybox:1.36")
    p.add_argument("--output", "-o", required=True, help="output .tar path")
    p.add_argument(
        "--entrypoint", nargs="+", metavar="ARG", help="image Entrypoint: words, or one JSON array (for words starting with '-')"
    )
    p.add_argument("--cmd", nargs="+", metavar="ARG", help="image Cmd: words (--cmd sleep 3600), or one JSON array: --cmd='[\"sh\",\"-c\",\"x\"]'")
    p.add_argument(
        "--env", action="append", metavar="KEY=VALUE", help=f"environment (repeatable; default {DEFAULT_PATH})"
    )
    p.add_argument("--workdir", default="/", help="WorkingDir (default /)")
    p.add_argument("--user", help="User, e.g. 65535:65535 (default: root)")
    p.add_argument("--stop-signal", help="StopSignal, e.g. SIGTERM")
    p.add_argument("--label", action="append", metavar="KEY=VALUE", help="image config label (repeatable)")
    p.add_argument("--expose", action="append", metavar="PORT[/PROTO]", help="ExposedPorts entry (repeatable)")
    p.add_argument("--arch", help="architecture: uname -m or GOARCH spelling (default: this host's)")
    p.add_argument("--variant", help="architecture variant, e.g. v7")
    p.add_argument(
        "--compression", choices=["gzip", "none"], default="gzip", help="layer compression (default gzip)"
    )
    p.add_argument(
        "--mtime", type=int, help="timestamp for every entry and 'created' (default $SOURCE_DATE_EPOCH or 0)"
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of the manifest digest")
    args = p.parse_args(argv)
    try:
        info = build(args)
    except BuildError as e:
        print(f"build-image: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
    else:
        print(info["manifest_digest"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
