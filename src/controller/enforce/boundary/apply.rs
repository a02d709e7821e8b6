//! The permissions-boundary executor over the IAM trait: reads each target's boundary, asks the
//! pure decisions in `boundary`, and makes the writes through the write gate (`Recorder`), so
//! dry-run sends nothing and the kill switch lets only release writes through. It must not know
//! about Kubernetes or CRD types; recording the previous boundary in status is the caller's
//! job, and it never puts a boundary on a target whose previous boundary is not recorded.

use std::collections::BTreeMap;

use crate::aws::factory::ClientFactory;
use crate::aws::{AwsError, AwsResult, ErrorCategory, ErrorCode, Iam, PrincipalKind};

use super::super::converge::{EnforceError, WriteGate};
use super::super::ownership::{POLICY_PATH, Principal, QuarantineKey, parse_principal};
use super::super::plan::ProtectedPrincipals;
use super::super::recorder::{CallStats, RecordedWrite, Recorder};
use super::{EnforceDecision, Record, ReleaseDecision, Seen, decide_enforce, decide_release};

/// One target and what status recorded about its boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Role or user.
    pub kind: PrincipalKind,
    /// Principal ARN.
    pub arn: String,
    /// The status record, when there is one.
    pub record: Option<Record>,
}

/// One quarantine's boundary work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// The quarantine.
    pub key: QuarantineKey,
    /// The cluster id its IAM objects are named and tagged with.
    pub cluster: String,
    /// The deny document JSON (the boundary document is built from it).
    pub deny_document: String,
    /// The targets.
    pub targets: Vec<Target>,
    /// Write gate.
    pub gate: WriteGate,
}

/// What happened to one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Ours is on (a read showed it).
    InPlace,
    /// The previous boundary must be recorded in status before anything is written.
    RecordFirst {
        /// The boundary found.
        previous: Option<String>,
    },
    /// Ours was put on (`performed` false: the write gate held it back).
    Put {
        /// Whether the write was sent.
        performed: bool,
        /// Ours had been on and was gone (drift repair).
        repair: bool,
        /// The boundary found instead, when neither ours nor the recorded previous one.
        replaced: Option<String>,
    },
    /// Release: the previous boundary was put back, or ours deleted when there was none.
    Restored {
        /// Whether the write was sent.
        performed: bool,
    },
    /// Release: the previous boundary was already there, or the principal is gone.
    AlreadyRestored,
    /// Release: someone else's boundary is on; left as it is.
    LeftChanged {
        /// That boundary (`None`: someone removed ours).
        found: Option<String>,
    },
    /// Nothing to do: never recorded, or released before.
    Untouched,
    /// A protected principal: never touched.
    Refused(String),
    /// Blocked or failed; retried.
    Failed {
        /// Category.
        category: ErrorCategory,
        /// Message.
        message: String,
    },
}

/// One target's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetResult {
    /// Principal ARN as given.
    pub arn: String,
    /// What happened.
    pub outcome: Outcome,
}

/// The audit record of one boundary run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Per target, in input order.
    pub targets: Vec<TargetResult>,
    /// Boundary policies created in this run.
    pub policies_created: Vec<String>,
    /// Boundary policies deleted in this run (release).
    pub policies_deleted: Vec<String>,
    /// Boundary policies whose edited document was put back in this run (drift).
    pub document_repairs: Vec<String>,
    /// Errors not tied to one target (the policy could not be created or deleted).
    pub errors: Vec<(ErrorCategory, String)>,
    /// Every write issued, sent or not.
    pub writes: Vec<RecordedWrite>,
    /// AWS calls.
    pub calls: CallStats,
}

impl Report {
    /// Whether every target is done and nothing failed.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
            && self
                .targets
                .iter()
                .all(|t| !matches!(t.outcome, Outcome::Failed { .. }))
    }

    fn absorb(&mut self, rec: &Recorder<'_>) {
        self.writes.extend(rec.writes());
        let s = rec.stats();
        self.calls.reads += s.reads;
        self.calls.writes += s.writes;
        self.calls.suppressed_writes += s.suppressed_writes;
        for (k, v) in s.by_operation {
            *self.calls.by_operation.entry(k).or_default() += v;
        }
    }
}

fn crashed<T>(r: AwsResult<T>) -> Result<AwsResult<T>, EnforceError> {
    match r {
        Err(e) if e.code == ErrorCode::Crashed => Err(EnforceError::Aborted(e)),
        other => Ok(other),
    }
}

fn failed(what: String, e: &AwsError) -> Outcome {
    Outcome::Failed {
        category: e.category(),
        message: format!("failed to {what}: {e}"),
    }
}

/// Targets grouped by account, in input order; unparsable ones answered at once.
type Grouped = BTreeMap<String, Vec<(usize, Principal, Option<Record>)>>;

fn group(
    input: &Input,
    protected: &ProtectedPrincipals,
    results: &mut [Option<Outcome>],
) -> Grouped {
    let mut by_account: Grouped = BTreeMap::new();
    for (i, t) in input.targets.iter().enumerate() {
        match parse_principal(t.kind, &t.arn) {
            Ok(p) if protected.contains_ref(&p.partition, &p.account_id, &p.reference()) => {
                results[i] = Some(Outcome::Refused(format!(
                    "refusing to change the permissions boundary of {}: it is a protected principal",
                    t.arn
                )));
            }
            Ok(p) => {
                by_account
                    .entry(p.account_id.clone())
                    .or_default()
                    .push((i, p, t.record.clone()))
            }
            Err(e) => {
                results[i] = Some(Outcome::Failed {
                    category: ErrorCategory::Invalid,
                    message: e,
                })
            }
        }
    }
    by_account
}

async fn read(rec: &Recorder<'_>, p: &Principal) -> Result<Seen, EnforceError> {
    Ok(
        match crashed(rec.get_permissions_boundary(&p.reference()).await)? {
            Ok(b) => Seen::Boundary(b),
            Err(e) if e.code == ErrorCode::NoSuchEntity => Seen::Missing,
            Err(e) => Seen::Unreadable(e.to_string(), e.category()),
        },
    )
}

fn finish(results: Vec<Option<Outcome>>, input: &Input, report: &mut Report) {
    report.targets = input
        .targets
        .iter()
        .zip(results)
        .map(|(t, o)| TargetResult {
            arn: t.arn.clone(),
            outcome: o.unwrap_or(Outcome::Failed {
                category: ErrorCategory::Transient,
                message: "not reached in this run".to_string(),
            }),
        })
        .collect();
}

/// Keeps our boundary on every target whose previous boundary is recorded; asks for the record
/// first for the others. Returns `Err` only when a call reports a crash (test double).
pub async fn enforce(
    clients: &dyn ClientFactory,
    protected: &ProtectedPrincipals,
    input: &Input,
) -> Result<Report, EnforceError> {
    let document = match super::document(&input.deny_document) {
        Ok(d) => d,
        Err(e) => {
            let mut report = Report::default();
            let results = vec![
                Some(Outcome::Failed {
                    category: ErrorCategory::Invalid,
                    message: format!("boundary document: {e}"),
                });
                input.targets.len()
            ];
            finish(results, input, &mut report);
            return Ok(report);
        }
    };
    let mut report = Report::default();
    let mut results: Vec<Option<Outcome>> = vec![None; input.targets.len()];
    let allowed = input.gate == WriteGate::Enforce;
    for (account, targets) in group(input, protected, &mut results) {
        let iam = match clients.iam_for(&account).await {
            Ok(c) => c,
            Err(e) => {
                for (i, _, _) in &targets {
                    results[*i] = Some(Outcome::Failed {
                        category: e.category(),
                        message: format!("no IAM client for account {account}: {e}"),
                    });
                }
                continue;
            }
        };
        let rec = Recorder::new(iam.as_ref());
        let partition = targets
            .first()
            .map(|(_, p, _)| p.partition.clone())
            .unwrap_or_else(|| "aws".to_string());
        let name = super::policy_name(&input.cluster, &input.key, &account);
        let ours = super::policy_arn(&partition, &account, &name);
        // The policy is created (or proven ours) once per account, before the first put.
        let mut policy_ready: Option<Result<(), Outcome>> = None;
        let run = async {
            for (i, principal, record) in &targets {
                let seen = read(&rec, principal).await?;
                let outcome = match decide_enforce(record.as_ref(), &seen, &ours) {
                    EnforceDecision::Blocked(message, category) => Outcome::Failed {
                        category,
                        message: format!("{}: {message}", principal.arn),
                    },
                    EnforceDecision::InPlace => Outcome::InPlace,
                    EnforceDecision::Record { previous } => Outcome::RecordFirst { previous },
                    EnforceDecision::Put { repair, replaced } => {
                        if policy_ready.is_none() {
                            rec.allow_writes(allowed);
                            let r = ensure_policy(
                                &rec,
                                &input.cluster,
                                &input.key,
                                &account,
                                &name,
                                &ours,
                                &document,
                                &mut report,
                            )
                            .await;
                            rec.allow_writes(false);
                            policy_ready = Some(r?);
                        }
                        match &policy_ready {
                            Some(Err(o)) => o.clone(),
                            _ => {
                                rec.allow_writes(allowed);
                                let r = crashed(
                                    rec.put_permissions_boundary(&principal.reference(), &ours)
                                        .await,
                                );
                                rec.allow_writes(false);
                                match r? {
                                    Ok(()) => Outcome::Put {
                                        performed: allowed,
                                        repair,
                                        replaced,
                                    },
                                    Err(e) => failed(
                                        format!("put boundary {ours} on {}", principal.arn),
                                        &e,
                                    ),
                                }
                            }
                        }
                    }
                };
                results[*i] = Some(outcome);
            }
            // Ours is on somewhere and was not just created: its document must still be ours.
            let holds = targets.iter().any(|(i, _, _)| {
                matches!(
                    results[*i],
                    Some(
                        Outcome::InPlace
                            | Outcome::Put {
                                performed: true,
                                ..
                            }
                    )
                )
            });
            if holds && !report.policies_created.contains(&ours) {
                rec.allow_writes(allowed);
                let r = restore_document(
                    &rec,
                    &input.cluster,
                    &input.key,
                    &account,
                    &ours,
                    &document,
                    &mut report,
                )
                .await;
                rec.allow_writes(false);
                r?;
            }
            Ok::<(), EnforceError>(())
        };
        let r = run.await;
        report.absorb(&rec);
        r?;
    }
    finish(results, input, &mut report);
    Ok(report)
}

/// Puts our document back as the default version when someone edited our boundary policy (and
/// deletes the edited version). Only a provably-owned policy is touched.
#[allow(clippy::too_many_arguments)]
async fn restore_document(
    rec: &Recorder<'_>,
    cluster: &str,
    key: &QuarantineKey,
    account: &str,
    arn: &str,
    document: &str,
    report: &mut Report,
) -> Result<(), EnforceError> {
    let policy = match crashed(rec.get_policy(arn).await)? {
        Ok(p)
            if super::owner(cluster, account, &p.path, &p.name, &p.tags).as_ref() == Some(key) =>
        {
            p
        }
        Ok(_) => {
            report.errors.push((
                ErrorCategory::Conflict,
                format!("boundary policy {arn} no longer carries our tags; not touching it"),
            ));
            return Ok(());
        }
        Err(e) if e.code == ErrorCode::NoSuchEntity => return Ok(()),
        Err(e) => {
            report.errors.push((
                e.category(),
                format!("failed to read boundary policy {arn}: {e}"),
            ));
            return Ok(());
        }
    };
    let current = match crashed(
        rec.get_policy_version(arn, &policy.default_version_id)
            .await,
    )? {
        Ok(v) => v.document.unwrap_or_default(),
        Err(e) => {
            report.errors.push((
                e.category(),
                format!("failed to read the document of boundary policy {arn}: {e}"),
            ));
            return Ok(());
        }
    };
    if super::super::ownership::same_document(&current, document) {
        return Ok(());
    }
    let mut created = crashed(rec.create_policy_version(arn, document, true).await)?;
    if matches!(&created, Err(e) if e.code == ErrorCode::LimitExceeded) {
        prune_versions(rec, arn).await?;
        created = crashed(rec.create_policy_version(arn, document, true).await)?;
    }
    match created {
        Ok(_) => {
            report.document_repairs.push(arn.to_string());
            match crashed(
                rec.delete_policy_version(arn, &policy.default_version_id)
                    .await,
            )? {
                Ok(()) => {}
                Err(e) if e.code == ErrorCode::NoSuchEntity => {}
                Err(e) => report.errors.push((
                    e.category(),
                    format!("failed to delete the edited version of {arn}: {e}"),
                )),
            }
        }
        Err(e) => report.errors.push((
            e.category(),
            format!("failed to restore the document of boundary policy {arn}: {e}"),
        )),
    }
    Ok(())
}

/// Deletes every non-default version of `arn` (errors are left to the caller's next call).
async fn prune_versions(rec: &Recorder<'_>, arn: &str) -> Result<(), EnforceError> {
    if let Ok(versions) = crashed(rec.list_policy_versions(arn).await)? {
        for v in versions.iter().filter(|v| !v.is_default) {
            let _ = crashed(rec.delete_policy_version(arn, &v.version_id).await)?;
        }
    }
    Ok(())
}

/// Makes sure our boundary policy exists and is provably ours. `Ok(Err(outcome))`: it cannot be
/// used (the failure every put of this account reports).
#[allow(clippy::too_many_arguments)]
async fn ensure_policy(
    rec: &Recorder<'_>,
    cluster: &str,
    key: &QuarantineKey,
    account: &str,
    name: &str,
    arn: &str,
    document: &str,
    report: &mut Report,
) -> Result<Result<(), Outcome>, EnforceError> {
    let proven = |p: &crate::aws::ManagedPolicy| {
        super::owner(cluster, account, &p.path, &p.name, &p.tags).as_ref() == Some(key)
    };
    let not_ours = || Outcome::Failed {
        category: ErrorCategory::Conflict,
        message: format!("policy {arn} exists but its tags do not prove it is ours; not using it"),
    };
    match crashed(rec.get_policy(arn).await)? {
        Ok(p) if proven(&p) => return Ok(Ok(())),
        Ok(_) => return Ok(Err(not_ours())),
        Err(e) if e.code == ErrorCode::NoSuchEntity => {}
        Err(e) => return Ok(Err(failed(format!("read boundary policy {arn}"), &e))),
    }
    let tags = super::tags(cluster, key);
    match crashed(rec.create_policy(name, POLICY_PATH, document, &tags).await)? {
        Ok(_) => {
            report.policies_created.push(arn.to_string());
            Ok(Ok(()))
        }
        Err(e) if e.code == ErrorCode::EntityAlreadyExists => {
            match crashed(rec.get_policy(arn).await)? {
                Ok(p) if proven(&p) => Ok(Ok(())),
                Ok(_) => Ok(Err(not_ours())),
                Err(e) => Ok(Err(failed(format!("read boundary policy {arn}"), &e))),
            }
        }
        Err(e) => Ok(Err(failed(format!("create boundary policy {arn}"), &e))),
    }
}

/// Restores every recorded target's previous boundary (or removes ours when there was none),
/// leaves a boundary someone else put on, then deletes our boundary policy. Release writes pass
/// the kill switch; never the dry-run gate. `Err` only on a crash (test double).
pub async fn release(
    clients: &dyn ClientFactory,
    protected: &ProtectedPrincipals,
    input: &Input,
) -> Result<Report, EnforceError> {
    let mut report = Report::default();
    let mut results: Vec<Option<Outcome>> = vec![None; input.targets.len()];
    // Release writes pass the kill switch; nothing passes the dry-run gate.
    let allowed = input.gate != WriteGate::DryRun;
    for (account, targets) in group(input, protected, &mut results) {
        // Never recorded anywhere in this account: we never created anything there.
        if targets.iter().all(|(_, _, r)| r.is_none()) {
            for (i, _, _) in &targets {
                results[*i] = Some(Outcome::Untouched);
            }
            continue;
        }
        let iam = match clients.iam_for(&account).await {
            Ok(c) => c,
            Err(e) => {
                for (i, _, _) in &targets {
                    results[*i] = Some(Outcome::Failed {
                        category: e.category(),
                        message: format!("no IAM client for account {account}: {e}"),
                    });
                }
                continue;
            }
        };
        let rec = Recorder::new(iam.as_ref());
        let partition = targets
            .first()
            .map(|(_, p, _)| p.partition.clone())
            .unwrap_or_else(|| "aws".to_string());
        let name = super::policy_name(&input.cluster, &input.key, &account);
        let ours = super::policy_arn(&partition, &account, &name);
        let run = async {
            let mut clean = true;
            for (i, principal, record) in &targets {
                let outcome = if record.is_none() {
                    Outcome::Untouched
                } else {
                    let seen = read(&rec, principal).await?;
                    match decide_release(record.as_ref(), &seen, &ours) {
                        ReleaseDecision::Nothing => Outcome::Untouched,
                        ReleaseDecision::AlreadyRestored => Outcome::AlreadyRestored,
                        ReleaseDecision::LeaveChanged(found) => Outcome::LeftChanged { found },
                        ReleaseDecision::Blocked(message, category) => Outcome::Failed {
                            category,
                            message: format!("{}: {message}", principal.arn),
                        },
                        ReleaseDecision::Restore(previous) => {
                            let pref = principal.reference();
                            rec.allow_writes(allowed);
                            let r = match &previous {
                                Some(prev) => {
                                    crashed(rec.put_permissions_boundary(&pref, prev).await)
                                }
                                None => crashed(rec.delete_permissions_boundary(&pref).await),
                            };
                            rec.allow_writes(false);
                            match r? {
                                Ok(()) => Outcome::Restored { performed: allowed },
                                Err(e)
                                    if e.code == ErrorCode::NoSuchEntity && previous.is_none() =>
                                {
                                    Outcome::Restored { performed: allowed }
                                }
                                Err(e) => failed(
                                    match &previous {
                                        Some(prev) => {
                                            format!("restore boundary {prev} on {}", principal.arn)
                                        }
                                        None => {
                                            format!("remove our boundary from {}", principal.arn)
                                        }
                                    },
                                    &e,
                                ),
                            }
                        }
                    }
                };
                clean &= matches!(
                    outcome,
                    Outcome::Untouched
                        | Outcome::AlreadyRestored
                        | Outcome::LeftChanged { .. }
                        | Outcome::Restored { performed: true }
                );
                results[*i] = Some(outcome);
            }
            if clean && allowed {
                delete_policy(
                    &rec,
                    &input.cluster,
                    &input.key,
                    &account,
                    &ours,
                    &mut report,
                )
                .await?;
            }
            Ok::<(), EnforceError>(())
        };
        let r = run.await;
        report.absorb(&rec);
        r?;
    }
    finish(results, input, &mut report);
    Ok(report)
}

/// Deletes our boundary policy once no target of ours holds it (only if provably ours).
async fn delete_policy(
    rec: &Recorder<'_>,
    cluster: &str,
    key: &QuarantineKey,
    account: &str,
    arn: &str,
    report: &mut Report,
) -> Result<(), EnforceError> {
    match crashed(rec.get_policy(arn).await)? {
        Ok(p)
            if super::owner(cluster, account, &p.path, &p.name, &p.tags).as_ref() == Some(key) => {}
        Ok(_) => return Ok(()), // not provably ours: never touched
        Err(e) if e.code == ErrorCode::NoSuchEntity => return Ok(()),
        Err(e) => {
            report.errors.push((
                e.category(),
                format!("failed to read boundary policy {arn}: {e}"),
            ));
            return Ok(());
        }
    }
    rec.allow_writes(true);
    // Someone may have added versions (IAM refuses to delete a policy that has any).
    let pruned = prune_versions(rec, arn).await;
    let r = match pruned {
        Ok(()) => crashed(rec.delete_policy(arn).await),
        Err(e) => Err(e),
    };
    rec.allow_writes(false);
    match r? {
        Ok(()) => report.policies_deleted.push(arn.to_string()),
        Err(e) if e.code == ErrorCode::NoSuchEntity => {}
        Err(e) => report.errors.push((
            e.category(),
            format!("failed to delete boundary policy {arn}: {e}"),
        )),
    }
    Ok(())
}

/// The status record of a target after a run with this outcome (the caller stores it; the
/// record of a `RecordFirst` must be stored before the next run may put our boundary).
pub fn next_record(old: Option<&Record>, outcome: &Outcome) -> Option<Record> {
    use super::Stage;
    let with = |stage: Stage| {
        old.map(|r| Record {
            previous: r.previous.clone(),
            stage,
        })
    };
    match outcome {
        Outcome::RecordFirst { previous } => Some(Record {
            previous: previous.clone(),
            stage: Stage::Recorded,
        }),
        Outcome::InPlace
        | Outcome::Put {
            performed: true, ..
        } => with(Stage::Set),
        Outcome::Restored { performed: true } | Outcome::AlreadyRestored => with(Stage::Restored),
        Outcome::LeftChanged { .. } => with(Stage::LeftChanged),
        Outcome::Put {
            performed: false, ..
        }
        | Outcome::Restored { performed: false }
        | Outcome::Untouched
        | Outcome::Refused(_)
        | Outcome::Failed { .. } => old.cloned(),
    }
}
