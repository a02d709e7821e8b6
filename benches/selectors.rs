//! Selector resolution benchmark (not a test): 5,000 roles spread over 20 accounts, resolved by
//! the controller's resolver through the in-memory IAM listing (AWS's own latency excluded), each
//! account behind its own token bucket at the controller's default IAM rate (`aws.
//! requestsPerSecond` 10, `burst` 20). Three selectors: path and name only (no tag reads), path
//! and tag over a fifth of the roles, and a tag over every role (the worst case). Printed: IAM
//! calls per operation, the elapsed time, and the highest per-account call rate against the
//! bucket's allowance (`rate * elapsed + burst`).
//!
//! `cargo bench --bench selectors` (environment: `AGR_BENCH_ROLES`, default 5000;
//! `AGR_BENCH_ACCOUNTS`, default 20; `AGR_BENCH_RATE`, default 10).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use autoguardrails::aws::directory::InMemoryDirectory;
use autoguardrails::aws::factory::StaticClients;
use autoguardrails::aws::ratelimit::RateLimiter;
use autoguardrails::aws::{Operation, PrincipalKind};
use autoguardrails::controller::crd::{
    PrincipalKind as Kind, PrincipalSelector, ScopeSpec, TagSelector,
};
use autoguardrails::controller::resolver;

fn setting(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v: &f64| *v > 0.0)
        .unwrap_or(default)
}

const BURST: u32 = 20;

/// One benchmark case: a label and the selector it resolves, given the accounts.
type Case = (&'static str, Box<dyn Fn(&[String]) -> PrincipalSelector>);

/// The accounts' directories, each behind its own bucket, and their ids.
type World = (StaticClients, Vec<Arc<InMemoryDirectory>>, Vec<String>);

fn world(roles: usize, accounts: usize, rate: f64) -> World {
    let mut clients = StaticClients::new();
    let mut directories = Vec::new();
    let mut ids = Vec::new();
    for a in 0..accounts {
        let id = format!("{:012}", 100_000_000_000u64 + a as u64);
        let directory = Arc::new(
            InMemoryDirectory::new(id.clone())
                .with_limiter(Arc::new(RateLimiter::new(rate, BURST))),
        );
        ids.push(id.clone());
        directories.push(directory.clone());
        clients = clients.with_directory(id, directory);
    }
    for r in 0..roles {
        let directory = &directories[r % accounts];
        let (path, team) = if (r / accounts).is_multiple_of(5) {
            ("/teams/ml/", "ml")
        } else {
            ("/teams/web/", "web")
        };
        directory.add(
            PrincipalKind::Role,
            path,
            &format!("role-{r}"),
            &[("team", team)],
        );
    }
    (clients, directories, ids)
}

fn scope(selector: PrincipalSelector) -> ScopeSpec {
    ScopeSpec {
        principals: Vec::new(),
        selectors: vec![selector],
        max_targets: Some(100),
        regions: Vec::new(),
    }
}

fn main() {
    let roles = setting("AGR_BENCH_ROLES", 5000.0) as usize;
    let accounts = setting("AGR_BENCH_ACCOUNTS", 20.0) as usize;
    let rate = setting("AGR_BENCH_RATE", 10.0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "selector resolution: {roles} roles in {accounts} accounts, per-account bucket {rate}/s burst {BURST}"
    );
    let base = |accounts: &[String]| PrincipalSelector {
        kinds: vec![Kind::IamRole],
        accounts: accounts.to_vec(),
        organizational_unit: None,
        path_prefix: None,
        name_pattern: None,
        tags: Vec::new(),
    };
    let cases: Vec<Case> = vec![
        (
            "path + name, no tags",
            Box::new(move |a: &[String]| PrincipalSelector {
                path_prefix: Some("/teams/ml/".into()),
                name_pattern: Some("role-*0".into()),
                ..base(a)
            }),
        ),
        (
            "path (1/5 of roles) + tag",
            Box::new(move |a: &[String]| PrincipalSelector {
                path_prefix: Some("/teams/ml/".into()),
                tags: vec![TagSelector {
                    key: "team".into(),
                    value: Some("ml".into()),
                }],
                ..base(a)
            }),
        ),
        (
            "tag over every role (worst case)",
            Box::new(move |a: &[String]| PrincipalSelector {
                tags: vec![TagSelector {
                    key: "team".into(),
                    value: Some("ml".into()),
                }],
                ..base(a)
            }),
        ),
    ];
    for (label, make) in cases {
        let (clients, directories, ids) = world(roles, accounts, rate);
        let scope = scope(make(&ids));
        let started = Instant::now();
        let outcome = runtime.block_on(resolver::resolve_scope(&clients, &scope));
        let elapsed = started.elapsed().as_secs_f64();
        let (targets, effort) = outcome.expect("resolution");
        let calls = |op| directories.iter().map(|d| d.calls(op)).sum::<u64>();
        let per_account_max = directories
            .iter()
            .map(|d| d.total_calls())
            .max()
            .unwrap_or(0);
        let allowance = rate * elapsed + f64::from(BURST);
        println!(
            "  {label}: {} matched, {} listed; IAM calls ListRoles {} ListRoleTags {} (total {}, at most {} per account); {:.2} s; per-account {} calls vs allowance {:.0} ({})",
            targets.len(),
            effort.listed,
            calls(Operation::ListRoles),
            calls(Operation::ListRoleTags),
            directories.iter().map(|d| d.total_calls()).sum::<u64>(),
            per_account_max,
            elapsed,
            per_account_max,
            allowance,
            if per_account_max as f64 <= allowance + 1.0 {
                "within the rate limit"
            } else {
                "OVER the rate limit"
            }
        );
    }
}
