#!/usr/bin/env python3
"""Chart tooling without a `helm` binary, on Helm's own engine (helm-python-sdk).

    helm.py template [-f values.yaml ...] [--name agr] [--namespace ns]   print rendered manifests
    helm.py lint [-f values.yaml ...]                                      helm lint --strict
    helm.py check                                                           everything `make chart-check` runs

`check` lints (strict) and renders the chart with the default values and with every optional
feature on (charts/autoguardrails/tests/values-all.yaml), validates the rendered manifests with
`kubernetes-validate --strict`, runs `promtool check rules` and `promtool test rules` on the
rendered PrometheusRule, checks that invalid values are refused by values.schema.json, and checks
the security settings the issue requires. Run it with the repository venv (scripts/test-deps.sh).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import yaml  # PyYAML, installed with moto
from helm_python import Chart, HelmError, lint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART = os.path.join(ROOT, "charts", "autoguardrails")
ALL_VALUES = os.path.join(CHART, "tests", "values-all.yaml")
ALERT_TESTS = os.path.join(CHART, "tests", "alerts_test.yaml")
VENV_BIN = os.path.dirname(sys.executable)
RELEASE = "agr"
NAMESPACE = "autoguardrails"


def load_values(files):
    merged = {}
    for path in files or []:
        with open(path) as handle:
            merged = deep_merge(merged, yaml.safe_load(handle) or {})
    return merged


def deep_merge(base, override):
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = value
    return result


def render(values, name=RELEASE, namespace=NAMESPACE):
    """Rendered templates as {path: text}, NOTES.txt included."""
    return Chart.load(CHART).render(values, name=name, namespace=namespace)


def manifests(rendered):
    """The rendered Kubernetes objects (NOTES.txt and empty documents left out)."""
    objects = []
    for path in sorted(rendered):
        if path.endswith("NOTES.txt"):
            continue
        for document in yaml.safe_load_all(rendered[path]):
            if document:
                objects.append(document)
    return objects


def to_yaml(objects):
    return "".join("---\n" + yaml.safe_dump(o, sort_keys=False) for o in objects)


def run_lint(values, label):
    report = lint(CHART, values, strict=True, namespace=NAMESPACE)
    problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    problems += [{"severity": 3, "path": "", "error": e} for e in report.get("errors", [])]
    for message in report.get("messages", []):
        print(f"  lint[{label}] severity={message.get('severity')} {message.get('path')}: {message.get('error')}")
    if problems:
        raise SystemExit(f"helm lint --strict failed for {label}: {problems}")


def kubernetes_validate(objects, directory, label):
    path = os.path.join(directory, f"{label}.yaml")
    with open(path, "w") as handle:
        handle.write(to_yaml(objects))
    result = subprocess.run(
        [os.path.join(VENV_BIN, "kubernetes-validate"), "--strict", "--quiet", path],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SystemExit(f"kubernetes-validate --strict failed for {label}:\n{result.stdout}{result.stderr}")
    print(f"  kubernetes-validate --strict: {label}: {len(objects)} objects ok")


def promtool(objects, directory):
    rules = [o for o in objects if o.get("kind") == "PrometheusRule"]
    if len(rules) != 1:
        raise SystemExit(f"expected one PrometheusRule with prometheusRule.enabled, found {len(rules)}")
    rules_path = os.path.join(directory, "rules.yaml")
    with open(rules_path, "w") as handle:
        yaml.safe_dump({"groups": rules[0]["spec"]["groups"]}, handle, sort_keys=False)
    shutil.copy(ALERT_TESTS, os.path.join(directory, "alerts_test.yaml"))
    for command in (["check", "rules", "rules.yaml"], ["test", "rules", "alerts_test.yaml"]):
        result = subprocess.run(["promtool", *command], cwd=directory, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"promtool {' '.join(command)} failed:\n{result.stdout}{result.stderr}")
        print(f"  promtool {' '.join(command[:2])}: ok ({result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ''})")


def check_security(objects, label):
    """The pod settings issue 9 requires, checked on the rendered Deployment."""
    deployments = [o for o in objects if o.get("kind") == "Deployment"]
    if len(deployments) != 1:
        raise SystemExit(f"{label}: expected one Deployment, found {len(deployments)}")
    pod = deployments[0]["spec"]["template"]["spec"]
    failures = []
    if not pod.get("securityContext", {}).get("runAsNonRoot"):
        failures.append("pod securityContext.runAsNonRoot is not true")
    for container in pod["containers"]:
        context = container.get("securityContext", {})
        if not context.get("readOnlyRootFilesystem"):
            failures.append(f"{container['name']}: readOnlyRootFilesystem is not true")
        if context.get("allowPrivilegeEscalation", True):
            failures.append(f"{container['name']}: allowPrivilegeEscalation is not false")
        if "ALL" not in context.get("capabilities", {}).get("drop", []):
            failures.append(f"{container['name']}: capabilities do not drop ALL")
        if not container.get("resources", {}).get("requests"):
            failures.append(f"{container['name']}: no resource requests")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            if container.get(probe, {}).get("httpGet", {}).get("path") != path:
                failures.append(f"{container['name']}: {probe} is not GET {path}")
        args = container.get("args", [])
        if not args or args[0] != "controller":
            failures.append(f"{container['name']}: first argument is not `controller`")
    replicas = deployments[0]["spec"].get("replicas", 1)
    args = pod["containers"][0].get("args", [])
    if replicas > 1 and "--leader-election=true" not in args:
        failures.append(f"{replicas} replicas without --leader-election=true")
    # Nothing cluster-wide beyond the ClusterRole, and no wildcard anywhere.
    for role in (o for o in objects if o.get("kind") in ("ClusterRole", "Role")):
        for rule in role.get("rules") or []:
            for field in ("verbs", "resources", "apiGroups"):
                if "*" in rule.get(field, []):
                    failures.append(f"{role['kind']} {role['metadata']['name']}: wildcard in {field}")
            if "delete" in rule.get("verbs", []) or "deletecollection" in rule.get("verbs", []):
                failures.append(f"{role['kind']} {role['metadata']['name']}: grants delete on {rule['resources']}")
            if "secrets" in rule.get("resources", []) and (
                not rule.get("resourceNames") or set(rule["verbs"]) != {"get"}
            ):
                failures.append(f"{role['kind']} {role['metadata']['name']}: secrets not limited to get by name")
    if failures:
        raise SystemExit(f"{label}: " + "; ".join(failures))
    print(f"  security and RBAC shape: {label}: ok")


def expect_refused(values, why):
    try:
        render(values)
    except HelmError as error:
        reason = [line.strip() for line in str(error).splitlines() if line.strip().startswith("- ")]
        print(f"  schema refuses {why}: ok {reason[:1]}")
        return
    raise SystemExit(f"values.schema.json accepted {why}: {values}")


def check():
    with open(ALL_VALUES) as handle:
        all_values = yaml.safe_load(handle)
    with tempfile.TemporaryDirectory(prefix="chart-check-") as directory:
        for label, values in (("default", {}), ("all-features", all_values)):
            print(f"chart {label}:")
            run_lint(values, label)
            rendered = render(values)
            if "Next three commands" not in rendered.get("autoguardrails/templates/NOTES.txt", ""):
                raise SystemExit(f"{label}: NOTES.txt does not list the next three commands")
            objects = manifests(rendered)
            kinds = sorted({o["kind"] for o in objects})
            print(f"  rendered {len(objects)} objects: {', '.join(kinds)}")
            kubernetes_validate(objects, directory, label)
            check_security(objects, label)
            if label == "all-features":
                expected = {"Ingress", "ServiceMonitor", "PrometheusRule", "ConfigMap", "Role", "RoleBinding"}
                missing = expected - set(kinds)
                if missing:
                    raise SystemExit(f"all-features render lacks {sorted(missing)}")
                promtool(objects, directory)
    print("chart values schema:")
    expect_refused({"replicaCount": 2, "leaderElection": {"enabled": False}}, "2 replicas without leader election")
    expect_refused({"controller": {"protectedPrincipals": ["not-an-arn"]}}, "a protected principal that is not an ARN")
    expect_refused({"controller": {"awsBackend": "real"}}, "an unknown AWS backend")
    expect_refused({"serviceAccount": {"irsaRoleArn": "arn:aws:iam::1:role/x"}}, "a malformed IRSA role ARN")
    expect_refused({"unknownKey": 1}, "an unknown top-level key")
    print("chart-check: ok")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    template = sub.add_parser("template", help="print the rendered manifests")
    template.add_argument("-f", "--values", action="append", default=[])
    template.add_argument("--set-json", action="append", default=[], help='JSON object merged into the values, e.g. {"replicaCount":1}')
    template.add_argument("--name", default=RELEASE)
    template.add_argument("--namespace", default=NAMESPACE)
    lint_parser = sub.add_parser("lint", help="helm lint --strict")
    lint_parser.add_argument("-f", "--values", action="append", default=[])
    sub.add_parser("check", help="everything make chart-check runs")
    args = parser.parse_args()
    if args.command == "template":
        values = load_values(args.values)
        for extra in args.set_json:
            values = deep_merge(values, json.loads(extra))
        sys.stdout.write(to_yaml(manifests(render(values, args.name, args.namespace))))
    elif args.command == "lint":
        run_lint(load_values(args.values), "lint")
        print("lint: ok")
    else:
        check()


if __name__ == "__main__":
    main()
