//! Authentication: bearer tokens from a static token file (the kube-apiserver `--token-auth-file`
//! CSV format), the bootstrap admin, optional `system:anonymous`, and impersonation headers.
//!
//! Everything here is pure (no I/O): the server hands in the header values and gets a user back.

use crate::error::ApiError;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// The bearer token of the bootstrap admin, written into the emulator's own kubeconfig.
pub const ADMIN_TOKEN: &str = "kube-emulator-token";
/// The bootstrap admin's user name.
pub const ADMIN_USER: &str = "kube-emulator-admin";
/// The group every authorizer lets through (the API server's superuser group).
pub const MASTERS_GROUP: &str = "system:masters";
/// The group of every authenticated user.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// The user of unauthenticated requests when anonymous access is on.
pub const ANONYMOUS_USER: &str = "system:anonymous";
/// The group of unauthenticated requests when anonymous access is on.
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";

/// Who a request is from, as the authorizer and admission see it (`authentication.k8s.io/v1` `UserInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    /// User name.
    pub username: String,
    /// User id (may be empty).
    pub uid: String,
    /// Groups, including `system:authenticated` for authenticated users.
    pub groups: Vec<String>,
    /// Extra attributes (from `Impersonate-Extra-*`).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// The JSON form used in `AdmissionReview` and `SelfSubjectReview`.
    pub fn to_json(&self) -> Value {
        let mut value = json!({"username": self.username, "groups": self.groups});
        if !self.uid.is_empty() {
            value["uid"] = json!(self.uid);
        }
        if !self.extra.is_empty() {
            value["extra"] = json!(self.extra);
        }
        value
    }

    /// Whether the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|candidate| candidate == group)
    }
}

/// One line of a token file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    /// The bearer token.
    pub token: String,
    /// User name.
    pub username: String,
    /// User id.
    pub uid: String,
    /// Groups (without `system:authenticated`, which is added on authentication).
    pub groups: Vec<String>,
}

impl TokenEntry {
    /// Builds an entry.
    pub fn new(token: &str, username: &str, uid: &str, groups: &[&str]) -> Self {
        Self {
            token: token.to_string(),
            username: username.to_string(),
            uid: uid.to_string(),
            groups: groups.iter().map(|group| group.to_string()).collect(),
        }
    }

    /// The bootstrap admin (`system:masters`).
    pub fn admin() -> Self {
        Self::new(
            ADMIN_TOKEN,
            ADMIN_USER,
            "kube-emulator-admin-uid",
            &[MASTERS_GROUP],
        )
    }
}

/// Splits one CSV record (RFC 4180 quoting: `"a,b"`, `""` for a quote).
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut characters = line.chars().peekable();
    let mut field_started_quoted = false;
    while let Some(character) = characters.next() {
        match (quoted, character) {
            (true, '"') if characters.peek() == Some(&'"') => {
                characters.next();
                current.push('"');
            }
            (true, '"') => quoted = false,
            (true, other) => current.push(other),
            (false, '"') if current.is_empty() && !field_started_quoted => {
                quoted = true;
                field_started_quoted = true;
            }
            (false, '"') => return Err("bare \" in a non-quoted field".to_string()),
            (false, ',') => {
                fields.push(std::mem::take(&mut current));
                field_started_quoted = false;
            }
            (false, other) if field_started_quoted => {
                return Err(format!("extraneous {other:?} after a quoted field"));
            }
            (false, other) => current.push(other),
        }
    }
    if quoted {
        return Err("unterminated quoted field".to_string());
    }
    fields.push(current);
    Ok(fields)
}

/// Parses a static token file: `token,user,uid[,"group1,group2"]` per line, like kube-apiserver's
/// `--token-auth-file` (blank lines and `#` comments are skipped; a duplicate token is an error).
pub fn parse_token_file(text: &str) -> Result<Vec<TokenEntry>, String> {
    let mut entries: Vec<TokenEntry> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let fields = csv_fields(trimmed).map_err(|error| format!("line {number}: {error}"))?;
        if fields.len() < 3 {
            return Err(format!(
                "line {number}: expected token,user,uid[,groups], found {} field(s)",
                fields.len()
            ));
        }
        let token = fields[0].trim();
        let username = fields[1].trim();
        if token.is_empty() || username.is_empty() {
            return Err(format!("line {number}: token and user must not be empty"));
        }
        if entries.iter().any(|entry| entry.token == token) {
            return Err(format!("line {number}: duplicate token"));
        }
        let groups = fields
            .get(3)
            .map(|groups| {
                groups
                    .split(',')
                    .map(str::trim)
                    .filter(|group| !group.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        entries.push(TokenEntry {
            token: token.to_string(),
            username: username.to_string(),
            uid: fields[2].trim().to_string(),
            groups,
        });
    }
    Ok(entries)
}

/// Who a request without credentials is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unauthenticated {
    /// The bootstrap admin. The default while the emulator serves plain HTTP: kubectl (client-go)
    /// does not send bearer tokens over plain HTTP, so the existing kubectl-driven tests arrive
    /// without credentials.
    #[default]
    Admin,
    /// `system:anonymous` in `system:unauthenticated` (kube-apiserver `--anonymous-auth=true`).
    Anonymous,
    /// 401 Unauthorized (kube-apiserver `--anonymous-auth=false`).
    Refuse,
}

impl std::str::FromStr for Unauthenticated {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "admin" => Ok(Self::Admin),
            "anonymous" => Ok(Self::Anonymous),
            "refuse" => Ok(Self::Refuse),
            other => Err(format!("{other:?} is not one of admin, anonymous, refuse")),
        }
    }
}

/// The token authenticator.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    /// Users by token.
    tokens: HashMap<String, TokenEntry>,
    /// Who requests without credentials are.
    unauthenticated: Unauthenticated,
}

impl Authenticator {
    /// An authenticator knowing `entries`.
    pub fn new(
        entries: impl IntoIterator<Item = TokenEntry>,
        unauthenticated: Unauthenticated,
    ) -> Self {
        let mut authenticator = Self {
            tokens: HashMap::new(),
            unauthenticated,
        };
        for entry in entries {
            authenticator.add(entry);
        }
        authenticator
    }

    /// Adds or replaces a token.
    pub fn add(&mut self, entry: TokenEntry) {
        self.tokens.insert(entry.token.clone(), entry);
    }

    /// Authenticates from the `Authorization` header value (empty when absent).
    /// A present but unknown or malformed credential is always 401, even with anonymous access on.
    pub fn authenticate(&self, authorization: &str) -> Result<UserInfo, ApiError> {
        let authorization = authorization.trim();
        if authorization.is_empty() {
            return match self.unauthenticated {
                Unauthenticated::Admin => self.authenticate(&format!("Bearer {ADMIN_TOKEN}")),
                Unauthenticated::Anonymous => Ok(UserInfo {
                    username: ANONYMOUS_USER.to_string(),
                    groups: vec![UNAUTHENTICATED_GROUP.to_string()],
                    ..UserInfo::default()
                }),
                Unauthenticated::Refuse => Err(unauthorized()),
            };
        }
        let token = match authorization.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => return Err(unauthorized()),
        };
        let entry = self.tokens.get(token).ok_or_else(unauthorized)?;
        let mut groups = entry.groups.clone();
        if !groups.iter().any(|group| group == AUTHENTICATED_GROUP) {
            groups.push(AUTHENTICATED_GROUP.to_string());
        }
        Ok(UserInfo {
            username: entry.username.clone(),
            uid: entry.uid.clone(),
            groups,
            extra: BTreeMap::new(),
        })
    }
}

/// 401 Unauthorized, as the API server answers it.
pub fn unauthorized() -> ApiError {
    ApiError::new(401, "Unauthorized", "Unauthorized")
}

/// The impersonation a request asks for through `Impersonate-*` headers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Impersonation {
    /// `Impersonate-User`.
    pub user: Option<String>,
    /// `Impersonate-Uid`.
    pub uid: Option<String>,
    /// `Impersonate-Group` (repeatable).
    pub groups: Vec<String>,
    /// `Impersonate-Extra-<key>` (repeatable), keys lower-cased and percent-decoded.
    pub extra: BTreeMap<String, Vec<String>>,
}

impl Impersonation {
    /// Reads the headers (`(name, value)` pairs with lower-case names). None when there are none.
    pub fn from_headers<'a>(
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Option<Self>, ApiError> {
        let mut impersonation = Self::default();
        let mut any = false;
        for (name, value) in headers {
            let value = value.trim().to_string();
            match name {
                "impersonate-user" => {
                    any = true;
                    impersonation.user = Some(value);
                }
                "impersonate-uid" => {
                    any = true;
                    impersonation.uid = Some(value);
                }
                "impersonate-group" => {
                    any = true;
                    impersonation.groups.push(value);
                }
                other => {
                    if let Some(key) = other.strip_prefix("impersonate-extra-") {
                        any = true;
                        let key: String = form_urlencoded::parse(format!("k={key}").as_bytes())
                            .next()
                            .map(|(_, decoded)| decoded.into_owned())
                            .unwrap_or_else(|| key.to_string());
                        impersonation.extra.entry(key).or_default().push(value);
                    }
                }
            }
        }
        if !any {
            return Ok(None);
        }
        if impersonation.user.as_deref().is_none_or(str::is_empty) {
            return Err(ApiError::bad_request(format!(
                "requested {} without impersonating a user",
                impersonation.describe_without_user()
            )));
        }
        Ok(Some(impersonation))
    }

    /// What was asked besides the user, for the error message.
    fn describe_without_user(&self) -> String {
        let mut parts = Vec::new();
        for group in &self.groups {
            parts.push(format!("group {group:?}"));
        }
        if let Some(uid) = &self.uid {
            parts.push(format!("uid {uid:?}"));
        }
        for key in self.extra.keys() {
            parts.push(format!("extra {key:?}"));
        }
        parts.join(", ")
    }

    /// The authorization checks the requester must pass, as (group, resource, subresource, name):
    /// `impersonate` on `users`, `groups`, `uids` (authentication.k8s.io) and `userextras/<key>`.
    pub fn checks(&self) -> Vec<(String, String, String, String)> {
        let mut checks = Vec::new();
        if let Some(user) = &self.user {
            match user
                .strip_prefix("system:serviceaccount:")
                .and_then(|rest| rest.split_once(':'))
            {
                Some((namespace, name)) => checks.push((
                    String::new(),
                    "serviceaccounts".to_string(),
                    namespace.to_string(),
                    name.to_string(),
                )),
                None => checks.push((
                    String::new(),
                    "users".to_string(),
                    String::new(),
                    user.clone(),
                )),
            }
        }
        for group in &self.groups {
            checks.push((
                String::new(),
                "groups".to_string(),
                String::new(),
                group.clone(),
            ));
        }
        if let Some(uid) = &self.uid {
            checks.push((
                "authentication.k8s.io".to_string(),
                "uids".to_string(),
                String::new(),
                uid.clone(),
            ));
        }
        for (key, values) in &self.extra {
            for value in values {
                checks.push((
                    "authentication.k8s.io".to_string(),
                    format!("userextras/{key}"),
                    String::new(),
                    value.clone(),
                ));
            }
        }
        checks
    }

    /// The identity the request then runs as: the named user with exactly the named groups, plus
    /// `system:authenticated` unless the user is `system:anonymous`.
    pub fn user(&self) -> UserInfo {
        let username = self.user.clone().unwrap_or_default();
        let mut groups = self.groups.clone();
        if let Some((namespace, _)) = username
            .strip_prefix("system:serviceaccount:")
            .and_then(|rest| rest.split_once(':'))
            && groups.is_empty()
        {
            groups.push("system:serviceaccounts".to_string());
            groups.push(format!("system:serviceaccounts:{namespace}"));
        }
        if username != ANONYMOUS_USER && !groups.iter().any(|group| group == AUTHENTICATED_GROUP) {
            groups.push(AUTHENTICATED_GROUP.to_string());
        }
        UserInfo {
            username,
            uid: self.uid.clone().unwrap_or_default(),
            groups,
            extra: self.extra.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_parse_like_the_api_server_format() {
        let entries = parse_token_file(
            "# comment\n\nt1,alice,uid-a,\"approvers,system:basic\"\nt2,bob,uid-b\nt3,\"carol, c\",uid-c,solo\n",
        )
        .unwrap();
        assert_eq!(
            entries,
            vec![
                TokenEntry::new("t1", "alice", "uid-a", &["approvers", "system:basic"]),
                TokenEntry::new("t2", "bob", "uid-b", &[]),
                TokenEntry::new("t3", "carol, c", "uid-c", &["solo"]),
            ]
        );
        assert!(parse_token_file("t1,alice").unwrap_err().contains("line 1"));
        assert!(
            parse_token_file("t1,a,u\nt1,b,u")
                .unwrap_err()
                .contains("duplicate")
        );
        assert!(parse_token_file("t1,\"a,u").unwrap_err().contains("line 1"));
        assert!(parse_token_file(",a,u").is_err());
    }

    #[test]
    fn tokens_authenticate_and_anything_else_is_refused() {
        let authenticator = Authenticator::new(
            [
                TokenEntry::admin(),
                TokenEntry::new("t", "alice", "u", &["g"]),
            ],
            Unauthenticated::Refuse,
        );
        let alice = authenticator.authenticate("Bearer t").unwrap();
        assert_eq!(alice.username, "alice");
        assert_eq!(alice.groups, vec!["g", AUTHENTICATED_GROUP]);
        for refused in ["", "Bearer", "Bearer nope", "Basic dDp4", "t"] {
            assert_eq!(authenticator.authenticate(refused).unwrap_err().code, 401);
        }
        let open = Authenticator::new([], Unauthenticated::Anonymous);
        assert_eq!(open.authenticate("").unwrap().username, ANONYMOUS_USER);
        assert_eq!(open.authenticate("Bearer nope").unwrap_err().code, 401);
        let plain = Authenticator::new([TokenEntry::admin()], Unauthenticated::Admin);
        assert_eq!(plain.authenticate("").unwrap().username, ADMIN_USER);
        assert_eq!(plain.authenticate("Bearer nope").unwrap_err().code, 401);
        assert_eq!("refuse".parse(), Ok(Unauthenticated::Refuse));
        assert!("open".parse::<Unauthenticated>().is_err());
    }

    #[test]
    fn impersonation_headers_become_checks_and_a_user() {
        let headers = [
            ("impersonate-user", "alice"),
            ("impersonate-group", "approvers"),
            ("impersonate-uid", "u-1"),
            ("impersonate-extra-scopes%2fa", "x"),
            ("accept", "*/*"),
        ];
        let impersonation = Impersonation::from_headers(headers).unwrap().unwrap();
        let user = impersonation.user();
        assert_eq!(user.username, "alice");
        assert_eq!(user.groups, vec!["approvers", AUTHENTICATED_GROUP]);
        assert_eq!(user.uid, "u-1");
        assert_eq!(user.extra["scopes/a"], vec!["x"]);
        let resources: Vec<String> = impersonation
            .checks()
            .into_iter()
            .map(|(_, resource, _, name)| format!("{resource}:{name}"))
            .collect();
        assert_eq!(
            resources,
            vec![
                "users:alice",
                "groups:approvers",
                "uids:u-1",
                "userextras/scopes/a:x"
            ]
        );
        assert!(
            Impersonation::from_headers([("accept", "x")])
                .unwrap()
                .is_none()
        );
        let error = Impersonation::from_headers([("impersonate-group", "g")]).unwrap_err();
        assert_eq!(error.code, 400);
        assert!(error.message.contains("without impersonating a user"));
    }
}
