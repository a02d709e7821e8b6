//! Scope selectors, the pure part: whether a listed IAM role or user matches a policy's
//! `scope.selectors` and why (the text frozen into a Quarantine's `targetReasons`), and the
//! resolution the controller keeps per policy for intake. No async, no I/O, no clock reads: the
//! listing is done by `crate::controller::resolver` through `crate::aws::directory`.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;

use crate::controller::crd::{Principal, PrincipalKind, PrincipalSelector, ScopeSpec};

/// One role or user as IAM lists it, with its tags when they were read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Role or user.
    pub kind: PrincipalKind,
    /// The account it lives in.
    pub account_id: String,
    /// Its ARN, as IAM returns it.
    pub arn: String,
    /// Its name (without the path).
    pub name: String,
    /// Its IAM path (`/` when none).
    pub path: String,
    /// Its tags; `None` when they were not read (no selector asked for tags).
    pub tags: Option<BTreeMap<String, String>>,
}

/// Whether `text` matches the glob `pattern`: `*` any run of characters (also none), `?`
/// exactly one character, everything else itself (case-sensitive).
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matching with one backtrack point: linear in practice, never exponential.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Whether any selector of the scope needs the principals' tags (listing does not return them:
/// one more call per candidate).
pub fn needs_tags(selector: &PrincipalSelector) -> bool {
    !selector.tags.is_empty()
}

/// The part of a selector IAM's list answer can decide without tags: kind, path prefix and name
/// pattern (the account is checked by [`resolve`] against the selector's accounts). A principal that fails it
/// needs no tag call.
pub fn prefilter(selector: &PrincipalSelector, listed: &Listed) -> bool {
    selector.kinds.contains(&listed.kind)
        && selector
            .path_prefix
            .as_deref()
            .is_none_or(|prefix| listed.path.starts_with(prefix))
        && selector
            .name_pattern
            .as_deref()
            .is_none_or(|pattern| glob(pattern, &listed.name))
}

/// Why `listed` matches selector number `index`, or `None` when it does not. Tags that were not
/// read never match a selector that asks for tags.
pub fn explain(index: usize, selector: &PrincipalSelector, listed: &Listed) -> Option<String> {
    if !prefilter(selector, listed) {
        return None;
    }
    let mut parts = vec![format!("account {}", listed.account_id)];
    if let Some(ou) = &selector.organizational_unit {
        parts[0].push_str(&format!(" (in {ou})"));
    }
    if let Some(prefix) = &selector.path_prefix {
        parts.push(format!("path {prefix}"));
    }
    if let Some(pattern) = &selector.name_pattern {
        parts.push(format!("name {pattern}"));
    }
    if !selector.tags.is_empty() {
        let tags = listed.tags.as_ref()?;
        for wanted in &selector.tags {
            let have = tags.get(&wanted.key)?;
            match &wanted.value {
                Some(value) if value != have => return None,
                Some(value) => parts.push(format!("tag {}={value}", wanted.key)),
                None => parts.push(format!("tag {} exists", wanted.key)),
            }
        }
    }
    Some(format!("selectors[{index}]: {}", parts.join(", ")))
}

/// One principal a resolution found, with why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedTarget {
    /// The principal, as a Quarantine target.
    pub principal: Principal,
    /// What matched it (`scope.principals` or a selector's explanation).
    pub matched_by: String,
}

/// The result of resolving a policy's scope at one time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    /// The selectors it was computed for ([`fingerprint`]); another spec makes it unusable.
    pub fingerprint: String,
    /// When the listing finished.
    pub resolved_at: Timestamp,
    /// Since when the resolutions have had this outcome (what the status shows as `resolvedAt`:
    /// an unchanged outcome is not rewritten).
    pub since: Timestamp,
    /// After this instant the resolution is stale and intake refuses to use it.
    pub valid_until: Timestamp,
    /// What was found, or why nothing can be said.
    pub outcome: Outcome,
}

/// What a resolution found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every listing answered: the principals the selectors match, sorted by ARN, duplicates
    /// (several selectors, or a principal also listed explicitly) removed, first reason kept.
    Resolved(Vec<ResolvedTarget>),
    /// A listing failed: nothing is known (never "no one" and never "everyone").
    Failed(String),
}

/// Identifies the selectors a resolution was computed for (the serialised selectors).
pub fn fingerprint(scope: &ScopeSpec) -> String {
    serde_json::to_string(&scope.selectors).unwrap_or_default()
}

/// A short, stable hash of [`fingerprint`] for the policy status (`resolvedTargets.selectorsHash`):
/// 16 hex digits of its SHA-256.
pub fn selectors_hash(scope: &ScopeSpec) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(fingerprint(scope).as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How many resolved targets the policy status carries (its schema's bound; more than any
/// `maxTargets` allows).
pub const STATUS_TARGETS_MAX: usize = 100;

/// What a standby replica reads back from the policy status the leader wrote (decision 252):
/// the summary, the `SelectorsResolved` reason and message. `None` when the status says nothing
/// usable for the current selectors (pending, stale, written for other selectors, or without a
/// `validUntil`): intake then refuses as unresolved.
pub fn from_status(
    scope: &ScopeSpec,
    summary: &crate::controller::crd::ResolvedTargets,
    reason: &str,
    message: &str,
) -> Option<Resolution> {
    use crate::controller::crd::conditions::{
        REASON_RESOLUTION_FAILED, REASON_RESOLVED, REASON_TOO_MANY_TARGETS,
    };
    if summary.selectors_hash.as_deref() != Some(selectors_hash(scope).as_str()) {
        return None;
    }
    let valid_until = summary.valid_until.as_ref()?.0;
    let since = summary.resolved_at.as_ref().map_or(valid_until, |t| t.0);
    let outcome = match reason {
        REASON_RESOLUTION_FAILED => Outcome::Failed(message.to_string()),
        REASON_RESOLVED | REASON_TOO_MANY_TARGETS => {
            let targets: Vec<ResolvedTarget> = summary
                .targets
                .iter()
                .map(|t| ResolvedTarget {
                    principal: Principal {
                        kind: t.kind,
                        arn: t.arn.clone(),
                    },
                    matched_by: t.matched_by.clone(),
                })
                .collect();
            let complete = candidates(scope, &targets).len()
                == usize::try_from(summary.count).unwrap_or(usize::MAX);
            if complete {
                Outcome::Resolved(targets)
            } else {
                Outcome::Failed(format!(
                    "the scope resolved to {} principals, more than the policy status carries ({STATUS_TARGETS_MAX}); only the leader can tell",
                    summary.count
                ))
            }
        }
        _ => return None,
    };
    Some(Resolution {
        fingerprint: fingerprint(scope),
        resolved_at: since,
        since,
        valid_until,
        outcome,
    })
}

/// Builds the resolved set from what the listing found, in selector order: every listed
/// principal in one of a selector's accounts (`accounts[i]` for `selectors[i]`, the OU's accounts
/// already expanded) and matched by it, each once with the first selector's reason, sorted by ARN.
pub fn resolve(
    selectors: &[PrincipalSelector],
    accounts: &[BTreeSet<String>],
    listed: &[Listed],
) -> Vec<ResolvedTarget> {
    let mut found: BTreeMap<String, ResolvedTarget> = BTreeMap::new();
    for (index, selector) in selectors.iter().enumerate() {
        let Some(in_accounts) = accounts.get(index) else {
            continue;
        };
        for principal in listed {
            if found.contains_key(&principal.arn) || !in_accounts.contains(&principal.account_id) {
                continue;
            }
            if let Some(matched_by) = explain(index, selector, principal) {
                found.insert(
                    principal.arn.clone(),
                    ResolvedTarget {
                        principal: Principal {
                            kind: principal.kind,
                            arn: principal.arn.clone(),
                        },
                        matched_by,
                    },
                );
            }
        }
    }
    found.into_values().collect()
}

/// Why a resolution cannot be used for an evaluation at `now`; `None` when it can.
pub fn unusable(
    scope: &ScopeSpec,
    resolution: Option<&Resolution>,
    now: Timestamp,
) -> Option<String> {
    let Some(resolution) = resolution else {
        return Some("scope.selectors are not resolved yet".into());
    };
    if resolution.fingerprint != fingerprint(scope) {
        return Some(
            "scope.selectors changed since the last resolution; waiting for the next".into(),
        );
    }
    if let Outcome::Failed(why) = &resolution.outcome {
        return Some(format!(
            "resolving scope.selectors failed at {}: {why}",
            resolution.resolved_at
        ));
    }
    if now > resolution.valid_until {
        return Some(format!(
            "the resolution of scope.selectors from {} is stale (usable until {})",
            resolution.resolved_at, resolution.valid_until
        ));
    }
    None
}

/// The whole scope of a policy with a usable resolution: `scope.principals` first (reason
/// `scope.principals`), then the selected principals not already listed.
pub fn candidates(scope: &ScopeSpec, resolved: &[ResolvedTarget]) -> Vec<ResolvedTarget> {
    let mut out: Vec<ResolvedTarget> = scope
        .principals
        .iter()
        .map(|p| ResolvedTarget {
            principal: p.clone(),
            matched_by: "scope.principals".into(),
        })
        .collect();
    for target in resolved {
        if !out
            .iter()
            .any(|o| o.principal.same_principal(&target.principal))
        {
            out.push(target.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::crd::TagSelector;
    use proptest::prelude::*;

    fn role(account: &str, path: &str, name: &str, tags: &[(&str, &str)]) -> Listed {
        Listed {
            kind: PrincipalKind::IamRole,
            account_id: account.into(),
            arn: format!("arn:aws:iam::{account}:role{path}{name}"),
            name: name.into(),
            path: path.into(),
            tags: Some(
                tags.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
        }
    }

    fn selector() -> PrincipalSelector {
        PrincipalSelector {
            kinds: vec![PrincipalKind::IamRole],
            accounts: vec!["111111111111".into()],
            organizational_unit: None,
            path_prefix: None,
            name_pattern: None,
            tags: Vec::new(),
        }
    }

    #[test]
    fn glob_matches_like_a_shell() {
        assert!(glob("ml-*", "ml-train"));
        assert!(glob("ml-*", "ml-"));
        assert!(!glob("ml-*", "ML-train"));
        assert!(glob("*-ci", "dev-ci"));
        assert!(glob("d?v-*-ci", "dev-x-ci"));
        assert!(!glob("d?v", "dv"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
    }

    #[test]
    fn path_name_and_tags_must_all_hold_and_are_explained() {
        let mut s = selector();
        s.path_prefix = Some("/teams/ml/".into());
        s.name_pattern = Some("train-*".into());
        s.tags = vec![
            TagSelector {
                key: "team".into(),
                value: Some("ml".into()),
            },
            TagSelector {
                key: "cost-center".into(),
                value: None,
            },
        ];
        let good = role(
            "111111111111",
            "/teams/ml/",
            "train-a",
            &[("team", "ml"), ("cost-center", "42")],
        );
        assert_eq!(
            explain(0, &s, &good).as_deref(),
            Some(
                "selectors[0]: account 111111111111, path /teams/ml/, name train-*, tag team=ml, tag cost-center exists"
            )
        );
        let wrong_path = role(
            "111111111111",
            "/teams/web/",
            "train-a",
            &[("team", "ml"), ("cost-center", "1")],
        );
        let wrong_name = role(
            "111111111111",
            "/teams/ml/",
            "serve-a",
            &[("team", "ml"), ("cost-center", "1")],
        );
        let wrong_value = role(
            "111111111111",
            "/teams/ml/",
            "train-a",
            &[("team", "web"), ("cost-center", "1")],
        );
        let missing_key = role("111111111111", "/teams/ml/", "train-a", &[("team", "ml")]);
        for l in [&wrong_path, &wrong_name, &wrong_value, &missing_key] {
            assert_eq!(explain(0, &s, l), None, "{l:?}");
        }
        let mut unread = good.clone();
        unread.tags = None;
        assert_eq!(explain(0, &s, &unread), None, "unread tags never match");
    }

    #[test]
    fn kinds_are_respected() {
        let mut s = selector();
        s.name_pattern = Some("*".into());
        let mut user = role("111111111111", "/", "alice", &[]);
        user.kind = PrincipalKind::IamUser;
        assert_eq!(explain(0, &s, &user), None);
        s.kinds.push(PrincipalKind::IamUser);
        assert!(explain(0, &s, &user).is_some());
    }

    #[test]
    fn resolve_keeps_the_first_reason_and_sorts() {
        let mut by_path = selector();
        by_path.path_prefix = Some("/ml/".into());
        let mut by_name = selector();
        by_name.name_pattern = Some("b*".into());
        let listed = vec![
            role("111111111111", "/ml/", "b", &[]),
            role("111111111111", "/ml/", "a", &[]),
            role("111111111111", "/", "bz", &[]),
            role("111111111111", "/", "c", &[]),
        ];
        let one: BTreeSet<String> = ["111111111111".to_string()].into();
        let got = resolve(&[by_path, by_name], &[one.clone(), one], &listed);
        let arns: Vec<&str> = got.iter().map(|t| t.principal.arn.as_str()).collect();
        assert_eq!(
            arns,
            [
                "arn:aws:iam::111111111111:role/bz",
                "arn:aws:iam::111111111111:role/ml/a",
                "arn:aws:iam::111111111111:role/ml/b",
            ]
        );
        assert!(got[2].matched_by.starts_with("selectors[0]"));
        assert!(got[0].matched_by.starts_with("selectors[1]"));
    }

    #[test]
    fn a_selector_matches_only_in_its_own_accounts() {
        let mut s = selector();
        s.name_pattern = Some("*".into());
        let listed = vec![
            role("111111111111", "/", "a", &[]),
            role("222222222222", "/", "a", &[]),
        ];
        let got = resolve(
            std::slice::from_ref(&s),
            &[["222222222222".to_string()].into()],
            &listed,
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].principal.arn, "arn:aws:iam::222222222222:role/a");
        assert!(resolve(std::slice::from_ref(&s), &[], &listed).is_empty());
    }

    fn scope(selectors: Vec<PrincipalSelector>) -> ScopeSpec {
        ScopeSpec {
            principals: Vec::new(),
            selectors,
            max_targets: None,
            regions: Vec::new(),
        }
    }

    #[test]
    fn missing_failed_changed_or_stale_resolutions_are_unusable() {
        let mut s = selector();
        s.name_pattern = Some("x".into());
        let sc = scope(vec![s.clone()]);
        let now = Timestamp::from_second(1_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let ok = Resolution {
            fingerprint: fingerprint(&sc),
            resolved_at: now,
            since: now,
            valid_until: now + jiff::SignedDuration::from_mins(10),
            outcome: Outcome::Resolved(Vec::new()),
        };
        assert_eq!(unusable(&sc, Some(&ok), now), None);
        assert!(unusable(&sc, None, now).is_some());
        let failed = Resolution {
            outcome: Outcome::Failed("AccessDenied".into()),
            ..ok.clone()
        };
        assert!(unusable(&sc, Some(&failed), now).is_some_and(|m| m.contains("AccessDenied")));
        let later = now + jiff::SignedDuration::from_mins(11);
        assert!(unusable(&sc, Some(&ok), later).is_some_and(|m| m.contains("stale")));
        let mut other = s;
        other.name_pattern = Some("y".into());
        assert!(
            unusable(&scope(vec![other]), Some(&ok), now).is_some_and(|m| m.contains("changed"))
        );
    }

    proptest! {
        /// A literal pattern (no wildcards) matches exactly itself.
        #[test]
        fn literal_patterns_match_only_themselves(a in "[a-z0-9-]{0,12}", b in "[a-z0-9-]{0,12}") {
            prop_assert_eq!(glob(&a, &b), a == b);
        }

        /// `prefix*` matches exactly the texts that start with prefix; `*suffix` those that end with it.
        #[test]
        fn star_matches_prefixes_and_suffixes(p in "[a-z]{0,6}", t in "[a-z]{0,12}") {
            prop_assert_eq!(glob(&format!("{p}*"), &t), t.starts_with(&p));
            prop_assert_eq!(glob(&format!("*{p}"), &t), t.ends_with(&p));
        }

        /// `?` repeated n times matches exactly the texts of n characters.
        #[test]
        fn question_marks_count_characters(n in 0usize..8, t in "[a-z]{0,10}") {
            prop_assert_eq!(glob(&"?".repeat(n), &t), t.chars().count() == n);
        }

        /// The resolved set never holds a principal that no selector matches, nor the same ARN twice.
        #[test]
        fn resolution_is_exactly_the_matches(names in proptest::collection::vec("[a-c]{1,3}", 0..20), pattern in "[a-c*?]{1,3}") {
            let mut s = selector();
            s.name_pattern = Some(pattern.clone());
            let listed: Vec<Listed> = names.iter().map(|n| role("111111111111", "/", n, &[])).collect();
            let got = resolve(std::slice::from_ref(&s), &[["111111111111".to_string()].into()], &listed);
            let mut expected: Vec<String> = listed.iter().filter(|l| glob(&pattern, &l.name)).map(|l| l.arn.clone()).collect();
            expected.sort();
            expected.dedup();
            let arns: Vec<String> = got.iter().map(|t| t.principal.arn.clone()).collect();
            prop_assert_eq!(arns, expected);
        }
    }
}

/// Evaluation of policies with selectors: the `eligible-targets` check with a resolution.
#[cfg(test)]
mod evaluation_tests {
    use super::*;
    use crate::controller::crd::GuardrailPolicy;
    use crate::controller::policy::{self, ControllerSettings, Input};
    use crate::controller::signal::CostSignal;

    const POLICY: &str = r#"
apiVersion: autoguardrails.io/v1alpha1
kind: GuardrailPolicy
metadata: { name: ml, namespace: team }
spec:
  mode: Auto
  match: { sources: [CostAnomaly, Velocity] }
  scope:
    principals:
      - { kind: IamRole, arn: "arn:aws:iam::111111111111:role/explicit" }
    selectors:
      - { accounts: ["111111111111"], pathPrefix: /ml/ }
    maxTargets: 3
  deny: { actions: ["ec2:RunInstances"] }
  exceptions:
    principals: ["arn:aws:iam::111111111111:role/ml/excepted"]
"#;

    fn policy() -> GuardrailPolicy {
        crate::controller::simulate::load_policy("policy", POLICY).unwrap_or_else(|e| panic!("{e}"))
    }

    fn signal(principal: Option<&str>) -> CostSignal {
        let text = match principal {
            None => "source: CostAnomaly\nid: a-1\naccountId: \"111111111111\"\nimpactUsd: 500\nobservedAt: \"2026-11-20T08:00:00Z\"\n".to_string(),
            Some(p) => format!("source: Velocity\nid: v-1\naccountId: \"111111111111\"\nimpactUsd: 50\nobservedAt: \"2026-11-20T08:00:00Z\"\nprincipal: \"{p}\"\n"),
        };
        crate::controller::simulate::load_signal("signal", &text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn now() -> Timestamp {
        "2026-11-20T10:00:00Z"
            .parse()
            .unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn resolved(policy: &GuardrailPolicy, names: &[&str]) -> Resolution {
        let targets = names
            .iter()
            .map(|n| ResolvedTarget {
                principal: Principal {
                    kind: PrincipalKind::IamRole,
                    arn: format!("arn:aws:iam::111111111111:role/ml/{n}"),
                },
                matched_by: "selectors[0]: account 111111111111, path /ml/".into(),
            })
            .collect();
        Resolution {
            fingerprint: fingerprint(&policy.spec.scope),
            resolved_at: now(),
            since: now(),
            valid_until: now() + jiff::SignedDuration::from_mins(15),
            outcome: Outcome::Resolved(targets),
        }
    }

    fn evaluate(
        policy: &GuardrailPolicy,
        signal: &CostSignal,
        resolution: Option<&Resolution>,
    ) -> policy::Decision {
        policy::evaluate(Input {
            policy,
            signal,
            existing: &[],
            settings: &ControllerSettings::default(),
            now: now(),
            resolution,
        })
    }

    #[test]
    fn the_resolved_set_is_frozen_with_reasons_minus_exceptions() {
        let p = policy();
        let r = resolved(&p, &["a", "excepted"]);
        let d = evaluate(&p, &signal(None), Some(&r));
        assert_eq!(d.reason, policy::MATCHED, "{}", d.message);
        let q = d.quarantine.unwrap_or_else(|| panic!("no quarantine"));
        let arns: Vec<&str> = q.spec.targets.iter().map(|t| t.arn.as_str()).collect();
        assert_eq!(
            arns,
            [
                "arn:aws:iam::111111111111:role/explicit",
                "arn:aws:iam::111111111111:role/ml/a"
            ]
        );
        let reasons: Vec<&str> = q
            .spec
            .target_reasons
            .iter()
            .map(|r| r.matched_by.as_str())
            .collect();
        assert_eq!(
            reasons,
            [
                "scope.principals",
                "selectors[0]: account 111111111111, path /ml/"
            ]
        );
        assert!(
            d.message.contains("ml/excepted is excepted"),
            "{}",
            d.message
        );
    }

    #[test]
    fn no_usable_resolution_creates_nothing() {
        let p = policy();
        let d = evaluate(&p, &signal(None), None);
        assert_eq!(d.reason, policy::SELECTORS_UNRESOLVED);
        assert!(d.quarantine.is_none());
        let mut failed = resolved(&p, &[]);
        failed.outcome = Outcome::Failed("AccessDenied on ListRoles".into());
        let d = evaluate(&p, &signal(None), Some(&failed));
        assert_eq!(d.reason, policy::SELECTORS_UNRESOLVED);
        assert!(d.message.contains("AccessDenied on ListRoles"));
        let mut stale = resolved(&p, &["a"]);
        stale.valid_until = now() - jiff::SignedDuration::from_secs(1);
        assert_eq!(
            evaluate(&p, &signal(None), Some(&stale)).reason,
            policy::SELECTORS_UNRESOLVED
        );
        // An empty successful resolution is not "all clear" either: explicit principals remain.
        let empty = resolved(&p, &[]);
        let d = evaluate(&p, &signal(None), Some(&empty));
        assert_eq!(d.reason, policy::MATCHED);
        assert_eq!(d.quarantine.map(|q| q.spec.targets.len()), Some(1));
    }

    #[test]
    fn more_than_max_targets_is_refused_as_a_whole() {
        let p = policy();
        // Explicit + 3 selected = 4 > 3, even though one selected is excepted.
        let r = resolved(&p, &["a", "b", "excepted"]);
        let d = evaluate(&p, &signal(None), Some(&r));
        assert_eq!(d.reason, policy::TOO_MANY_TARGETS);
        assert!(d.quarantine.is_none());
        assert!(
            d.message
                .contains("resolves to 4 principals, more than scope.maxTargets 3")
        );
        let r = resolved(&p, &["a", "b"]);
        assert_eq!(
            evaluate(&p, &signal(None), Some(&r)).reason,
            policy::MATCHED
        );
    }

    #[test]
    fn a_velocity_signal_quarantines_its_principal_only_when_resolved() {
        let p = policy();
        let r = resolved(&p, &["a", "b"]);
        let named = signal(Some("arn:aws:iam::111111111111:role/ml/b"));
        assert!(policy::unwatched(&p, &named).is_none());
        let d = evaluate(&p, &named, Some(&r));
        assert_eq!(d.reason, policy::MATCHED, "{}", d.message);
        let q = d.quarantine.unwrap_or_else(|| panic!("no quarantine"));
        assert_eq!(q.spec.targets.len(), 1);
        assert_eq!(q.spec.target_reasons.len(), 1);
        let stranger = signal(Some("arn:aws:iam::111111111111:role/ml/zzz"));
        assert_eq!(
            evaluate(&p, &stranger, Some(&r)).reason,
            policy::PRINCIPAL_NOT_MATCHED
        );
    }

    /// What a standby reads from the status the leader wrote is what the leader resolved
    /// (decision 252); other selectors, a pending or stale status, or a status that could not
    /// carry every target give nothing usable or a failure, never a smaller set.
    #[test]
    fn a_standby_reads_back_exactly_the_leaders_resolution() {
        use crate::controller::crd::conditions::{
            REASON_RESOLUTION_FAILED, REASON_RESOLUTION_PENDING, REASON_RESOLUTION_STALE,
            REASON_RESOLVED,
        };
        use crate::controller::reconcile::policy::selection_status;
        let p = policy();
        let r = resolved(&p, &["a", "b"]);
        let (_, reason, message, summary) =
            selection_status(&p, Some(&r), now()).unwrap_or_else(|| panic!("selectors"));
        let summary = summary.unwrap_or_else(|| panic!("a summary"));
        assert_eq!(reason, REASON_RESOLVED);
        let read = from_status(&p.spec.scope, &summary, reason, &message)
            .unwrap_or_else(|| panic!("usable"));
        assert_eq!(read.outcome, r.outcome);
        assert_eq!(read.valid_until, r.valid_until);
        assert_eq!(read.fingerprint, r.fingerprint);

        let failed = from_status(
            &p.spec.scope,
            &summary,
            REASON_RESOLUTION_FAILED,
            "IAM said no",
        );
        assert_eq!(
            failed.map(|f| f.outcome),
            Some(Outcome::Failed("IAM said no".into()))
        );
        for reason in [REASON_RESOLUTION_PENDING, REASON_RESOLUTION_STALE] {
            assert!(from_status(&p.spec.scope, &summary, reason, "").is_none());
        }
        let mut other = p.clone();
        other.spec.scope.selectors[0].path_prefix = Some("/other/".into());
        assert!(from_status(&other.spec.scope, &summary, REASON_RESOLVED, "").is_none());
        let mut cut = summary.clone();
        cut.targets.truncate(1);
        assert!(matches!(
            from_status(&p.spec.scope, &cut, REASON_RESOLVED, "").map(|r| r.outcome),
            Some(Outcome::Failed(_))
        ));
        let mut no_until = summary;
        no_until.valid_until = None;
        assert!(from_status(&p.spec.scope, &no_until, REASON_RESOLVED, "").is_none());
    }
}
