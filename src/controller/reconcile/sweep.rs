//! The orphan sweep: periodically releases every IAM object of ours whose Quarantine is gone or
//! has ended (a crash between steps, a finalizer removed by hand, a reinstall) — deny policies,
//! and boundary policies with each recorded principal's previous boundary put back (decision
//! 251) — and refreshes the quarantine and policy gauges. It only ever releases (the kill-switch gate is used, so enforcement
//! writes are impossible) and holds the IAM lock exclusively so no reconcile creates a policy
//! for a Quarantine it has not seen yet.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio::sync::watch;

use super::{Shared, desired};
use crate::controller::crd::Phase;
use crate::controller::crd::conditions::{READY, condition_status};
use crate::controller::enforce::converge::{ConvergeInput, Scope, WriteGate};

/// Every phase, for the gauge.
const PHASES: [Phase; 8] = [
    Phase::DryRun,
    Phase::PendingApproval,
    Phase::Active,
    Phase::Releasing,
    Phase::Released,
    Phase::Rejected,
    Phase::Expired,
    Phase::Failed,
];

/// Refreshes `autoguardrails_quarantines{phase}` and `autoguardrails_policies{ready}` from the
/// caches (one pass each; every 15 s rather than on every reconcile, which made a cold start with
/// many policies quadratic).
pub fn refresh_gauges(ctx: &Shared) {
    let (mut ready_true, mut ready_false) = (0i64, 0i64);
    for p in ctx.stores.policies() {
        match p
            .status
            .as_ref()
            .and_then(|s| condition_status(&s.conditions, READY))
        {
            Some("True") => ready_true += 1,
            Some("False") => ready_false += 1,
            _ => {}
        }
    }
    ctx.metrics
        .policies
        .with_label_values(&["true"])
        .set(ready_true);
    ctx.metrics
        .policies
        .with_label_values(&["false"])
        .set(ready_false);
    let mut counts: BTreeMap<&'static str, i64> = PHASES.iter().map(|p| (p.as_str(), 0)).collect();
    for q in ctx.stores.quarantines() {
        if let Some(p) = q.status.as_ref().and_then(|s| s.phase) {
            *counts.entry(p.as_str()).or_insert(0) += 1;
        }
    }
    let (_, ended) = ctx.stores.ended().targets_and_phases();
    for (phase, n) in ended {
        *counts.entry(phase).or_insert(0) += n;
    }
    // Retired ones, as the last scan counted them (decision 154).
    if let Ok(retired) = ctx.retired.lock()
        && let Some(retired) = retired.as_ref()
    {
        for (phase, n) in &retired.phases {
            *counts.entry(phase).or_insert(0) += n;
        }
    }
    for (phase, n) in counts {
        ctx.metrics.quarantines.with_label_values(&[phase]).set(n);
    }
}

/// One sweep: release objects owned by quarantines that are absent from the cache or ended.
/// Returns how many release writes were sent.
#[tracing::instrument(name = "orphan_sweep", skip_all)]
pub async fn sweep_once(ctx: &Shared) -> usize {
    let _exclusive = ctx.iam_lock.write().await;
    let quarantines = ctx.stores.quarantines();
    let mut keep = BTreeSet::new();
    let mut known = Vec::new();
    let mut accounts: BTreeSet<String> = ctx.settings.accounts.iter().cloned().collect();
    for q in &quarantines {
        accounts.extend(desired::accounts(q));
        let phase = q.status.as_ref().and_then(|s| s.phase);
        if phase.is_some_and(Phase::is_terminal) {
            known.extend(desired::known_principals(q));
        } else {
            keep.insert(desired::key(q));
        }
    }
    // Ended quarantines outside the cache (decision 140): their targets are scanned as before.
    let (mut ended, _) = ctx.stores.ended().targets_and_phases();
    // Retired ones, as the last scan found them (decision 154); before the first scan only the
    // cached ones are looked at (fewer principals, never more releases).
    if let Ok(retired) = ctx.retired.lock()
        && let Some(retired) = retired.as_ref()
    {
        ended.extend(retired.targets.iter().cloned());
    }
    for target in ended {
        if let Ok(parsed) = target.parse() {
            accounts.insert(parsed.account_id().to_string());
        }
        known.push(desired::known_principal(&target));
    }
    // Many ended quarantines name the same principal: scan each once (exact duplicates only).
    let mut seen = BTreeSet::new();
    known.retain(|k| seen.insert((k.arn.clone(), format!("{:?}", k.kind))));
    // The accounts the policies name: a Quarantine deleted without its finalizer leaves no
    // trace in the caches, but its policy usually still names its targets' accounts.
    accounts.extend(policy_accounts(ctx));
    let accounts: Vec<String> = accounts.into_iter().collect();
    let boundaries = sweep_boundaries(ctx, &accounts, &keep).await;
    let input = ConvergeInput {
        desired: Vec::new(),
        known_principals: known,
        accounts,
        gate: WriteGate::KillSwitch,
        scope: Scope::Except(keep),
    };
    boundaries
        + match ctx.engine.converge(ctx.clients.as_ref(), &input).await {
            Ok(report) => {
                let sent = report.writes.iter().filter(|w| w.performed).count();
                for (op, n) in &report.calls.by_operation {
                    ctx.metrics
                        .iam_calls
                        .with_label_values(&[op.to_string().as_str(), "sent"])
                        .inc_by(*n);
                }
                if sent > 0 {
                    tracing::warn!(writes = sent, "orphan sweep released leftovers");
                }
                for e in &report.errors {
                    tracing::warn!(account = %e.account_id, error = %e.message, "orphan sweep");
                }
                sent
            }
            Err(e) => {
                tracing::warn!(error = %e, "orphan sweep aborted");
                0
            }
        }
}

/// The accounts of every cached policy's explicit principals, selector account lists and last
/// resolved targets (an OU's accounts).
fn policy_accounts(ctx: &Shared) -> BTreeSet<String> {
    let mut accounts = BTreeSet::new();
    let account_of = |arn: &str| {
        arn.split(':')
            .nth(4)
            .filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_string)
    };
    for policy in ctx.stores.policies() {
        let scope = &policy.spec.scope;
        accounts.extend(scope.principals.iter().filter_map(|p| account_of(&p.arn)));
        for selector in &scope.selectors {
            accounts.extend(selector.accounts.iter().cloned());
        }
        let (namespace, name) = (
            policy.metadata.namespace.clone().unwrap_or_default(),
            policy.metadata.name.clone().unwrap_or_default(),
        );
        if let Some(resolution) = ctx.stores.resolutions().get(&namespace, &name)
            && let crate::controller::policy::selectors::Outcome::Resolved(targets) =
                &resolution.outcome
        {
            accounts.extend(targets.iter().filter_map(|t| account_of(&t.principal.arn)));
        }
    }
    accounts
}

/// The boundary half of the sweep (decision 251): our boundary policies whose Quarantine is not
/// live get each recorded principal's previous boundary back and are deleted. Returns how many
/// release writes were sent.
async fn sweep_boundaries(
    ctx: &Shared,
    accounts: &[String],
    live: &BTreeSet<crate::controller::enforce::ownership::QuarantineKey>,
) -> usize {
    let report = crate::controller::enforce::boundary::apply::sweep_orphans(
        ctx.clients.as_ref(),
        &ctx.engine.config().protected,
        &ctx.settings.cluster_id,
        accounts,
        live,
        WriteGate::KillSwitch,
    )
    .await;
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "orphan sweep of boundaries aborted");
            return 0;
        }
    };
    for (op, n) in &report.report.calls.by_operation {
        ctx.metrics
            .iam_calls
            .with_label_values(&[op.to_string().as_str(), "sent"])
            .inc_by(*n);
    }
    for (principal, previous) in &report.restored {
        tracing::warn!(
            principal = %principal,
            restored = previous.as_deref().unwrap_or("none"),
            "orphan sweep put back the permissions boundary a deleted quarantine had replaced"
        );
    }
    for (principal, why) in &report.left {
        tracing::warn!(principal = %principal, reason = %why, "orphan sweep left our permissions boundary on");
    }
    for (category, message) in &report.report.errors {
        tracing::warn!(category = %category.as_str(), error = %message, "orphan sweep of boundaries");
    }
    report.report.writes.iter().filter(|w| w.performed).count()
}

/// How often ended quarantines are checked for retirement (decision 154).
const RETIRE_PERIOD: std::time::Duration = std::time::Duration::from_secs(30);
/// The first scan of the retired quarantines waits this long (or the sweep period when shorter)
/// after the caches sync, so it does not compete with a cold start's reconciles.
const FIRST_SCAN_DELAY: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs the sweep after the caches sync and then every `sweep_period`, the retirement pass every
/// 30 s, and the scan of the retired quarantines every `sweep_period` (the first after at most a
/// minute), until shutdown.
pub async fn run(ctx: Arc<Shared>, shutdown: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = ctx.stores.wait_ready() => {}
        _ = shutdown.changed() => return,
    }
    let mut gauge = tokio::time::interval(std::time::Duration::from_secs(15));
    let mut sweep = tokio::time::interval(ctx.settings.sweep_period);
    let retire_every = ctx
        .settings
        .retire_after
        .and_then(|d| std::time::Duration::try_from(d).ok())
        .map_or(RETIRE_PERIOD, |d| {
            d.clamp(std::time::Duration::from_secs(1), RETIRE_PERIOD)
        });
    let mut retire = tokio::time::interval(retire_every);
    retire.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let first_scan = ctx.settings.sweep_period.min(FIRST_SCAN_DELAY);
    let mut scan = tokio::time::interval_at(
        tokio::time::Instant::now() + first_scan,
        ctx.settings.sweep_period,
    );
    scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            _ = gauge.tick() => refresh_gauges(&ctx),
            _ = sweep.tick() => { sweep_once(&ctx).await; }
            _ = retire.tick() => { super::retire::retire_due(&ctx, jiff::Timestamp::now()).await; }
            _ = scan.tick() => scan_retired(&ctx).await,
            _ = shutdown.changed() => return,
        }
    }
}

/// Scans the retired quarantines and keeps what it found for the sweep and the gauge; a failed
/// scan keeps the previous result.
pub async fn scan_retired(ctx: &Shared) {
    match super::retire::scan(&ctx.client, &ctx.settings.namespaces).await {
        Ok(found) => {
            tracing::debug!(
                targets = found.targets.len(),
                quarantines = found.phases.values().sum::<i64>(),
                "retired quarantines scanned"
            );
            if let Ok(mut kept) = ctx.retired.lock() {
                *kept = Some(found);
            }
            refresh_gauges(ctx);
        }
        Err(e) => {
            tracing::warn!(error = %e, "scanning the retired quarantines failed; the last scan is kept")
        }
    }
}
