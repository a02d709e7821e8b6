//! The in-memory IAM behaves like IAM where the engine depends on it, and its fault switches,
//! lag and write log do what tests rely on.

use std::sync::Arc;
use std::time::Duration;

use autoguardrails::aws::memory::{InMemoryIam, Lag};
use autoguardrails::aws::{ErrorCode, Iam, Operation, PrincipalKind, PrincipalRef, Tag};

const DOC: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"ec2:*","Resource":"*"}]}"#;

fn role(name: &str) -> PrincipalRef {
    PrincipalRef {
        kind: PrincipalKind::Role,
        name: name.into(),
    }
}

fn user(name: &str) -> PrincipalRef {
    PrincipalRef {
        kind: PrincipalKind::User,
        name: name.into(),
    }
}

fn assert_send_sync<T: Send + Sync>() {}

#[tokio::test]
async fn iam_error_codes_quotas_and_sizes() {
    assert_send_sync::<InMemoryIam>();
    let iam = InMemoryIam::new("111111111111");
    iam.outside(|o| {
        o.create_role("r");
        o.create_user("u");
    });
    let p = iam
        .create_policy("p", "/autoguardrails/", DOC, &[Tag::new("k", "v")])
        .await
        .unwrap();
    assert_eq!(p.arn, "arn:aws:iam::111111111111:policy/autoguardrails/p");
    assert_eq!(
        iam.create_policy("P", "/", DOC, &[])
            .await
            .unwrap_err()
            .code,
        ErrorCode::EntityAlreadyExists,
        "names are unique case-insensitively"
    );
    assert_eq!(
        iam.create_policy("bad", "/", "{", &[])
            .await
            .unwrap_err()
            .code,
        ErrorCode::MalformedPolicyDocument
    );
    let huge = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Deny","Action":"s3:*","Resource":"arn:aws:s3:::{}"}}]}}"#,
        "x".repeat(6_100)
    );
    assert_eq!(
        iam.create_policy("huge", "/", &huge, &[])
            .await
            .unwrap_err()
            .code,
        ErrorCode::LimitExceeded
    );
    // Whitespace is not counted.
    let padded = DOC.replace(',', &format!(",{}", " ".repeat(3_000)));
    iam.create_policy("padded", "/", &padded, &[])
        .await
        .unwrap();

    // Quota per principal.
    iam.set_attached_policies_quota(PrincipalKind::Role, 1);
    iam.attach_policy(&role("r"), &p.arn).await.unwrap();
    iam.attach_policy(&role("r"), &p.arn).await.unwrap();
    let other = iam.arn("policy/padded");
    assert_eq!(
        iam.attach_policy(&role("r"), &other)
            .await
            .unwrap_err()
            .code,
        ErrorCode::LimitExceeded
    );
    assert_eq!(
        iam.attach_policy(&role("nope"), &p.arn)
            .await
            .unwrap_err()
            .code,
        ErrorCode::NoSuchEntity
    );
    assert_eq!(
        iam.delete_policy(&p.arn).await.unwrap_err().code,
        ErrorCode::DeleteConflict
    );
    iam.detach_policy(&role("r"), &p.arn).await.unwrap();
    assert_eq!(
        iam.detach_policy(&role("r"), &p.arn)
            .await
            .unwrap_err()
            .code,
        ErrorCode::NoSuchEntity
    );

    // Versions: 5 max, default not deletable, DeletePolicy needs a single version.
    for _ in 0..4 {
        iam.create_policy_version(&p.arn, DOC, true).await.unwrap();
    }
    assert_eq!(
        iam.create_policy_version(&p.arn, DOC, true)
            .await
            .unwrap_err()
            .code,
        ErrorCode::LimitExceeded
    );
    assert_eq!(
        iam.delete_policy_version(&p.arn, "v5")
            .await
            .unwrap_err()
            .code,
        ErrorCode::DeleteConflict
    );
    assert_eq!(
        iam.delete_policy(&p.arn).await.unwrap_err().code,
        ErrorCode::DeleteConflict
    );
    for v in ["v1", "v2", "v3", "v4"] {
        iam.delete_policy_version(&p.arn, v).await.unwrap();
    }
    iam.delete_policy(&p.arn).await.unwrap();

    // Inline aggregate size: user 2,048, role 10,240.
    let sized = |n: usize| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Deny","Action":"s3:*","Resource":"arn:aws:s3:::{}"}}]}}"#,
            "x".repeat(n)
        )
    };
    iam.put_inline_policy(&user("u"), "a", &sized(1_000))
        .await
        .unwrap();
    assert_eq!(
        iam.put_inline_policy(&user("u"), "b", &sized(1_000))
            .await
            .unwrap_err()
            .code,
        ErrorCode::LimitExceeded
    );
    // Replacing the same name does not double count.
    iam.put_inline_policy(&user("u"), "a", &sized(1_500))
        .await
        .unwrap();
    iam.put_inline_policy(&role("r"), "a", &sized(9_000))
        .await
        .unwrap();
    assert_eq!(
        iam.get_inline_policy(&role("r"), "zz")
            .await
            .unwrap_err()
            .code,
        ErrorCode::NoSuchEntity
    );
}

#[tokio::test]
async fn fault_switches_and_write_log() {
    let iam = InMemoryIam::new("111111111111");
    iam.outside(|o| o.create_role("r"));
    iam.fail_next(Operation::ListPolicies, ErrorCode::Throttling);
    assert_eq!(
        iam.list_policies("/").await.unwrap_err().code,
        ErrorCode::Throttling
    );
    iam.list_policies("/").await.unwrap();

    iam.deny(Operation::CreatePolicy);
    assert_eq!(
        iam.create_policy("p", "/", DOC, &[])
            .await
            .unwrap_err()
            .code,
        ErrorCode::AccessDenied
    );
    iam.allow(Operation::CreatePolicy);
    let p = iam.create_policy("p", "/", DOC, &[]).await.unwrap();
    let log = iam.write_log();
    assert_eq!(log.len(), 2, "failed writes are logged too: {log:?}");
    assert_eq!(log[0].error, Some(ErrorCode::AccessDenied));
    assert_eq!(log[1].error, None);
    assert_eq!(log[1].operation, Operation::CreatePolicy);

    // Crash after call k: k takes effect, then it and every later call fail until recover().
    let k = iam.call_count() + 1;
    iam.crash_after_call(k);
    assert_eq!(
        iam.attach_policy(&role("r"), &p.arn)
            .await
            .unwrap_err()
            .code,
        ErrorCode::Crashed
    );
    assert_eq!(iam.state().attached(&role("r")), vec![p.arn.clone()]);
    assert!(iam.crashed());
    assert_eq!(
        iam.list_policies("/").await.unwrap_err().code,
        ErrorCode::Crashed
    );
    iam.recover();
    iam.list_policies("/").await.unwrap();

    // Fail after N calls.
    iam.fail_after_calls(1);
    iam.list_policies("/").await.unwrap();
    assert_eq!(
        iam.list_policies("/").await.unwrap_err().code,
        ErrorCode::ServiceFailure
    );
    iam.recover();
    let ops = iam.calls();
    assert_eq!(ops.len() as u64, iam.call_count());
}

#[tokio::test]
async fn reads_lag_behind_writes_by_calls_or_time() {
    let iam = InMemoryIam::new("111111111111");
    iam.set_lag(Some(Lag::Calls(3)));
    iam.create_policy("p", "/x/", DOC, &[]).await.unwrap(); // call 1
    assert!(iam.list_policies("/x/").await.unwrap().is_empty()); // call 2
    assert!(iam.list_policies("/x/").await.unwrap().is_empty()); // call 3
    assert_eq!(iam.list_policies("/x/").await.unwrap().len(), 1); // call 4: visible
    // Deletions lag too.
    let arn = iam.arn("policy/x/p");
    iam.delete_policy(&arn).await.unwrap();
    assert_eq!(iam.list_policies("/x/").await.unwrap().len(), 1);

    let iam = Arc::new(InMemoryIam::new("111111111111"));
    iam.set_lag(Some(Lag::Duration(Duration::from_millis(150))));
    iam.create_policy("p", "/x/", DOC, &[]).await.unwrap();
    assert!(iam.list_policies("/x/").await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(iam.list_policies("/x/").await.unwrap().len(), 1);
    // Writes act on the authoritative state even while reads lag.
    assert_eq!(
        iam.create_policy("p", "/x/", DOC, &[])
            .await
            .unwrap_err()
            .code,
        ErrorCode::EntityAlreadyExists
    );
}
