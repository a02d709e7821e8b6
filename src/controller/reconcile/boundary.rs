//! The Quarantine reconcile's `setPermissionsBoundary` step (decision 240): translates the
//! status records (`status.boundaries`) into the boundary executor's input, runs it, and turns its
//! report into the new records, target states, drift messages, Events and the failure the
//! lifecycle sees. The previous boundary is recorded in the status write of one reconcile and our
//! boundary is put on only by a later one, so no IAM call precedes the record. It must not
//! decide the lifecycle nor make IAM calls itself.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{Error, Shared, desired};
use crate::aws::ErrorCategory;
use crate::controller::crd::{
    BoundaryState, BoundaryStatus, Quarantine, TargetState, TargetStatus,
};
use crate::controller::enforce::boundary::apply::{self, Input, Outcome, Report, Target};
use crate::controller::enforce::boundary::{self, Record, Stage};
use crate::controller::enforce::converge::WriteGate;
use crate::principal::PrincipalArn;

/// What the boundary step concluded.
#[derive(Debug, Default)]
pub struct BoundaryOutcome {
    /// The new `status.boundaries`.
    pub records: Vec<BoundaryStatus>,
    /// Per spec target, the boundary's state as a target state (boundary-only quarantines).
    pub targets: Vec<TargetStatus>,
    /// Why the step failed (category, message), when it did.
    pub failure: Option<(ErrorCategory, String)>,
    /// Whether every failure is worth retrying.
    pub retryable: bool,
    /// Some previous boundary was recorded in this run: come back at once to put ours on.
    pub recorded: bool,
    /// Our boundary is on every target (enforce), or every target is released (release).
    pub done: bool,
    /// Drift repairs, for the history and `DriftRepaired` Events.
    pub drift: Vec<String>,
    /// Release: targets whose boundary someone else changed; left as they set it.
    pub left_changed: Vec<String>,
    /// Protected targets, never touched.
    pub refused: Vec<String>,
}

fn stage_of(state: BoundaryState) -> Stage {
    match state {
        BoundaryState::Recorded => Stage::Recorded,
        BoundaryState::Set => Stage::Set,
        BoundaryState::Restored => Stage::Restored,
        BoundaryState::LeftChanged => Stage::LeftChanged,
    }
}

fn state_of(stage: Stage) -> BoundaryState {
    match stage {
        Stage::Recorded => BoundaryState::Recorded,
        Stage::Set => BoundaryState::Set,
        Stage::Restored => BoundaryState::Restored,
        Stage::LeftChanged => BoundaryState::LeftChanged,
    }
}

fn same_principal(a: &str, b: &str) -> bool {
    match (PrincipalArn::parse(a), PrincipalArn::parse(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// The recorded boundary of `arn`, if any.
fn record_of<'a>(q: &'a Quarantine, arn: &str) -> Option<&'a BoundaryStatus> {
    q.status
        .as_ref()
        .and_then(|s| s.boundaries.iter().find(|b| same_principal(&b.arn, arn)))
}

/// Our boundary policy ARN for a target (deterministic).
fn policy_arn_for(q: &Quarantine, cluster: &str, arn: &str) -> String {
    match PrincipalArn::parse(arn) {
        Ok(p) => {
            let name = boundary::policy_name(cluster, &desired::key(q), p.account_id());
            boundary::policy_arn(p.partition(), p.account_id(), &name)
        }
        Err(_) => String::new(),
    }
}

/// The targets of a run: `enforce` the spec targets not refused; release every recorded one
/// and the spec targets (a target edited out of the spec keeps its record until released).
fn targets(q: &Quarantine, release: bool, refused: &[String]) -> Vec<Target> {
    let mut out: Vec<Target> = q
        .spec
        .targets
        .iter()
        .filter(|t| !refused.iter().any(|r| same_principal(r, &t.arn)))
        .map(|t| Target {
            kind: desired::principal_kind(t.kind),
            arn: t.arn.clone(),
            record: record_of(q, &t.arn).map(to_record),
        })
        .collect();
    if release {
        for b in q.status.iter().flat_map(|s| s.boundaries.iter()) {
            if out.iter().any(|t| same_principal(&t.arn, &b.arn)) {
                continue;
            }
            let kind = match PrincipalArn::parse(&b.arn).map(|p| p.kind()) {
                Ok(crate::principal::PrincipalKind::User) => crate::aws::PrincipalKind::User,
                _ => crate::aws::PrincipalKind::Role,
            };
            out.push(Target {
                kind,
                arn: b.arn.clone(),
                record: Some(to_record(b)),
            });
        }
    }
    out
}

fn to_record(b: &BoundaryStatus) -> Record {
    Record {
        previous: b.previous.clone(),
        stage: stage_of(b.state),
    }
}

/// Runs the boundary executor for `q`: enforce while Active, release otherwise.
pub async fn run(
    q: &Quarantine,
    ctx: &Shared,
    cluster: &str,
    deny_document: &str,
    gate: WriteGate,
    release: bool,
    refused: &[String],
) -> Result<BoundaryOutcome, Error> {
    let input = Input {
        key: desired::key(q),
        cluster: cluster.to_string(),
        deny_document: deny_document.to_string(),
        targets: targets(q, release, refused),
        gate,
    };
    let protected = &ctx.engine.config().protected;
    let report = {
        let _shared = ctx.iam_lock.read().await;
        if release {
            apply::release(ctx.clients.as_ref(), protected, &input).await
        } else {
            apply::enforce(ctx.clients.as_ref(), protected, &input).await
        }
        .map_err(Error::Aborted)?
    };
    count_calls(ctx, &report);
    Ok(conclude(q, cluster, &input, &report, release))
}

fn count_calls(ctx: &Shared, report: &Report) {
    for (op, n) in &report.calls.by_operation {
        ctx.metrics
            .iam_calls
            .with_label_values(&[op.to_string().as_str(), "sent"])
            .inc_by(*n);
    }
    for w in report.writes.iter().filter(|w| !w.performed) {
        ctx.metrics
            .iam_calls
            .with_label_values(&[w.operation.to_string().as_str(), "suppressed"])
            .inc();
    }
}

/// The new records and what the lifecycle and people are told. Pure.
fn conclude(
    q: &Quarantine,
    cluster: &str,
    input: &Input,
    report: &Report,
    release: bool,
) -> BoundaryOutcome {
    let now = Timestamp::now();
    let mut out = BoundaryOutcome {
        retryable: true,
        ..BoundaryOutcome::default()
    };
    // Records of principals not in this run are kept as they are.
    let mut records: Vec<BoundaryStatus> = q
        .status
        .iter()
        .flat_map(|s| s.boundaries.iter())
        .filter(|b| !input.targets.iter().any(|t| same_principal(&t.arn, &b.arn)))
        .cloned()
        .collect();
    let mut failures: Vec<(ErrorCategory, String)> = Vec::new();
    let mut all_done = true;
    for (target, result) in input.targets.iter().zip(&report.targets) {
        let old = record_of(q, &target.arn);
        let next = apply::next_record(target.record.as_ref(), &result.outcome);
        let mut last_error = None;
        let mut found = old.and_then(|b| b.found.clone());
        let mut state = TargetState::Planned;
        match &result.outcome {
            Outcome::InPlace => state = TargetState::Attached,
            Outcome::Put {
                performed,
                repair,
                replaced,
            } => {
                if *performed {
                    state = TargetState::Attached;
                    if *repair || replaced.is_some() {
                        out.drift.push(match replaced {
                            Some(theirs) => format!(
                                "PermissionsBoundary on {}: {theirs} (not ours, not the recorded previous one) was replaced by ours again",
                                target.arn
                            ),
                            None => format!(
                                "PermissionsBoundary on {}: ours was put back",
                                target.arn
                            ),
                        });
                    }
                } else {
                    all_done = false;
                }
            }
            Outcome::RecordFirst { .. } => {
                out.recorded = true;
                all_done = false;
            }
            Outcome::Restored { performed } => {
                state = TargetState::Detached;
                all_done &= *performed;
            }
            Outcome::AlreadyRestored | Outcome::Untouched => state = TargetState::Detached,
            Outcome::LeftChanged { found: theirs } => {
                state = TargetState::Detached;
                found = theirs.clone();
                out.left_changed.push(format!(
                    "{}: its permissions boundary is {} (set by someone else while ours was on); left as it is, not restored to {}",
                    target.arn,
                    theirs.as_deref().unwrap_or("none"),
                    target
                        .record
                        .as_ref()
                        .and_then(|r| r.previous.as_deref())
                        .unwrap_or("none"),
                ));
            }
            Outcome::Refused(message) => {
                out.refused.push(message.clone());
                state = if release {
                    TargetState::Detached
                } else {
                    TargetState::Failed
                };
                last_error = Some(message.clone());
                if !release {
                    failures.push((ErrorCategory::Invalid, message.clone()));
                    out.retryable = false;
                }
            }
            Outcome::Failed { category, message } => {
                state = TargetState::Failed;
                last_error = Some(message.clone());
                failures.push((*category, message.clone()));
                all_done = false;
            }
        }
        if let Some(r) = next {
            records.push(BoundaryStatus {
                arn: target.arn.clone(),
                previous: r.previous.clone(),
                state: state_of(r.stage),
                policy_arn: old
                    .map(|b| b.policy_arn.clone())
                    .unwrap_or_else(|| policy_arn_for(q, cluster, &target.arn)),
                found: (r.stage == Stage::LeftChanged).then_some(found).flatten(),
                last_error,
            });
        }
        if q.spec
            .targets
            .iter()
            .any(|t| same_principal(&t.arn, &target.arn))
        {
            out.targets.push(TargetStatus {
                arn: target.arn.clone(),
                attachment: None,
                state,
                last_error: match &result.outcome {
                    Outcome::Failed { message, .. } | Outcome::Refused(message) => {
                        Some(message.clone())
                    }
                    _ => None,
                },
                last_verified_at: (state == TargetState::Attached).then_some(Time(now)),
            });
        }
    }
    for arn in &report.document_repairs {
        out.drift.push(format!(
            "PermissionsBoundary policy {arn}: its document was edited; ours was put back"
        ));
    }
    failures.extend(report.errors.iter().cloned());
    if !failures.is_empty() {
        out.retryable &= failures.iter().all(|(c, _)| {
            matches!(
                c,
                ErrorCategory::Transient | ErrorCategory::Conflict | ErrorCategory::AccessDenied
            )
        });
        let category = failures
            .iter()
            .map(|(c, _)| *c)
            .max_by_key(|c| match c {
                ErrorCategory::Invalid | ErrorCategory::Quota | ErrorCategory::NotFound => 3,
                ErrorCategory::AccessDenied => 2,
                ErrorCategory::Conflict => 1,
                ErrorCategory::Transient => 0,
            })
            .unwrap_or(ErrorCategory::Transient);
        let message = failures
            .iter()
            .map(|(_, m)| m.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        out.failure = Some((category, format!("permissions boundary: {message}")));
    }
    out.done = all_done && out.failure.is_none();
    // Keep the records in spec order, then the others.
    records.sort_by_key(|b| {
        q.spec
            .targets
            .iter()
            .position(|t| same_principal(&t.arn, &b.arn))
            .unwrap_or(usize::MAX)
    });
    out.records = records;
    out
}
