//! Rules as data: the `policies.yaml` format (the seed's, plus per-rule handling of inputs that
//! are not `Ok`), its validation, and first-match-wins evaluation over named signals with a full
//! trace. Conditions use three-valued logic: a rule whose outcome depends on an unusable input is
//! "could not evaluate" and takes its `on_not_ok` action (default DELAY, never ALLOW). Pure: it
//! must not fetch inputs or know where they came from.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::{ConfigError, parse_yaml};
use super::inputs::{
    InputState, REASON_COULD_NOT_EVALUATE, REASON_NO_RULE_MATCHED, REASON_RULE_MATCHED, Signal,
    Value,
};

/// The seed's P001–P008, used when no rules file is configured.
pub const DEFAULT_POLICIES: &str = include_str!("policies.default.yaml");

/// A verdict, ordered from most to least permissive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    /// Deploy.
    Allow,
    /// Deploy, with a warning.
    Warn,
    /// Retry later.
    Delay,
    /// Do not deploy.
    Block,
}

impl Action {
    /// `ALLOW`, `WARN`, `DELAY`, `BLOCK`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "ALLOW",
            Action::Warn => "WARN",
            Action::Delay => "DELAY",
            Action::Block => "BLOCK",
        }
    }

    /// The seed's exit codes: 0 allow/warn, 1 delay, 2 block.
    pub fn exit_code(self) -> u8 {
        match self {
            Action::Allow | Action::Warn => 0,
            Action::Delay => 1,
            Action::Block => 2,
        }
    }
}

/// What a rule does when an input it needs is not usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnNotOk {
    /// Verdict DELAY, reason `CouldNotEvaluate` (the default).
    Delay,
    /// Verdict BLOCK, reason `CouldNotEvaluate`.
    Block,
    /// Verdict WARN, reason `CouldNotEvaluate` (explicit opt-in: deploys proceed).
    Warn,
    /// Treat the rule as not matched and go on (explicit opt-in).
    Skip,
}

/// A comparison operator (the seed's names; `le`/`ge`/`ne` accepted too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operator {
    /// `<`.
    Lt,
    /// `<=`.
    #[serde(alias = "le")]
    Lte,
    /// `>`.
    Gt,
    /// `>=`.
    #[serde(alias = "ge")]
    Gte,
    /// `==`.
    Eq,
    /// `!=`.
    #[serde(alias = "ne")]
    Neq,
    /// Member of a list.
    In,
}

impl Operator {
    fn as_str(self) -> &'static str {
        match self {
            Operator::Lt => "lt",
            Operator::Lte => "lte",
            Operator::Gt => "gt",
            Operator::Gte => "gte",
            Operator::Eq => "eq",
            Operator::Neq => "neq",
            Operator::In => "in",
        }
    }
}

/// One condition as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionSpec {
    /// The operator (default `eq`, as the seed).
    #[serde(default = "default_operator")]
    pub operator: Operator,
    /// The value compared with.
    pub value: serde_json::Value,
}

fn default_operator() -> Operator {
    Operator::Eq
}

/// One rule as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Identifier (`P001`).
    pub id: String,
    /// Name.
    pub name: String,
    /// Lower runs first; ties keep file order.
    #[serde(default = "default_priority")]
    pub priority: i64,
    /// The verdict when it matches.
    pub action: Action,
    /// Conditions on signals (all must hold; empty matches always).
    #[serde(default)]
    pub conditions: BTreeMap<String, ConditionSpec>,
    /// Why (shown to people).
    #[serde(default)]
    pub reason: String,
    /// What to do.
    #[serde(default)]
    pub remediation: String,
    /// For DELAY.
    #[serde(default, alias = "delayMinutes")]
    pub delay_minutes: Option<u32>,
    /// When an input is not usable (default from `defaults`).
    #[serde(default, alias = "onNotOk")]
    pub on_not_ok: Option<OnNotOk>,
    /// Delay for a could-not-evaluate DELAY (default from `defaults`).
    #[serde(default, alias = "notOkDelayMinutes")]
    pub not_ok_delay_minutes: Option<u32>,
    /// Whether `Partial` inputs (estimated cost days) may be used (default from `defaults`).
    #[serde(default, alias = "acceptPartial")]
    pub accept_partial: Option<bool>,
}

fn default_priority() -> i64 {
    99
}

/// Defaults for every rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDefaults {
    /// Default `on_not_ok`.
    #[serde(default = "default_on_not_ok", alias = "onNotOk")]
    pub on_not_ok: OnNotOk,
    /// Default delay for could-not-evaluate.
    #[serde(default = "default_not_ok_delay", alias = "notOkDelayMinutes")]
    pub not_ok_delay_minutes: u32,
    /// Default for `accept_partial`.
    #[serde(default = "default_accept_partial", alias = "acceptPartial")]
    pub accept_partial: bool,
}

fn default_on_not_ok() -> OnNotOk {
    OnNotOk::Delay
}
fn default_not_ok_delay() -> u32 {
    10
}
fn default_accept_partial() -> bool {
    true
}

impl Default for RuleDefaults {
    fn default() -> Self {
        RuleDefaults {
            on_not_ok: OnNotOk::Delay,
            not_ok_delay_minutes: 10,
            accept_partial: true,
        }
    }
}

/// The rules file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Free-form version.
    #[serde(default)]
    pub version: Option<String>,
    /// Free-form description.
    #[serde(default)]
    pub description: Option<String>,
    /// Defaults for every rule.
    #[serde(default)]
    pub defaults: RuleDefaults,
    /// The rules.
    pub policies: Vec<RuleSpec>,
}

/// The kind of value a signal carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalKind {
    /// A number.
    Number,
    /// A label from a fixed set.
    Label(&'static [&'static str]),
    /// A boolean.
    Bool,
}

/// Every signal rules may use, with its kind and meaning.
pub const SIGNALS: &[(&str, SignalKind, &str)] = &[
    (
        "error_budget_pct",
        SignalKind::Number,
        "error budget remaining over the SLO window, %",
    ),
    (
        "availability_pct",
        SignalKind::Number,
        "availability over the SLO window, %",
    ),
    (
        "burn_rate",
        SignalKind::Label(&["low", "medium", "high", "critical"]),
        "burn class",
    ),
    (
        "burn_rate_value",
        SignalKind::Number,
        "burn rate confirmed by both windows of a pair",
    ),
    (
        "burn_alert",
        SignalKind::Label(&["none", "ticket", "page"]),
        "multi-window multi-burn-rate alert",
    ),
    (
        "latency_compliant",
        SignalKind::Bool,
        "p95 at or below its target",
    ),
    (
        "latency_p99_compliant",
        SignalKind::Bool,
        "p99 at or below its target",
    ),
    ("p95_ms", SignalKind::Number, "p95 latency, ms"),
    ("p99_ms", SignalKind::Number, "p99 latency, ms"),
    (
        "cost_spike_pct",
        SignalKind::Number,
        "week-over-week cost change, %",
    ),
    (
        "cost_spike_detected",
        SignalKind::Bool,
        "cost change at or above the rising threshold",
    ),
    (
        "cost_trend",
        SignalKind::Label(&["stable", "rising", "spiking", "falling"]),
        "cost trend",
    ),
    (
        "current_week_cost_avg",
        SignalKind::Number,
        "mean daily spend, last 7 days",
    ),
    (
        "prior_week_cost_avg",
        SignalKind::Number,
        "mean daily spend, the 7 days before",
    ),
];

/// The kind of a signal, if it is known.
pub fn signal_kind(name: &str) -> Option<SignalKind> {
    SIGNALS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, k, _)| *k)
}

/// `errorBudgetPct` → `error_budget_pct` (names are accepted in either case style).
pub fn canonical_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else if c == '-' {
            out.push('_');
        } else {
            out.push(c);
        }
    }
    // Short aliases people use.
    match out.as_str() {
        "burn_class" => "burn_rate".to_string(),
        "wow_change_pct" => "cost_spike_pct".to_string(),
        _ => out,
    }
}

/// A validated condition.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Condition {
    /// Signal name.
    pub signal: String,
    /// Operator.
    pub operator: Operator,
    /// Expected value(s).
    pub value: Expected,
}

/// What a condition compares with.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Expected {
    /// A number.
    Number(f64),
    /// A boolean.
    Bool(bool),
    /// A label.
    Label(String),
    /// Labels (for `in`).
    Labels(Vec<String>),
}

impl Expected {
    fn display(&self) -> String {
        match self {
            Expected::Number(n) => super::inputs::format_number(*n),
            Expected::Bool(b) => b.to_string(),
            Expected::Label(l) => l.clone(),
            Expected::Labels(l) => format!("[{}]", l.join(", ")),
        }
    }
}

/// A validated rule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rule {
    /// Identifier.
    pub id: String,
    /// Name.
    pub name: String,
    /// Verdict when matched.
    pub action: Action,
    /// Conditions (all must hold).
    pub conditions: Vec<Condition>,
    /// Why.
    pub reason: String,
    /// What to do.
    pub remediation: String,
    /// Delay for DELAY.
    pub delay_minutes: u32,
    /// Not-Ok handling.
    pub on_not_ok: OnNotOk,
    /// Delay for a could-not-evaluate DELAY.
    pub not_ok_delay_minutes: u32,
    /// Whether `Partial` inputs are used.
    pub accept_partial: bool,
}

/// A validated rule set, in evaluation order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleSet {
    /// The rules.
    pub rules: Vec<Rule>,
}

/// Findings that are not errors (shown by `gate check-config`).
pub fn lint(rules: &RuleSet) -> Vec<String> {
    let mut notes = Vec::new();
    match rules.rules.last() {
        Some(r) if r.conditions.is_empty() => {}
        _ => notes.push(
            "the last rule is not a catch-all: when nothing matches the verdict is DELAY (NoRuleMatched)"
                .to_string(),
        ),
    }
    for r in &rules.rules {
        if matches!(r.on_not_ok, OnNotOk::Skip | OnNotOk::Warn) {
            notes.push(format!(
                "{}: on_not_ok {:?} lets a deploy proceed when its inputs are missing",
                r.id, r.on_not_ok
            ));
        }
    }
    notes
}

/// Parses and validates a rules file.
pub fn parse(file: &str, text: &str) -> Result<RuleSet, ConfigError> {
    let spec: PolicyFile = parse_yaml(file, text)?;
    validate(file, spec)
}

/// The seed's default rules.
pub fn defaults() -> Result<RuleSet, ConfigError> {
    parse("(built-in policies)", DEFAULT_POLICIES)
}

fn invalid(file: &str, field: String, message: String) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_string(),
        field,
        message,
    }
}

/// Validates a parsed rules file.
pub fn validate(file: &str, spec: PolicyFile) -> Result<RuleSet, ConfigError> {
    if spec.policies.is_empty() {
        return Err(invalid(
            file,
            "policies".into(),
            "at least one rule is required".into(),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut indexed: Vec<(usize, RuleSpec)> = spec.policies.into_iter().enumerate().collect();
    indexed.sort_by_key(|(i, r)| (r.priority, *i));
    let mut rules = Vec::new();
    for (i, r) in indexed {
        let at = |f: &str| format!("policies[{i}].{f}");
        if r.id.trim().is_empty() {
            return Err(invalid(file, at("id"), "must not be empty".into()));
        }
        if !seen.insert(r.id.clone()) {
            return Err(invalid(file, at("id"), format!("duplicate id {:?}", r.id)));
        }
        let mut conditions = Vec::new();
        for (name, c) in &r.conditions {
            let signal = canonical_name(name);
            let field = at(&format!("conditions.{name}"));
            let Some(kind) = signal_kind(&signal) else {
                let known: Vec<&str> = SIGNALS.iter().map(|(n, _, _)| *n).collect();
                return Err(invalid(
                    file,
                    field,
                    format!("unknown signal; known: {}", known.join(", ")),
                ));
            };
            let value = expected(&field, kind, c.operator, &c.value)
                .map_err(|m| invalid(file, field.clone(), m))?;
            conditions.push(Condition {
                signal,
                operator: c.operator,
                value,
            });
        }
        if r.action == Action::Delay && r.delay_minutes.is_none() {
            // The seed allows it; a DELAY without minutes retries after the not-Ok delay.
        }
        rules.push(Rule {
            id: r.id.clone(),
            name: r.name.clone(),
            action: r.action,
            conditions,
            reason: r.reason.clone(),
            remediation: r.remediation.clone(),
            delay_minutes: r.delay_minutes.unwrap_or(if r.action == Action::Delay {
                spec.defaults.not_ok_delay_minutes
            } else {
                0
            }),
            on_not_ok: r.on_not_ok.unwrap_or(spec.defaults.on_not_ok),
            not_ok_delay_minutes: r
                .not_ok_delay_minutes
                .unwrap_or(spec.defaults.not_ok_delay_minutes),
            accept_partial: r.accept_partial.unwrap_or(spec.defaults.accept_partial),
        });
    }
    Ok(RuleSet { rules })
}

fn expected(
    _field: &str,
    kind: SignalKind,
    op: Operator,
    value: &serde_json::Value,
) -> Result<Expected, String> {
    match (kind, op) {
        (SignalKind::Number, Operator::In) => Err("`in` needs a label signal".into()),
        (SignalKind::Number, _) => value
            .as_f64()
            .map(Expected::Number)
            .ok_or_else(|| format!("value must be a number (got {value})")),
        (SignalKind::Bool, Operator::Eq | Operator::Neq) => value
            .as_bool()
            .map(Expected::Bool)
            .ok_or_else(|| format!("value must be true or false (got {value})")),
        (SignalKind::Bool, _) => Err("a boolean signal supports only eq and neq".into()),
        (SignalKind::Label(allowed), Operator::In) => {
            let list = value
                .as_array()
                .ok_or_else(|| format!("`in` needs a list (got {value})"))?;
            let mut labels = Vec::new();
            for v in list {
                let l = v
                    .as_str()
                    .ok_or_else(|| format!("list items must be labels (got {v})"))?;
                if !allowed.contains(&l) {
                    return Err(format!("{l:?} is not one of {}", allowed.join(", ")));
                }
                labels.push(l.to_string());
            }
            Ok(Expected::Labels(labels))
        }
        (SignalKind::Label(allowed), Operator::Eq | Operator::Neq) => {
            let l = value
                .as_str()
                .ok_or_else(|| format!("value must be a label (got {value})"))?;
            if !allowed.contains(&l) {
                return Err(format!("{l:?} is not one of {}", allowed.join(", ")));
            }
            Ok(Expected::Label(l.to_string()))
        }
        (SignalKind::Label(_), _) => Err("a label signal supports only eq, neq and in".into()),
    }
}

/// The named signals a decision is taken on.
pub type Signals = BTreeMap<String, Signal>;

/// How one condition came out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConditionTrace {
    /// Signal.
    pub signal: String,
    /// Operator.
    pub operator: String,
    /// Expected value.
    pub expected: String,
    /// The value seen (if any).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<Value>,
    /// The signal's state.
    pub state: InputState,
    /// `true`/`false`, or `None` when it could not be evaluated.
    pub result: Option<bool>,
}

/// How one rule came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleOutcome {
    /// All conditions held.
    Matched,
    /// A condition was false.
    NotMatched,
    /// Some input was not usable and the outcome depended on it.
    CouldNotEvaluate,
}

/// One rule in the trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleTrace {
    /// Identifier.
    pub id: String,
    /// Name.
    pub name: String,
    /// Verdict when matched.
    pub action: Action,
    /// Outcome.
    pub outcome: RuleOutcome,
    /// Whether this rule decided the verdict.
    pub decisive: bool,
    /// Why, in words.
    pub why: String,
    /// Each condition.
    pub conditions: Vec<ConditionTrace>,
}

/// The verdict and its trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// ALLOW / WARN / DELAY / BLOCK.
    pub action: Action,
    /// The deciding rule (empty when none).
    pub policy_id: String,
    /// Its name.
    pub policy_name: String,
    /// `RuleMatched`, `CouldNotEvaluate` or `NoRuleMatched`.
    pub reason_code: String,
    /// Why, for people.
    pub reason: String,
    /// What to do.
    pub remediation: String,
    /// Minutes to wait before retrying (DELAY).
    pub delay_minutes: u32,
    /// Signals that were not usable where they mattered.
    pub missing: Vec<String>,
    /// Every rule.
    pub trace: Vec<RuleTrace>,
}

fn compare(op: Operator, actual: &Value, expected: &Expected) -> Option<bool> {
    Some(match (actual, expected) {
        (Value::Number(a), Expected::Number(e)) => match op {
            Operator::Lt => a < e,
            Operator::Lte => a <= e,
            Operator::Gt => a > e,
            Operator::Gte => a >= e,
            Operator::Eq => a == e,
            Operator::Neq => a != e,
            Operator::In => return None,
        },
        (Value::Bool(a), Expected::Bool(e)) => match op {
            Operator::Eq => a == e,
            Operator::Neq => a != e,
            _ => return None,
        },
        (Value::Label(a), Expected::Label(e)) => match op {
            Operator::Eq => a == e,
            Operator::Neq => a != e,
            _ => return None,
        },
        (Value::Label(a), Expected::Labels(list)) => list.contains(a),
        _ => return None,
    })
}

/// Evaluates one rule with three-valued logic.
pub fn evaluate_rule(rule: &Rule, signals: &Signals) -> (RuleOutcome, Vec<ConditionTrace>) {
    let mut traces = Vec::new();
    let mut any_false = false;
    let mut any_unknown = false;
    for c in &rule.conditions {
        let signal = signals.get(&c.signal);
        let state = signal.map(|s| s.state).unwrap_or(InputState::NoData);
        let usable = signal.and_then(|s| s.usable(rule.accept_partial));
        let result = usable.and_then(|v| compare(c.operator, v, &c.value));
        match result {
            Some(false) => any_false = true,
            None => any_unknown = true,
            Some(true) => {}
        }
        traces.push(ConditionTrace {
            signal: c.signal.clone(),
            operator: c.operator.as_str().to_string(),
            expected: c.value.display(),
            actual: signal.and_then(|s| s.value.clone()),
            state: if result.is_none() && state.usable(true) && !rule.accept_partial {
                InputState::Partial
            } else {
                state
            },
            result,
        });
    }
    let outcome = if any_false {
        RuleOutcome::NotMatched
    } else if any_unknown {
        RuleOutcome::CouldNotEvaluate
    } else {
        RuleOutcome::Matched
    };
    (outcome, traces)
}

fn why(outcome: RuleOutcome, traces: &[ConditionTrace]) -> String {
    let show = |t: &ConditionTrace| {
        let actual = t
            .actual
            .as_ref()
            .map(Value::display)
            .unwrap_or_else(|| "none".into());
        format!(
            "{} {} {} (saw {}, {})",
            t.signal,
            t.operator,
            t.expected,
            actual,
            t.state.as_str()
        )
    };
    match outcome {
        RuleOutcome::Matched if traces.is_empty() => "no conditions (catch-all)".to_string(),
        RuleOutcome::Matched => traces.iter().map(show).collect::<Vec<_>>().join(" and "),
        RuleOutcome::NotMatched => format!(
            "false: {}",
            traces
                .iter()
                .filter(|t| t.result == Some(false))
                .map(show)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        RuleOutcome::CouldNotEvaluate => format!(
            "could not evaluate: {}",
            traces
                .iter()
                .filter(|t| t.result.is_none())
                .map(show)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// First match wins: the first rule that matches decides; a rule that could not be evaluated
/// decides with its `on_not_ok` action (unless that is `skip`). Every rule is traced.
pub fn evaluate(rules: &RuleSet, signals: &Signals) -> Verdict {
    let mut trace = Vec::new();
    let mut decided: Option<Verdict> = None;
    for rule in &rules.rules {
        let (outcome, conditions) = evaluate_rule(rule, signals);
        let mut decisive = false;
        if decided.is_none() {
            match outcome {
                RuleOutcome::Matched => {
                    decisive = true;
                    decided = Some(Verdict {
                        action: rule.action,
                        policy_id: rule.id.clone(),
                        policy_name: rule.name.clone(),
                        reason_code: REASON_RULE_MATCHED.to_string(),
                        reason: rule.reason.clone(),
                        remediation: rule.remediation.clone(),
                        delay_minutes: if rule.action == Action::Delay {
                            rule.delay_minutes
                        } else {
                            0
                        },
                        missing: Vec::new(),
                        trace: Vec::new(),
                    });
                }
                RuleOutcome::CouldNotEvaluate if rule.on_not_ok != OnNotOk::Skip => {
                    decisive = true;
                    let missing: Vec<String> = conditions
                        .iter()
                        .filter(|c| c.result.is_none())
                        .map(|c| c.signal.clone())
                        .collect();
                    let action = match rule.on_not_ok {
                        OnNotOk::Block => Action::Block,
                        OnNotOk::Warn => Action::Warn,
                        _ => Action::Delay,
                    };
                    decided = Some(Verdict {
                        action,
                        policy_id: rule.id.clone(),
                        policy_name: rule.name.clone(),
                        reason_code: REASON_COULD_NOT_EVALUATE.to_string(),
                        reason: format!(
                            "Could not evaluate rule {} ({}): {} not available",
                            rule.id,
                            rule.name,
                            conditions
                                .iter()
                                .filter(|c| c.result.is_none())
                                .map(|c| format!("{} is {}", c.signal, c.state.as_str()))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        remediation:
                            "Check the metric and cost sources; the gate retries once they answer."
                                .to_string(),
                        delay_minutes: if action == Action::Delay {
                            rule.not_ok_delay_minutes
                        } else {
                            0
                        },
                        missing,
                        trace: Vec::new(),
                    });
                }
                _ => {}
            }
        }
        trace.push(RuleTrace {
            id: rule.id.clone(),
            name: rule.name.clone(),
            action: rule.action,
            outcome,
            decisive,
            why: why(outcome, &conditions),
            conditions,
        });
    }
    let mut verdict = decided.unwrap_or_else(|| Verdict {
        action: Action::Delay,
        policy_id: String::new(),
        policy_name: String::new(),
        reason_code: REASON_NO_RULE_MATCHED.to_string(),
        reason: "No rule matched; the gate does not allow by default".to_string(),
        remediation: "Add a catch-all rule (no conditions) at the end of policies.yaml."
            .to_string(),
        delay_minutes: 10,
        missing: Vec::new(),
        trace: Vec::new(),
    });
    verdict.trace = trace;
    verdict
}
