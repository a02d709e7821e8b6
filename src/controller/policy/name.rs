//! Deterministic names: the Quarantine name for (policy, signal id), stable across program
//! versions so that a repeated signal can never create a second Quarantine. Pure.

use sha2::{Digest, Sha256};

/// Version tag mixed into the hash; changing it would rename every future quarantine, so don't.
const NAME_SCHEME: &str = "autoguardrails.io/quarantine-name/v1";
/// Characters of the policy name kept as a readable prefix.
const PREFIX_LEN: usize = 52;
/// Hex characters of the hash suffix (40 bits).
const HASH_LEN: usize = 10;

/// The Quarantine name for a signal under a policy: `<policy prefix>-<10 hex chars>`, at most
/// 63 characters, a valid RFC 1123 label (and so a valid object name).
pub fn quarantine_name(policy_name: &str, signal_id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(NAME_SCHEME.as_bytes());
    hasher.update([0]);
    hasher.update(policy_name.as_bytes());
    hasher.update([0]);
    hasher.update(signal_id.as_bytes());
    let digest = hasher.finalize();
    let hash: String = digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..HASH_LEN]
        .to_string();
    let prefix = label_prefix(policy_name);
    if prefix.is_empty() {
        format!("q-{hash}")
    } else {
        format!("{prefix}-{hash}")
    }
}

/// A label value naming the policy: the name itself when it fits 63 characters, else a prefix
/// plus a hash of the whole name.
pub fn label_value(policy_name: &str) -> String {
    if policy_name.len() <= 63
        && policy_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return policy_name.to_string();
    }
    quarantine_name(policy_name, "")
}

fn label_prefix(policy_name: &str) -> String {
    let cleaned: String = policy_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(PREFIX_LEN)
        .collect();
    cleaned.trim_matches('-').to_string()
}

/// True when `name` is a valid RFC 1123 label (what Kubernetes requires of most names).
pub fn is_rfc1123_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_are_stable_across_versions() {
        // Golden values: if these change, a redelivered signal would create a second quarantine.
        let golden = quarantine_name("dev-compute-spike", "4f7d3c52-1a7e-4c1b-9b0e-2f5d8e6a9c10");
        assert_eq!(golden, GOLDEN_DEV_COMPUTE_SPIKE);
        assert_eq!(quarantine_name("", "x").len(), 12);
        assert!(quarantine_name(&"a".repeat(253), "x").len() <= 63);
    }

    const GOLDEN_DEV_COMPUTE_SPIKE: &str = "dev-compute-spike-794012da75";

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn names_are_valid_labels(policy in "[a-z0-9][a-z0-9.-]{0,252}", signal in ".{0,300}") {
            let name = quarantine_name(&policy, &signal);
            prop_assert!(is_rfc1123_label(&name), "{name}");
            prop_assert_eq!(&name, &quarantine_name(&policy, &signal));
        }

        #[test]
        fn different_signals_get_different_names(policy in "[a-z0-9-]{1,60}", a in "[ -~]{1,40}", b in "[ -~]{1,40}") {
            prop_assume!(a != b);
            prop_assert_ne!(quarantine_name(&policy, &a), quarantine_name(&policy, &b));
        }
    }
}
