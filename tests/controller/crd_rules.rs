//! Every schema constraint and CEL rule of both CRDs rejects a bad object, checked with the
//! same validator `simulate` and the controller use (OpenAPI schema + kube's CEL engine).
//! A final test makes sure no CEL rule in the CRDs is left without a case here.

use autoguardrails::controller::crd::validate;
use serde_json::{Value, json};

fn valid_policy() -> Value {
    json!({
        "apiVersion": "autoguardrails.io/v1alpha1",
        "kind": "GuardrailPolicy",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {
            "mode": "Manual",
            "match": {"sources": ["CostAnomaly"], "accountIds": ["111111111111"], "minImpactUsd": 200},
            "scope": {"principals": [{"kind": "IamRole", "arn": "arn:aws:iam::111111111111:role/dev-ci"}],
                      "regions": ["us-east-1"]},
            "deny": {"actions": ["ec2:RunInstances", "ec2:Create*"],
                     "conditions": [{"operator": "StringLike", "key": "ec2:InstanceType", "values": ["p4d.*"]},
                                    {"operator": "StringNotEquals", "key": "aws:ResourceTag/team", "values": ["ml"]}]},
            "quarantine": {"ttl": "4h", "approvalTimeout": "1h", "cooldown": "30m"},
            "exceptions": {"principals": [], "accounts": ["222222222222"], "windows": [
                {"start": "2026-12-01T00:00:00Z", "end": "2026-12-02T00:00:00Z", "reason": "load test"}],
                "weekly": [{"days": ["Mon", "Fri"], "start": "08:00", "end": "24:00",
                            "timeZone": "Europe/Berlin", "reason": "on shift"}]},
            "notify": {"slack": {"webhookSecretRef": {"name": "s", "key": "url"}, "channelHint": "#c"}}
        }
    })
}

fn valid_quarantine() -> Value {
    json!({
        "apiVersion": "autoguardrails.io/v1alpha1",
        "kind": "Quarantine",
        "metadata": {"name": "q", "namespace": "default"},
        "spec": {
            "policyRef": {"name": "p"},
            "targets": [{"kind": "IamUser", "arn": "arn:aws:iam::111111111111:user/exporter"}],
            "deny": {"actions": ["s3:PutObject"]},
            "mode": "Auto",
            "ttl": "2h"
        }
    })
}

/// (description, JSON pointer to replace, new value, expected field, expected message part, CEL rule exercised)
type Case = (
    &'static str,
    &'static str,
    Value,
    &'static str,
    &'static str,
    Option<&'static str>,
);

fn policy_cases() -> Vec<Case> {
    vec![
        (
            "mode outside the enum",
            "/spec/mode",
            json!("Enforce"),
            "spec.mode",
            "Unsupported value",
            None,
        ),
        (
            "role kind with a user ARN",
            "/spec/scope/principals/0",
            json!({"kind": "IamRole", "arn": "arn:aws:iam::111111111111:user/bob"}),
            "spec.scope.principals[0].arn",
            "role ARN for kind IamRole",
            Some("self.kind == 'IamRole'"),
        ),
        (
            "user kind with a role ARN",
            "/spec/scope/principals/0",
            json!({"kind": "IamUser", "arn": "arn:aws:iam::111111111111:role/ci"}),
            "spec.scope.principals[0].arn",
            "user ARN for kind IamUser",
            Some("self.kind == 'IamRole'"),
        ),
        (
            "ARN that is not an IAM principal",
            "/spec/scope/principals/0/arn",
            json!("arn:aws:s3:::bucket"),
            "spec.scope.principals[0].arn",
            "should match",
            None,
        ),
        (
            "ARN with an 11-digit account",
            "/spec/scope/principals/0/arn",
            json!("arn:aws:iam::11111111111:role/ci"),
            "spec.scope.principals[0].arn",
            "should match",
            None,
        ),
        (
            "no principal",
            "/spec/scope/principals",
            json!([]),
            "spec.scope",
            "scope needs at least one of principals and selectors",
            Some("(has(self.principals) && size(self.principals) > 0)"),
        ),
        (
            "a selector with both accounts and an OU",
            "/spec/scope/selectors",
            json!([{"accounts": ["111111111111"], "organizationalUnit": "ou-ab12-cdef3456", "pathPrefix": "/ml/"}]),
            "spec.scope.selectors[0]",
            "set exactly one of accounts and organizationalUnit",
            Some("(has(self.accounts) && size(self.accounts) > 0) != has(self.organizationalUnit)"),
        ),
        (
            "a selector with neither accounts nor an OU",
            "/spec/scope/selectors",
            json!([{"pathPrefix": "/ml/"}]),
            "spec.scope.selectors[0]",
            "set exactly one of accounts and organizationalUnit",
            None,
        ),
        (
            "a selector that selects a whole account",
            "/spec/scope/selectors",
            json!([{"accounts": ["111111111111"], "kinds": ["IamRole", "IamUser"]}]),
            "spec.scope.selectors[0]",
            "a selector needs at least one of pathPrefix, namePattern and tags",
            Some("has(self.pathPrefix) || has(self.namePattern)"),
        ),
        (
            "a path prefix not starting with a slash",
            "/spec/scope/selectors",
            json!([{"accounts": ["111111111111"], "pathPrefix": "ml/"}]),
            "spec.scope.selectors[0].pathPrefix",
            "should match",
            None,
        ),
        (
            "a name pattern with a regex character",
            "/spec/scope/selectors",
            json!([{"accounts": ["111111111111"], "namePattern": "ml-(a|b)"}]),
            "spec.scope.selectors[0].namePattern",
            "should match",
            None,
        ),
        (
            "an OU id of the wrong shape",
            "/spec/scope/selectors",
            json!([{"organizationalUnit": "ml-team", "pathPrefix": "/ml/"}]),
            "spec.scope.selectors[0].organizationalUnit",
            "should match",
            None,
        ),
        (
            "maxTargets above the Quarantine's target limit",
            "/spec/scope/maxTargets",
            json!(500),
            "spec.scope.maxTargets",
            "100",
            None,
        ),
        (
            "no deny action",
            "/spec/deny/actions",
            json!([]),
            "spec.deny.actions",
            "at least 1",
            None,
        ),
        (
            "action without service prefix",
            "/spec/deny/actions/0",
            json!("RunInstances"),
            "spec.deny.actions[0]",
            "should match",
            None,
        ),
        (
            "action with a space",
            "/spec/deny/actions/0",
            json!("ec2:Run Instances"),
            "spec.deny.actions[0]",
            "should match",
            None,
        ),
        (
            "account id of 11 digits",
            "/spec/match/accountIds/0",
            json!("12345678901"),
            "spec.match.accountIds[0]",
            "should match",
            None,
        ),
        (
            "account id with letters",
            "/spec/match/accountIds/0",
            json!("12345678901a"),
            "spec.match.accountIds[0]",
            "should match",
            None,
        ),
        (
            "no source",
            "/spec/match/sources",
            json!([]),
            "spec.match.sources",
            "at least 1",
            None,
        ),
        (
            "Manual as a policy source",
            "/spec/match/sources",
            json!(["Manual"]),
            "spec.match.sources",
            "sources may list CostAnomaly, Budget and Velocity",
            Some("self.all(s, s == 'CostAnomaly' || s == 'Budget' || s == 'Velocity')"),
        ),
        (
            "negative minimum impact",
            "/spec/match/minImpactUsd",
            json!(-1),
            "spec.match.minImpactUsd",
            "greater than or equal to 0",
            None,
        ),
        (
            "ttl of zero",
            "/spec/quarantine/ttl",
            json!("0s"),
            "spec.quarantine.ttl",
            "ttl must be more than 0s and at most 168h",
            Some("duration(self) > duration('0s') && duration(self) <= duration('168h')"),
        ),
        (
            "ttl over 7 days",
            "/spec/quarantine/ttl",
            json!("169h"),
            "spec.quarantine.ttl",
            "ttl must be more than 0s and at most 168h",
            Some("duration(self) > duration('0s') && duration(self) <= duration('168h')"),
        ),
        (
            "ttl in days (not a Go duration)",
            "/spec/quarantine/ttl",
            json!("7d"),
            "spec.quarantine.ttl",
            "should match",
            None,
        ),
        (
            "ttl that is not a duration",
            "/spec/quarantine/ttl",
            json!("four hours"),
            "spec.quarantine.ttl",
            "should match",
            None,
        ),
        (
            "approval timeout over 7 days",
            "/spec/quarantine/approvalTimeout",
            json!("200h"),
            "spec.quarantine.approvalTimeout",
            "approvalTimeout must be more than 0s",
            Some("duration(self) > duration('0s') && duration(self) <= duration('168h')"),
        ),
        (
            "cooldown over 7 days",
            "/spec/quarantine/cooldown",
            json!("170h"),
            "spec.quarantine.cooldown",
            "cooldown must be at most 168h",
            Some("duration(self) >= duration('0s') && duration(self) <= duration('168h')"),
        ),
        (
            "exception window ending before it starts",
            "/spec/exceptions/windows/0",
            json!({"start": "2026-12-02T00:00:00Z", "end": "2026-12-01T00:00:00Z"}),
            "spec.exceptions.windows[0]",
            "start must be before end",
            Some("self.start < self.end"),
        ),
        (
            "exception window of zero length",
            "/spec/exceptions/windows/0",
            json!({"start": "2026-12-02T00:00:00Z", "end": "2026-12-02T00:00:00Z"}),
            "spec.exceptions.windows[0]",
            "start must be before end",
            Some("self.start < self.end"),
        ),
        (
            "exception window with a bad time",
            "/spec/exceptions/windows/0/start",
            json!("tomorrow"),
            "spec.exceptions.windows[0].start",
            "RFC 3339",
            None,
        ),
        (
            "deny condition operator and key listed twice",
            "/spec/deny/conditions/1",
            json!({"operator": "StringLike", "key": "ec2:InstanceType", "values": ["g5.*"]}),
            "spec.deny.conditions",
            "each condition operator and key may appear once",
            Some("self.all(c, self.exists_one(d, d.operator == c.operator && d.key == c.key))"),
        ),
        (
            "deny condition with an unknown operator",
            "/spec/deny/conditions/0/operator",
            json!("StringLikeIfExists"),
            "spec.deny.conditions[0].operator",
            "Unsupported value",
            None,
        ),
        (
            "deny condition key without a service prefix",
            "/spec/deny/conditions/0/key",
            json!("InstanceType"),
            "spec.deny.conditions[0].key",
            "should match",
            None,
        ),
        (
            "deny condition without values",
            "/spec/deny/conditions/0/values",
            json!([]),
            "spec.deny.conditions[0].values",
            "at least 1",
            None,
        ),
        (
            "excepted account that is not 12 digits",
            "/spec/exceptions/accounts/0",
            json!("22222222222"),
            "spec.exceptions.accounts[0]",
            "should match",
            None,
        ),
        (
            "weekly window ending before it starts",
            "/spec/exceptions/weekly/0/end",
            json!("07:59"),
            "spec.exceptions.weekly[0]",
            "weekly window end must be after start",
            Some("self.start < self.end"),
        ),
        (
            "weekly window of zero length",
            "/spec/exceptions/weekly/0/end",
            json!("08:00"),
            "spec.exceptions.weekly[0]",
            "weekly window end must be after start",
            Some("self.start < self.end"),
        ),
        (
            "weekly window with a bad day name",
            "/spec/exceptions/weekly/0/days/1",
            json!("Friday"),
            "spec.exceptions.weekly[0].days[1]",
            "Unsupported value",
            None,
        ),
        (
            "weekly window without days",
            "/spec/exceptions/weekly/0/days",
            json!([]),
            "spec.exceptions.weekly[0].days",
            "at least 1",
            None,
        ),
        (
            "weekly window with a time that is not HH:MM",
            "/spec/exceptions/weekly/0/start",
            json!("8:00"),
            "spec.exceptions.weekly[0].start",
            "should match",
            None,
        ),
        (
            "weekly window starting at 24:00",
            "/spec/exceptions/weekly/0/start",
            json!("24:00"),
            "spec.exceptions.weekly[0].start",
            "should match",
            None,
        ),
        (
            "weekly window with a time zone that is not a zone name",
            "/spec/exceptions/weekly/0/timeZone",
            json!("+02:00"),
            "spec.exceptions.weekly[0].timeZone",
            "should match",
            None,
        ),
        (
            "slack with both webhook sources",
            "/spec/notify/slack",
            json!({"webhookSecretRef": {"name": "s", "key": "url"}, "webhookSsmParameter": "/x"}),
            "spec.notify.slack",
            "at most one of webhookSecretRef and webhookSsmParameter",
            Some("!(has(self.webhookSecretRef) && has(self.webhookSsmParameter))"),
        ),
        (
            "region that is not a region",
            "/spec/scope/regions/0",
            json!("Tokyo"),
            "spec.scope.regions[0]",
            "should match",
            None,
        ),
        (
            "unknown field",
            "/spec/scope/roles",
            json!(["x"]),
            "spec.scope.roles",
            "unknown field",
            None,
        ),
        (
            "wrong type",
            "/spec/match/minImpactUsd",
            json!("200"),
            "spec.match.minImpactUsd",
            "must be of type number",
            None,
        ),
        (
            "an action listed twice",
            "/spec/actions",
            json!(["attachDeny", "setPermissionsBoundary", "attachDeny"]),
            "spec.actions",
            "actions may not repeat",
            Some("self.all(a, self.exists_one(b, b == a))"),
        ),
        (
            "notifyOnly with an enforcing action",
            "/spec/actions",
            json!(["notifyOnly", "attachDeny"]),
            "spec.actions",
            "notifyOnly cannot be combined",
            Some("!self.exists(a, a == 'notifyOnly') || size(self) == 1"),
        ),
        (
            "an unknown action",
            "/spec/actions",
            json!(["detachEverything"]),
            "spec.actions[0]",
            "Unsupported value",
            None,
        ),
        (
            "no action at all",
            "/spec/actions",
            json!([]),
            "spec.actions",
            "at least 1",
            None,
        ),
    ]
}

fn quarantine_cases() -> Vec<Case> {
    vec![
        (
            "quarantine ttl over 7 days",
            "/spec/ttl",
            json!("200h"),
            "spec.ttl",
            "ttl must be more than 0s",
            Some("duration(self) > duration('0s') && duration(self) <= duration('168h')"),
        ),
        (
            "quarantine without targets",
            "/spec/targets",
            json!([]),
            "spec.targets",
            "at least 1",
            None,
        ),
        (
            "quarantine target kind mismatch",
            "/spec/targets/0",
            json!({"kind": "IamUser", "arn": "arn:aws:iam::111111111111:role/ci"}),
            "spec.targets[0].arn",
            "user ARN for kind IamUser",
            Some("self.kind == 'IamRole'"),
        ),
        (
            "quarantine approval timeout of zero",
            "/spec/approvalTimeout",
            json!("0s"),
            "spec.approvalTimeout",
            "approvalTimeout must be more than 0s",
            Some("duration(self) > duration('0s') && duration(self) <= duration('168h')"),
        ),
        (
            "quarantine without policyRef",
            "/spec/policyRef",
            Value::Null,
            "spec.policyRef",
            "must not be null",
            None,
        ),
        (
            "quarantine with notifyOnly",
            "/spec/actions",
            json!(["notifyOnly"]),
            "spec.actions",
            "notifyOnly never creates one",
            Some("!self.exists(a, a == 'notifyOnly')"),
        ),
        (
            "quarantine with a repeated action",
            "/spec/actions",
            json!(["setPermissionsBoundary", "setPermissionsBoundary"]),
            "spec.actions",
            "actions may not repeat",
            Some("self.all(a, self.exists_one(b, b == a))"),
        ),
    ]
}

#[test]
fn every_action_list_a_policy_may_hold_is_accepted() {
    for actions in [
        json!(["attachDeny"]),
        json!(["setPermissionsBoundary"]),
        json!(["attachDeny", "setPermissionsBoundary"]),
        json!(["notifyOnly"]),
    ] {
        let mut policy = valid_policy();
        set(&mut policy, "/spec/actions", actions.clone());
        let errors = validate::guardrail_policy(&policy);
        assert!(errors.is_empty(), "{actions}: {errors:?}");
    }
    let mut quarantine = valid_quarantine();
    set(
        &mut quarantine,
        "/spec/actions",
        json!(["attachDeny", "setPermissionsBoundary"]),
    );
    assert!(validate::quarantine(&quarantine).is_empty());
}

#[test]
fn slack_without_a_webhook_is_accepted_for_a_controller_posting_with_its_bot() {
    // Decision 238: whether the controller can post it is the controller's check (Ready), not the
    // schema's; the schema only refuses two webhooks.
    for slack in [
        json!({"channelHint": "C0123ABCD"}),
        json!({}),
        json!({"webhookSsmParameter": "/autoguardrails/slack", "channelHint": "#c"}),
    ] {
        let mut policy = valid_policy();
        set(&mut policy, "/spec/notify/slack", slack.clone());
        let errors = validate::guardrail_policy(&policy);
        assert!(errors.is_empty(), "{slack}: {errors:?}");
        let mut quarantine = valid_quarantine();
        set(
            &mut quarantine,
            "/spec/notify",
            json!({"slack": slack.clone()}),
        );
        let errors = validate::quarantine(&quarantine);
        assert!(errors.is_empty(), "{slack}: {errors:?}");
    }
}

fn set(object: &mut Value, pointer: &str, value: Value) {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer has a parent");
    let parent = object.pointer_mut(parent).expect("parent exists");
    match parent {
        Value::Array(items) => items[key.parse::<usize>().expect("index")] = value,
        Value::Object(map) => {
            map.insert(key.to_string(), value);
        }
        _ => panic!("cannot set {pointer}"),
    }
}

fn run(cases: Vec<Case>, valid: fn() -> Value, check: fn(&Value) -> Vec<validate::FieldError>) {
    assert!(
        check(&valid()).is_empty(),
        "the valid object is rejected: {:?}",
        check(&valid())
    );
    for (description, pointer, value, field, message, _) in cases {
        let mut object = valid();
        set(&mut object, pointer, value);
        let errors = check(&object);
        assert!(
            errors
                .iter()
                .any(|e| e.field == field && e.message.contains(message)),
            "{description}: expected an error on {field} containing {message:?}, got {errors:?}"
        );
    }
}

#[test]
fn policy_schema_and_cel_rules_reject_bad_objects() {
    run(policy_cases(), valid_policy, validate::guardrail_policy);
}

#[test]
fn quarantine_schema_and_cel_rules_reject_bad_objects() {
    run(quarantine_cases(), valid_quarantine, validate::quarantine);
}

#[test]
fn every_cel_rule_in_the_crds_has_a_rejection_case() {
    fn rules(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::Array(list)) = map.get("x-kubernetes-validations") {
                    out.extend(
                        list.iter()
                            .filter_map(|r| r["rule"].as_str().map(str::to_string)),
                    );
                }
                map.values().for_each(|v| rules(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| rules(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    for crd in autoguardrails::controller::crd::all_crds() {
        rules(
            &serde_json::to_value(&crd).expect("CRD serializes"),
            &mut all,
        );
    }
    assert!(
        all.len() >= 8,
        "expected the CRDs to carry CEL rules, found {all:?}"
    );
    let covered: Vec<&str> = policy_cases()
        .into_iter()
        .chain(quarantine_cases())
        .filter_map(|c| c.5)
        .collect();
    for rule in all {
        assert!(
            covered.iter().any(|c| rule.starts_with(c)),
            "CEL rule {rule:?} has no rejection case in tests/crd_rules.rs"
        );
    }
}
