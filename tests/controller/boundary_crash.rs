//! The permissions-boundary action on the in-memory IAM: for EVERY AWS call k of an
//! activate → drift → release cycle, the IAM applies call k and then "crashes" (the run aborts
//! and everything not yet stored in status is lost). The status records are kept only from runs
//! that finished, exactly as the Quarantine reconcile stores them (`apply::next_record`, written
//! before the next run). Re-running must end with our boundary on every target while Active and,
//! after release, each target's previous boundary back exactly (none where there was none) and
//! our boundary policy deleted. Also: dry-run and the kill switch write nothing while enforcing,
//! a boundary someone else put on is left on release, protected principals are never touched.

use crate::support::fixtures::{ACCOUNT, CLUSTER, key, pref};

use std::sync::Arc;

use autoguardrails::aws::factory::StaticClients;
use autoguardrails::aws::memory::InMemoryIam;
use autoguardrails::aws::{Iam, PrincipalKind};
use autoguardrails::controller::enforce::boundary::apply::{
    self, Input, Outcome, Report, Target, next_record,
};
use autoguardrails::controller::enforce::boundary::{self, Record, Stage};
use autoguardrails::controller::enforce::converge::{EnforceError, WriteGate};
use autoguardrails::controller::enforce::plan::ProtectedPrincipals;

const DENY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"AutoGuardRailsDeny","Effect":"Deny","Action":["ec2:RunInstances"],"Resource":"*"}]}"#;

struct World {
    iam: Arc<InMemoryIam>,
    clients: StaticClients,
    targets: Vec<(PrincipalKind, String)>,
    previous: String,
    ours: String,
}

fn world() -> World {
    let iam = Arc::new(InMemoryIam::new(ACCOUNT));
    let (targets, previous) = iam.outside(|o| {
        let previous = o.create_policy(
            "team-boundary",
            "/",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
            &[],
        );
        let targets = vec![
            (PrincipalKind::Role, o.create_role("with-boundary")),
            (PrincipalKind::Role, o.create_role("without-boundary")),
            (PrincipalKind::User, o.create_user("user-with-boundary")),
        ];
        (targets, previous)
    });
    iam.outside(|o| {
        o.set_boundary(&pref(targets[0].0, &targets[0].1), Some(&previous));
        o.set_boundary(&pref(targets[2].0, &targets[2].1), Some(&previous));
    });
    let clients = StaticClients::new().with(ACCOUNT, iam.clone() as Arc<dyn Iam>);
    let name = boundary::policy_name(CLUSTER, &key("q1"), ACCOUNT);
    World {
        ours: boundary::policy_arn("aws", ACCOUNT, &name),
        iam,
        clients,
        targets,
        previous,
    }
}

fn input(w: &World, records: &[Option<Record>], gate: WriteGate) -> Input {
    Input {
        key: key("q1"),
        cluster: CLUSTER.into(),
        deny_document: DENY.into(),
        targets: w
            .targets
            .iter()
            .zip(records)
            .map(|((kind, arn), record)| Target {
                kind: *kind,
                arn: arn.clone(),
                record: record.clone(),
            })
            .collect(),
        gate,
    }
}

fn store(records: &mut [Option<Record>], report: &Report) {
    for (r, t) in records.iter_mut().zip(&report.targets) {
        *r = next_record(r.as_ref(), &t.outcome);
    }
}

fn boundaries(w: &World) -> Vec<Option<String>> {
    let state = w.iam.state();
    w.targets
        .iter()
        .map(|(k, arn)| state.boundary(&pref(*k, arn)))
        .collect()
}

/// Runs reconciles until the phase is done, restarting after a crash (the status of an aborted
/// run is lost); at most 8 runs.
async fn settle(
    w: &World,
    records: &mut [Option<Record>],
    release: bool,
    crashes: &mut u32,
) -> Report {
    let protected = ProtectedPrincipals::default();
    for _ in 0..8 {
        let i = input(w, records, WriteGate::Enforce);
        let r = if release {
            apply::release(&w.clients, &protected, &i).await
        } else {
            apply::enforce(&w.clients, &protected, &i).await
        };
        match r {
            Ok(report) => {
                store(records, &report);
                let done = if release {
                    report.is_clean()
                        && report
                            .targets
                            .iter()
                            .all(|t| !matches!(t.outcome, Outcome::Restored { performed: false }))
                } else {
                    report.targets.iter().all(|t| t.outcome == Outcome::InPlace)
                };
                if done {
                    return report;
                }
            }
            Err(EnforceError::Aborted(_)) => {
                *crashes += 1;
                w.iam.recover();
            }
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    panic!("the phase did not settle in 8 runs");
}

/// The whole cycle with a crash armed at call `crash_at`; returns the calls made and whether
/// the crash fired.
async fn cycle(crash_at: Option<u64>) -> (u64, bool) {
    let w = world();
    if let Some(k) = crash_at {
        w.iam.crash_after_call(k);
    }
    let mut crashes = 0;
    let mut records = vec![None; w.targets.len()];

    settle(&w, &mut records, false, &mut crashes).await;
    assert_eq!(
        boundaries(&w),
        vec![Some(w.ours.clone()); 3],
        "k={crash_at:?}"
    );
    assert_eq!(
        records
            .iter()
            .map(|r| r.as_ref().map(|r| r.previous.clone()))
            .collect::<Vec<_>>(),
        vec![
            Some(Some(w.previous.clone())),
            Some(None),
            Some(Some(w.previous.clone()))
        ],
        "k={crash_at:?}: the previous boundaries are recorded exactly"
    );

    // Drift: someone removes ours from the second target; the next run puts it back.
    w.iam
        .outside(|o| o.set_boundary(&pref(w.targets[1].0, &w.targets[1].1), None));
    settle(&w, &mut records, false, &mut crashes).await;
    assert_eq!(
        boundaries(&w),
        vec![Some(w.ours.clone()); 3],
        "k={crash_at:?}"
    );

    // Drift of the document: someone edits our boundary policy to allow everything.
    w.iam.outside(|o| {
        o.edit_policy(
            &w.ours,
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
        )
    });
    settle(&w, &mut records, false, &mut crashes).await;
    let expected = boundary::document(DENY).unwrap();
    let stored = w
        .iam
        .state()
        .policies
        .values()
        .find(|p| p.arn == w.ours)
        .and_then(|p| p.default_document().map(str::to_string));
    assert_eq!(
        stored.as_deref(),
        Some(expected.as_str()),
        "k={crash_at:?}: our document is put back"
    );

    settle(&w, &mut records, true, &mut crashes).await;
    assert_eq!(
        boundaries(&w),
        vec![Some(w.previous.clone()), None, Some(w.previous.clone())],
        "k={crash_at:?}: release restores each previous boundary exactly"
    );
    let state = w.iam.state();
    assert!(
        !state.policies.values().any(|p| p.arn == w.ours),
        "k={crash_at:?}: our boundary policy is deleted"
    );
    assert!(
        state.policies.values().any(|p| p.arn == w.previous),
        "k={crash_at:?}: the previous boundary policy is never touched"
    );
    (w.iam.call_count(), crashes > 0)
}

#[tokio::test]
async fn a_crash_after_any_call_leaves_a_state_the_next_run_finishes() {
    let (total, crashed) = cycle(None).await;
    assert!(!crashed);
    assert!(total > 10, "the cycle makes {total} calls");
    println!("boundary cycle: {total} IAM calls, each one crashed after in turn");
    for k in 1..=total {
        let (_, crashed) = cycle(Some(k)).await;
        assert!(crashed, "the crash armed at call {k} fired");
    }
}

#[tokio::test]
async fn nothing_is_put_before_the_previous_boundary_is_recorded() {
    let w = world();
    let protected = ProtectedPrincipals::default();
    let none = vec![None; w.targets.len()];
    let r = apply::enforce(
        &w.clients,
        &protected,
        &input(&w, &none, WriteGate::Enforce),
    )
    .await
    .unwrap();
    assert!(
        r.targets
            .iter()
            .all(|t| matches!(t.outcome, Outcome::RecordFirst { .. })),
        "{r:#?}"
    );
    assert_eq!(w.iam.write_count(), 0, "{:?}", w.iam.write_log());
    // A failed record write (the status was not stored): the next run asks again, still no write.
    let r = apply::enforce(
        &w.clients,
        &protected,
        &input(&w, &none, WriteGate::Enforce),
    )
    .await
    .unwrap();
    assert!(matches!(r.targets[0].outcome, Outcome::RecordFirst { .. }));
    assert_eq!(w.iam.write_count(), 0);
}

#[tokio::test]
async fn dry_run_and_the_kill_switch_send_no_enforcement_write() {
    for gate in [WriteGate::DryRun, WriteGate::KillSwitch] {
        let w = world();
        let protected = ProtectedPrincipals::default();
        let mut records = vec![None; w.targets.len()];
        for _ in 0..3 {
            let r = apply::enforce(&w.clients, &protected, &input(&w, &records, gate))
                .await
                .unwrap();
            store(&mut records, &r);
            assert!(
                r.writes.iter().all(|x| !x.performed),
                "{gate:?}: {:?}",
                r.writes
            );
        }
        assert_eq!(w.iam.write_count(), 0, "{gate:?}: {:?}", w.iam.write_log());
        assert!(
            records
                .iter()
                .all(|r| r.as_ref().is_some_and(|r| r.stage == Stage::Recorded)),
            "{gate:?}: a held-back put is not recorded as set"
        );
    }
}

#[tokio::test]
async fn release_leaves_a_boundary_someone_else_put_on_and_says_so() {
    let w = world();
    let mut records = vec![None; w.targets.len()];
    let mut crashes = 0;
    settle(&w, &mut records, false, &mut crashes).await;
    let theirs = w.iam.outside(|o| {
        let arn = o.create_policy(
            "their-boundary",
            "/",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#,
            &[],
        );
        o.set_boundary(&pref(w.targets[0].0, &w.targets[0].1), Some(&arn));
        arn
    });
    let r = settle(&w, &mut records, true, &mut crashes).await;
    assert_eq!(
        r.targets[0].outcome,
        Outcome::LeftChanged {
            found: Some(theirs.clone())
        }
    );
    assert_eq!(
        boundaries(&w),
        vec![Some(theirs), None, Some(w.previous.clone())],
        "theirs is left; the others are restored"
    );
    assert_eq!(
        records[0].as_ref().map(|r| r.stage),
        Some(Stage::LeftChanged)
    );
    assert!(!w.iam.state().policies.values().any(|p| p.arn == w.ours));
}

#[tokio::test]
async fn protected_principals_are_never_read_or_written() {
    let w = world();
    let protected = ProtectedPrincipals::parse([w.targets[0].1.as_str()]).unwrap();
    let mut records = vec![None; w.targets.len()];
    for _ in 0..3 {
        let r = apply::enforce(
            &w.clients,
            &protected,
            &input(&w, &records, WriteGate::Enforce),
        )
        .await
        .unwrap();
        assert!(matches!(r.targets[0].outcome, Outcome::Refused(_)));
        store(&mut records, &r);
    }
    assert_eq!(boundaries(&w)[0], Some(w.previous.clone()));
    assert_eq!(boundaries(&w)[1], Some(w.ours.clone()));
    assert!(
        !w.iam
            .write_log()
            .iter()
            .any(|x| x.arguments.starts_with("role/with-boundary ")),
        "{:?}",
        w.iam.write_log()
    );
    let r = apply::release(
        &w.clients,
        &protected,
        &input(&w, &records, WriteGate::Enforce),
    )
    .await
    .unwrap();
    assert!(matches!(r.targets[0].outcome, Outcome::Refused(_)));
    assert_eq!(boundaries(&w)[0], Some(w.previous.clone()));
    assert_eq!(boundaries(&w)[1], None);
}

#[tokio::test]
async fn a_policy_under_our_name_without_our_tags_is_never_used() {
    let w = world();
    let name = boundary::policy_name(CLUSTER, &key("q1"), ACCOUNT);
    w.iam.outside(|o| {
        o.create_policy(
            &name,
            "/autoguardrails/",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
            &[],
        )
    });
    let protected = ProtectedPrincipals::default();
    let mut records = vec![None; w.targets.len()];
    for _ in 0..2 {
        let r = apply::enforce(
            &w.clients,
            &protected,
            &input(&w, &records, WriteGate::Enforce),
        )
        .await
        .unwrap();
        store(&mut records, &r);
    }
    assert_eq!(
        boundaries(&w),
        vec![Some(w.previous.clone()), None, Some(w.previous.clone())],
        "a look-alike policy is never put on anyone"
    );
}

/// The orphan sweep as the controller runs it (no live Quarantine), until it reports nothing
/// left to do; a crash aborts a pass and the next pass starts over (at most 6 passes).
async fn sweep_until_done(w: &World, protected: &ProtectedPrincipals) -> apply::OrphanReport {
    let live = std::collections::BTreeSet::new();
    let mut last = None;
    for _ in 0..6 {
        match apply::sweep_orphans(
            &w.clients,
            protected,
            CLUSTER,
            &[ACCOUNT.to_string()],
            &live,
            WriteGate::KillSwitch,
        )
        .await
        {
            Ok(report) => {
                let done = report.orphans.is_empty();
                last = Some(report);
                if done {
                    break;
                }
            }
            Err(EnforceError::Aborted(_)) => w.iam.recover(),
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    last.expect("a pass finished")
}

/// Enforces until the crash armed at call `k` fires (or the quarantine is Active), then the
/// Quarantine is deleted without its finalizer: every status record is lost.
async fn enforce_then_force_delete(w: &World, k: Option<u64>) {
    if let Some(k) = k {
        w.iam.crash_after_call(k);
    }
    let protected = ProtectedPrincipals::default();
    let mut records = vec![None; w.targets.len()];
    for _ in 0..8 {
        match apply::enforce(
            &w.clients,
            &protected,
            &input(w, &records, WriteGate::Enforce),
        )
        .await
        {
            Ok(report) => {
                store(&mut records, &report);
                if report.targets.iter().all(|t| t.outcome == Outcome::InPlace) {
                    break;
                }
            }
            Err(EnforceError::Aborted(_)) => {
                w.iam.recover();
                break;
            }
            Err(other) => panic!("unexpected error {other}"),
        }
    }
}

#[tokio::test]
async fn a_force_deleted_quarantine_gets_every_previous_boundary_back_from_the_sweep() {
    // How many calls it takes to reach Active without a crash.
    let w = world();
    enforce_then_force_delete(&w, None).await;
    let to_active = w.iam.call_count();
    println!(
        "force-deleted boundary quarantine: {to_active} IAM calls to Active, each one crashed after in turn"
    );
    assert_eq!(boundaries(&w), vec![Some(w.ours.clone()); 3]);
    let tags = w
        .iam
        .state()
        .policies
        .values()
        .find(|p| p.arn == w.ours)
        .map(|p| p.tags.clone())
        .unwrap_or_default();
    assert_eq!(
        boundary::recorded_previous(&tags),
        vec![
            (
                PrincipalKind::Role,
                "with-boundary".to_string(),
                Some(w.previous.clone())
            ),
            (PrincipalKind::Role, "without-boundary".to_string(), None),
            (
                PrincipalKind::User,
                "user-with-boundary".to_string(),
                Some(w.previous.clone())
            ),
        ],
        "each previous boundary is recorded on our policy before ours is put on"
    );
    // A crash after any call on the way to Active, then the Quarantine is force-deleted.
    for k in (1..=to_active).map(Some).chain([None]) {
        let w = world();
        enforce_then_force_delete(&w, k).await;
        let report = sweep_until_done(&w, &ProtectedPrincipals::default()).await;
        assert_eq!(
            boundaries(&w),
            vec![Some(w.previous.clone()), None, Some(w.previous.clone())],
            "k={k:?}: each previous boundary is back exactly ({report:?})"
        );
        let state = w.iam.state();
        assert!(
            !state.policies.values().any(|p| p.arn == w.ours),
            "k={k:?}: our boundary policy is deleted"
        );
        assert!(state.policies.values().any(|p| p.arn == w.previous));
        assert!(report.left.is_empty(), "k={k:?}: {report:?}");
    }
}

#[tokio::test]
async fn the_sweep_itself_survives_a_crash_after_any_call() {
    let w = world();
    enforce_then_force_delete(&w, None).await;
    let before = w.iam.call_count();
    sweep_until_done(&w, &ProtectedPrincipals::default()).await;
    let sweep_calls = w.iam.call_count() - before;
    assert!(sweep_calls > 5, "{sweep_calls}");
    println!("boundary orphan sweep: {sweep_calls} IAM calls, each one crashed after in turn");
    for j in 1..=sweep_calls {
        let w = world();
        enforce_then_force_delete(&w, None).await;
        let armed = w.iam.call_count() + j;
        w.iam.crash_after_call(armed);
        sweep_until_done(&w, &ProtectedPrincipals::default()).await;
        assert!(
            w.iam.call_count() > armed,
            "the crash at call {armed} was reached"
        );
        assert_eq!(
            boundaries(&w),
            vec![Some(w.previous.clone()), None, Some(w.previous.clone())],
            "sweep crash after call {j}"
        );
        assert!(!w.iam.state().policies.values().any(|p| p.arn == w.ours));
    }
}

#[tokio::test]
async fn the_sweep_touches_no_live_quarantine_no_protected_principal_and_no_untrusted_record() {
    // A live Quarantine: its boundary policy and principals are not the sweep's.
    let w = world();
    enforce_then_force_delete(&w, None).await;
    let live: std::collections::BTreeSet<_> = [key("q1")].into_iter().collect();
    let writes = w.iam.write_count();
    let r = apply::sweep_orphans(
        &w.clients,
        &ProtectedPrincipals::default(),
        CLUSTER,
        &[ACCOUNT.to_string()],
        &live,
        WriteGate::KillSwitch,
    )
    .await
    .unwrap();
    assert!(r.orphans.is_empty(), "{r:?}");
    assert_eq!(w.iam.write_count(), writes);
    assert_eq!(boundaries(&w), vec![Some(w.ours.clone()); 3]);

    // Dry-run: found, reported, nothing sent.
    let r = apply::sweep_orphans(
        &w.clients,
        &ProtectedPrincipals::default(),
        CLUSTER,
        &[ACCOUNT.to_string()],
        &std::collections::BTreeSet::new(),
        WriteGate::DryRun,
    )
    .await
    .unwrap();
    assert_eq!(r.orphans, vec![w.ours.clone()]);
    assert_eq!(w.iam.write_count(), writes, "{:?}", w.iam.write_log());

    // Someone rewrote the first record to a policy of another account, and the user is
    // protected: both keep ours (reported), the second target gets its "none" back, and our
    // policy stays while anyone still holds it.
    w.iam
        .tag_policy(
            &w.ours,
            &[autoguardrails::aws::Tag::new(
                boundary::previous_key(PrincipalKind::Role, "with-boundary"),
                "arn:aws:iam::999999999999:policy/AdminEverything",
            )],
        )
        .await
        .unwrap();
    let protected = ProtectedPrincipals::parse([w.targets[2].1.as_str()]).unwrap();
    let before = w.iam.write_count();
    let r = sweep_until_done(&w, &protected).await;
    assert_eq!(
        boundaries(&w),
        vec![Some(w.ours.clone()), None, Some(w.ours.clone())],
        "{r:?}"
    );
    assert_eq!(r.left.len(), 2, "{r:?}");
    assert!(
        r.left.iter().any(|(_, why)| why.contains("999999999999")),
        "{r:?}"
    );
    assert!(
        r.left.iter().any(|(_, why)| why.contains("protected")),
        "{r:?}"
    );
    assert!(w.iam.state().policies.values().any(|p| p.arn == w.ours));
    let sweep_writes: Vec<String> = w.iam.write_log()[before..]
        .iter()
        .map(|x| format!("{:?} {}", x.operation, x.arguments))
        .collect();
    assert_eq!(
        sweep_writes,
        vec!["DeleteRolePermissionsBoundary role/without-boundary".to_string()],
        "only the target with a trusted record and not protected is written"
    );
}
