#!/usr/bin/env python3
"""Validate an OCI config.json against a runtime-spec JSON schema.

Stands in for runtime-spec's schema/validate.go in runc's spec.bats, which
would clone runtime-spec from the internet. The schema's "$ref"s are relative
file names, resolved against the schema's own directory.

Usage: validate_spec.py SCHEMA CONFIG
"""

import json
import pathlib
import sys
import warnings

import jsonschema

# RefResolver is deprecated in newer jsonschema releases, still works there.
warnings.filterwarnings("ignore", category=DeprecationWarning)


def main(argv):
    if len(argv) != 3:
        print(f"usage: {argv[0]} SCHEMA CONFIG", file=sys.stderr)
        return 2
    schema_path = pathlib.Path(argv[1]).resolve()
    config_path = pathlib.Path(argv[2])
    schema = json.loads(schema_path.read_text())
    config = json.loads(config_path.read_text())

    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    resolver = jsonschema.RefResolver(base_uri=schema_path.as_uri(), referrer=schema)
    validator = cls(schema, resolver=resolver)

    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    for err in errors:
        where = "/".join(str(p) for p in err.absolute_path) or "(root)"
        print(f"{config_path}: {where}: {err.message}", file=sys.stderr)
    if errors:
        print(f"The document is not valid: {len(errors)} error(s)", file=sys.stderr)
        return 1
    print("The document is valid")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
