//! The seed's eight rules as a table, their priority, custom rule files, and properties: more
//! unusable inputs never give a more permissive verdict than DELAY allows, and missing data never
//! gives ALLOW with the default rules.

use autoguardrails::gate::inputs::{InputState, REASON_COULD_NOT_EVALUATE, Signal, Value};
use autoguardrails::gate::rules::{self, Action, RuleOutcome, Signals};
use proptest::prelude::*;

fn ok(value: Value) -> Signal {
    Signal::ok(value)
}

fn signals(budget: f64, burn: &str, cost: f64, latency_ok: bool) -> Signals {
    let mut s = Signals::new();
    s.insert("error_budget_pct".into(), ok(Value::Number(budget)));
    s.insert("burn_rate".into(), ok(Value::Label(burn.into())));
    s.insert("cost_spike_pct".into(), ok(Value::Number(cost)));
    s.insert("latency_compliant".into(), ok(Value::Bool(latency_ok)));
    s
}

#[test]
fn each_seed_rule_and_its_priority() {
    let rules = rules::defaults().unwrap();
    // (budget, burn, cost WoW %, latency ok) → (verdict, rule, delay)
    let table: &[(f64, &str, f64, bool, Action, &str, u32)] = &[
        (5.0, "low", 0.0, true, Action::Block, "P001", 0),
        (5.0, "critical", 50.0, false, Action::Block, "P001", 0), // P001 before P002/P003
        (15.0, "high", 0.0, true, Action::Block, "P002", 0),
        (15.0, "critical", 40.0, true, Action::Block, "P002", 0), // P002 before P003
        (50.0, "high", 30.0, true, Action::Block, "P003", 0),
        (50.0, "critical", 29.9, true, Action::Delay, "P004", 30),
        (15.0, "medium", 0.0, true, Action::Delay, "P005", 15),
        (25.0, "low", 45.0, false, Action::Delay, "P005", 15), // P005 before P006/P007
        (50.0, "medium", 20.0, true, Action::Warn, "P006", 0),
        (50.0, "low", 25.0, false, Action::Warn, "P006", 0), // the seed puts P006 before P007
        (50.0, "low", 19.9, false, Action::Delay, "P007", 20),
        (50.0, "low", 0.0, true, Action::Allow, "P008", 0),
        (10.0, "low", -30.0, true, Action::Delay, "P005", 15), // 10 is not < 10
        (30.0, "medium", 0.0, true, Action::Allow, "P008", 0), // 30 is not < 30
    ];
    for (budget, burn, cost, latency, action, id, delay) in table {
        let v = rules::evaluate(&rules, &signals(*budget, burn, *cost, *latency));
        assert_eq!(
            (v.action, v.policy_id.as_str(), v.delay_minutes),
            (*action, *id, *delay),
            "budget {budget} burn {burn} cost {cost} latency {latency}"
        );
        assert_eq!(v.trace.len(), 8, "every rule is traced");
        assert_eq!(v.trace.iter().filter(|t| t.decisive).count(), 1);
        let decisive = v.trace.iter().position(|t| t.decisive).unwrap();
        assert!(
            v.trace[..decisive]
                .iter()
                .all(|t| t.outcome == RuleOutcome::NotMatched)
        );
    }
}

#[test]
fn the_seed_policies_file_loads_unchanged() {
    // The seed's own config/policies.yaml shape: priority, snake_case, `latency_compliant`.
    let seed = r#"
version: "1.0"
policies:
  - id: P007
    name: "Latency SLO breach"
    priority: 7
    action: DELAY
    conditions:
      latency_compliant:
        operator: eq
        value: false
    reason: "p95 latency is above target threshold"
    remediation: "Investigate."
    delay_minutes: 20
  - id: P001
    name: "Critical error budget exhaustion"
    priority: 1
    action: BLOCK
    conditions:
      error_budget_pct:
        operator: lt
        value: 10
    reason: "r"
    remediation: "m"
  - id: P008
    name: "All signals healthy"
    priority: 99
    action: ALLOW
    conditions: {}
    reason: "ok"
    remediation: "none"
"#;
    let rules = rules::parse("policies.yaml", seed).unwrap();
    let ids: Vec<&str> = rules.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["P001", "P007", "P008"], "sorted by priority");
    let v = rules::evaluate(&rules, &signals(5.0, "low", 0.0, false));
    assert_eq!(v.policy_id, "P001");
}

#[test]
fn rule_files_are_validated_with_the_field_named() {
    let bad = [
        ("policies: []", "policies"),
        (
            "policies:\n- {id: A, name: a, action: BLOCK, conditions: {budget: {operator: lt, value: 1}}}",
            "policies[0].conditions.budget",
        ),
        (
            "policies:\n- {id: A, name: a, action: BLOCK, conditions: {burn_rate: {operator: in, value: [hot]}}}",
            "policies[0].conditions.burn_rate",
        ),
        (
            "policies:\n- {id: A, name: a, action: BLOCK, conditions: {error_budget_pct: {operator: lt, value: low}}}",
            "policies[0].conditions.error_budget_pct",
        ),
        (
            "policies:\n- {id: A, name: a, action: BLOCK}\n- {id: A, name: b, action: ALLOW}",
            "policies[1].id",
        ),
        ("policies:\n- {id: A, name: a, action: MAYBE}", "action"),
    ];
    for (text, field) in bad {
        let e = rules::parse("p.yaml", text).unwrap_err().to_string();
        assert!(e.contains(field), "{text}: {e}");
    }
}

#[test]
fn on_not_ok_is_per_rule_and_skip_is_explicit() {
    let text = r#"
policies:
  - {id: C1, name: cost, action: WARN, on_not_ok: skip, conditions: {cost_spike_pct: {operator: gte, value: 20}}}
  - {id: C2, name: budget, action: BLOCK, on_not_ok: block, conditions: {error_budget_pct: {operator: lt, value: 10}}}
  - {id: C3, name: all, action: ALLOW}
"#;
    let rules = rules::parse("p.yaml", text).unwrap();
    let mut s = signals(50.0, "low", 0.0, true);
    s.insert(
        "cost_spike_pct".into(),
        Signal {
            state: InputState::Error,
            value: None,
            detail: "down".into(),
        },
    );
    let v = rules::evaluate(&rules, &s);
    assert_eq!(v.action, Action::Allow, "C1 skipped explicitly");
    assert_eq!(v.trace[0].outcome, RuleOutcome::CouldNotEvaluate);
    s.insert(
        "error_budget_pct".into(),
        Signal {
            state: InputState::NoData,
            value: None,
            detail: String::new(),
        },
    );
    let v = rules::evaluate(&rules, &s);
    assert_eq!(
        (v.action, v.policy_id.as_str(), v.reason_code.as_str()),
        (Action::Block, "C2", REASON_COULD_NOT_EVALUATE)
    );
    assert!(rules::lint(&rules).iter().any(|n| n.contains("C1")));
}

#[test]
fn partial_inputs_are_used_unless_a_rule_refuses_them() {
    let mut s = signals(50.0, "low", 25.0, true);
    s.insert(
        "cost_spike_pct".into(),
        Signal {
            state: InputState::Partial,
            value: Some(Value::Number(25.0)),
            detail: "1 of 14 days are estimated".into(),
        },
    );
    let v = rules::evaluate(&rules::defaults().unwrap(), &s);
    assert_eq!((v.action, v.policy_id.as_str()), (Action::Warn, "P006"));
    let strict = rules::parse(
        "p.yaml",
        "policies:\n- {id: P006, name: c, action: WARN, accept_partial: false, conditions: {cost_spike_pct: {operator: gte, value: 20}}}\n- {id: P008, name: a, action: ALLOW}\n",
    )
    .unwrap();
    let v = rules::evaluate(&strict, &s);
    assert_eq!(
        (v.action, v.reason_code.as_str()),
        (Action::Delay, REASON_COULD_NOT_EVALUATE)
    );
}

#[test]
fn a_rule_set_without_catch_all_never_allows_by_default() {
    let rules = rules::parse("p.yaml", "policies:\n- {id: A, name: a, action: BLOCK, conditions: {error_budget_pct: {operator: lt, value: 1}}}\n").unwrap();
    let v = rules::evaluate(&rules, &signals(50.0, "low", 0.0, true));
    assert_eq!(v.action, Action::Delay);
    assert_eq!(v.reason_code, "NoRuleMatched");
}

const NOT_OK: [InputState; 4] = [
    InputState::NoData,
    InputState::NaN,
    InputState::Stale,
    InputState::Error,
];
const NAMES: [&str; 4] = [
    "error_budget_pct",
    "burn_rate",
    "cost_spike_pct",
    "latency_compliant",
];

fn arb_signals() -> impl Strategy<Value = Signals> {
    (
        0.0f64..100.0,
        prop::sample::select(vec!["low", "medium", "high", "critical"]),
        -60.0f64..80.0,
        any::<bool>(),
    )
        .prop_map(|(b, burn, c, l)| signals(b, burn, c, l))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Hiding inputs never loosens the verdict below min(original, DELAY).
    #[test]
    fn more_errors_never_give_a_more_permissive_verdict(
        base in arb_signals(),
        hide in prop::collection::vec((0usize..4, 0usize..4), 1..4),
    ) {
        let rules = rules::defaults().unwrap();
        let before = rules::evaluate(&rules, &base).action;
        let mut worse = base.clone();
        for (which, state) in &hide {
            worse.insert(NAMES[*which].to_string(), Signal { state: NOT_OK[*state], value: None, detail: "x".into() });
        }
        let after = rules::evaluate(&rules, &worse).action;
        prop_assert!(after >= before.min(Action::Delay), "{before:?} -> {after:?}");
        // And hiding even more is monotone in the same sense.
        let mut worst = worse.clone();
        for name in NAMES {
            worst.insert(name.to_string(), Signal { state: InputState::Error, value: None, detail: "x".into() });
        }
        let all_hidden = rules::evaluate(&rules, &worst).action;
        prop_assert!(all_hidden >= after.min(Action::Delay));
        prop_assert_eq!(all_hidden, Action::Delay);
    }

    /// With the default rules, any unusable input means no ALLOW.
    #[test]
    fn missing_data_never_allows(base in arb_signals(), which in 0usize..4, state in 0usize..4) {
        let mut s = base;
        s.insert(NAMES[which].to_string(), Signal { state: NOT_OK[state], value: None, detail: "x".into() });
        let v = rules::evaluate(&rules::defaults().unwrap(), &s);
        prop_assert_ne!(v.action, Action::Allow);
        // When it is not a matched rule that decided, the reason is CouldNotEvaluate.
        if v.reason_code != "RuleMatched" {
            prop_assert_eq!(v.reason_code.as_str(), REASON_COULD_NOT_EVALUATE);
            prop_assert!(v.action >= Action::Delay);
        }
    }

    /// A signal that is absent altogether behaves like NoData.
    #[test]
    fn absent_signals_never_allow(base in arb_signals(), which in 0usize..4) {
        let mut s = base;
        s.remove(NAMES[which]);
        prop_assert_ne!(rules::evaluate(&rules::defaults().unwrap(), &s).action, Action::Allow);
    }
}
