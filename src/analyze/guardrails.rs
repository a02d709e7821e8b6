//! Guardrails as data: the presets `none`, `sandbox`, `prod`, a user rules file (YAML or JSON)
//! merged into the preset, and the checks that turn a proposed permission into violations. A
//! violating permission is never emitted; the run exits 3. It must not read files (the CLI passes
//! the text) nor decide anything else about the proposal.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::permissions::wildcard_match;

/// Rule name: an action on the blocked list.
pub const RULE_BLOCKED_ACTION: &str = "BlockedAction";
/// Rule name: a service on the disallowed list.
pub const RULE_DISALLOWED_SERVICE: &str = "DisallowedService";
/// Rule name: a call observed in a region outside the allowed ones.
pub const RULE_REGION: &str = "RegionNotAllowed";
/// Rule name: a wildcard action (never generated, checked anyway).
pub const RULE_WILDCARD: &str = "WildcardAction";

/// Why the rules could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GuardrailError {
    /// The rules file does not parse.
    #[error("guardrail rules file {file} is invalid: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
}

impl GuardrailError {
    /// The category used for metric labels and messages.
    pub fn category(&self) -> &'static str {
        "InvalidGuardrails"
    }
}

/// The presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "camelCase")]
pub enum Preset {
    /// No restrictions (experiments only).
    None,
    /// Blocks `iam:PassRole`.
    Sandbox,
    /// Blocks `iam:*` and `sts:AssumeRole`, disallows `iam` and `organizations`, requires the
    /// `aws:RequestedRegion` condition.
    Prod,
}

/// A set of rules (a preset, a user file, or both merged).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Rules {
    /// Action patterns never emitted (`iam:*`, `sts:AssumeRole`).
    pub blocked_actions: BTreeSet<String>,
    /// Service prefixes never emitted.
    pub disallowed_services: BTreeSet<String>,
    /// Every generated statement carries `StringEquals aws:RequestedRegion` with the regions the
    /// calls were observed in.
    pub require_region_condition: bool,
    /// When not empty, calls observed in other regions are violations.
    pub allowed_regions: BTreeSet<String>,
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl Rules {
    /// The rules of a preset.
    pub fn preset(preset: Preset) -> Rules {
        match preset {
            Preset::None => Rules::default(),
            Preset::Sandbox => Rules {
                blocked_actions: set(&["iam:PassRole"]),
                ..Rules::default()
            },
            Preset::Prod => Rules {
                blocked_actions: set(&["iam:*", "sts:AssumeRole"]),
                disallowed_services: set(&["iam", "organizations"]),
                require_region_condition: true,
                allowed_regions: BTreeSet::new(),
            },
        }
    }

    /// Parses a user rules file (YAML or JSON).
    pub fn parse(file: &str, text: &str) -> Result<Rules, GuardrailError> {
        serde_saphyr::from_str(text).map_err(|e| GuardrailError::Invalid {
            file: file.to_string(),
            message: e.to_string(),
        })
    }

    /// The union of two rule sets (a user file only adds restrictions).
    pub fn merge(mut self, other: &Rules) -> Rules {
        self.blocked_actions
            .extend(other.blocked_actions.iter().cloned());
        self.disallowed_services.extend(
            other
                .disallowed_services
                .iter()
                .map(|s| s.to_ascii_lowercase()),
        );
        self.require_region_condition |= other.require_region_condition;
        self.allowed_regions
            .extend(other.allowed_regions.iter().cloned());
        self
    }

    /// The violations of emitting `action` (`service:Action`).
    pub fn check_action(&self, action: &str) -> Vec<Violation> {
        let mut out = Vec::new();
        let service = action.split(':').next().unwrap_or_default();
        if action.contains('*') || action.contains('?') {
            out.push(Violation {
                rule: RULE_WILDCARD,
                action: action.to_string(),
                detail: "wildcard actions are never emitted".into(),
            });
        }
        if let Some(pattern) = self
            .blocked_actions
            .iter()
            .find(|p| wildcard_match(p, action, true))
        {
            out.push(Violation {
                rule: RULE_BLOCKED_ACTION,
                action: action.to_string(),
                detail: format!("matches blocked pattern {pattern}"),
            });
        }
        if self
            .disallowed_services
            .iter()
            .any(|s| s.eq_ignore_ascii_case(service))
        {
            out.push(Violation {
                rule: RULE_DISALLOWED_SERVICE,
                action: action.to_string(),
                detail: format!("service {service} is disallowed"),
            });
        }
        out
    }

    /// The violations of the regions `action` was observed in.
    pub fn check_regions<'a>(
        &self,
        action: &str,
        regions: impl IntoIterator<Item = &'a String>,
    ) -> Vec<Violation> {
        if self.allowed_regions.is_empty() {
            return Vec::new();
        }
        regions
            .into_iter()
            .filter(|r| !self.allowed_regions.contains(*r))
            .map(|r| Violation {
                rule: RULE_REGION,
                action: action.to_string(),
                detail: format!("observed in {r}, outside the allowed regions"),
            })
            .collect()
    }
}

/// One guardrail violation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Violation {
    /// The rule (`BlockedAction`, `DisallowedService`, ...).
    pub rule: &'static str,
    /// The action.
    pub action: String,
    /// Details.
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets() {
        let prod = Rules::preset(Preset::Prod);
        assert_eq!(prod.check_action("iam:PassRole").len(), 2);
        assert_eq!(
            prod.check_action("sts:AssumeRole")[0].rule,
            RULE_BLOCKED_ACTION
        );
        assert_eq!(
            prod.check_action("organizations:ListAccounts")[0].rule,
            RULE_DISALLOWED_SERVICE
        );
        assert!(prod.check_action("s3:GetObject").is_empty());
        let sandbox = Rules::preset(Preset::Sandbox);
        assert_eq!(sandbox.check_action("iam:PassRole").len(), 1);
        assert!(sandbox.check_action("iam:GetRole").is_empty());
        assert!(
            Rules::preset(Preset::None)
                .check_action("iam:PassRole")
                .is_empty()
        );
    }

    #[test]
    fn user_rules_add_restrictions() {
        let user = Rules::parse(
            "rules.yaml",
            "blockedActions: [\"s3:Delete*\"]\nallowedRegions: [eu-west-1]\n",
        )
        .unwrap();
        let rules = Rules::preset(Preset::Sandbox).merge(&user);
        assert_eq!(rules.check_action("s3:DeleteObject").len(), 1);
        assert_eq!(
            rules
                .check_regions("s3:GetObject", &["us-east-1".to_string()])
                .len(),
            1
        );
        assert!(Rules::parse("r", "unknownKey: 1").is_err());
    }
}
