//! The selector resolver: on a period, lists IAM (and Organizations for OU selectors) through
//! the one client factory for every cached policy with `scope.selectors`, matches with the pure
//! `policy::selectors`, and keeps the result in memory ([`Resolutions`]) for intake. It runs on
//! every replica (intake runs on every replica) but lists only on the leader; a standby replica
//! reads the leader's result back from the policy status (decision 252). It writes nothing to
//! Kubernetes: the leader's resolutions ask the policy controller to write the status. Reads
//! only; it must never write to AWS.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{StreamExt, TryStreamExt};
use jiff::{SignedDuration, Timestamp};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use crate::aws::PrincipalKind as AwsKind;
use crate::aws::directory::{self, Directory};
use crate::aws::factory::ClientFactory;
use crate::controller::clock::EvaluationClock;
use crate::controller::crd::{GuardrailPolicy, PrincipalKind, ScopeSpec};
use crate::controller::policy::selectors::{self, Listed, Outcome, Resolution, ResolvedTarget};

/// How many OUs one selector may span (a guard against a faulty Organizations answer).
pub const MAX_UNITS: usize = 1000;
/// How many accounts are listed at once (each has its own rate limit).
const ACCOUNTS_AT_ONCE: usize = 32;
/// How many tag reads of one account are in flight at once (its rate limiter paces them).
const TAG_READS_AT_ONCE: usize = 4;
/// A resolution is usable for this many periods (then intake refuses it as stale).
pub const STALE_AFTER_PERIODS: i32 = 3;
/// How often the resolver looks for policies that are due (new, changed or a period old).
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// The latest resolution of each policy with selectors, by (namespace, name), and the policy
/// controllers to tell when one changed. Cheap to clone.
#[derive(Clone, Default)]
pub struct Resolutions {
    entries: Arc<RwLock<HashMap<(String, String), Resolution>>>,
    senders: Arc<Mutex<Vec<mpsc::Sender<ObjectRef<GuardrailPolicy>>>>>,
}

impl Resolutions {
    /// The latest resolution of a policy.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Resolution> {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Stores a policy's new resolution, keeping `since` when the outcome and the selectors are
    /// those of the previous one. Tells the policy controllers when either changed.
    pub fn put(&self, namespace: &str, name: &str, mut resolution: Resolution) {
        let key = (namespace.to_string(), name.to_string());
        let changed = {
            let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
            let changed = match entries.get(&key) {
                Some(old)
                    if old.fingerprint == resolution.fingerprint
                        && old.outcome == resolution.outcome =>
                {
                    resolution.since = old.since;
                    false
                }
                _ => true,
            };
            entries.insert(key, resolution);
            changed
        };
        if changed {
            self.notify(namespace, name);
        }
    }

    /// Forgets every policy not in `keep`.
    pub fn retain(&self, keep: &BTreeSet<(String, String)>) {
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| keep.contains(k));
    }

    /// A stream of policies whose resolution changed, for one policy controller.
    pub fn subscribe(&self) -> mpsc::Receiver<ObjectRef<GuardrailPolicy>> {
        let (sender, receiver) = mpsc::channel(1024);
        self.senders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sender);
        receiver
    }

    /// Asks the policy controllers to look at a policy's resolution again (the leader after
    /// every resolution: the status keeps standby replicas' copy fresh, decision 252).
    pub fn touch(&self, namespace: &str, name: &str) {
        self.notify(namespace, name);
    }

    fn notify(&self, namespace: &str, name: &str) {
        let mut senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        senders.retain(|s| !s.is_closed());
        for sender in senders.iter_mut() {
            // A full queue: the policy's periodic recheck writes the status later.
            let _ = sender.try_send(ObjectRef::new(name).within(namespace));
        }
    }
}

/// What one resolution cost, for the benchmark and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effort {
    /// Accounts listed.
    pub accounts: usize,
    /// Principals listed (before matching).
    pub listed: usize,
    /// Tag reads made.
    pub tag_reads: usize,
}

fn aws_kind(kind: PrincipalKind) -> AwsKind {
    match kind {
        PrincipalKind::IamRole => AwsKind::Role,
        PrincipalKind::IamUser => AwsKind::User,
    }
}

/// Resolves a scope's selectors now: the accounts of each selector (its list, or its OU's
/// active accounts), every role/user of those accounts under each selector's path prefix, the
/// tags of those that a tag selector could still match, then the pure match. Any failed call
/// fails the whole resolution (nothing partial is ever used).
pub async fn resolve_scope(
    factory: &dyn ClientFactory,
    scope: &ScopeSpec,
) -> Result<(Vec<ResolvedTarget>, Effort), String> {
    let mut accounts: Vec<BTreeSet<String>> = Vec::with_capacity(scope.selectors.len());
    let mut unit_accounts: HashMap<&str, BTreeSet<String>> = HashMap::new();
    for selector in &scope.selectors {
        match &selector.organizational_unit {
            Some(unit) => {
                if !unit_accounts.contains_key(unit.as_str()) {
                    let organization = factory
                        .organization()
                        .await
                        .map_err(|e| format!("AWS Organizations: {e}"))?;
                    let found = directory::accounts_under(organization.as_ref(), unit, MAX_UNITS)
                        .await
                        .map_err(|e| format!("listing the accounts of {unit}: {e}"))?;
                    unit_accounts.insert(unit, found.into_iter().collect());
                }
                accounts.push(
                    unit_accounts
                        .get(unit.as_str())
                        .cloned()
                        .unwrap_or_default(),
                );
            }
            None => accounts.push(selector.accounts.iter().cloned().collect()),
        }
    }
    // Per account: the listings (kind, path prefix) its selectors need.
    let mut work: BTreeMap<String, BTreeSet<(AwsKind, String)>> = BTreeMap::new();
    for (selector, in_accounts) in scope.selectors.iter().zip(&accounts) {
        let prefix = selector.path_prefix.clone().unwrap_or_else(|| "/".into());
        for account in in_accounts {
            for kind in &selector.kinds {
                work.entry(account.clone())
                    .or_default()
                    .insert((aws_kind(*kind), prefix.clone()));
            }
        }
    }
    let effort_accounts = work.len();
    let per_account: Vec<(Vec<Listed>, usize)> = futures::stream::iter(work)
        .map(|(account, listings)| {
            let selectors: Vec<&crate::controller::crd::PrincipalSelector> = scope
                .selectors
                .iter()
                .zip(&accounts)
                .filter(|(_, a)| a.contains(&account))
                .map(|(s, _)| s)
                .collect();
            async move {
                let directory = factory
                    .directory_for(&account)
                    .await
                    .map_err(|e| format!("account {account}: {e}"))?;
                list_account(directory.as_ref(), &account, &listings, &selectors)
                    .await
                    .map_err(|e| format!("account {account}: {e}"))
            }
        })
        .buffer_unordered(ACCOUNTS_AT_ONCE)
        .try_collect()
        .await?;
    let mut effort = Effort {
        accounts: effort_accounts,
        ..Effort::default()
    };
    let mut listed = Vec::new();
    for (found, tag_reads) in per_account {
        effort.listed += found.len();
        effort.tag_reads += tag_reads;
        listed.extend(found);
    }
    Ok((
        selectors::resolve(&scope.selectors, &accounts, &listed),
        effort,
    ))
}

/// One account's listings, and the tags of each principal some tag selector of this account
/// could still match (the others need no tag read).
async fn list_account(
    directory: &dyn Directory,
    account: &str,
    listings: &BTreeSet<(AwsKind, String)>,
    selectors: &[&crate::controller::crd::PrincipalSelector],
) -> Result<(Vec<Listed>, usize), crate::aws::AwsError> {
    let mut by_arn: BTreeMap<String, Listed> = BTreeMap::new();
    for (kind, prefix) in listings {
        for p in directory.list_principals(*kind, prefix).await? {
            let kind = match p.kind {
                AwsKind::Role => PrincipalKind::IamRole,
                AwsKind::User => PrincipalKind::IamUser,
            };
            by_arn.entry(p.arn.clone()).or_insert(Listed {
                kind,
                account_id: account.to_string(),
                arn: p.arn,
                name: p.name,
                path: p.path,
                tags: None,
            });
        }
    }
    let wanted: Vec<String> = by_arn
        .values()
        .filter(|l| {
            selectors
                .iter()
                .any(|s| selectors::needs_tags(s) && selectors::prefilter(s, l))
        })
        .map(|l| l.arn.clone())
        .collect();
    let reads = wanted.len();
    let tags: Vec<(String, BTreeMap<String, String>)> = futures::stream::iter(wanted)
        .map(|arn| {
            let listed = by_arn.get(&arn).cloned();
            async move {
                let Some(listed) = listed else {
                    return Ok((arn, BTreeMap::new()));
                };
                let tags = directory
                    .principal_tags(aws_kind(listed.kind), &listed.name)
                    .await?;
                Ok::<_, crate::aws::AwsError>((arn, tags))
            }
        })
        .buffer_unordered(TAG_READS_AT_ONCE)
        .try_collect()
        .await?;
    for (arn, t) in tags {
        if let Some(l) = by_arn.get_mut(&arn) {
            l.tags = Some(t);
        }
    }
    Ok((by_arn.into_values().collect(), reads))
}

/// Resolves one policy at `now` into a [`Resolution`] usable until `now + 3 periods`.
pub async fn resolve_policy(
    factory: &dyn ClientFactory,
    scope: &ScopeSpec,
    now: Timestamp,
    period: Duration,
) -> Resolution {
    let outcome = match resolve_scope(factory, scope).await {
        Ok((targets, _)) => Outcome::Resolved(targets),
        Err(why) => Outcome::Failed(why),
    };
    let valid_for = SignedDuration::try_from(period)
        .unwrap_or(SignedDuration::from_mins(5))
        .checked_mul(STALE_AFTER_PERIODS)
        .unwrap_or(SignedDuration::from_hours(1));
    Resolution {
        fingerprint: selectors::fingerprint(scope),
        resolved_at: now,
        since: now,
        valid_until: now.checked_add(valid_for).unwrap_or(now),
        outcome,
    }
}

/// The resolution the leader wrote into a policy's status, when it says something usable for
/// the policy's current selectors ([`selectors::from_status`]).
pub fn from_policy_status(policy: &GuardrailPolicy) -> Option<Resolution> {
    if policy.spec.scope.selectors.is_empty() {
        return None;
    }
    let status = policy.status.as_ref()?;
    let summary = status.resolved_targets.as_ref()?;
    let condition = status
        .conditions
        .iter()
        .find(|c| c.type_ == crate::controller::crd::conditions::SELECTORS_RESOLVED)?;
    selectors::from_status(
        &policy.spec.scope,
        summary,
        &condition.reason,
        &condition.message,
    )
}

/// A standby replica's resolutions: each cached policy's status as the leader wrote it
/// ([`from_policy_status`]); a policy whose status says nothing usable is forgotten, so
/// intake refuses it as unresolved.
pub fn follow_status(stores: &crate::controller::reconcile::Stores) {
    let resolutions = stores.resolutions();
    let mut keep = BTreeSet::new();
    for policy in stores.policies() {
        if let Some(resolution) = from_policy_status(&policy) {
            let key = (policy.namespace().unwrap_or_default(), policy.name_any());
            resolutions.put(&key.0, &key.1, resolution);
            keep.insert(key);
        }
    }
    resolutions.retain(&keep);
}

/// Resolves every cached policy with selectors when it is due (no resolution for its current
/// selectors yet, or the last one is a period old), until `shutdown` resolves, while `leading`
/// is true; while it is false, follows the leader's results in the policy status instead
/// ([`follow_status`]), so only the leader calls IAM (decision 252). Policies are resolved one
/// after another; a failed listing is kept as a failed resolution (and retried at the next
/// period).
pub async fn run(
    stores: crate::controller::reconcile::Stores,
    factory: Arc<dyn ClientFactory>,
    period: Duration,
    clock: EvaluationClock,
    leading: tokio::sync::watch::Receiver<bool>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let resolutions = stores.resolutions().clone();
    let mut last: HashMap<(String, String), (String, tokio::time::Instant)> = HashMap::new();
    let work = async {
        stores.wait_ready().await;
        loop {
            if !*leading.borrow() {
                // Standby: no IAM call; the leader's status is the resolution. On becoming
                // leader every policy is due at once.
                last.clear();
                follow_status(&stores);
                tokio::time::sleep(LOOK_EVERY).await;
                continue;
            }
            let mut keep = BTreeSet::new();
            for policy in stores.policies() {
                if policy.spec.scope.selectors.is_empty()
                    || policy.meta().deletion_timestamp.is_some()
                {
                    continue;
                }
                let key = (policy.namespace().unwrap_or_default(), policy.name_any());
                keep.insert(key.clone());
                let fingerprint = selectors::fingerprint(&policy.spec.scope);
                let due = last
                    .get(&key)
                    .is_none_or(|(f, at)| *f != fingerprint || at.elapsed() >= period);
                if !due {
                    continue;
                }
                let Ok(now) = clock.now() else {
                    tracing::warn!("the evaluation clock cannot be read; selectors not resolved");
                    continue;
                };
                let resolution =
                    resolve_policy(factory.as_ref(), &policy.spec.scope, now, period).await;
                match &resolution.outcome {
                    Outcome::Resolved(targets) => {
                        tracing::debug!(policy = %format!("{}/{}", key.0, key.1), targets = targets.len(), "selectors resolved")
                    }
                    Outcome::Failed(why) => {
                        tracing::warn!(policy = %format!("{}/{}", key.0, key.1), error = %why, "resolving selectors failed")
                    }
                }
                resolutions.put(&key.0, &key.1, resolution);
                resolutions.touch(&key.0, &key.1);
                last.insert(key, (fingerprint, tokio::time::Instant::now()));
            }
            last.retain(|k, _| keep.contains(k));
            resolutions.retain(&keep);
            tokio::time::sleep(LOOK_EVERY).await;
        }
    };
    tokio::select! {
        _ = work => {}
        _ = shutdown => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::ErrorCode;
    use crate::aws::Operation;
    use crate::aws::directory::{InMemoryDirectory, InMemoryOrganization};
    use crate::aws::factory::StaticClients;
    use crate::controller::crd::{PrincipalSelector, TagSelector};

    fn selector(accounts: &[&str]) -> PrincipalSelector {
        PrincipalSelector {
            kinds: vec![PrincipalKind::IamRole],
            accounts: accounts.iter().map(|a| a.to_string()).collect(),
            organizational_unit: None,
            path_prefix: None,
            name_pattern: None,
            tags: Vec::new(),
        }
    }

    fn scope(selectors: Vec<PrincipalSelector>) -> ScopeSpec {
        ScopeSpec {
            principals: Vec::new(),
            selectors,
            max_targets: None,
            regions: Vec::new(),
        }
    }

    #[tokio::test]
    async fn tags_are_read_only_for_principals_the_path_and_name_leave_in() {
        let a = Arc::new(InMemoryDirectory::new("111111111111"));
        a.add(AwsKind::Role, "/ml/", "train-1", &[("team", "ml")]);
        a.add(AwsKind::Role, "/ml/", "train-2", &[("team", "web")]);
        a.add(AwsKind::Role, "/ml/", "serve-1", &[("team", "ml")]);
        a.add(AwsKind::Role, "/web/", "train-3", &[("team", "ml")]);
        let factory = StaticClients::new().with_directory("111111111111", a.clone());
        let mut s = selector(&["111111111111"]);
        s.path_prefix = Some("/ml/".into());
        s.name_pattern = Some("train-*".into());
        s.tags = vec![TagSelector {
            key: "team".into(),
            value: Some("ml".into()),
        }];
        let (targets, effort) = resolve_scope(&factory, &scope(vec![s]))
            .await
            .unwrap_or_default();
        let arns: Vec<&str> = targets.iter().map(|t| t.principal.arn.as_str()).collect();
        assert_eq!(arns, ["arn:aws:iam::111111111111:role/ml/train-1"]);
        assert_eq!(effort.tag_reads, 2, "train-1 and train-2 only");
        assert_eq!(a.calls(Operation::ListRoleTags), 2);
        assert_eq!(a.calls(Operation::ListRoles), 1);
    }

    #[tokio::test]
    async fn an_ou_selector_lists_the_ou_accounts_and_any_failure_fails_all() {
        let a = Arc::new(InMemoryDirectory::new("111111111111"));
        let b = Arc::new(InMemoryDirectory::new("222222222222"));
        let outside = Arc::new(InMemoryDirectory::new("333333333333"));
        a.add(AwsKind::Role, "/", "ci", &[]);
        b.add(AwsKind::Role, "/", "ci", &[]);
        outside.add(AwsKind::Role, "/", "ci", &[]);
        let org = Arc::new(InMemoryOrganization::new());
        org.add_unit("ou-abcd-aaaaaaaa", "ou-abcd-bbbbbbbb");
        org.add_account("ou-abcd-aaaaaaaa", "111111111111", true);
        org.add_account("ou-abcd-bbbbbbbb", "222222222222", true);
        org.add_account("r-abcd", "333333333333", true);
        let factory = StaticClients::new()
            .with_directory("111111111111", a.clone())
            .with_directory("222222222222", b.clone())
            .with_directory("333333333333", outside.clone())
            .with_organization(org.clone());
        let mut s = selector(&[]);
        s.organizational_unit = Some("ou-abcd-aaaaaaaa".into());
        s.name_pattern = Some("ci".into());
        let sc = scope(vec![s]);
        let (targets, _) = resolve_scope(&factory, &sc).await.unwrap_or_default();
        let arns: Vec<&str> = targets.iter().map(|t| t.principal.arn.as_str()).collect();
        assert_eq!(
            arns,
            [
                "arn:aws:iam::111111111111:role/ci",
                "arn:aws:iam::222222222222:role/ci"
            ]
        );
        assert!(targets[0].matched_by.contains("(in ou-abcd-aaaaaaaa)"));
        assert_eq!(outside.total_calls(), 0);

        b.fail(Operation::ListRoles, ErrorCode::AccessDenied);
        let r = resolve_policy(
            &factory,
            &sc,
            Timestamp::UNIX_EPOCH,
            Duration::from_secs(60),
        )
        .await;
        assert!(
            matches!(&r.outcome, Outcome::Failed(why) if why.contains("222222222222")),
            "{r:?}"
        );
        b.clear_failures();
        org.fail(Some(ErrorCode::AccessDenied));
        let r = resolve_policy(
            &factory,
            &sc,
            Timestamp::UNIX_EPOCH,
            Duration::from_secs(60),
        )
        .await;
        assert!(matches!(&r.outcome, Outcome::Failed(why) if why.contains("ou-abcd-aaaaaaaa")));
        assert_eq!(
            r.valid_until,
            Timestamp::UNIX_EPOCH + SignedDuration::from_mins(3)
        );
    }

    #[tokio::test]
    async fn an_unknown_account_fails_the_resolution() {
        let factory = StaticClients::new();
        let mut s = selector(&["111111111111"]);
        s.name_pattern = Some("*".into());
        assert!(resolve_scope(&factory, &scope(vec![s])).await.is_err());
    }

    #[tokio::test]
    async fn an_unchanged_outcome_keeps_since_and_tells_no_one() {
        let resolutions = Resolutions::default();
        let mut changes = resolutions.subscribe();
        let sc = scope(vec![selector(&["111111111111"])]);
        let at = |s: i64| Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH);
        let r = |t: i64, outcome: Outcome| Resolution {
            fingerprint: selectors::fingerprint(&sc),
            resolved_at: at(t),
            since: at(t),
            valid_until: at(t + 60),
            outcome,
        };
        resolutions.put("ns", "p", r(10, Outcome::Resolved(Vec::new())));
        assert!(changes.try_recv().is_ok());
        resolutions.put("ns", "p", r(20, Outcome::Resolved(Vec::new())));
        assert!(changes.try_recv().is_err(), "no change, no notification");
        let kept = resolutions.get("ns", "p");
        assert_eq!(kept.as_ref().map(|k| k.since), Some(at(10)));
        assert_eq!(kept.map(|k| k.resolved_at), Some(at(20)));
        resolutions.put("ns", "p", r(30, Outcome::Failed("x".into())));
        assert!(changes.try_recv().is_ok());
        resolutions.retain(&BTreeSet::new());
        assert!(resolutions.get("ns", "p").is_none());
    }
}
