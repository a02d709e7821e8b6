//! The one IAM principal identity of the product: parsing of principal ARNs, equality as IAM
//! defines it, and the one matcher for "is this principal in scope / excepted / protected".
//! Every part (policy evaluation, the controllers, intake, enforcement, the gate, the analyzer)
//! compares principals through this module and nowhere else. It must not do I/O.
//!
//! The rule (docs/safety.md, decision 084):
//! - partition and account id compare exactly; the partition must be one of [`PARTITIONS`];
//! - the kind (role, user, group) compares exactly; an STS assumed-role session is its role;
//! - the name compares without regard to ASCII case (IAM role, user and group names are unique
//!   per account regardless of case);
//! - the IAM path is not part of identity (names are unique per account regardless of path), so
//!   `role/ci-deployer` and `role/teams/CI-Deployer` in one account are the same principal.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The AWS partitions whose principals the product accepts (the one list; the CRD patterns use
/// the same three). Other partitions (ISO regions, the European Sovereign Cloud) are refused.
pub const PARTITIONS: [&str; 3] = ["aws", "aws-cn", "aws-us-gov"];

/// Longest principal ARN IAM accepts.
pub const MAX_ARN_LENGTH: usize = 2048;

/// Characters IAM allows in role, user and group names.
const NAME_CHARACTERS: &str = "+=,.@-_";

/// Why a text is not a principal ARN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrincipalError {
    /// Not of the form `arn:PARTITION:SERVICE::ACCOUNT:RESOURCE`.
    #[error("{arn:?} is not an ARN (expected arn:PARTITION:iam::ACCOUNT:role/NAME)")]
    NotAnArn {
        /// The text given.
        arn: String,
    },
    /// A partition outside [`PARTITIONS`].
    #[error(
        "{arn:?} is in partition {partition:?}; accepted partitions are aws, aws-cn, aws-us-gov"
    )]
    Partition {
        /// The text given.
        arn: String,
        /// The partition found.
        partition: String,
    },
    /// The account field is not exactly 12 digits.
    #[error("{arn:?} has no 12-digit account id")]
    Account {
        /// The text given.
        arn: String,
    },
    /// The service/resource type is not a principal the product names.
    #[error("{arn:?} does not name an IAM role, user or group, or an STS assumed-role session")]
    Kind {
        /// The text given.
        arn: String,
    },
    /// The name or path has characters IAM does not allow, or is empty.
    #[error("{arn:?} has no valid name or path")]
    Name {
        /// The text given.
        arn: String,
    },
    /// An account id that is not exactly 12 digits.
    #[error("{account:?} is not a 12-digit AWS account id")]
    AccountId {
        /// The text given.
        account: String,
    },
    /// Longer than IAM allows.
    #[error("principal ARN longer than {MAX_ARN_LENGTH} characters")]
    TooLong,
    /// The ARN parsed but names another kind than the one required.
    #[error("{arn:?} is not an IAM {expected} ARN")]
    WrongKind {
        /// The text given.
        arn: String,
        /// The kind required.
        expected: PrincipalKind,
    },
}

impl PrincipalError {
    /// The category used for metric labels and Event reasons.
    pub fn category(&self) -> &'static str {
        "InvalidPrincipal"
    }
}

/// What kind of principal an ARN names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PrincipalKind {
    /// `arn:P:iam::A:role/PATH/NAME`.
    Role,
    /// `arn:P:iam::A:user/PATH/NAME`.
    User,
    /// `arn:P:iam::A:group/PATH/NAME`.
    Group,
    /// `arn:P:sts::A:assumed-role/ROLE/SESSION` (CloudTrail's identity of a role session).
    AssumedRole,
}

impl PrincipalKind {
    /// The resource type as written in the ARN.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::Role => "role",
            PrincipalKind::User => "user",
            PrincipalKind::Group => "group",
            PrincipalKind::AssumedRole => "assumed-role",
        }
    }
}

impl fmt::Display for PrincipalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An IAM principal named by ARN. Equality, ordering and hashing follow IAM's identity rule (see
/// the module header); [`PrincipalArn::as_str`] keeps the ARN as written.
#[derive(Debug, Clone)]
pub struct PrincipalArn {
    text: String,
    partition: String,
    account_id: String,
    kind: PrincipalKind,
    path: String,
    name: String,
    session: Option<String>,
}

/// The comparison key of an IAM role, user or group name: IAM names are unique per account
/// without regard to ASCII case. Every name comparison in the product goes through this.
pub fn name_key(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// The account id of any ARN (`arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`), when the ARN is
/// well formed, its partition accepted and the account exactly 12 digits; `None` otherwise (never
/// an empty default). For resources that are not principals, such as anomaly monitors.
pub fn account_of_arn(arn: &str) -> Option<&str> {
    let mut fields = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some(_service), Some(_region), Some(account), Some(_)) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return None;
    };
    (PARTITIONS.contains(&partition)
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit()))
    .then_some(account)
}

/// The identity of a principal: what two ARNs must share to name the same principal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identity {
    partition: String,
    account_id: String,
    kind: PrincipalKind,
    name: String,
}

impl Identity {
    /// The identity of an IAM principal addressed by account, kind and name (as IAM APIs such as
    /// `ListEntitiesForPolicy` report it).
    pub fn new(partition: &str, account_id: &str, kind: PrincipalKind, name: &str) -> Identity {
        let kind = match kind {
            PrincipalKind::AssumedRole => PrincipalKind::Role,
            other => other,
        };
        Identity {
            partition: partition.to_string(),
            account_id: account_id.to_string(),
            kind,
            name: name_key(name),
        }
    }

    /// The identity of a role or user addressed the way IAM APIs address it (kind and name).
    pub fn of_reference(
        partition: &str,
        account_id: &str,
        reference: &crate::aws::PrincipalRef,
    ) -> Identity {
        let kind = match reference.kind {
            crate::aws::PrincipalKind::Role => PrincipalKind::Role,
            crate::aws::PrincipalKind::User => PrincipalKind::User,
        };
        Identity::new(partition, account_id, kind, &reference.name)
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || NAME_CHARACTERS.contains(c))
}

impl PrincipalArn {
    /// Parses a principal ARN; any form outside the module's rule is an error.
    pub fn parse(text: &str) -> Result<PrincipalArn, PrincipalError> {
        if text.len() > MAX_ARN_LENGTH {
            return Err(PrincipalError::TooLong);
        }
        let arn = || text.to_string();
        let mut fields = text.splitn(6, ':');
        let (Some("arn"), Some(partition), Some(service), Some(""), Some(account), Some(resource)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err(PrincipalError::NotAnArn { arn: arn() });
        };
        if !PARTITIONS.contains(&partition) {
            return Err(PrincipalError::Partition {
                arn: arn(),
                partition: partition.to_string(),
            });
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PrincipalError::Account { arn: arn() });
        }
        let (resource_type, rest) = resource
            .split_once('/')
            .ok_or_else(|| PrincipalError::Kind { arn: arn() })?;
        let kind = match (service, resource_type) {
            ("iam", "role") => PrincipalKind::Role,
            ("iam", "user") => PrincipalKind::User,
            ("iam", "group") => PrincipalKind::Group,
            ("sts", "assumed-role") => PrincipalKind::AssumedRole,
            _ => return Err(PrincipalError::Kind { arn: arn() }),
        };
        let (path, name, session) = if kind == PrincipalKind::AssumedRole {
            let Some((role, session)) = rest.split_once('/') else {
                return Err(PrincipalError::Name { arn: arn() });
            };
            if session.is_empty() || session.len() > 64 || session.contains('/') {
                return Err(PrincipalError::Name { arn: arn() });
            }
            ("/".to_string(), role.to_string(), Some(session.to_string()))
        } else {
            // role/NAME or role/PATH.../NAME: the path is everything between the type and the name.
            let (inner, name) = match rest.rsplit_once('/') {
                Some((inner, name)) => (format!("/{inner}/"), name),
                None => ("/".to_string(), rest),
            };
            if inner.len() > 512
                || inner.contains("//")
                || !inner
                    .chars()
                    .all(|c| c == '/' || c.is_ascii_alphanumeric() || NAME_CHARACTERS.contains(c))
            {
                return Err(PrincipalError::Name { arn: arn() });
            }
            (inner, name.to_string(), None)
        };
        if !valid_name(&name) {
            return Err(PrincipalError::Name { arn: arn() });
        }
        Ok(PrincipalArn {
            text: text.to_string(),
            partition: partition.to_string(),
            account_id: account.to_string(),
            kind,
            path,
            name,
            session,
        })
    }

    /// Parses and requires a kind (a scope target must be a role or a user, for instance).
    pub fn parse_kind(text: &str, expected: PrincipalKind) -> Result<PrincipalArn, PrincipalError> {
        let parsed = PrincipalArn::parse(text)?;
        if parsed.kind != expected {
            return Err(PrincipalError::WrongKind {
                arn: text.to_string(),
                expected,
            });
        }
        Ok(parsed)
    }

    /// The ARN as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
    /// `aws`, `aws-cn` or `aws-us-gov`.
    pub fn partition(&self) -> &str {
        &self.partition
    }
    /// The 12-digit account id.
    pub fn account_id(&self) -> &str {
        &self.account_id
    }
    /// Role, user, group or assumed-role session.
    pub fn kind(&self) -> PrincipalKind {
        self.kind
    }
    /// The IAM path (`/` when none; always `/` for a session).
    pub fn path(&self) -> &str {
        &self.path
    }
    /// The name as written (for a session: the role's name).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The session name of an assumed-role ARN.
    pub fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }
    /// How the IAM API addresses this role or user (a session: its role); `None` for a group.
    pub fn reference(&self) -> Option<crate::aws::PrincipalRef> {
        let kind = match self.kind {
            PrincipalKind::Role | PrincipalKind::AssumedRole => crate::aws::PrincipalKind::Role,
            PrincipalKind::User => crate::aws::PrincipalKind::User,
            PrincipalKind::Group => return None,
        };
        Some(crate::aws::PrincipalRef {
            kind,
            name: self.name.clone(),
        })
    }
    /// The identity this ARN names (a session names its role).
    pub fn identity(&self) -> Identity {
        Identity::new(&self.partition, &self.account_id, self.kind, &self.name)
    }
    /// Whether the two name the same principal (IAM's rule; see the module header).
    pub fn same_principal(&self, other: &PrincipalArn) -> bool {
        self.identity() == other.identity()
    }
    /// For a session, the role ARN it was issued from, without path (the session ARN has none);
    /// for anything else, itself.
    pub fn issuer(&self) -> PrincipalArn {
        if self.kind != PrincipalKind::AssumedRole {
            return self.clone();
        }
        PrincipalArn {
            text: format!(
                "arn:{}:iam::{}:role/{}",
                self.partition, self.account_id, self.name
            ),
            partition: self.partition.clone(),
            account_id: self.account_id.clone(),
            kind: PrincipalKind::Role,
            path: "/".into(),
            name: self.name.clone(),
            session: None,
        }
    }
}

impl PartialEq for PrincipalArn {
    fn eq(&self, other: &Self) -> bool {
        self.same_principal(other)
    }
}
impl Eq for PrincipalArn {}
impl Hash for PrincipalArn {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.identity().hash(state);
    }
}
impl PartialOrd for PrincipalArn {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for PrincipalArn {
    fn cmp(&self, other: &Self) -> Ordering {
        self.identity().cmp(&other.identity())
    }
}

impl fmt::Display for PrincipalArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for PrincipalArn {
    type Err = PrincipalError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PrincipalArn::parse(s)
    }
}

impl Serialize for PrincipalArn {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for PrincipalArn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        PrincipalArn::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for PrincipalArn {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PrincipalArn".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "maxLength": MAX_ARN_LENGTH,
            "pattern": r"^arn:aws(-cn|-us-gov)?:(iam::[0-9]{12}:(role|user|group)/[A-Za-z0-9_+=,.@/-]+|sts::[0-9]{12}:assumed-role/[A-Za-z0-9_+=,.@-]+/[A-Za-z0-9_+=,.@-]+)$",
        })
    }
}

/// A set of principals compared by identity: "is this principal one of these?"
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrincipalSet {
    members: BTreeSet<Identity>,
}

impl PrincipalSet {
    /// An empty set.
    pub fn new() -> PrincipalSet {
        PrincipalSet::default()
    }
    /// The set of the given principals.
    pub fn of<'a>(principals: impl IntoIterator<Item = &'a PrincipalArn>) -> PrincipalSet {
        PrincipalSet {
            members: principals.into_iter().map(PrincipalArn::identity).collect(),
        }
    }
    /// Parses each ARN; the first invalid one is an error (never skipped).
    pub fn parse_all<S: AsRef<str>>(
        arns: impl IntoIterator<Item = S>,
    ) -> Result<PrincipalSet, PrincipalError> {
        let mut set = PrincipalSet::new();
        for arn in arns {
            set.insert(&PrincipalArn::parse(arn.as_ref())?);
        }
        Ok(set)
    }
    /// Adds a principal.
    pub fn insert(&mut self, principal: &PrincipalArn) {
        self.members.insert(principal.identity());
    }
    /// Whether the principal (or, for a session, its role) is in the set.
    pub fn contains(&self, principal: &PrincipalArn) -> bool {
        self.members.contains(&principal.identity())
    }
    /// Whether the principal addressed by account, kind and name is in the set.
    pub fn contains_identity(&self, identity: &Identity) -> bool {
        self.members.contains(identity)
    }
    /// Number of distinct principals.
    pub fn len(&self) -> usize {
        self.members.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// Why a principal is never a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exclusion {
    /// Protected by the controller's configuration: never touched by any policy.
    Protected,
    /// Listed in the policy's `exceptions.principals`.
    Excepted,
    /// In an account listed in the policy's `exceptions.accounts`.
    ExceptedAccount,
}

/// The one matcher deciding whether a principal may be a target: protected principals (controller
/// configuration) first, then the policy's exceptions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exclusions {
    protected: PrincipalSet,
    excepted: PrincipalSet,
    excepted_accounts: BTreeSet<String>,
}

impl Exclusions {
    /// Builds the matcher from the two sets.
    pub fn new(protected: PrincipalSet, excepted: PrincipalSet) -> Exclusions {
        Exclusions {
            protected,
            excepted,
            excepted_accounts: BTreeSet::new(),
        }
    }
    /// Also excepts every principal of these accounts (12-digit ids; anything else is an error,
    /// never skipped).
    pub fn with_excepted_accounts<S: AsRef<str>>(
        mut self,
        accounts: impl IntoIterator<Item = S>,
    ) -> Result<Exclusions, PrincipalError> {
        for account in accounts {
            let account = account.as_ref();
            if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
                return Err(PrincipalError::AccountId {
                    account: account.to_string(),
                });
            }
            self.excepted_accounts.insert(account.to_string());
        }
        Ok(self)
    }
    /// Why `principal` must not be a target, or `None` when it may be.
    pub fn check(&self, principal: &PrincipalArn) -> Option<Exclusion> {
        self.check_identity(&principal.identity())
    }
    /// As [`Exclusions::check`], for a principal addressed by identity.
    pub fn check_identity(&self, identity: &Identity) -> Option<Exclusion> {
        if self.protected.contains_identity(identity) {
            Some(Exclusion::Protected)
        } else if self.excepted.contains_identity(identity) {
            Some(Exclusion::Excepted)
        } else if self.excepted_accounts.contains(&identity.account_id) {
            Some(Exclusion::ExceptedAccount)
        } else {
            None
        }
    }
    /// The protected set.
    pub fn protected(&self) -> &PrincipalSet {
        &self.protected
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(text: &str) -> PrincipalArn {
        PrincipalArn::parse(text).unwrap()
    }

    #[test]
    fn name_case_and_path_are_not_identity_account_and_partition_are() {
        let a = p("arn:aws:iam::123456789012:role/CI-Deployer");
        assert_eq!(a, p("arn:aws:iam::123456789012:role/ci-deployer"));
        assert_eq!(
            a,
            p("arn:aws:iam::123456789012:role/teams/build/ci-deployer")
        );
        assert_ne!(a, p("arn:aws:iam::123456789013:role/ci-deployer"));
        assert_ne!(a, p("arn:aws-cn:iam::123456789012:role/ci-deployer"));
        assert_ne!(a, p("arn:aws:iam::123456789012:user/ci-deployer"));
        assert_eq!(
            a,
            p("arn:aws:sts::123456789012:assumed-role/CI-DEPLOYER/session-1")
        );
    }

    #[test]
    fn parts_are_kept() {
        let a = p("arn:aws-us-gov:iam::123456789012:role/a/b/Name");
        assert_eq!(a.partition(), "aws-us-gov");
        assert_eq!(a.account_id(), "123456789012");
        assert_eq!(a.path(), "/a/b/");
        assert_eq!(a.name(), "Name");
        assert_eq!(a.kind(), PrincipalKind::Role);
        assert_eq!(
            a.to_string(),
            "arn:aws-us-gov:iam::123456789012:role/a/b/Name"
        );
        let s = p("arn:aws:sts::123456789012:assumed-role/dev/alice@example.com");
        assert_eq!(s.session(), Some("alice@example.com"));
        assert_eq!(s.issuer().as_str(), "arn:aws:iam::123456789012:role/dev");
    }

    #[test]
    fn refused_forms() {
        for bad in [
            "",
            "role/dev",
            "arn:aws:iam::12345678901:role/x",
            "arn:aws:iam::1234567890123:role/x",
            "arn:aws:iam:us-east-1:123456789012:role/x",
            "arn:aws-iso:iam::123456789012:role/x",
            "arn:aws:iam::123456789012:policy/x",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam::123456789012:role/a//b",
            "arn:aws:iam::123456789012:role/bad name",
            "arn:aws:iam::123456789012:role",
            "arn:aws:s3:::bucket/key",
            "arn:aws:sts::123456789012:assumed-role/role-only",
            "arn:aws:iam::123456789012:role/*",
        ] {
            assert!(PrincipalArn::parse(bad).is_err(), "{bad} must be refused");
        }
        assert!(
            PrincipalArn::parse(&format!(
                "arn:aws:iam::123456789012:role/{}",
                "a".repeat(2100)
            ))
            .is_err()
        );
    }

    #[test]
    fn exclusions_protected_first() {
        let target = p("arn:aws:iam::123456789012:role/Dev");
        let m = Exclusions::new(
            PrincipalSet::parse_all(["arn:aws:iam::123456789012:role/x/dev"]).unwrap(),
            PrincipalSet::parse_all(["arn:aws:iam::123456789012:role/DEV"]).unwrap(),
        );
        assert_eq!(m.check(&target), Some(Exclusion::Protected));
        let m = Exclusions::new(
            PrincipalSet::new(),
            PrincipalSet::parse_all(["arn:aws:iam::123456789012:role/DEV"]).unwrap(),
        );
        assert_eq!(m.check(&target), Some(Exclusion::Excepted));
        assert_eq!(
            m.check(&p("arn:aws:iam::210987654321:role/dev")),
            None,
            "another account is another principal"
        );
        assert!(PrincipalSet::parse_all(["not-an-arn"]).is_err());
    }

    #[test]
    fn excepted_accounts_cover_every_principal_of_the_account() {
        let m = Exclusions::new(
            PrincipalSet::parse_all(["arn:aws:iam::111111111111:role/break-glass"]).unwrap(),
            PrincipalSet::new(),
        )
        .with_excepted_accounts(["111111111111", "222222222222"])
        .unwrap();
        // Protection is checked first: it says more than the policy's exception.
        assert_eq!(
            m.check(&p("arn:aws:iam::111111111111:role/Break-Glass")),
            Some(Exclusion::Protected)
        );
        assert_eq!(
            m.check(&p("arn:aws:iam::222222222222:user/teams/alice")),
            Some(Exclusion::ExceptedAccount)
        );
        assert_eq!(
            m.check(&p("arn:aws:sts::222222222222:assumed-role/ci/session")),
            Some(Exclusion::ExceptedAccount),
            "a role session is its role, in its account"
        );
        assert_eq!(m.check(&p("arn:aws:iam::333333333333:role/dev")), None);
        for bad in ["12345678901", "1234567890123", "12345678901a", ""] {
            assert_eq!(
                Exclusions::default().with_excepted_accounts([bad]),
                Err(PrincipalError::AccountId {
                    account: bad.to_string()
                })
            );
        }
    }

    #[test]
    fn serde_round_trip_and_refusal() {
        let a: PrincipalArn =
            serde_json::from_str("\"arn:aws:iam::123456789012:user/x/Bob\"").unwrap();
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            "\"arn:aws:iam::123456789012:user/x/Bob\""
        );
        assert!(serde_json::from_str::<PrincipalArn>("\"arn:aws:iam::1:user/b\"").is_err());
    }

    fn arb_name() -> impl Strategy<Value = String> {
        "[A-Za-z0-9+=,.@_-]{1,20}"
    }

    fn random_case(name: &str, flips: &[bool]) -> String {
        name.chars()
            .zip(flips.iter().cycle())
            .map(|(c, f)| {
                if *f {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn identity_ignores_case_and_path(
            name in arb_name(),
            flips in proptest::collection::vec(any::<bool>(), 1..8),
            path in proptest::option::of("[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}"),
            partition in proptest::sample::select(PARTITIONS.to_vec()),
            kind in proptest::sample::select(vec!["role", "user", "group"]),
        ) {
            let plain = p(&format!("arn:{partition}:iam::123456789012:{kind}/{name}"));
            let other = match &path {
                Some(path) => format!("arn:{partition}:iam::123456789012:{kind}/{path}/{}", random_case(&name, &flips)),
                None => format!("arn:{partition}:iam::123456789012:{kind}/{}", random_case(&name, &flips)),
            };
            let other = p(&other);
            prop_assert_eq!(&plain, &other);
            prop_assert!(PrincipalSet::of([&plain]).contains(&other));
            for other_partition in PARTITIONS.iter().filter(|x| **x != partition) {
                let elsewhere = p(&format!("arn:{other_partition}:iam::123456789012:{kind}/{name}"));
                prop_assert_ne!(&plain, &elsewhere);
            }
            let parsed_again = p(plain.as_str());
            prop_assert_eq!(parsed_again.as_str(), plain.as_str());
        }

        #[test]
        fn parse_never_panics(text in ".{0,80}") {
            let _ = PrincipalArn::parse(&text);
        }
    }
}
