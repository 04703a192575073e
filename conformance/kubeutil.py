"""Running stock kubectl binaries against the cluster under test, and reading
what they print."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import pytest
import yaml

KUBECTL_DIR = Path(os.environ.get("KEDGE_KUBECTL_DIR", "/usr/lib/google-cloud-sdk/bin"))


def testing_external_cluster() -> bool:
    """Whether the session tests the KUBECONFIG cluster rather than starting kedge."""
    return bool(os.environ.get("KUBECONFIG")) and not os.environ.get("KEDGE_BIN")


def expect_kedge() -> bool:
    """Whether kedge-specific expectations apply: the harness starts kedge, or
    KEDGE_CONFORMANCE_EXPECT_KEDGE=1 says the KUBECONFIG cluster is one. Known
    only from the environment, so that xfail marks can use it at collection."""
    return (not testing_external_cluster()
            or os.environ.get("KEDGE_CONFORMANCE_EXPECT_KEDGE") == "1")


def kedge_xfail(reason: str):
    """A strict xfail for what kedge does not do yet (`reason` starts "kedge:"),
    which applies only where kedge is under test: other clusters must pass."""
    return pytest.mark.xfail(expect_kedge(), reason=reason, strict=True)


@dataclass(frozen=True)
class Result:
    args: Sequence[str]
    rc: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.args)}\nexit status {self.rc}\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )


class Kubectl:
    """One kubectl minor version, always run with an explicit --kubeconfig and
    a discovery cache private to this test session."""

    def __init__(self, version: str, kubeconfig: str, cache_dir: Path):
        self.version = version
        self.binary = KUBECTL_DIR / f"kubectl.{version}"
        self.kubeconfig = kubeconfig
        self.cache_dir = cache_dir
        # For names: "1.27" -> "k127".
        self.tag = "k" + version.replace(".", "")

    def available(self) -> bool:
        return self.binary.is_file() and os.access(self.binary, os.X_OK)

    def argv(self, *args: str) -> list:
        return [
            str(self.binary),
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self.cache_dir}",
            *[str(a) for a in args],
        ]

    @staticmethod
    def _env(extra: Optional[dict] = None) -> dict:
        env = dict(os.environ)
        env.pop("KUBECONFIG", None)  # --kubeconfig is always given
        env.update(extra or {})
        return env

    def run(self, *args, input: Optional[str] = None, timeout: float = 60,
            check: bool = True, env: Optional[dict] = None) -> Result:
        """Run kubectl; `env` adds variables (KUBE_EDITOR) to this process's."""
        argv = self.argv(*args)
        try:
            p = subprocess.run(argv, input=input, capture_output=True, text=True,
                               timeout=timeout, env=self._env(env))
        except subprocess.TimeoutExpired as e:
            raise AssertionError(
                f"$ {' '.join(argv)}\ndid not finish within {timeout}s\n"
                f"--- stdout\n{e.stdout or ''}\n--- stderr\n{e.stderr or ''}"
            ) from None
        res = Result(argv, p.returncode, p.stdout, p.stderr)
        if check and res.rc != 0:
            raise AssertionError("kubectl failed:\n" + res.describe())
        return res

    def json(self, *args, timeout: float = 60) -> dict:
        res = self.run(*args, "-o", "json", timeout=timeout)
        try:
            return json.loads(res.stdout)
        except json.JSONDecodeError as e:
            raise AssertionError(f"not JSON ({e}):\n" + res.describe()) from None

    def names(self, *args) -> set:
        """`get ... -o name`, as a set of bare object names."""
        res = self.run(*args, "-o", "name")
        return {line.split("/", 1)[1] for line in res.stdout.split() if "/" in line}

    def popen(self, *args) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*args), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, bufsize=1, env=self._env())

    def create_from(self, path: Path, manifest, *extra, check: bool = True) -> Result:
        """Write `manifest` (a dict or a list of dicts) as YAML to `path`, then
        `kubectl create --validate=false -f path`."""
        write_yaml(path, manifest)
        return self.run("create", "--validate=false", "-f", path, *extra, check=check)


def write_yaml(path: Path, manifest) -> None:
    docs = manifest if isinstance(manifest, list) else [manifest]
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


_COLUMN = re.compile(r"\S+(?: \S+)*")


def parse_table(text: str):
    """Parse kubectl's human-readable table output.

    kubectl pads columns with at least three spaces and left-aligns every cell
    under its header, so a header made of words joined by single spaces
    ("NOMINATED NODE") is one column, and cells are cut at the header offsets
    (which also handles empty cells, as in `api-resources` SHORTNAMES).
    Returns (header names, rows as dicts).
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise AssertionError(f"expected a table, got nothing:\n{text!r}")
    spans = [(m.start(), m.group()) for m in _COLUMN.finditer(lines[0])]
    header = [name for _, name in spans]
    rows = []
    for line in lines[1:]:
        row = {}
        for i, (start, name) in enumerate(spans):
            end = spans[i + 1][0] if i + 1 < len(spans) else None
            row[name] = line[start:end].strip() if end is not None else line[start:].strip()
        rows.append(row)
    return header, rows
