//! Policy evaluation: table tests over the example policies and signal fixtures, and proptest
//! properties over random policies, signals, existing quarantines and clocks.

use autoguardrails::controller::crd::{
    GuardrailPolicy, Mode, Phase, Principal, PrincipalKind, Quarantine, QuarantineStatus,
    SignalSource,
};
use autoguardrails::controller::policy::{self, ControllerSettings, Decision, Input};
use autoguardrails::controller::signal::CostSignal;
use autoguardrails::controller::simulate::{load_policy, load_signal};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use proptest::prelude::*;

fn fixture_policy(name: &str) -> GuardrailPolicy {
    let path = format!("{}/policies/{name}", env!("CARGO_MANIFEST_DIR"));
    load_policy(&path, &std::fs::read_to_string(&path).expect("fixture")).expect("valid fixture")
}

fn fixture_signal(name: &str) -> CostSignal {
    let path = format!("{}/policies/signals/{name}", env!("CARGO_MANIFEST_DIR"));
    load_signal(&path, &std::fs::read_to_string(&path).expect("fixture")).expect("valid fixture")
}

fn at(text: &str) -> jiff::Timestamp {
    text.parse().expect("timestamp")
}

fn evaluate(
    p: &GuardrailPolicy,
    s: &CostSignal,
    existing: &[Quarantine],
    settings: &ControllerSettings,
    now: &str,
) -> Decision {
    policy::evaluate(Input {
        policy: p,
        signal: s,
        existing,
        settings,
        now: at(now),
        resolution: None,
    })
}

fn with_phase(mut q: Quarantine, phase: Phase, released_at: Option<&str>) -> Quarantine {
    q.status = Some(QuarantineStatus {
        phase: Some(phase),
        released_at: released_at.map(|t| Time(at(t))),
        ..QuarantineStatus::default()
    });
    q
}

const NOW: &str = "2026-11-20T10:00:00Z";

#[test]
fn matched_quarantine_carries_signal_scope_and_deny() {
    let p = fixture_policy("sandbox-auto-regional.yaml");
    let s = fixture_signal("anomaly-sandbox-nat-450.yaml");
    let d = evaluate(&p, &s, &[], &ControllerSettings::default(), NOW);
    assert_eq!(d.reason, policy::MATCHED);
    let q = d.quarantine.expect("quarantine");
    assert_eq!(
        q.metadata.name.as_deref(),
        Some(policy::name::quarantine_name("sandbox-runaway", &s.id).as_str())
    );
    assert_eq!(q.metadata.namespace.as_deref(), Some("autoguardrails"));
    assert_eq!(q.spec.mode, Mode::Auto);
    assert_eq!(q.spec.ttl, "2h");
    assert_eq!(q.spec.targets.len(), 2);
    assert_eq!(q.spec.deny.regions, vec!["us-east-1", "us-west-2"]);
    assert_eq!(q.spec.deny.actions, p.spec.deny.actions);
    let signal = q.spec.signal.expect("signal record");
    assert_eq!(signal.id, s.id);
    assert_eq!(signal.impact_usd, 450.0);
    assert!(
        q.spec.approval_timeout.is_none(),
        "approvalTimeout only for Manual"
    );
}

#[test]
fn manual_mode_copies_the_approval_timeout_and_exceptions_drop_targets() {
    let p = fixture_policy("production-manual-window.yaml");
    let s = fixture_signal("anomaly-prod-sagemaker-5200.yaml");
    let d = evaluate(&p, &s, &[], &ControllerSettings::default(), NOW);
    let q = d.quarantine.expect("quarantine");
    assert_eq!(q.spec.mode, Mode::Manual);
    assert_eq!(q.spec.approval_timeout.as_deref(), Some("2h"));
    assert_eq!(q.spec.targets.len(), 1, "break-glass is excepted");
    assert!(
        d.message.contains("break-glass is excepted"),
        "{}",
        d.message
    );
}

#[test]
fn exception_window_is_half_open() {
    let p = fixture_policy("production-manual-window.yaml");
    let s = fixture_signal("anomaly-prod-sagemaker-5200.yaml");
    let settings = ControllerSettings::default();
    assert_eq!(
        evaluate(&p, &s, &[], &settings, "2026-11-30T23:59:59Z").reason,
        policy::MATCHED
    );
    assert_eq!(
        evaluate(&p, &s, &[], &settings, "2026-12-01T00:00:00Z").reason,
        policy::EXCEPTION_WINDOW
    );
    assert_eq!(
        evaluate(&p, &s, &[], &settings, "2026-12-01T23:59:59Z").reason,
        policy::EXCEPTION_WINDOW
    );
    assert_eq!(
        evaluate(&p, &s, &[], &settings, "2026-12-02T00:00:00Z").reason,
        policy::MATCHED
    );
}

#[test]
fn weekly_windows_and_excepted_accounts() {
    let p = fixture_policy("business-hours-berlin.yaml");
    let s = fixture_signal("anomaly-dev-ec2-912.yaml");
    let settings = ControllerSettings::default();
    // Friday 2026-11-20, 11:00 in Berlin: inside business hours.
    let d = evaluate(&p, &s, &[], &settings, "2026-11-20T10:00:00Z");
    assert_eq!(d.reason, policy::EXCEPTION_WINDOW);
    assert!(
        d.message
            .contains("Mon,Tue,Wed,Thu,Fri 08:00-20:00 Europe/Berlin")
            && d.message
                .contains("2026-11-20T08:00:00+01:00[Europe/Berlin]")
            && d.message.contains("people on shift"),
        "{}",
        d.message
    );
    // Friday 20:00 in Berlin: matched; the other account's role is excepted by account.
    let d = evaluate(&p, &s, &[], &settings, "2026-11-20T19:00:00Z");
    assert_eq!(d.reason, policy::MATCHED);
    let q = d.quarantine.expect("quarantine");
    assert_eq!(q.spec.targets.len(), 1);
    assert_eq!(
        q.spec.targets[0].arn,
        "arn:aws:iam::111111111111:role/dev-ci"
    );
    assert_eq!(q.spec.deny.conditions, p.spec.deny.conditions);
    assert_eq!(q.spec.deny.conditions.len(), 1);
    assert!(
        d.message
            .contains("shared-runner is in account 444444444444, excepted by the policy"),
        "{}",
        d.message
    );
    // Both DST changes of 2026 around the Sunday batch window (02:30-06:00 Berlin).
    for (now, reason) in [
        ("2026-03-29T00:59:59Z", policy::MATCHED), // 01:59:59 CET, just before the jump
        ("2026-03-29T01:00:00Z", policy::EXCEPTION_WINDOW), // 03:00 CEST: 02:30 never happened
        ("2026-03-29T03:59:59Z", policy::EXCEPTION_WINDOW),
        ("2026-03-29T04:00:00Z", policy::MATCHED), // 06:00 CEST
        ("2026-10-25T00:29:59Z", policy::MATCHED), // 02:29:59 CEST
        ("2026-10-25T00:30:00Z", policy::EXCEPTION_WINDOW), // the first 02:30
        ("2026-10-25T01:10:00Z", policy::EXCEPTION_WINDOW), // 02:10 CET, the hour again
        ("2026-10-25T04:59:59Z", policy::EXCEPTION_WINDOW),
        ("2026-10-25T05:00:00Z", policy::MATCHED), // 06:00 CET
    ] {
        assert_eq!(
            evaluate(&p, &s, &[], &settings, now).reason,
            reason,
            "{now}"
        );
    }

    // Every scoped principal excepted by account: nothing is eligible.
    let mut all_excepted = p.clone();
    all_excepted.spec.exceptions.accounts = vec!["111111111111".into(), "444444444444".into()];
    let d = evaluate(&all_excepted, &s, &[], &settings, "2026-11-21T10:00:00Z");
    assert_eq!(d.reason, policy::NO_ELIGIBLE_TARGETS, "{}", d.message);

    // A window that cannot be read makes the policy invalid; it never lets the signal through
    // as if there were no exception, nor counts as one.
    let mut unknown_zone = p.clone();
    unknown_zone.spec.exceptions.weekly[1].time_zone = "Europe/Atlantis".into();
    let d = evaluate(&unknown_zone, &s, &[], &settings, "2026-11-21T10:00:00Z");
    assert_eq!(d.reason, policy::INVALID_POLICY);
    assert!(
        d.message
            .contains("exceptions.weekly[1]: unknown time zone \"Europe/Atlantis\""),
        "{}",
        d.message
    );
    let mut bad_account = p.clone();
    bad_account.spec.exceptions.accounts = vec!["4444".into()];
    let d = evaluate(&bad_account, &s, &[], &settings, "2026-11-21T10:00:00Z");
    assert_eq!(d.reason, policy::INVALID_POLICY);
    assert!(d.message.contains("12-digit"), "{}", d.message);
}

#[test]
fn simulate_refuses_an_unknown_time_zone_with_the_field() {
    let path = format!(
        "{}/policies/business-hours-berlin.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path)
        .expect("fixture")
        .replace("timeZone: Europe/Berlin", "timeZone: Europe/Berln");
    let error = load_policy(&path, &text).expect_err("unknown zone refused");
    let shown = error.to_string();
    assert!(
        shown.contains("spec.exceptions.weekly[0]")
            && shown.contains("unknown time zone \"Europe/Berln\""),
        "{shown}"
    );
}

#[test]
fn services_and_budget_names_filter() {
    let mut p = fixture_policy("ci-role-dryrun.yaml");
    let mut s = fixture_signal("anomaly-dev-ec2-912.yaml");
    let settings = ControllerSettings::default();
    s.service = Some("Amazon Simple Storage Service".into());
    assert_eq!(
        evaluate(&p, &s, &[], &settings, NOW).reason,
        policy::SERVICE_NOT_MATCHED
    );
    s.service = None;
    assert_eq!(
        evaluate(&p, &s, &[], &settings, NOW).reason,
        policy::SERVICE_NOT_MATCHED
    );
    p.spec.matcher.services.clear();
    assert_eq!(
        evaluate(&p, &s, &[], &settings, NOW).reason,
        policy::MATCHED
    );

    let p = fixture_policy("iam-user-budget.yaml");
    let mut s = fixture_signal("budget-data-export-actual.yaml");
    assert_eq!(
        evaluate(&p, &s, &[], &settings, NOW).reason,
        policy::MATCHED
    );
    s.budget_name = Some("other-budget".into());
    assert_eq!(
        evaluate(&p, &s, &[], &settings, NOW).reason,
        policy::BUDGET_NOT_MATCHED
    );
}

#[test]
fn repeated_signal_is_a_no_op_and_live_quarantines_hold_targets() {
    let p = fixture_policy("ci-role-dryrun.yaml");
    let s = fixture_signal("anomaly-dev-ec2-912.yaml");
    let settings = ControllerSettings::default();
    let first = evaluate(&p, &s, &[], &settings, NOW)
        .quarantine
        .expect("created");
    let again = evaluate(&p, &s, std::slice::from_ref(&first), &settings, NOW);
    assert_eq!(again.reason, policy::ALREADY_QUARANTINED);
    assert!(again.quarantine.is_none());

    // A different incident while the first still holds the role: nothing new.
    let mut other = s.clone();
    other.id = "second-incident".into();
    let active = with_phase(first.clone(), Phase::Active, None);
    let d = evaluate(&p, &other, &[active], &settings, NOW);
    assert_eq!(d.reason, policy::ALREADY_ENFORCED, "{}", d.message);
    // A DryRun plan does not hold a target.
    let dry = with_phase(first.clone(), Phase::DryRun, None);
    assert_eq!(
        evaluate(&p, &other, &[dry], &settings, NOW).reason,
        policy::MATCHED
    );
    // Nor does a dry run the controller has not reconciled yet (no phase): the outcome of a
    // second incident must not depend on how quickly the first one got its status.
    assert!(first.status.as_ref().and_then(|s| s.phase).is_none());
    assert_eq!(
        first.spec.mode,
        autoguardrails::controller::crd::Mode::DryRun
    );
    assert_eq!(
        evaluate(&p, &other, std::slice::from_ref(&first), &settings, NOW).reason,
        policy::MATCHED
    );
}

#[test]
fn cooldown_after_release() {
    let p = fixture_policy("ci-role-dryrun.yaml"); // cooldown 30m
    let s = fixture_signal("anomaly-dev-ec2-912.yaml");
    let settings = ControllerSettings::default();
    let first = evaluate(&p, &s, &[], &settings, NOW)
        .quarantine
        .expect("created");
    let mut other = s.clone();
    other.id = "after-release".into();
    let released = with_phase(first, Phase::Released, Some("2026-11-20T09:45:00Z"));
    let d = evaluate(
        &p,
        &other,
        std::slice::from_ref(&released),
        &settings,
        "2026-11-20T10:00:00Z",
    );
    assert_eq!(d.reason, policy::COOLING_DOWN, "{}", d.message);
    let d = evaluate(
        &p,
        &other,
        std::slice::from_ref(&released),
        &settings,
        "2026-11-20T10:15:00Z",
    );
    assert_eq!(d.reason, policy::MATCHED, "{}", d.message);
}

#[test]
fn protected_principals_and_kill_switch() {
    let p = fixture_policy("iam-user-budget.yaml");
    let s = fixture_signal("budget-data-export-actual.yaml");
    let protected = ControllerSettings {
        protected_principals: autoguardrails::principal::PrincipalSet::parse_all([
            "arn:aws:iam::444444444444:user/data-exporter",
        ])
        .unwrap(),
        kill_switch: false,
    };
    let d = evaluate(&p, &s, &[], &protected, NOW);
    assert_eq!(d.reason, policy::NO_ELIGIBLE_TARGETS);
    assert!(d.message.contains("protected principal"), "{}", d.message);
    let killed = ControllerSettings {
        kill_switch: true,
        ..ControllerSettings::default()
    };
    let d = evaluate(&p, &s, &[], &killed, NOW);
    assert_eq!(d.reason, policy::KILL_SWITCH_DRY_RUN);
    assert_eq!(
        d.quarantine.expect("still recorded").spec.mode,
        Mode::DryRun
    );
}

#[test]
fn invalid_signal_is_refused() {
    let p = fixture_policy("ci-role-dryrun.yaml");
    let mut s = fixture_signal("anomaly-dev-ec2-912.yaml");
    s.impact_usd = f64::NAN;
    assert_eq!(
        evaluate(&p, &s, &[], &ControllerSettings::default(), NOW).reason,
        policy::INVALID_SIGNAL
    );
}

// ---- properties ----

const REASONS: &[&str] = &[
    policy::MATCHED,
    policy::KILL_SWITCH_DRY_RUN,
    policy::SOURCE_NOT_MATCHED,
    policy::ACCOUNT_NOT_MATCHED,
    policy::BELOW_MINIMUM_IMPACT,
    policy::SERVICE_NOT_MATCHED,
    policy::BUDGET_NOT_MATCHED,
    policy::EXCEPTION_WINDOW,
    policy::NO_ELIGIBLE_TARGETS,
    policy::ALREADY_QUARANTINED,
    policy::ALREADY_ENFORCED,
    policy::COOLING_DOWN,
    policy::INVALID_POLICY,
    policy::INVALID_SIGNAL,
];

const ACCOUNTS: &[&str] = &["111111111111", "222222222222", "333333333333"];
const SERVICES: &[&str] = &[
    "Amazon SageMaker",
    "AWS Lambda",
    "Amazon Elastic Compute Cloud - Compute",
];

fn principal_strategy() -> impl Strategy<Value = Principal> {
    (0..3usize, 0..4usize, any::<bool>()).prop_map(|(a, n, role)| Principal {
        kind: if role {
            PrincipalKind::IamRole
        } else {
            PrincipalKind::IamUser
        },
        arn: format!(
            "arn:aws:iam::{}:{}/p{n}",
            ACCOUNTS[a],
            if role { "role" } else { "user" }
        ),
    })
}

fn policy_strategy() -> impl Strategy<Value = GuardrailPolicy> {
    (
        prop_oneof![Just(Mode::DryRun), Just(Mode::Manual), Just(Mode::Auto)],
        proptest::sample::subsequence(vec![SignalSource::CostAnomaly, SignalSource::Budget], 1..=2),
        proptest::sample::subsequence(ACCOUNTS.to_vec(), 0..=3),
        0.0..2000.0f64,
        proptest::sample::subsequence(SERVICES.to_vec(), 0..=2),
        proptest::collection::vec(principal_strategy(), 1..5),
        proptest::collection::vec(principal_strategy(), 0..2),
        1..48u32,
    )
        .prop_map(
            |(mode, sources, accounts, min, services, principals, excepted, ttl_hours)| {
                static BASE: std::sync::OnceLock<GuardrailPolicy> = std::sync::OnceLock::new();
                let mut p = BASE
                    .get_or_init(|| fixture_policy("ci-role-dryrun.yaml"))
                    .clone();
                p.metadata.uid = Some("uid-1".into());
                p.spec.mode = mode;
                p.spec.matcher.sources = sources;
                p.spec.matcher.account_ids = accounts.into_iter().map(str::to_string).collect();
                p.spec.matcher.min_impact_usd = min;
                p.spec.matcher.services = services.into_iter().map(str::to_string).collect();
                p.spec.scope.principals = principals;
                p.spec.exceptions.principals = excepted.into_iter().map(|e| e.arn).collect();
                p.spec.quarantine.ttl = format!("{ttl_hours}h");
                p
            },
        )
}

fn signal_strategy() -> impl Strategy<Value = CostSignal> {
    (
        prop_oneof![Just(SignalSource::CostAnomaly), Just(SignalSource::Budget)],
        "[a-z0-9-]{1,40}",
        0..3usize,
        0.0..5000.0f64,
        proptest::option::of(0..3usize),
    )
        .prop_map(|(source, id, account, impact, service)| CostSignal {
            source,
            id,
            account_id: ACCOUNTS[account].into(),
            impact_usd: impact,
            service: service.map(|i| SERVICES[i].to_string()),
            region: None,
            budget_name: None,
            observed_at: at("2026-11-20T08:00:00Z"),
            details_url: None,
            summary: None,
            principal: None,
            raw: None,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn evaluation_is_deterministic_and_explained(p in policy_strategy(), s in signal_strategy(), kill in any::<bool>()) {
        let settings = ControllerSettings { kill_switch: kill, ..ControllerSettings::default() };
        let a = evaluate(&p, &s, &[], &settings, NOW);
        let b = evaluate(&p, &s, &[], &settings, NOW);
        prop_assert_eq!(&a, &b);
        prop_assert!(REASONS.contains(&a.reason), "unknown reason {}", a.reason);
        prop_assert!(!a.message.is_empty());
        prop_assert_eq!(a.quarantine.is_some(), a.reason == policy::MATCHED || a.reason == policy::KILL_SWITCH_DRY_RUN);
    }

    #[test]
    fn quarantine_targets_stay_inside_scope_minus_exceptions_and_protected(
        p in policy_strategy(), s in signal_strategy(), protected in proptest::collection::vec(principal_strategy(), 0..3)
    ) {
        let settings = ControllerSettings {
            protected_principals: autoguardrails::principal::PrincipalSet::parse_all(protected.iter().map(|x| x.arn.clone())).unwrap(),
            kill_switch: false,
        };
        if let Some(q) = evaluate(&p, &s, &[], &settings, NOW).quarantine {
            prop_assert!(!q.spec.targets.is_empty());
            for t in &q.spec.targets {
                let target = t.parse().unwrap();
                prop_assert!(p.spec.scope.principals.contains(t));
                prop_assert!(!p.spec.exceptions.principals.iter().any(|e| autoguardrails::principal::PrincipalArn::parse(e).unwrap() == target));
                prop_assert!(!settings.protected_principals.contains(&target));
            }
            prop_assert!(s.impact_usd >= p.spec.matcher.min_impact_usd);
            prop_assert!(p.spec.matcher.sources.contains(&s.source));
            prop_assert_eq!(q.metadata.owner_references.as_ref().map(|o| o.len()), Some(1));
        }
    }

    #[test]
    fn kill_switch_and_dry_run_never_yield_an_enforcing_mode(p in policy_strategy(), s in signal_strategy()) {
        let killed = ControllerSettings { kill_switch: true, ..ControllerSettings::default() };
        if let Some(q) = evaluate(&p, &s, &[], &killed, NOW).quarantine {
            prop_assert_eq!(q.spec.mode, Mode::DryRun);
        }
        if p.spec.mode == Mode::DryRun
            && let Some(q) = evaluate(&p, &s, &[], &ControllerSettings::default(), NOW).quarantine
        {
            prop_assert_eq!(q.spec.mode, Mode::DryRun);
        }
    }

    #[test]
    fn a_repeated_signal_never_creates_a_second_quarantine(p in policy_strategy(), s in signal_strategy()) {
        let settings = ControllerSettings::default();
        if let Some(q) = evaluate(&p, &s, &[], &settings, NOW).quarantine {
            let again = evaluate(&p, &s, &[q], &settings, NOW);
            prop_assert!(again.quarantine.is_none());
            prop_assert_eq!(again.reason, policy::ALREADY_QUARANTINED);
        }
    }

}

proptest! {
    // Each case compiles the CRD's CEL rules, so fewer cases.
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn generated_quarantines_pass_the_crd_schema(p in policy_strategy(), s in signal_strategy()) {
        if let Some(q) = evaluate(&p, &s, &[], &ControllerSettings::default(), NOW).quarantine {
            let value = serde_json::to_value(&q).expect("serializes");
            let errors = autoguardrails::controller::crd::validate::quarantine(&value);
            prop_assert!(errors.is_empty(), "{:?}", errors);
        }
    }
}

#[test]
fn a_velocity_signal_quarantines_only_the_principal_it_names() {
    let p = fixture_policy("ci-velocity-auto.yaml");
    let s = fixture_signal("velocity-ci-deployer-52.yaml");
    let d = evaluate(&p, &s, &[], &ControllerSettings::default(), NOW);
    assert_eq!(d.reason, policy::MATCHED, "{}", d.message);
    let q = d.quarantine.expect("quarantine");
    assert_eq!(
        q.spec.targets,
        vec![Principal {
            kind: PrincipalKind::IamRole,
            arn: "arn:aws:iam::111111111111:role/ci-deployer".into()
        }],
        "etl is in scope but started nothing"
    );
    assert_eq!(
        q.spec.signal.expect("record").source,
        SignalSource::Velocity
    );

    // A principal outside the scope is not this policy's business (and is not recorded).
    let outsider = fixture_signal("velocity-intruder-80.yaml");
    let d = evaluate(&p, &outsider, &[], &ControllerSettings::default(), NOW);
    assert_eq!(d.reason, policy::PRINCIPAL_NOT_MATCHED, "{}", d.message);
    assert!(d.message.contains("user/intruder"), "{}", d.message);
    assert!(!policy::concerns(d.reason));

    // The named principal compares by IAM's identity rule (case of the name ignored).
    let mut shouting = s.clone();
    shouting.principal = Some("arn:aws:iam::111111111111:role/CI-Deployer".into());
    let d = evaluate(&p, &shouting, &[], &ControllerSettings::default(), NOW);
    assert_eq!(d.reason, policy::MATCHED);

    // A protected named principal leaves no eligible target: nobody else is taken instead.
    let settings = ControllerSettings {
        protected_principals: autoguardrails::principal::PrincipalSet::parse_all([
            "arn:aws:iam::111111111111:role/ci-deployer",
        ])
        .unwrap(),
        kill_switch: false,
    };
    let d = evaluate(&p, &s, &[], &settings, NOW);
    assert_eq!(d.reason, policy::NO_ELIGIBLE_TARGETS, "{}", d.message);
}

#[test]
fn a_velocity_signal_must_name_a_role_or_user() {
    let mut s = fixture_signal("velocity-ci-deployer-52.yaml");
    s.principal = None;
    assert!(s.validate().unwrap_err().to_string().contains("principal"));
    s.principal = Some("arn:aws:iam::111111111111:group/devs".into());
    assert!(s.validate().is_err());
    let mut anomaly = fixture_signal("anomaly-dev-ec2-912.yaml");
    anomaly.principal = Some("arn:aws:iam::111111111111:role/ci-deployer".into());
    assert!(
        anomaly.validate().is_err(),
        "only Velocity signals name a principal"
    );
}

#[test]
fn the_controller_reports_unusable_exceptions_as_not_ready() {
    use autoguardrails::controller::reconcile::policy::validate_spec;
    use autoguardrails::principal::PrincipalSet;
    let p = fixture_policy("business-hours-berlin.yaml");
    assert_eq!(validate_spec(&p, &PrincipalSet::new()), vec![]);
    let mut unknown_zone = p.clone();
    unknown_zone.spec.exceptions.weekly[0].time_zone = "Europe/Atlantis".into();
    let problems = validate_spec(&unknown_zone, &PrincipalSet::new());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].reason, "InvalidException");
    assert!(
        problems[0]
            .message
            .starts_with("exceptions.weekly[0]: unknown time zone \"Europe/Atlantis\""),
        "{problems:?}"
    );
    let mut bad_account = p.clone();
    bad_account.spec.exceptions.accounts = vec!["44444444444".into()];
    let problems = validate_spec(&bad_account, &PrincipalSet::new());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].reason, "InvalidException");
    assert!(problems[0].message.contains("12-digit"), "{problems:?}");
    // A deny condition repeating the one scope.regions adds cannot be one IAM statement.
    let mut clash = p.clone();
    clash.spec.scope.regions = vec!["us-east-1".into()];
    clash.spec.deny.conditions[0].operator =
        autoguardrails::controller::crd::ConditionOperator::StringEquals;
    clash.spec.deny.conditions[0].key = "aws:RequestedRegion".into();
    let problems = validate_spec(&clash, &PrincipalSet::new());
    assert_eq!(
        problems.iter().map(|p| p.reason).collect::<Vec<_>>(),
        vec!["InvalidDeny"],
        "{problems:?}"
    );
    assert!(
        problems[0].message.contains("appears twice"),
        "{problems:?}"
    );
    // Every scoped principal excepted by account: the policy can never quarantine anything.
    let mut all_excepted = p.clone();
    all_excepted.spec.exceptions.accounts = vec!["111111111111".into(), "444444444444".into()];
    let problems = validate_spec(&all_excepted, &PrincipalSet::new());
    assert_eq!(
        problems.iter().map(|p| p.reason).collect::<Vec<_>>(),
        vec!["NoEligibleTargets"]
    );
}
