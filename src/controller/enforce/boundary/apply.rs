//! The permissions-boundary executor over the IAM trait: reads each target's boundary, asks the
//! pure decisions in `boundary`, and makes the writes through the write gate (`Recorder`), so
//! dry-run sends nothing and the kill switch lets only release writes through. It must not know
//! about Kubernetes or CRD types; recording the previous boundary in status is the caller's
//! job, and it never puts a boundary on a target whose previous boundary is not recorded.

use std::collections::BTreeMap;

use crate::aws::factory::ClientFactory;
use crate::aws::{AwsError, AwsResult, ErrorCategory, ErrorCode, Iam, PrincipalKind, Tag};

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
        // The policy is created (or proven ours) once per account, before the first put; its
        // tags are kept to know which previous boundaries are already recorded on it.
        let mut policy_ready: Option<Result<Vec<Tag>, Outcome>> = None;
        // Created with the previous boundary of every target recorded so far (decision 251).
        let recorded_tags: Vec<Tag> = targets
            .iter()
            .filter_map(|(_, p, r)| {
                let r = r.as_ref()?;
                super::previous_tag(p.kind, &p.name, r.previous.as_deref()).ok()
            })
            .collect();
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
                                &recorded_tags,
                                &mut report,
                            )
                            .await;
                            rec.allow_writes(false);
                            policy_ready = Some(r?);
                        }
                        let durable = match policy_ready.as_mut() {
                            Some(Ok(tags)) => {
                                record_durably(&rec, allowed, &ours, principal, record, tags)
                                    .await?
                            }
                            Some(Err(o)) => Err(o.clone()),
                            None => Err(Outcome::Failed {
                                category: ErrorCategory::Transient,
                                message: "boundary policy not ready".to_string(),
                            }),
                        };
                        match durable {
                            Err(o) => o,
                            Ok(()) => {
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
                // Targets that held ours before their previous boundary was recorded on the
                // policy (Quarantines from before decision 251) get the tag now.
                let wanted: Vec<Tag> = targets
                    .iter()
                    .filter(|(i, _, _)| matches!(results[*i], Some(Outcome::InPlace)))
                    .filter_map(|(_, p, r)| {
                        let r = r.as_ref()?;
                        super::previous_tag(p.kind, &p.name, r.previous.as_deref()).ok()
                    })
                    .collect();
                rec.allow_writes(allowed);
                let r = restore_document(
                    &rec,
                    &input.cluster,
                    &input.key,
                    &account,
                    &ours,
                    &document,
                    &wanted,
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
    wanted: &[Tag],
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
    let missing: Vec<Tag> = wanted
        .iter()
        .filter(|t| !policy.tags.iter().any(|have| have.key == t.key))
        .take(MAX_POLICY_TAGS.saturating_sub(policy.tags.len()))
        .cloned()
        .collect();
    if !missing.is_empty()
        && let Err(e) = crashed(rec.tag_policy(arn, &missing).await)?
    {
        report.errors.push((
            e.category(),
            format!("failed to record previous boundaries on {arn}: {e}"),
        ));
    }
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
    recorded: &[Tag],
    report: &mut Report,
) -> Result<Result<Vec<Tag>, Outcome>, EnforceError> {
    let proven = |p: &crate::aws::ManagedPolicy| {
        super::owner(cluster, account, &p.path, &p.name, &p.tags).as_ref() == Some(key)
    };
    let not_ours = || Outcome::Failed {
        category: ErrorCategory::Conflict,
        message: format!("policy {arn} exists but its tags do not prove it is ours; not using it"),
    };
    match crashed(rec.get_policy(arn).await)? {
        Ok(p) if proven(&p) => return Ok(Ok(p.tags)),
        Ok(_) => return Ok(Err(not_ours())),
        Err(e) if e.code == ErrorCode::NoSuchEntity => {}
        Err(e) => return Ok(Err(failed(format!("read boundary policy {arn}"), &e))),
    }
    let mut tags = super::tags(cluster, key);
    // IAM allows 50 tags on a policy; the rest are added one by one before each put.
    let room = MAX_POLICY_TAGS.saturating_sub(tags.len());
    tags.extend(recorded.iter().take(room).cloned());
    match crashed(rec.create_policy(name, POLICY_PATH, document, &tags).await)? {
        Ok(_) => {
            report.policies_created.push(arn.to_string());
            Ok(Ok(tags))
        }
        Err(e) if e.code == ErrorCode::EntityAlreadyExists => {
            match crashed(rec.get_policy(arn).await)? {
                Ok(p) if proven(&p) => Ok(Ok(p.tags)),
                Ok(_) => Ok(Err(not_ours())),
                Err(e) => Ok(Err(failed(format!("read boundary policy {arn}"), &e))),
            }
        }
        Err(e) => Ok(Err(failed(format!("create boundary policy {arn}"), &e))),
    }
}

/// IAM's limit of tags on one managed policy.
pub const MAX_POLICY_TAGS: usize = 50;

/// Makes sure our boundary policy carries the tag recording `principal`'s previous boundary
/// before ours is put on it (decision 251): `Ok(Err(outcome))` when it cannot be recorded, and
/// then ours is not put on.
async fn record_durably(
    rec: &Recorder<'_>,
    allowed: bool,
    ours: &str,
    principal: &Principal,
    record: &Option<super::Record>,
    tags: &mut Vec<Tag>,
) -> Result<Result<(), Outcome>, EnforceError> {
    let Some(record) = record else {
        return Ok(Err(Outcome::Failed {
            category: ErrorCategory::Invalid,
            message: format!("{}: no previous boundary recorded", principal.arn),
        }));
    };
    let tag = match super::previous_tag(principal.kind, &principal.name, record.previous.as_deref())
    {
        Ok(tag) => tag,
        Err(message) => {
            return Ok(Err(Outcome::Failed {
                category: ErrorCategory::Invalid,
                message: format!("{}: {message}", principal.arn),
            }));
        }
    };
    if tags.contains(&tag) {
        return Ok(Ok(()));
    }
    if tags.iter().any(|t| t.key == tag.key) {
        // A different value than the status records: someone edited our tag. The status is
        // the record; the tag is rewritten to match it.
        tags.retain(|t| t.key != tag.key);
    } else if tags.len() >= MAX_POLICY_TAGS {
        return Ok(Err(Outcome::Failed {
            category: ErrorCategory::Quota,
            message: format!(
                "{}: our boundary policy {ours} already carries {MAX_POLICY_TAGS} tags, so this principal's previous boundary cannot be recorded on it; not putting ours on",
                principal.arn
            ),
        }));
    }
    rec.allow_writes(allowed);
    let r = crashed(rec.tag_policy(ours, std::slice::from_ref(&tag)).await);
    rec.allow_writes(false);
    match r? {
        Ok(()) => {
            tags.push(tag);
            Ok(Ok(()))
        }
        Err(e) => Ok(Err(failed(
            format!(
                "record the previous boundary of {} on {ours}",
                principal.arn
            ),
            &e,
        ))),
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

/// What the orphan sweep did with the boundary policies whose Quarantine is gone (decision 251).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrphanReport {
    /// Principals whose recorded previous boundary was put back (`None`: ours removed).
    pub restored: Vec<(String, Option<String>)>,
    /// Principals left with our boundary on, and why (a record that cannot be trusted, a
    /// protected principal).
    pub left: Vec<(String, String)>,
    /// Orphaned boundary policies found.
    pub orphans: Vec<String>,
    /// Boundary policies deleted, writes, calls and errors.
    pub report: Report,
}

/// Finds our boundary policies (proven by their tags) whose Quarantine is not in `live`, puts
/// back each recorded principal's previous boundary where ours is still on, and deletes the
/// policy once no principal holds it. Only ever releases: `gate` `DryRun` sends nothing, and a
/// principal whose boundary is not ours, or that is protected, is never touched. `Err` only on
/// a crash (test double).
pub async fn sweep_orphans(
    clients: &dyn ClientFactory,
    protected: &ProtectedPrincipals,
    cluster: &str,
    accounts: &[String],
    live: &std::collections::BTreeSet<QuarantineKey>,
    gate: WriteGate,
) -> Result<OrphanReport, EnforceError> {
    let mut out = OrphanReport::default();
    let allowed = gate != WriteGate::DryRun;
    for account in accounts {
        let iam = match clients.iam_for(account).await {
            Ok(c) => c,
            Err(e) => {
                out.report.errors.push((
                    e.category(),
                    format!("no IAM client for account {account}: {e}"),
                ));
                continue;
            }
        };
        let rec = Recorder::new(iam.as_ref());
        let r = sweep_account(&rec, protected, cluster, account, live, allowed, &mut out).await;
        out.report.absorb(&rec);
        r?;
    }
    Ok(out)
}

async fn sweep_account(
    rec: &Recorder<'_>,
    protected: &ProtectedPrincipals,
    cluster: &str,
    account: &str,
    live: &std::collections::BTreeSet<QuarantineKey>,
    allowed: bool,
    out: &mut OrphanReport,
) -> Result<(), EnforceError> {
    let policies = match crashed(rec.list_policies(POLICY_PATH).await)? {
        Ok(p) => p,
        Err(e) => {
            out.report.errors.push((
                e.category(),
                format!("failed to list our policies in account {account}: {e}"),
            ));
            return Ok(());
        }
    };
    for policy in policies.iter().filter(|p| super::is_boundary_name(&p.name)) {
        let tags = if policy.tags.is_empty() {
            match crashed(rec.list_policy_tags(&policy.arn).await)? {
                Ok(t) => t,
                Err(e) => {
                    out.report.errors.push((
                        e.category(),
                        format!("failed to read the tags of {}: {e}", policy.arn),
                    ));
                    continue;
                }
            }
        } else {
            policy.tags.clone()
        };
        let Some(key) = super::owner(cluster, account, &policy.path, &policy.name, &tags) else {
            continue; // not provably ours: never touched
        };
        if live.contains(&key) {
            continue;
        }
        out.orphans.push(policy.arn.clone());
        let partition = policy
            .arn
            .strip_prefix("arn:")
            .and_then(|r| r.split(':').next())
            .unwrap_or("aws")
            .to_string();
        let mut held = false;
        for (kind, name, previous) in super::recorded_previous(&tags) {
            let reference = crate::aws::PrincipalRef {
                kind,
                name: name.clone(),
            };
            let arn = format!(
                "arn:{partition}:iam::{account}:{}/{name}",
                match kind {
                    PrincipalKind::Role => "role",
                    PrincipalKind::User => "user",
                }
            );
            if protected.contains_ref(&partition, account, &reference) {
                out.left
                    .push((arn, "a protected principal is never touched".to_string()));
                continue;
            }
            let seen = match crashed(rec.get_permissions_boundary(&reference).await)? {
                Ok(b) => super::Seen::Boundary(b),
                Err(e) if e.code == ErrorCode::NoSuchEntity => super::Seen::Missing,
                Err(e) => super::Seen::Unreadable(e.to_string(), e.category()),
            };
            match super::decide_orphan(&seen, &policy.arn, previous.as_deref(), &partition, account)
            {
                super::OrphanDecision::NotOurs => {}
                super::OrphanDecision::Unrestorable(why) => {
                    held = true;
                    out.left.push((arn, why));
                }
                super::OrphanDecision::Blocked(message, category) => {
                    held = true;
                    out.report
                        .errors
                        .push((category, format!("{arn}: {message}")));
                }
                super::OrphanDecision::Restore(previous) => {
                    rec.allow_writes(allowed);
                    let r = match &previous {
                        Some(p) => crashed(rec.put_permissions_boundary(&reference, p).await),
                        None => crashed(rec.delete_permissions_boundary(&reference).await),
                    };
                    rec.allow_writes(false);
                    match r? {
                        Ok(()) if allowed => out.restored.push((arn, previous)),
                        Ok(()) => held = true,
                        Err(e) if e.code == ErrorCode::NoSuchEntity && previous.is_none() => {
                            out.restored.push((arn, previous))
                        }
                        Err(e) => {
                            held = true;
                            out.report.errors.push((
                                e.category(),
                                format!("failed to restore the previous boundary of {arn}: {e}"),
                            ));
                        }
                    }
                }
            }
        }
        if held || !allowed {
            continue;
        }
        let mut scratch = Report::default();
        delete_policy(rec, cluster, &key, account, &policy.arn, &mut scratch).await?;
        out.report.policies_deleted.extend(scratch.policies_deleted);
        for (category, message) in scratch.errors {
            // A principal with no record still holds it (DeleteConflict): left on, reported.
            out.report.errors.push((category, message));
        }
    }
    Ok(())
}
