//! One executor per plan step (issue 21): `Run` carries what a converge run of one account
//! shares between its steps (the recorder, the engine's memory of recent writes, the report, the
//! keys and policies whose earlier steps failed, each target's outcome), and `Run::step` hands a
//! step to the method of its kind. Each method makes the step's IAM calls through the recorder
//! and says how it went; the loop in `Engine::execute` records that outcome.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::aws::Tag;
use crate::controller::enforce::plan::InlineSpec;

/// What the steps of one account's run share.
pub(super) struct Run<'a, 'r> {
    pub(super) engine: &'a Engine,
    pub(super) cluster: &'a str,
    pub(super) rec: &'a Recorder<'r>,
    pub(super) account_id: &'a str,
    pub(super) partition: &'a str,
    pub(super) report: &'a mut ConvergeReport,
    /// Quarantines whose policy could not be created or restored: no attach of theirs this run.
    pub(super) failed_keys: BTreeMap<QuarantineKey, (ErrorCategory, String)>,
    /// Policies whose detach or version deletion failed: not deleted this run.
    pub(super) failed_policies: BTreeSet<String>,
    /// (quarantine, principal) → the target's status after its step.
    pub(super) outcomes: BTreeMap<(QuarantineKey, PrincipalRef), TargetStatus>,
}

/// A step that ran (`allowed`) or was only recorded (dry run).
fn done(allowed: bool) -> StepOutcome {
    if allowed {
        StepOutcome::Done
    } else {
        StepOutcome::Recorded
    }
}

/// A step that failed with `e`.
fn failed(step: &Step, e: &AwsError) -> StepOutcome {
    StepOutcome::Failed {
        category: e.category(),
        message: EnforceError::Step {
            step: step.describe(),
            source: e.clone(),
        }
        .full_message(),
    }
}

impl Run<'_, '_> {
    /// Remembers a write of `owner`'s for this account, when it was made (not a dry run).
    fn remember(&self, allowed: bool, key: WriteKey, owner: &QuarantineKey) {
        if allowed {
            self.engine.remember(self.account_id, key, owner);
        }
    }

    /// Forgets a write undone for this account, when it was undone (not a dry run).
    fn forget(&self, allowed: bool, key: WriteKey) {
        if allowed {
            self.engine.forget(self.account_id, key);
        }
    }

    /// Runs one step (`allowed`: the write gate lets its class write).
    pub(super) async fn step(
        &mut self,
        step: &Step,
        allowed: bool,
    ) -> Result<StepOutcome, EnforceError> {
        match step {
            Step::CreatePolicy {
                key,
                name,
                arn,
                document,
                tags,
            } => {
                self.create_policy(step, allowed, key, name, arn, document, tags)
                    .await
            }
            Step::DeletePolicyVersion {
                policy_arn,
                version_id,
                ..
            } => {
                self.delete_policy_version(step, allowed, policy_arn, version_id)
                    .await
            }
            Step::RestoreDocument {
                key,
                policy_arn,
                document,
                replaced_version,
            } => {
                self.restore_document(step, allowed, key, policy_arn, document, replaced_version)
                    .await
            }
            Step::AttachManaged {
                key,
                principal,
                policy_arn,
                fallback,
                repair,
            } => {
                self.attach_managed(step, allowed, key, principal, policy_arn, fallback, *repair)
                    .await
            }
            Step::PutInline {
                key,
                principal,
                inline,
                repair,
            } => {
                self.put_inline(step, allowed, key, principal, inline, *repair)
                    .await
            }
            Step::DetachManaged {
                key,
                principal,
                policy_arn,
            } => {
                self.detach_managed(step, allowed, key, principal, policy_arn)
                    .await
            }
            Step::DetachGroup {
                group, policy_arn, ..
            } => self.detach_group(step, allowed, group, policy_arn).await,
            Step::DeleteInline { principal, name } => {
                self.delete_inline(step, allowed, principal, name).await
            }
            Step::DeletePolicy { policy_arn, .. } => {
                self.delete_policy(step, allowed, policy_arn).await
            }
        }
    }

    /// Runs a `CreatePolicy` step.
    #[allow(clippy::too_many_arguments)]
    async fn create_policy(
        &mut self,
        step: &Step,
        allowed: bool,
        key: &QuarantineKey,
        name: &str,
        arn: &str,
        document: &str,
        tags: &[Tag],
    ) -> Result<StepOutcome, EnforceError> {
        let ok_outcome = done(allowed);
        let fail = |e: &AwsError| failed(step, e);
        Ok(
            match crashed(
                self.rec
                    .create_policy(name, POLICY_PATH, document, tags)
                    .await,
            )? {
                Ok(_) => {
                    self.remember(allowed, WriteKey::Policy(arn.to_string()), key);
                    ok_outcome
                }
                Err(e) if e.code == ErrorCode::EntityAlreadyExists => {
                    // Create-then-tag race or lagging list: adopt only with proof of ownership.
                    match crashed(self.rec.get_policy(arn).await)? {
                        Ok(p)
                            if owner_of_policy(
                                self.cluster,
                                self.account_id,
                                &p.path,
                                &p.name,
                                &p.tags,
                            )
                            .as_ref()
                                == Some(key) =>
                        {
                            StepOutcome::Adopted
                        }
                        Ok(_) => {
                            let msg = format!(
                                "policy {name} exists but its tags do not prove it is ours; not touching it"
                            );
                            self.failed_keys
                                .insert(key.clone(), (ErrorCategory::Conflict, msg.clone()));
                            StepOutcome::Failed {
                                category: ErrorCategory::Conflict,
                                message: msg,
                            }
                        }
                        Err(e2) => {
                            let o = fail(&e2);
                            self.failed_keys
                                .insert(key.clone(), (e2.category(), e2.to_string()));
                            o
                        }
                    }
                }
                Err(e) => {
                    self.failed_keys
                        .insert(key.clone(), (e.category(), fail_msg(step, &e)));
                    fail(&e)
                }
            },
        )
    }

    /// Runs a `DeletePolicyVersion` step.
    #[allow(clippy::too_many_arguments)]
    async fn delete_policy_version(
        &mut self,
        step: &Step,
        allowed: bool,
        policy_arn: &str,
        version_id: &str,
    ) -> Result<StepOutcome, EnforceError> {
        let ok_outcome = done(allowed);
        let fail = |e: &AwsError| failed(step, e);
        Ok(
            match crashed(self.rec.delete_policy_version(policy_arn, version_id).await)? {
                Ok(()) => ok_outcome,
                Err(e) if e.code == ErrorCode::NoSuchEntity => ok_outcome,
                Err(e) => {
                    self.failed_policies.insert(policy_arn.to_string());
                    fail(&e)
                }
            },
        )
    }

    /// Runs a `RestoreDocument` step.
    #[allow(clippy::too_many_arguments)]
    async fn restore_document(
        &mut self,
        step: &Step,
        allowed: bool,
        key: &QuarantineKey,
        policy_arn: &str,
        document: &str,
        replaced_version: &str,
    ) -> Result<StepOutcome, EnforceError> {
        let ok_outcome = done(allowed);
        let fail = |e: &AwsError| failed(step, e);
        Ok({
            let mut r = crashed(
                self.rec
                    .create_policy_version(policy_arn, document, true)
                    .await,
            )?;
            if matches!(&r, Err(e) if e.code == ErrorCode::LimitExceeded) {
                // Someone added versions since we listed: prune non-default ones, retry once.
                if let Ok(vs) = crashed(self.rec.list_policy_versions(policy_arn).await)? {
                    for v in vs.iter().filter(|v| !v.is_default) {
                        let _ = crashed(
                            self.rec
                                .delete_policy_version(policy_arn, &v.version_id)
                                .await,
                        )?;
                    }
                }
                r = crashed(
                    self.rec
                        .create_policy_version(policy_arn, document, true)
                        .await,
                )?;
            }
            match r {
                Ok(_) => {
                    self.remember(allowed, WriteKey::Version(policy_arn.to_string()), key);
                    match crashed(
                        self.rec
                            .delete_policy_version(policy_arn, replaced_version)
                            .await,
                    )? {
                        Ok(()) => {}
                        Err(e) if e.code == ErrorCode::NoSuchEntity => {}
                        Err(e) => self.report.errors.push(ErrorRecord {
                            account_id: self.account_id.to_string(),
                            category: e.category(),
                            message: fail_msg(step, &e),
                        }),
                    }
                    self.report.drift_repairs.push(DriftRepair {
                        key: key.clone(),
                        arn: policy_arn.to_string(),
                        kind: DriftKind::DocumentEdited,
                        performed: allowed,
                    });
                    ok_outcome
                }
                Err(e) => {
                    // The policy's document is someone else's edit: attaching it anywhere
                    // now would grant whatever it says. No attach of it in this run.
                    self.failed_keys.insert(
                        key.clone(),
                        (
                            e.category(),
                            format!(
                                "{}; not attaching a policy whose document was edited",
                                fail_msg(step, &e)
                            ),
                        ),
                    );
                    fail(&e)
                }
            }
        })
    }

    /// Runs a `AttachManaged` step.
    #[allow(clippy::too_many_arguments)]
    async fn attach_managed(
        &mut self,
        step: &Step,
        allowed: bool,
        key: &QuarantineKey,
        principal: &Principal,
        policy_arn: &str,
        fallback: &InlineSpec,
        repair: bool,
    ) -> Result<StepOutcome, EnforceError> {
        let ok_outcome = done(allowed);
        let fail = |e: &AwsError| failed(step, e);
        Ok({
            let pref = principal.reference();
            if let Some((cat, msg)) = self.failed_keys.get(key) {
                // Its policy could not be created or restored: skipped (recorded by the
                // loop like any outcome), the target reported failed.
                let msg = msg.clone();
                self.outcomes.insert(
                    (key.clone(), pref),
                    failed_status(key, &principal.arn, *cat, msg.clone()),
                );
                return Ok(StepOutcome::Skipped(msg));
            }
            let r = crashed(self.rec.attach_policy(&pref, policy_arn).await)?;
            let (outcome, status) = match r {
                Ok(()) => {
                    self.remember(
                        allowed,
                        WriteKey::Attachment(pref.clone(), policy_arn.to_string()),
                        key,
                    );
                    (
                        ok_outcome.clone(),
                        attached_status(
                            key,
                            principal,
                            AttachmentKind::Managed,
                            &name_of(policy_arn),
                            allowed,
                        ),
                    )
                }
                Err(e) if e.code == ErrorCode::LimitExceeded => {
                    match crashed(
                        self.rec
                            .put_inline_policy(&pref, &fallback.name, &fallback.document)
                            .await,
                    )? {
                        Ok(()) => {
                            self.remember(
                                allowed,
                                WriteKey::Inline(pref.clone(), fallback.name.clone()),
                                key,
                            );
                            (
                                StepOutcome::FellBackToInline,
                                attached_status(
                                    key,
                                    principal,
                                    AttachmentKind::Inline,
                                    &fallback.name,
                                    allowed,
                                ),
                            )
                        }
                        Err(e2) => (
                            fail(&e2),
                            failed_status(key, &principal.arn, e2.category(), fail_msg(step, &e2)),
                        ),
                    }
                }
                Err(e)
                    if e.code == ErrorCode::NoSuchEntity
                        && self
                            .engine
                            .recent_for(self.account_id)
                            .contains(&WriteKey::Policy(policy_arn.to_string())) =>
                {
                    // We created the policy moments ago: IAM has not propagated it yet.
                    // Not "missing": retry later (Transient), never re-create now.
                    let msg = format!(
                        "{}: policy {policy_arn} not yet visible after our CreatePolicy (IAM propagation): {e}",
                        step.describe()
                    );
                    (
                        StepOutcome::Failed {
                            category: ErrorCategory::Transient,
                            message: msg.clone(),
                        },
                        failed_status(key, &principal.arn, ErrorCategory::Transient, msg),
                    )
                }
                Err(e) => (
                    fail(&e),
                    failed_status(key, &principal.arn, e.category(), fail_msg(step, &e)),
                ),
            };
            if repair && status.state != TargetState::Failed {
                self.report.drift_repairs.push(DriftRepair {
                    key: key.clone(),
                    arn: principal.arn.clone(),
                    kind: DriftKind::AttachmentRemoved,
                    performed: allowed,
                });
            }
            self.outcomes.insert((key.clone(), pref), status);
            outcome
        })
    }

    /// Runs a `PutInline` step.
    #[allow(clippy::too_many_arguments)]
    async fn put_inline(
        &mut self,
        step: &Step,
        allowed: bool,
        key: &QuarantineKey,
        principal: &Principal,
        inline: &InlineSpec,
        repair: bool,
    ) -> Result<StepOutcome, EnforceError> {
        let ok_outcome = done(allowed);
        let fail = |e: &AwsError| failed(step, e);
        Ok({
            let pref = principal.reference();
            let r = crashed(
                self.rec
                    .put_inline_policy(&pref, &inline.name, &inline.document)
                    .await,
            )?;
            let (outcome, status) = match r {
                Ok(()) => {
                    self.remember(
                        allowed,
                        WriteKey::Inline(pref.clone(), inline.name.clone()),
                        key,
                    );
                    if repair {
                        self.report.drift_repairs.push(DriftRepair {
                            key: key.clone(),
                            arn: principal.arn.clone(),
                            kind: DriftKind::InlinePolicyChanged,
                            performed: allowed,
                        });
                    }
                    (
                        ok_outcome.clone(),
                        attached_status(
                            key,
                            principal,
                            AttachmentKind::Inline,
                            &inline.name,
                            allowed,
                        ),
                    )
                }
                Err(e) => (
                    fail(&e),
                    failed_status(key, &principal.arn, e.category(), fail_msg(step, &e)),
                ),
            };
            self.outcomes.insert((key.clone(), pref), status);
            outcome
        })
    }

    /// Runs a `DetachManaged` step.
    #[allow(clippy::too_many_arguments)]
    async fn detach_managed(
        &mut self,
        step: &Step,
        allowed: bool,
        key: &QuarantineKey,
        principal: &PrincipalRef,
        policy_arn: &str,
    ) -> Result<StepOutcome, EnforceError> {
        let ok_outcome = done(allowed);
        let fail = |e: &AwsError| failed(step, e);
        Ok(
            match crashed(self.rec.detach_policy(principal, policy_arn).await)? {
                Ok(()) => {
                    self.forget(
                        allowed,
                        WriteKey::Attachment(principal.clone(), policy_arn.to_string()),
                    );
                    self.report.targets.push(released_status(
                        Some(key.clone()),
                        principal_arn(self.partition, self.account_id, principal),
                        AttachmentKind::Managed,
                        name_of(policy_arn),
                        allowed,
                    ));
                    ok_outcome
                }
                Err(e) if e.code == ErrorCode::NoSuchEntity => {
                    self.forget(
                        allowed,
                        WriteKey::Attachment(principal.clone(), policy_arn.to_string()),
                    );
                    ok_outcome
                }
                Err(e) => {
                    self.failed_policies.insert(policy_arn.to_string());
                    fail(&e)
                }
            },
        )
    }

    /// Runs a `DetachGroup` step.
    #[allow(clippy::too_many_arguments)]
    async fn detach_group(
        &mut self,
        step: &Step,
        allowed: bool,
        group: &str,
        policy_arn: &str,
    ) -> Result<StepOutcome, EnforceError> {
        let ok_outcome = done(allowed);
        let fail = |e: &AwsError| failed(step, e);
        Ok(
            match crashed(self.rec.detach_group_policy(group, policy_arn).await)? {
                Ok(()) => {
                    self.report.group_detachments.push(format!(
                            "{policy_arn} was attached to IAM group {group} (not by this controller; see CloudTrail AttachGroupPolicy); detached"
                        ));
                    ok_outcome
                }
                Err(e) if e.code == ErrorCode::NoSuchEntity => ok_outcome,
                Err(e) => {
                    self.failed_policies.insert(policy_arn.to_string());
                    fail(&e)
                }
            },
        )
    }

    /// Runs a `DeleteInline` step.
    #[allow(clippy::too_many_arguments)]
    async fn delete_inline(
        &mut self,
        step: &Step,
        allowed: bool,
        principal: &PrincipalRef,
        name: &str,
    ) -> Result<StepOutcome, EnforceError> {
        let ok_outcome = done(allowed);
        let fail = |e: &AwsError| failed(step, e);
        Ok({
            match crashed(self.rec.delete_inline_policy(principal, name).await)? {
                Ok(()) => {
                    self.forget(
                        allowed,
                        WriteKey::Inline(principal.clone(), name.to_string()),
                    );
                    self.report.targets.push(released_status(
                        None,
                        principal_arn(self.partition, self.account_id, principal),
                        AttachmentKind::Inline,
                        name.to_string(),
                        allowed,
                    ));
                    ok_outcome
                }
                Err(e) if e.code == ErrorCode::NoSuchEntity => {
                    self.forget(
                        allowed,
                        WriteKey::Inline(principal.clone(), name.to_string()),
                    );
                    ok_outcome
                }
                Err(e) => fail(&e),
            }
        })
    }

    /// Runs a `DeletePolicy` step.
    #[allow(clippy::too_many_arguments)]
    async fn delete_policy(
        &mut self,
        step: &Step,
        allowed: bool,
        policy_arn: &str,
    ) -> Result<StepOutcome, EnforceError> {
        let ok_outcome = done(allowed);
        let fail = |e: &AwsError| failed(step, e);
        Ok({
            if self.failed_policies.contains(policy_arn) {
                StepOutcome::Skipped("an earlier detach or version deletion failed".to_string())
            } else {
                match crashed(self.rec.delete_policy(policy_arn).await)? {
                    Ok(()) => {
                        self.forget(allowed, WriteKey::Policy(policy_arn.to_string()));
                        ok_outcome
                    }
                    Err(e) if e.code == ErrorCode::NoSuchEntity => {
                        self.forget(allowed, WriteKey::Policy(policy_arn.to_string()));
                        ok_outcome
                    }
                    Err(e) => fail(&e),
                }
            }
        })
    }
}
