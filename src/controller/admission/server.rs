//! The approval webhook's adapters: the SubjectAccessReview asked through the kube client, and
//! the HTTPS endpoint (`POST /approve`, served by the one hardened listener) that reads an
//! AdmissionReview, asks, and answers the core's verdict. It must not decide anything itself.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use super::review::{self, APPROVE_VERB, AccessAnswer, AccessQuestion, GROUP, Verdict};
use super::stamp::StampKey;
use crate::metrics::Metrics;

/// The largest AdmissionReview accepted (a Quarantine is small; the API server caps at 3 MiB).
pub const MAX_REVIEW_BYTES: usize = 3 * 1024 * 1024;
/// The path the webhook configuration calls.
pub const PATH: &str = "/approve";

/// Asks whether a user may do something (a SubjectAccessReview).
#[async_trait::async_trait]
pub trait AccessReviewer: Send + Sync {
    /// The answer to one question.
    async fn ask(&self, question: &AccessQuestion) -> AccessAnswer;
}

/// The SubjectAccessReview through the API server (`create` on `subjectaccessreviews`).
pub struct KubeAccessReviewer {
    /// The client.
    pub client: kube::Client,
}

#[async_trait::async_trait]
impl AccessReviewer for KubeAccessReviewer {
    async fn ask(&self, question: &AccessQuestion) -> AccessAnswer {
        let reviews: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(question.identity.username.clone()),
                uid: (!question.identity.uid.is_empty()).then(|| question.identity.uid.clone()),
                groups: Some(question.identity.groups.clone()),
                resource_attributes: Some(ResourceAttributes {
                    group: Some(GROUP.to_string()),
                    resource: Some(question.resource.to_string()),
                    verb: Some(APPROVE_VERB.to_string()),
                    namespace: Some(question.namespace.clone()),
                    name: Some(question.name.clone()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        match reviews.create(&PostParams::default(), &review).await {
            Ok(answered) => match answered.status {
                Some(status) if status.allowed => AccessAnswer::Allowed,
                Some(_) => AccessAnswer::Denied,
                None => AccessAnswer::Unknown("the SubjectAccessReview has no status".into()),
            },
            Err(error) => {
                AccessAnswer::Unknown(format!("failed to create a SubjectAccessReview: {error}"))
            }
        }
    }
}

/// What the endpoint needs.
pub struct WebhookState {
    /// Answers access questions.
    pub reviewer: Arc<dyn AccessReviewer>,
    /// Signs stamps.
    pub key: StampKey,
    /// Counts decisions.
    pub metrics: Arc<Metrics>,
    /// The controller's own user name (from a SelfSubjectReview at start), whose valid stamps
    /// are let through (the Slack channel, decision 231); None trusts no writer's stamps.
    pub controller_username: Option<String>,
}

/// Asks the access questions of `request` in order, stopping at the first `Allowed`; both the
/// webhook and the Slack channel ask through this.
pub async fn ask(reviewer: &dyn AccessReviewer, request: &review::Request) -> Vec<AccessAnswer> {
    let mut answers = Vec::new();
    for question in review::questions(request) {
        let answer = reviewer.ask(&question).await;
        let allowed = answer == AccessAnswer::Allowed;
        answers.push(answer);
        if allowed {
            break;
        }
    }
    answers
}

/// The user name the API server authenticates the controller as (a SelfSubjectReview).
pub async fn own_username(client: &kube::Client) -> Result<String, String> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let reviews: Api<SelfSubjectReview> = Api::all(client.clone());
    let answered = reviews
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .map_err(|error| format!("failed to create a SelfSubjectReview: {error}"))?;
    answered
        .status
        .and_then(|status| status.user_info)
        .and_then(|user| user.username)
        .filter(|name| !name.is_empty())
        .ok_or_else(|| "the SelfSubjectReview names no user".to_string())
}

/// The webhook router: `POST /approve`.
pub fn router(state: Arc<WebhookState>) -> Router {
    Router::new()
        .route(PATH, post(approve))
        .layer(DefaultBodyLimit::max(MAX_REVIEW_BYTES))
        .with_state(state)
}

/// Judges one AdmissionReview.
async fn approve(
    State(state): State<Arc<WebhookState>>,
    body: Bytes,
) -> axum::Json<serde_json::Value> {
    let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let review_uid = parsed["request"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let request = match review::read(&parsed) {
        Ok(mut request) => {
            request.written_by_controller = state
                .controller_username
                .as_deref()
                .is_some_and(|own| own == request.identity.username);
            request
        }
        Err(reason) => {
            state
                .metrics
                .approval_reviews
                .with_label_values(&["error", "none"])
                .inc();
            let verdict = Verdict::Refuse(400, format!("unreadable AdmissionReview: {reason}"));
            return axum::Json(review::response(&review_uid, &verdict));
        }
    };
    let answers = ask(state.reviewer.as_ref(), &request).await;
    let verdict = review::decide(&request, &answers, &state.key);
    let verb = request
        .changed
        .first()
        .map(|(annotation, _)| annotation.verb())
        .unwrap_or("none");
    let decision = match &verdict {
        Verdict::Allow(_) if request.changed.is_empty() => "unchecked",
        Verdict::Allow(_) => "allowed",
        Verdict::Refuse(503, _) => "error",
        Verdict::Refuse(_, _) => "refused",
    };
    state
        .metrics
        .approval_reviews
        .with_label_values(&[decision, verb])
        .inc();
    match &verdict {
        Verdict::Refuse(_, message) => tracing::info!(
            user = %request.identity.username,
            namespace = %request.namespace,
            quarantine = %request.name,
            %message,
            "approval refused"
        ),
        Verdict::Allow(_) if !request.changed.is_empty() => tracing::info!(
            user = %request.identity.username,
            uid = %request.identity.uid,
            groups = ?request.identity.groups,
            namespace = %request.namespace,
            quarantine = %request.name,
            verb,
            "approval verified and stamped"
        ),
        Verdict::Allow(_) => {}
    }
    axum::Json(review::response(&request.review_uid, &verdict))
}
