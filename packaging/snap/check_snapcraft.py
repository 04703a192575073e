#!/usr/bin/env python3
"""Validates snapcraft.yaml against snapcraft's own JSON schema.

Usage: check_snapcraft.py [SNAPCRAFT_YAML [SCHEMA_JSON]]
Prints each violation with its path; exits 1 if there is one.
Needs PyYAML and jsonschema (both in the repository's .venv).
"""

import json
import sys
from pathlib import Path

import jsonschema
import yaml

here = Path(__file__).resolve().parent
project = Path(sys.argv[1]) if len(sys.argv) > 1 else here / "snapcraft.yaml"
schema_path = Path(sys.argv[2]) if len(sys.argv) > 2 else here / "schema" / "snapcraft.json"

doc = yaml.safe_load(project.read_text())
schema = json.loads(schema_path.read_text())
# The schema is a oneOf over bases (discriminated by `base`): check the
# branch for this project's base, so that errors name the offending key.
base = doc.get("base") if isinstance(doc, dict) else None
branch = {
    "core22": "Core22Project",
    "core24": "Core24Project",
    "core26": "Core26Project",
}.get(base)
if branch is not None:
    schema = {"$defs": schema["$defs"], "$ref": f"#/$defs/{branch}"}
validator = jsonschema.Draft202012Validator(schema)
errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
for error in errors:
    where = "/".join(str(p) for p in error.absolute_path) or "(top)"
    print(f"{project}: {where}: {error.message}")
if errors:
    sys.exit(1)
print(f"{project}: valid against {schema_path.name}")
