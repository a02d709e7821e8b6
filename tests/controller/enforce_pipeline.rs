//! Property over the real pipeline: random GuardrailPolicies and cost signals go through
//! `policy::evaluate` (kill switch and protected principals included), the resulting Quarantines
//! through the real lifecycle (`lifecycle::create`, then an approve annotation when the incident
//! says so; the kill switch is passed to both), their deny documents through `enforce::document::build`, and
//! then through converge on in-memory IAM in three accounts. Asserts: DryRun sends no write; the
//! kill switch sends no enforcement write and still releases; a protected principal is never
//! named in any write; Enforce reaches exactly the desired state.

use crate::support::fixtures;

use std::collections::BTreeSet;
use std::sync::Arc;

use autoguardrails::aws::factory::StaticClients;
use autoguardrails::aws::memory::InMemoryIam;
use autoguardrails::aws::{Operation, PrincipalKind};
use autoguardrails::controller::crd::{self, GuardrailPolicy, Mode, Quarantine, SignalSource};
use autoguardrails::controller::enforce::converge::{
    ConvergeInput, Engine, EngineConfig, KnownPrincipal, Scope, WriteGate,
};
use autoguardrails::controller::enforce::document;
use autoguardrails::controller::enforce::ownership::{self, QuarantineKey};
use autoguardrails::controller::enforce::plan::{
    DesiredQuarantine, DesiredTarget, ProtectedPrincipals,
};
use autoguardrails::controller::lifecycle;
use autoguardrails::controller::policy::{self, ControllerSettings, Input};
use autoguardrails::controller::signal::CostSignal;
use autoguardrails::controller::simulate::load_policy;
use autoguardrails::principal::{PrincipalArn, name_key};
use fixtures::CLUSTER;
use proptest::prelude::*;

const ACCOUNTS: &[&str] = &["111111111111", "222222222222", "333333333333"];
const PROTECTED: &str = "arn:aws:iam::111111111111:role/p3";

fn at(text: &str) -> jiff::Timestamp {
    text.parse().expect("timestamp")
}

fn base_policy() -> GuardrailPolicy {
    static BASE: std::sync::OnceLock<GuardrailPolicy> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        let path = format!(
            "{}/policies/ci-role-dryrun.yaml",
            env!("CARGO_MANIFEST_DIR")
        );
        load_policy(&path, &std::fs::read_to_string(&path).expect("fixture")).expect("fixture")
    })
    .clone()
}

/// A role or user `p0`..`p3` in one of the accounts, its name in random case and with or
/// without an IAM path: IAM's identity ignores both, so every spelling names the same principal.
fn principal() -> impl Strategy<Value = crd::Principal> {
    (
        0..3usize,
        0..4usize,
        any::<bool>(),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec!["team", "a/b"])),
    )
        .prop_map(|(a, n, role, upper, path)| crd::Principal {
            kind: if role {
                crd::PrincipalKind::IamRole
            } else {
                crd::PrincipalKind::IamUser
            },
            arn: format!(
                "arn:aws:iam::{}:{}/{}{}{n}",
                ACCOUNTS[a],
                if role { "role" } else { "user" },
                path.map(|p| format!("{p}/")).unwrap_or_default(),
                if upper { "P" } else { "p" },
            ),
        })
}

/// An exception: a spelling of some principal, sometimes in another partition (which must
/// never except the `aws` principal of the same name).
fn exception() -> impl Strategy<Value = String> {
    (principal(), any::<bool>()).prop_map(|(p, other_partition)| {
        if other_partition {
            p.arn.replacen("arn:aws:", "arn:aws-cn:", 1)
        } else {
            p.arn
        }
    })
}

fn identity(arn: &str) -> PrincipalArn {
    PrincipalArn::parse(arn).expect("generated ARNs are valid")
}

fn is_protected(arn: &str) -> bool {
    identity(arn) == identity(PROTECTED)
}

/// (account, name key) of a target, by the one principal type.
fn account_and_name(arn: &str) -> (String, String) {
    let p = identity(arn);
    (p.account_id().to_string(), name_key(p.name()))
}

fn policy_strategy(index: usize) -> impl Strategy<Value = GuardrailPolicy> {
    (
        prop_oneof![Just(Mode::DryRun), Just(Mode::Manual), Just(Mode::Auto)],
        prop::collection::vec(principal(), 1..4),
        prop::collection::vec(exception(), 0..3),
        prop::collection::vec(
            prop::sample::select(vec![
                "ec2:RunInstances",
                "sagemaker:Create*",
                "s3:PutObject",
            ]),
            1..3,
        ),
        prop::option::of(prop::sample::select(vec!["us-east-1", "ap-northeast-1"])),
    )
        .prop_map(move |(mode, principals, excepted, actions, region)| {
            let mut p = base_policy();
            p.metadata.name = Some(format!("policy-{index}"));
            p.metadata.uid = Some(format!("policy-uid-{index}"));
            p.spec.mode = mode;
            p.spec.matcher.sources = vec![SignalSource::CostAnomaly, SignalSource::Budget];
            p.spec.matcher.account_ids = vec![];
            p.spec.matcher.min_impact_usd = 0.0;
            p.spec.matcher.services = vec![];
            p.spec.matcher.budget_names = vec![];
            p.spec.exceptions.windows = vec![];
            p.spec.scope.principals = principals;
            p.spec.scope.regions = region.map(|r| vec![r.to_string()]).unwrap_or_default();
            p.spec.exceptions.principals = excepted;
            p.spec.deny.actions = actions.into_iter().map(str::to_string).collect();
            p
        })
}

fn signal(id: &str, account: usize) -> CostSignal {
    CostSignal {
        source: SignalSource::CostAnomaly,
        id: id.to_string(),
        account_id: ACCOUNTS[account].into(),
        impact_usd: 500.0,
        service: None,
        region: None,
        budget_name: None,
        observed_at: at("2026-11-20T08:00:00Z"),
        details_url: None,
        summary: None,
        principal: None,
        raw: None,
    }
}

#[derive(Debug, Clone)]
struct Incident {
    policy: GuardrailPolicy,
    account: usize,
    approved: bool,
    released_later: bool,
}

#[derive(Debug, Clone)]
struct Case {
    first: Vec<Incident>,
    second: Vec<Incident>,
    kill_switch: bool,
    dry_run: bool,
}

fn incident(i: usize) -> impl Strategy<Value = Incident> {
    (policy_strategy(i), 0..3usize, any::<bool>(), any::<bool>()).prop_map(
        |(policy, account, approved, released_later)| Incident {
            policy,
            account,
            approved,
            released_later,
        },
    )
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(incident(0), 0..3),
        prop::collection::vec(incident(1), 0..3),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(first, second, kill_switch, dry_run)| Case {
            first,
            second,
            kill_switch,
            dry_run,
        })
}

/// Evaluates incidents; returns (quarantine, active?) for each created Quarantine.
fn evaluate(
    incidents: &[Incident],
    settings: &ControllerSettings,
    tag: &str,
    existing: &mut Vec<Quarantine>,
) -> Vec<(Quarantine, bool, bool)> {
    let mut out = Vec::new();
    for (n, inc) in incidents.iter().enumerate() {
        let s = signal(&format!("{tag}-{n}"), inc.account);
        let d = policy::evaluate(Input {
            policy: &inc.policy,
            signal: &s,
            existing,
            settings,
            now: at("2026-11-20T10:00:00Z"),
            resolution: None,
        });
        if let Some(mut q) = d.quarantine {
            // Evaluation and the one matcher agree: no target is excepted or protected, in any
            // spelling.
            for t in &q.spec.targets {
                let target = identity(&t.arn);
                assert!(
                    !inc.policy
                        .spec
                        .exceptions
                        .principals
                        .iter()
                        .any(|e| identity(e) == target),
                    "excepted principal {} became a target of {:?}",
                    t.arn,
                    inc.policy.spec.exceptions.principals
                );
                assert!(
                    !settings.protected_principals.contains(&target),
                    "{}",
                    t.arn
                );
            }
            q.metadata.uid = Some(format!("uid-{tag}-{n}"));
            let now = at("2026-11-20T10:00:00Z");
            let context = lifecycle::Context::from_spec(&q.spec, now, settings.kill_switch)
                .expect("valid spec");
            let mut transition = lifecycle::create(&context, now);
            if inc.approved {
                let approve = lifecycle::Event::Approve {
                    actor: "alice".into(),
                    note: "ok".into(),
                };
                transition = lifecycle::step(transition.state, &context, &approve, now);
            }
            let active = transition.state.phase == crd::Phase::Active;
            if active {
                // Only a mode that enforces can ever reach Active.
                assert!(q.spec.mode == Mode::Auto || (q.spec.mode == Mode::Manual && inc.approved));
            }
            existing.push(q.clone());
            out.push((q, active, inc.released_later));
        }
    }
    out
}

fn desired(q: &Quarantine) -> DesiredQuarantine {
    let ns = q.metadata.namespace.clone().unwrap_or_default();
    let name = q.metadata.name.clone().unwrap_or_default();
    let doc = document::build(&q.spec.deny, &document::sid_suffix(&ns, &name)).expect("document");
    DesiredQuarantine {
        key: QuarantineKey {
            namespace: ns,
            name,
            uid: q.metadata.uid.clone().unwrap_or_default(),
        },
        account_id: q
            .spec
            .signal
            .as_ref()
            .map(|s| s.account_id.clone())
            .unwrap_or_default(),
        targets: q
            .spec
            .targets
            .iter()
            .map(|t| DesiredTarget {
                kind: match t.kind {
                    crd::PrincipalKind::IamRole => PrincipalKind::Role,
                    crd::PrincipalKind::IamUser => PrincipalKind::User,
                },
                arn: t.arn.clone(),
                attached_before: false,
            })
            .collect(),
        document: doc.json,
    }
}

fn is_release(op: Operation) -> bool {
    matches!(
        op,
        Operation::DetachRolePolicy
            | Operation::DetachUserPolicy
            | Operation::DeleteRolePolicy
            | Operation::DeleteUserPolicy
            | Operation::DeletePolicy
            | Operation::DeletePolicyVersion
    )
}

/// Every (account, principal name, policy name) deny of ours.
fn denies(worlds: &[Arc<InMemoryIam>]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for w in worlds {
        let ours: BTreeSet<String> = fixtures::our_policies(w, CLUSTER).into_iter().collect();
        for p in w.state().principals.values() {
            for a in p.attached.iter().filter(|a| ours.contains(*a)) {
                out.insert((
                    w.account_id().to_string(),
                    name_key(&p.name),
                    a.rsplit('/').next().unwrap_or("").to_string(),
                ));
            }
            for n in p
                .inline
                .keys()
                .filter(|n| n.starts_with(ownership::INLINE_POLICY_PREFIX))
            {
                out.insert((w.account_id().to_string(), name_key(&p.name), n.clone()));
            }
        }
    }
    out
}

fn wanted(cluster: &str, d: &[DesiredQuarantine]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for q in d {
        for t in &q.targets {
            if is_protected(&t.arn) {
                continue;
            }
            let (account, name) = account_and_name(&t.arn);
            out.insert((
                account.clone(),
                name.clone(),
                ownership::managed_policy_name(cluster, &q.key, &account),
            ));
            out.insert((
                account.clone(),
                name,
                ownership::inline_policy_name(cluster, &q.key, &account),
            ));
        }
    }
    out
}

fn check(case: Case) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    rt.block_on(async move {
        let worlds: Vec<Arc<InMemoryIam>> = ACCOUNTS
            .iter()
            .map(|a| {
                let w = Arc::new(InMemoryIam::new(*a));
                w.outside(|o| {
                    for n in 0..4 {
                        o.create_role(&format!("p{n}"));
                        o.create_user(&format!("p{n}"));
                    }
                });
                w
            })
            .collect();
        let mut clients = StaticClients::new();
        for w in &worlds {
            clients = clients.with(w.account_id(), w.clone());
        }
        let engine = || {
            Engine::new(EngineConfig {
                cluster_id: CLUSTER.into(),
                protected: ProtectedPrincipals::parse([PROTECTED]).unwrap(),
                settle: std::time::Duration::ZERO,
            })
        };
        let mut settings = ControllerSettings {
            protected_principals: autoguardrails::principal::PrincipalSet::parse_all([PROTECTED])
                .unwrap(),
            ..Default::default()
        };
        let all_known: Vec<KnownPrincipal> = ACCOUNTS
            .iter()
            .flat_map(|a| {
                (0..4).flat_map(move |n| {
                    [
                        KnownPrincipal {
                            kind: PrincipalKind::Role,
                            arn: format!("arn:aws:iam::{a}:role/p{n}"),
                        },
                        KnownPrincipal {
                            kind: PrincipalKind::User,
                            arn: format!("arn:aws:iam::{a}:user/p{n}"),
                        },
                    ]
                })
            })
            .collect();

        // Phase 1: no kill switch; Active quarantines are enforced.
        let mut existing = Vec::new();
        let first = evaluate(&case.first, &settings, "a", &mut existing);
        let d1: Vec<DesiredQuarantine> = first
            .iter()
            .filter(|(_, active, _)| *active)
            .map(|(q, _, _)| desired(q))
            .collect();
        let r = engine()
            .converge(
                &clients,
                &ConvergeInput {
                    desired: d1.clone(),
                    known_principals: vec![],
                    accounts: vec![],
                    gate: WriteGate::Enforce,
                    scope: Scope::All,
                },
            )
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(
            r.is_converged()
                || r.targets.iter().all(|t| is_protected(&t.arn)
                    || t.state
                        != autoguardrails::controller::enforce::converge::TargetState::Failed),
            "{:#?}",
            r.errors
        );
        prop_assert_eq!(
            denies(&worlds),
            wanted(CLUSTER, &d1)
                .intersection(&denies(&worlds))
                .cloned()
                .collect::<BTreeSet<_>>()
        );

        // Phase 2: kill switch maybe on, dry-run maybe on; some phase-1 quarantines are released.
        settings.kill_switch = case.kill_switch;
        let second = evaluate(&case.second, &settings, "b", &mut existing);
        let mut d2: Vec<DesiredQuarantine> = first
            .iter()
            .filter(|(_, active, released)| *active && !*released)
            .map(|(q, _, _)| desired(q))
            .collect();
        d2.extend(
            second
                .iter()
                .filter(|(_, active, _)| *active)
                .map(|(q, _, _)| desired(q)),
        );
        if case.kill_switch {
            prop_assert!(
                second
                    .iter()
                    .all(|(q, active, _)| q.spec.mode == Mode::DryRun && !*active)
            );
        }
        let gate = if case.dry_run {
            WriteGate::DryRun
        } else if case.kill_switch {
            WriteGate::KillSwitch
        } else {
            WriteGate::Enforce
        };
        let before = denies(&worlds);
        let writes_before: Vec<usize> = worlds.iter().map(|w| w.write_count()).collect();
        let r = engine()
            .converge(
                &clients,
                &ConvergeInput {
                    desired: d2.clone(),
                    known_principals: all_known,
                    accounts: vec![],
                    gate,
                    scope: Scope::All,
                },
            )
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let new_writes: Vec<_> = worlds
            .iter()
            .zip(&writes_before)
            .flat_map(|(w, n)| w.write_log().split_off(*n))
            .collect();
        let after = denies(&worlds);
        let want = wanted(CLUSTER, &d2);
        record(&before, &after, gate, &new_writes);
        for w in &worlds {
            for rec in w.write_log() {
                prop_assert!(
                    !(w.account_id() == "111111111111"
                        && rec.arguments.to_ascii_lowercase().starts_with("role/p3 ")),
                    "protected principal written: {rec:?}"
                );
            }
        }
        match gate {
            WriteGate::DryRun => {
                prop_assert!(new_writes.is_empty(), "dry-run wrote {new_writes:?}");
                prop_assert_eq!(after, before);
            }
            WriteGate::KillSwitch => {
                prop_assert!(
                    new_writes.iter().all(|w| is_release(w.operation)),
                    "kill switch enforced: {new_writes:?}"
                );
                prop_assert!(after.is_subset(&before));
                prop_assert!(
                    after.is_subset(&want),
                    "not released under kill switch: {:?}",
                    after.difference(&want).collect::<Vec<_>>()
                );
            }
            WriteGate::Enforce => {
                prop_assert!(
                    after.is_subset(&want),
                    "leftover: {:?}",
                    after.difference(&want).collect::<Vec<_>>()
                );
                // Every wanted target carries exactly one of (managed, inline).
                for q in &d2 {
                    for t in &q.targets {
                        if is_protected(&t.arn) {
                            continue;
                        }
                        let (account, name) = account_and_name(&t.arn);
                        let m = after.contains(&(
                            account.clone(),
                            name.clone(),
                            ownership::managed_policy_name(CLUSTER, &q.key, &account),
                        ));
                        let i = after.contains(&(
                            account.clone(),
                            name.clone(),
                            ownership::inline_policy_name(CLUSTER, &q.key, &account),
                        ));
                        prop_assert!(
                            m ^ i,
                            "{} must carry exactly one deny of {}: {:#?}",
                            t.arn,
                            q.key,
                            r.errors
                        );
                    }
                }
            }
        }
        Ok(())
    })
}

thread_local! {
    static STATS: std::cell::Cell<[u64; 5]> = const { std::cell::Cell::new([0; 5]) };
}

/// Counts what the cases exercised: [cases, with denies before phase 2, with releases,
/// kill-switch cases with releases, dry-run cases with something it would have written].
fn record(
    before: &BTreeSet<(String, String, String)>,
    after: &BTreeSet<(String, String, String)>,
    gate: WriteGate,
    writes: &[autoguardrails::aws::memory::WriteRecord],
) {
    let mut s = STATS.get();
    s[0] += 1;
    if !before.is_empty() {
        s[1] += 1;
    }
    if !before.is_subset(after) {
        s[2] += 1;
        if gate == WriteGate::KillSwitch {
            s[3] += 1;
        }
    }
    if gate == WriteGate::DryRun && !before.is_empty() && writes.is_empty() {
        s[4] += 1;
    }
    STATS.set(s);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn policies_signals_and_lifecycles_through_converge(c in case()) {
        check(c)?;
    }
}

#[test]
fn pipeline_property_exercises_enforcement_and_release() {
    // A fixed-seed run of the same property that reports what it exercised.
    let mut runner = proptest::test_runner::TestRunner::new_with_rng(
        ProptestConfig {
            cases: 256,
            ..ProptestConfig::default()
        },
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    STATS.set([0; 5]);
    runner.run(&case(), check).expect("property holds");
    let s = STATS.get();
    eprintln!(
        "pipeline: {} cases, {} with denies in place, {} with releases ({} under the kill switch), {} dry-run cases with denies in place",
        s[0], s[1], s[2], s[3], s[4]
    );
    assert!(s[1] > 20 && s[2] > 10 && s[3] > 2, "{s:?}");
}
