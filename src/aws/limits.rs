//! IAM's size limits and the way IAM counts a policy document against them, in one place
//! (decision 144): the deny document, the enforcement plan, the policy and quarantine checks and
//! the in-memory IAM all read them here. Pure.

/// IAM's limit for a customer-managed policy document, in non-whitespace characters.
pub const MANAGED_POLICY: usize = 6_144;
/// IAM's limit for all inline policies of one role together.
pub const ROLE_INLINE: usize = 10_240;
/// IAM's limit for all inline policies of one user together.
pub const USER_INLINE: usize = 2_048;

/// The size of a policy document as IAM counts it (whitespace is not counted).
pub fn policy_size(document: &str) -> usize {
    document.chars().filter(|c| !c.is_whitespace()).count()
}
