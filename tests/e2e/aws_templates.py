"""Helpers for tests/e2e/aws_templates.rs, run with the repository venv (scripts/test-deps.sh).

    aws_templates.py cfn FILE...                      the templates as JSON (cfn-lint's decoder)
    aws_templates.py hcl DIR                          every *.tf under DIR as JSON (python-hcl2)
    aws_templates.py patterns TEMPLATE EVENT...       which events each EventBridge rule matches
    aws_templates.py deploy URL NAME TEMPLATE PARAMS  CreateStack on the moto server at URL, then
                                                      what was created (roles with their policies,
                                                      topics with attributes and subscriptions,
                                                      rules, keys) as JSON

Prints one JSON document on stdout; the Rust test asserts on it.
"""
import json
import os
import sys
import time
import warnings


def cfn(files):
    from cfnlint.decode import decode

    out = {}
    for path in files:
        template, matches = decode(path)
        if matches:
            raise SystemExit(f"{path}: {[str(m) for m in matches]}")
        out[os.path.basename(path)] = template
    return out


def unquote(value):
    """python-hcl2 keeps string quotes and marks blocks; the test wants plain values."""
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def hcl(directory):
    import hcl2

    out = {}
    for base, _dirs, files in os.walk(directory):
        for name in sorted(files):
            if name.endswith(".tf"):
                path = os.path.join(base, name)
                with open(path) as handle:
                    out[os.path.relpath(path, directory)] = unquote(hcl2.load(handle))
    return out


def patterns(template_path, event_paths):
    """For every AWS::Events::Rule of the template, which of the events match its pattern, by
    moto's EventBridge pattern matcher (its TestEventPattern API answers nothing)."""
    from moto.events.models import EventPattern

    template = cfn([template_path])[os.path.basename(template_path)]
    out = {}
    for logical, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Events::Rule":
            continue
        pattern = EventPattern.load(json.dumps(resource["Properties"]["EventPattern"]))
        out[logical] = {}
        for path in event_paths:
            with open(path) as handle:
                event = json.load(handle)
            out[logical][os.path.basename(path)] = pattern.matches_event(event)
    return out


def as_json(value):
    return json.loads(value) if isinstance(value, str) else value


def deploy(url, name, template_path, params_path):
    import boto3

    warnings.simplefilter("ignore")
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    client = lambda service: session.client(service, endpoint_url=url)  # noqa: E731
    cf = client("cloudformation")
    with open(template_path) as handle:
        body = handle.read()
    with open(params_path) as handle:
        params = json.load(handle)
    cf.create_stack(
        StackName=name,
        TemplateBody=body,
        Parameters=params,
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    deadline = time.time() + 60
    while True:
        stack = cf.describe_stacks(StackName=name)["Stacks"][0]
        if not stack["StackStatus"].endswith("IN_PROGRESS") or time.time() > deadline:
            break
        time.sleep(0.2)
    resources = cf.list_stack_resources(StackName=name)["StackResourceSummaries"]
    iam = client("iam")
    sns = client("sns")
    events = client("events")
    result = {
        "status": stack["StackStatus"],
        "reason": stack.get("StackStatusReason", ""),
        "outputs": {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])},
        "resources": {r["LogicalResourceId"]: r["ResourceType"] for r in resources},
        "roles": {},
        "topics": {},
        "rules": {},
        "keys": {},
    }
    for r in resources:
        kind, physical = r["ResourceType"], r.get("PhysicalResourceId", "")
        if kind == "AWS::IAM::Role":
            role = iam.get_role(RoleName=physical)["Role"]
            trust = as_json(role["AssumeRolePolicyDocument"])
            inline = {}
            for policy in iam.list_role_policies(RoleName=physical)["PolicyNames"]:
                document = iam.get_role_policy(RoleName=physical, PolicyName=policy)["PolicyDocument"]
                inline[policy] = as_json(document)
            result["roles"][r["LogicalResourceId"]] = {
                "name": physical,
                "arn": role["Arn"],
                "trust": trust,
                "policies": inline,
            }
        elif kind == "AWS::SNS::Topic":
            attributes = sns.get_topic_attributes(TopicArn=physical)["Attributes"]
            subscriptions = sns.list_subscriptions_by_topic(TopicArn=physical)["Subscriptions"]
            result["topics"][r["LogicalResourceId"]] = {
                "arn": physical,
                "policy": as_json(attributes.get("Policy", "{}")),
                "kms": attributes.get("KmsMasterKeyId", ""),
                "subscriptions": [
                    {"protocol": s["Protocol"], "endpoint": s["Endpoint"]} for s in subscriptions
                ],
            }
        elif kind == "AWS::Events::Rule":
            rule_name = physical.split("/")[-1]
            rule = events.describe_rule(Name=rule_name)
            result["rules"][r["LogicalResourceId"]] = {
                "pattern": as_json(rule.get("EventPattern", "{}")),
            }
        elif kind == "AWS::KMS::Key":
            kms = client("kms")
            policy = kms.get_key_policy(KeyId=physical, PolicyName="default")["Policy"]
            result["keys"][r["LogicalResourceId"]] = {"policy": as_json(policy)}
    return result


def main():
    command = sys.argv[1]
    if command == "cfn":
        out = cfn(sys.argv[2:])
    elif command == "hcl":
        out = hcl(sys.argv[2])
    elif command == "patterns":
        out = patterns(sys.argv[2], sys.argv[3:])
    elif command == "deploy":
        out = deploy(*sys.argv[2:6])
    else:
        raise SystemExit(f"unknown command {command}")
    json.dump(out, sys.stdout, default=str)


if __name__ == "__main__":
    main()
