//! `propose`: opens (or updates) a pull request with the proposal through the GitHub REST API —
//! create the branch from the base, commit the files (Contents API), open the PR with the
//! rationale and diff as its body — idempotently (an existing branch, unchanged file or open PR
//! is reused), with clear errors for 401/403/404/422. A small reqwest client (decision 127). It
//! must not touch AWS.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

/// Why the pull request could not be opened.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GitHubError {
    /// 401.
    #[error(
        "GitHub rejected the token (401 Unauthorized) on {what}: pass a valid --github-token or set GITHUB_TOKEN"
    )]
    Unauthorized {
        /// The request.
        what: String,
    },
    /// 403.
    #[error(
        "GitHub refused {what} (403 Forbidden: {message}): the token needs contents:write and pull_requests:write on the repository, or a rate limit was hit"
    )]
    Forbidden {
        /// The request.
        what: String,
        /// GitHub's message.
        message: String,
    },
    /// 404.
    #[error(
        "GitHub answered 404 Not Found on {what}: check --repo and --base, and that the token can see the repository"
    )]
    NotFound {
        /// The request.
        what: String,
    },
    /// 422.
    #[error("GitHub rejected {what} (422 Unprocessable Entity): {message}")]
    Unprocessable {
        /// The request.
        what: String,
        /// GitHub's message and errors.
        message: String,
    },
    /// Anything else.
    #[error("GitHub {what} failed: {message}")]
    Other {
        /// The request.
        what: String,
        /// Why.
        message: String,
    },
    /// Invalid input.
    #[error("{0}")]
    Invalid(String),
}

impl GitHubError {
    /// The category used for metric labels and messages.
    pub fn category(&self) -> &'static str {
        match self {
            GitHubError::Unauthorized { .. } => "Unauthorized",
            GitHubError::Forbidden { .. } => "Forbidden",
            GitHubError::NotFound { .. } => "NotFound",
            GitHubError::Unprocessable { .. } => "Unprocessable",
            GitHubError::Other { .. } => "GitHub",
            GitHubError::Invalid(_) => "Invalid",
        }
    }
}

/// What to open.
#[derive(Debug, Clone)]
pub struct PullRequestSpec {
    /// `owner/name`.
    pub repo: String,
    /// Head branch.
    pub branch: String,
    /// Base branch.
    pub base: String,
    /// Title.
    pub title: String,
    /// Body (markdown).
    pub body: String,
    /// Draft PR.
    pub draft: bool,
    /// Files to commit (path in the repository, content).
    pub files: Vec<(String, String)>,
    /// Commit message.
    pub message: String,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequestResult {
    /// The PR's URL.
    pub url: String,
    /// The PR number.
    pub number: u64,
    /// Whether the PR was created now (false: an open one was updated).
    pub created: bool,
    /// Whether the branch was created now.
    pub branch_created: bool,
    /// Files whose content changed (committed).
    pub files_committed: Vec<String>,
}

/// A GitHub REST client.
pub struct GitHub {
    http: reqwest::Client,
    api: String,
    token: String,
}

#[derive(Deserialize)]
struct GitRef {
    object: GitObject,
}

#[derive(Deserialize)]
struct GitObject {
    sha: String,
}

fn valid_repo(repo: &str) -> bool {
    let mut parts = repo.split('/');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

fn valid_ref(name: &str) -> bool {
    !name.is_empty()
        && !name.contains("..")
        && !name.starts_with('/')
        && !name.ends_with('/')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn encode_path(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            segment
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/")
}

impl GitHub {
    /// A client for `api` (`https://api.github.com`, or a test server).
    pub fn new(api: &str, token: &str) -> Result<GitHub, GitHubError> {
        if token.is_empty() {
            return Err(GitHubError::Invalid(
                "no GitHub token: pass --github-token or set GITHUB_TOKEN".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("autoguardrails/", env!("CARGO_PKG_VERSION")))
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| GitHubError::Other {
                what: "client".into(),
                message: e.to_string(),
            })?;
        Ok(GitHub {
            http,
            api: api.trim_end_matches('/').to_string(),
            token: token.to_string(),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Option<Value>, GitHubError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(&self.token)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28");
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| GitHubError::Other {
            what: what.to_string(),
            message: e.to_string(),
        })?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let message = || {
            let mut m = value
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or(&text)
                .to_string();
            if let Some(errors) = value.get("errors") {
                m.push_str(&format!(" {errors}"));
            }
            m
        };
        match status {
            200..=299 => Ok(Some(value)),
            401 => Err(GitHubError::Unauthorized {
                what: what.to_string(),
            }),
            403 => Err(GitHubError::Forbidden {
                what: what.to_string(),
                message: message(),
            }),
            404 => Ok(None),
            422 => Err(GitHubError::Unprocessable {
                what: what.to_string(),
                message: message(),
            }),
            _ => Err(GitHubError::Other {
                what: what.to_string(),
                message: format!("{status}: {}", message()),
            }),
        }
    }

    fn not_found(what: &str) -> GitHubError {
        GitHubError::NotFound {
            what: what.to_string(),
        }
    }

    /// Creates or updates the branch, files and pull request (idempotent).
    pub async fn open_pull_request(
        &self,
        spec: &PullRequestSpec,
    ) -> Result<PullRequestResult, GitHubError> {
        use reqwest::Method;
        if !valid_repo(&spec.repo) {
            return Err(GitHubError::Invalid(format!(
                "--repo {:?} must be OWNER/NAME",
                spec.repo
            )));
        }
        for name in [&spec.branch, &spec.base] {
            if !valid_ref(name) {
                return Err(GitHubError::Invalid(format!(
                    "{name:?} is not a valid branch name"
                )));
            }
        }
        let repo = &spec.repo;
        let what = format!("GET /repos/{repo}");
        self.call(Method::GET, &format!("/repos/{repo}"), None, &what)
            .await?
            .ok_or_else(|| Self::not_found(&what))?;
        let what = format!("GET base branch {}", spec.base);
        let base: GitRef = serde_json::from_value(
            self.call(
                Method::GET,
                &format!("/repos/{repo}/git/ref/heads/{}", spec.base),
                None,
                &what,
            )
            .await?
            .ok_or_else(|| Self::not_found(&what))?,
        )
        .map_err(|e| GitHubError::Other {
            what: what.clone(),
            message: e.to_string(),
        })?;
        let branch_path = format!("/repos/{repo}/git/ref/heads/{}", spec.branch);
        let branch_created = match self
            .call(Method::GET, &branch_path, None, "GET head branch")
            .await?
        {
            Some(_) => false,
            None => {
                self.call(
                    Method::POST,
                    &format!("/repos/{repo}/git/refs"),
                    Some(&json!({"ref": format!("refs/heads/{}", spec.branch), "sha": base.object.sha})),
                    "create branch",
                )
                .await?;
                true
            }
        };
        let mut files_committed = Vec::new();
        for (path, content) in &spec.files {
            let contents_path = format!("/repos/{repo}/contents/{}", encode_path(path));
            let existing = self
                .call(
                    Method::GET,
                    &format!("{contents_path}?ref={}", spec.branch),
                    None,
                    &format!("GET {path}"),
                )
                .await?;
            let (sha, current) = match &existing {
                Some(v) => (
                    v.get("sha").and_then(Value::as_str).map(str::to_string),
                    v.get("content")
                        .and_then(Value::as_str)
                        .map(|c| c.replace(['\n', '\r'], ""))
                        .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok()),
                ),
                None => (None, None),
            };
            if current.as_deref() == Some(content.as_bytes()) {
                continue;
            }
            let mut body = json!({
                "message": spec.message,
                "content": base64::engine::general_purpose::STANDARD.encode(content.as_bytes()),
                "branch": spec.branch,
            });
            if let (Some(sha), Some(map)) = (sha, body.as_object_mut()) {
                map.insert("sha".into(), Value::String(sha));
            }
            self.call(
                Method::PUT,
                &contents_path,
                Some(&body),
                &format!("commit {path}"),
            )
            .await?
            .ok_or_else(|| Self::not_found(&format!("commit {path}")))?;
            files_committed.push(path.clone());
        }
        let owner = repo.split('/').next().unwrap_or_default();
        let list = self
            .call(
                Method::GET,
                &format!(
                    "/repos/{repo}/pulls?state=open&head={owner}:{}&base={}",
                    spec.branch, spec.base
                ),
                None,
                "list pull requests",
            )
            .await?
            .unwrap_or(Value::Null);
        let existing = list.as_array().and_then(|a| a.first()).cloned();
        let (pr, created) = match existing {
            Some(pr) => {
                let number = pr.get("number").and_then(Value::as_u64).unwrap_or_default();
                let updated = self
                    .call(
                        Method::PATCH,
                        &format!("/repos/{repo}/pulls/{number}"),
                        Some(&json!({"title": spec.title, "body": spec.body})),
                        "update pull request",
                    )
                    .await?
                    .unwrap_or(pr);
                (updated, false)
            }
            None => {
                let what = "create pull request";
                let pr = self
                    .call(
                        Method::POST,
                        &format!("/repos/{repo}/pulls"),
                        Some(&json!({
                            "title": spec.title,
                            "head": spec.branch,
                            "base": spec.base,
                            "body": spec.body,
                            "draft": spec.draft,
                        })),
                        what,
                    )
                    .await?
                    .ok_or_else(|| Self::not_found(what))?;
                (pr, true)
            }
        };
        Ok(PullRequestResult {
            url: pr
                .get("html_url")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            number: pr.get("number").and_then(Value::as_u64).unwrap_or_default(),
            created,
            branch_created,
            files_committed,
        })
    }
}
