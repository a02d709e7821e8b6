//! The SDK implementations against moto's server: every IAM/STS call the engine makes, URL-encoded
//! documents, error mapping, AssumeRole per account, and a full converge cycle through the SDK.

use crate::support::moto;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use autoguardrails::aws::factory::{ClientFactory, FactoryError};
use autoguardrails::aws::sdk::{AccountRole, SdkClientFactory, SdkIam, SdkSts, load_base_config};
use autoguardrails::aws::{ErrorCode, Iam, Operation, PrincipalKind, PrincipalRef, Sts, Tag};
use autoguardrails::controller::enforce::converge::{
    ConvergeInput, DriftKind, Engine, EngineConfig, KnownPrincipal, Scope, TargetState, Verified,
    WriteGate,
};
use autoguardrails::controller::enforce::ownership::{self, POLICY_PATH, QuarantineKey};
use autoguardrails::controller::enforce::plan::{
    Attachment, DesiredQuarantine, DesiredTarget, ProtectedPrincipals,
};
use moto::{MotoServer, unique};

const MOTO_ACCOUNT: &str = "123456789012";

fn doc(action: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"Deny","Effect":"Deny","Action":"{action}","Resource":"*","Condition":{{"StringEquals":{{"aws:RequestedRegion":["ap-northeast-1"]}}}}}}]}}"#
    )
}

async fn admin() -> (aws_sdk_iam::Client, SdkIam, aws_config::SdkConfig) {
    let server = MotoServer::shared();
    let config = load_base_config(&server.settings()).await;
    (
        aws_sdk_iam::Client::new(&config),
        SdkIam::new(&config, None),
        config,
    )
}

async fn create_role(admin: &aws_sdk_iam::Client, name: &str) -> String {
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    admin
        .create_role()
        .role_name(name)
        .assume_role_policy_document(trust)
        .send()
        .await
        .unwrap()
        .role()
        .unwrap()
        .arn()
        .to_string()
}

async fn create_user(admin: &aws_sdk_iam::Client, name: &str) -> String {
    admin
        .create_user()
        .user_name(name)
        .send()
        .await
        .unwrap()
        .user()
        .unwrap()
        .arn()
        .to_string()
}

#[tokio::test]
async fn managed_policy_calls_tags_versions_and_path_listing() {
    let (_, iam, _) = admin().await;
    let name = unique("agr-test");
    let tags = vec![
        Tag::new("autoguardrails.io/cluster", "c1"),
        Tag::new("k", "v"),
    ];
    let d = doc("ec2:RunInstances");
    let p = iam
        .create_policy(&name, POLICY_PATH, &d, &tags)
        .await
        .unwrap();
    assert_eq!(p.path, POLICY_PATH);
    assert!(
        p.arn.ends_with(&format!(":policy/autoguardrails/{name}")),
        "{}",
        p.arn
    );
    assert_eq!(p.default_version_id, "v1");

    let got = iam.get_policy(&p.arn).await.unwrap();
    assert_eq!(got.name, name);
    let listed = iam.list_policies(POLICY_PATH).await.unwrap();
    assert!(listed.iter().any(|x| x.arn == p.arn));
    let elsewhere = iam.list_policies("/nothing-here/").await.unwrap();
    assert!(!elsewhere.iter().any(|x| x.arn == p.arn));

    iam.tag_policy(&p.arn, &[Tag::new("extra", "1")])
        .await
        .unwrap();
    let mut t = iam.list_policy_tags(&p.arn).await.unwrap();
    t.sort();
    assert!(t.contains(&Tag::new("autoguardrails.io/cluster", "c1")));
    assert!(t.contains(&Tag::new("extra", "1")));

    // Documents come back URL-encoded from moto (as from IAM); the trait decodes them.
    let v = iam.get_policy_version(&p.arn, "v1").await.unwrap();
    assert!(v.is_default);
    assert!(ownership::same_document(v.document.as_deref().unwrap(), &d));

    // Versions: up to 5, then LimitExceeded.
    for i in 2..=5 {
        let v = iam
            .create_policy_version(&p.arn, &doc(&format!("s3:Get{i}")), true)
            .await
            .unwrap();
        assert_eq!(v.version_id, format!("v{i}"));
    }
    let e = iam
        .create_policy_version(&p.arn, &doc("s3:X"), true)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded, "{e}");
    let versions = iam.list_policy_versions(&p.arn).await.unwrap();
    assert_eq!(versions.len(), 5);
    assert_eq!(versions.iter().filter(|v| v.is_default).count(), 1);
    let e = iam.delete_policy_version(&p.arn, "v5").await.unwrap_err();
    assert_eq!(
        e.code,
        ErrorCode::DeleteConflict,
        "deleting the default version: {e}"
    );
    for v in versions.iter().filter(|v| !v.is_default) {
        iam.delete_policy_version(&p.arn, &v.version_id)
            .await
            .unwrap();
    }
    assert_eq!(iam.list_policy_versions(&p.arn).await.unwrap().len(), 1);

    // Errors.
    let e = iam
        .create_policy(&name, POLICY_PATH, &d, &tags)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::EntityAlreadyExists, "{e}");
    assert_eq!(e.operation, Operation::CreatePolicy);
    let e = iam
        .get_policy(&format!(
            "arn:aws:iam::{MOTO_ACCOUNT}:policy/autoguardrails/does-not-exist"
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NoSuchEntity, "{e}");
    let e = iam
        .create_policy(&unique("bad"), POLICY_PATH, "{not json", &[])
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::MalformedPolicyDocument, "{e}");

    iam.delete_policy(&p.arn).await.unwrap();
    let e = iam.get_policy(&p.arn).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NoSuchEntity);
}

#[tokio::test]
async fn attach_detach_inline_entities_for_roles_and_users() {
    let (admin, iam, _) = admin().await;
    let role = create_role(&admin, &unique("role")).await;
    let user = create_user(&admin, &unique("user")).await;
    let p = iam
        .create_policy(&unique("agr-att"), POLICY_PATH, &doc("ec2:*"), &[])
        .await
        .unwrap();
    for (kind, arn) in [(PrincipalKind::Role, &role), (PrincipalKind::User, &user)] {
        let pr = PrincipalRef {
            kind,
            name: arn.rsplit('/').next().unwrap().to_string(),
        };
        iam.attach_policy(&pr, &p.arn).await.unwrap();
        // Re-attaching is idempotent.
        iam.attach_policy(&pr, &p.arn).await.unwrap();
        let all = iam.list_attached_policies(&pr, None).await.unwrap();
        assert_eq!(all.iter().filter(|a| a.arn == p.arn).count(), 1);
        let ours = iam
            .list_attached_policies(&pr, Some(POLICY_PATH))
            .await
            .unwrap();
        assert!(ours.iter().any(|a| a.arn == p.arn));
        let other = iam
            .list_attached_policies(&pr, Some("/other/"))
            .await
            .unwrap();
        assert!(other.is_empty(), "path prefix filter: {other:?}");

        let inline_name = unique("autoguardrails-inline");
        let d = doc("sagemaker:CreateTrainingJob");
        iam.put_inline_policy(&pr, &inline_name, &d).await.unwrap();
        assert!(
            iam.list_inline_policies(&pr)
                .await
                .unwrap()
                .contains(&inline_name)
        );
        let got = iam.get_inline_policy(&pr, &inline_name).await.unwrap();
        assert!(
            ownership::same_document(&got, &d),
            "decoded inline document: {got}"
        );
        iam.delete_inline_policy(&pr, &inline_name).await.unwrap();
        let e = iam.get_inline_policy(&pr, &inline_name).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::NoSuchEntity, "{e}");
        let e = iam
            .delete_inline_policy(&pr, &inline_name)
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::NoSuchEntity, "{e}");
    }
    let entities = iam.list_entities_for_policy(&p.arn).await.unwrap();
    assert_eq!(entities.principals.len(), 2, "{entities:?}");
    for pr in &entities.principals {
        iam.detach_policy(pr, &p.arn).await.unwrap();
        let e = iam.detach_policy(pr, &p.arn).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::NoSuchEntity, "detach twice: {e}");
    }
    let ghost = PrincipalRef {
        kind: PrincipalKind::Role,
        name: unique("ghost"),
    };
    let e = iam.list_attached_policies(&ghost, None).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NoSuchEntity);
    let e = iam.attach_policy(&ghost, &p.arn).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NoSuchEntity);
    iam.delete_policy(&p.arn).await.unwrap();
}

/// Behaviours where moto 5.2.5 differs from IAM; asserted so docs/moto-differences.md stays true.
#[tokio::test]
async fn moto_differences_from_iam() {
    let (admin, iam, _) = admin().await;
    let role = create_role(&admin, &unique("diff-role")).await;
    let user = create_user(&admin, &unique("diff-user")).await;
    let rref = PrincipalRef {
        kind: PrincipalKind::Role,
        name: role.rsplit('/').next().unwrap().into(),
    };
    let uref = PrincipalRef {
        kind: PrincipalKind::User,
        name: user.rsplit('/').next().unwrap().into(),
    };

    // 1. IAM refuses DeletePolicy while attached (DeleteConflict); moto deletes it.
    let p = iam
        .create_policy(&unique("agr-diff"), POLICY_PATH, &doc("ec2:*"), &[])
        .await
        .unwrap();
    iam.attach_policy(&rref, &p.arn).await.unwrap();
    let r = iam.delete_policy(&p.arn).await;
    assert!(
        r.is_ok(),
        "moto now refuses DeletePolicy while attached: update docs/moto-differences.md"
    );

    // 2. IAM refuses DeletePolicy with non-default versions (DeleteConflict).
    let p2 = iam
        .create_policy(&unique("agr-diff2"), POLICY_PATH, &doc("ec2:*"), &[])
        .await
        .unwrap();
    iam.create_policy_version(&p2.arn, &doc("s3:*"), true)
        .await
        .unwrap();
    let r2 = iam.delete_policy(&p2.arn).await;
    assert!(
        r2.is_ok(),
        "moto now refuses DeletePolicy with versions: update docs/moto-differences.md"
    );

    // 3. IAM limits a user's inline policies to 2,048 characters in aggregate.
    let big = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Deny","Action":"s3:*","Resource":"arn:aws:s3:::{}"}}]}}"#,
        "x".repeat(3000)
    );
    let r3 = iam
        .put_inline_policy(&uref, "autoguardrails-big", &big)
        .await;
    assert!(
        r3.is_ok(),
        "moto now enforces the user inline size: update docs/moto-differences.md"
    );

    // 4. IAM limits managed policies to 6,144 characters.
    let huge = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Deny","Action":"s3:*","Resource":"arn:aws:s3:::{}"}}]}}"#,
        "x".repeat(7000)
    );
    let r4 = iam
        .create_policy(&unique("agr-huge"), POLICY_PATH, &huge, &[])
        .await;
    assert!(
        r4.is_ok(),
        "moto now enforces the managed policy size: update docs/moto-differences.md"
    );

    // 5. ListPolicies: does moto return tags (IAM does not)?
    let tagged = iam
        .create_policy(
            &unique("agr-tags"),
            POLICY_PATH,
            &doc("ec2:*"),
            &[Tag::new("a", "b")],
        )
        .await
        .unwrap();
    let listed = iam.list_policies(POLICY_PATH).await.unwrap();
    let l = listed.iter().find(|x| x.arn == tagged.arn).unwrap();
    assert!(l.tags.is_empty(), "ListPolicies returns no tags, as in IAM");
}

#[tokio::test]
async fn account_summary_and_attachment_quota() {
    let (admin, iam, _) = admin().await;
    let s = iam.get_account_summary().await.unwrap();
    println!("moto GetAccountSummary: {s:?}");
    assert_eq!(s.attached_policies_per_role_quota, 10);
    assert_eq!(s.attached_policies_per_user_quota, 10);
    // Does moto enforce the 10-per-role quota? Attach 11 and record what happens.
    let role = create_role(&admin, &unique("quota-role")).await;
    let pr = PrincipalRef {
        kind: PrincipalKind::Role,
        name: role.rsplit('/').next().unwrap().to_string(),
    };
    let mut result = Ok(());
    for i in 0..11 {
        let p = iam
            .create_policy(
                &unique(&format!("q{i}")),
                "/quota-test/",
                &doc("ec2:*"),
                &[],
            )
            .await
            .unwrap();
        result = iam.attach_policy(&pr, &p.arn).await;
        if result.is_err() {
            break;
        }
    }
    // IAM answers LimitExceeded; moto 5.2.5 accepts the 11th attachment (see moto-differences.md),
    // which is why quota fallback is tested on the in-memory IAM.
    assert!(
        result.is_ok(),
        "moto now enforces the attachment quota: update docs/moto-differences.md"
    );
}

#[tokio::test]
async fn sts_identity_assume_role_and_client_factory() {
    let server = MotoServer::shared();
    let settings = server.settings();
    let base = load_base_config(&settings).await;
    let sts = SdkSts::new(&base);
    let me = sts.get_caller_identity().await.unwrap();
    assert_eq!(me.account_id, MOTO_ACCOUNT);
    let target_role = "arn:aws:iam::222222222222:role/autoguardrails-enforcer";
    let creds = sts
        .assume_role(target_role, Some("ext-123"), "agr-test")
        .await
        .unwrap();
    assert!(!creds.access_key_id.is_empty());
    assert!(creds.expires_epoch_seconds > 0);

    let mut accounts = BTreeMap::new();
    accounts.insert(
        "222222222222".to_string(),
        AccountRole {
            role_arn: target_role.to_string(),
            external_id: Some("ext-123".to_string()),
            session_name: "autoguardrails".to_string(),
        },
    );
    let factory = SdkClientFactory::new(base.clone(), settings, accounts);
    // Configured account: assumed-role credentials; moto puts what we create into that account.
    let iam2 = factory.iam_for("222222222222").await.unwrap();
    let p = iam2
        .create_policy(&unique("agr-x"), POLICY_PATH, &doc("ec2:*"), &[])
        .await
        .unwrap();
    assert!(
        p.arn.contains(":222222222222:"),
        "policy created in the assumed account: {}",
        p.arn
    );
    let id = SdkSts::new(&factory.config_for("222222222222").await.unwrap())
        .get_caller_identity()
        .await
        .unwrap();
    assert_eq!(id.account_id, "222222222222");
    // Cached: the same client comes back.
    let again = factory.iam_for("222222222222").await.unwrap();
    assert!(Arc::ptr_eq(&iam2, &again));
    // Ambient account without configuration: allowed.
    factory.iam_for(MOTO_ACCOUNT).await.unwrap();
    // Any other unconfigured account: UnknownAccount.
    match factory.iam_for("333333333333").await {
        Err(FactoryError::UnknownAccount {
            account_id,
            ambient_account,
        }) => {
            assert_eq!(account_id, "333333333333");
            assert_eq!(ambient_account, MOTO_ACCOUNT);
        }
        Err(e) => panic!("expected UnknownAccount, got {e}"),
        Ok(_) => panic!("expected UnknownAccount"),
    }
    iam2.delete_policy(&p.arn).await.unwrap();
}

#[tokio::test]
async fn converge_cycle_through_the_sdk() {
    let server = MotoServer::shared();
    let settings = server.settings();
    let base = load_base_config(&settings).await;
    let (admin, _, _) = admin().await;
    let role = create_role(&admin, &unique("dev-ci")).await;
    let user = create_user(&admin, &unique("batch")).await;
    let factory = SdkClientFactory::new(base, settings, BTreeMap::new());
    let cluster = unique("cluster");
    let engine = Engine::new(EngineConfig {
        cluster_id: cluster.clone(),
        protected: ProtectedPrincipals::default(),
        settle: Duration::ZERO,
    });
    let key = QuarantineKey {
        namespace: "guardrails".into(),
        name: unique("q"),
        uid: unique("uid"),
    };
    let targets = vec![
        (PrincipalKind::Role, role.clone()),
        (PrincipalKind::User, user.clone()),
    ];
    let desired = |before: bool| DesiredQuarantine {
        key: key.clone(),
        account_id: MOTO_ACCOUNT.into(),
        targets: targets
            .iter()
            .map(|(kind, arn)| DesiredTarget {
                kind: *kind,
                arn: arn.clone(),
                attached_before: before,
            })
            .collect(),
        document: doc("ec2:RunInstances"),
    };
    let input = |d: Vec<DesiredQuarantine>| ConvergeInput {
        desired: d,
        known_principals: targets
            .iter()
            .map(|(kind, arn)| KnownPrincipal {
                kind: *kind,
                arn: arn.clone(),
            })
            .collect(),
        accounts: vec![],
        gate: WriteGate::Enforce,
        scope: Scope::All,
    };

    // Activate.
    let r = engine
        .converge(&factory, &input(vec![desired(false)]))
        .await
        .unwrap();
    assert!(r.is_converged(), "{r:#?}");
    let policy_name = ownership::managed_policy_name(&cluster, &key, MOTO_ACCOUNT);
    let policy_arn = ownership::managed_policy_arn("aws", MOTO_ACCOUNT, &policy_name);
    println!(
        "activate: {} calls ({} writes)",
        r.calls.sent(),
        r.calls.writes
    );

    // Steady state: one read per target verification, and a full converge with zero writes.
    let iam = factory.iam_for(MOTO_ACCOUNT).await.unwrap();
    for (kind, arn) in &targets {
        let t = DesiredTarget {
            kind: *kind,
            arn: arn.clone(),
            attached_before: true,
        };
        let att = Attachment {
            kind: autoguardrails::controller::enforce::plan::AttachmentKind::Managed,
            name: policy_name.clone(),
        };
        let v = engine
            .verify_target(iam.as_ref(), &t, &att, &doc("ec2:RunInstances"))
            .await
            .unwrap();
        assert_eq!(v.outcome, Verified::Present);
        assert_eq!((v.calls.reads, v.calls.writes), (1, 0));
    }
    let r = engine
        .converge(&factory, &input(vec![desired(true)]))
        .await
        .unwrap();
    assert!(r.is_converged());
    assert_eq!(r.calls.writes, 0, "{r:#?}");

    // Someone detaches it from the role and edits the document; converge repairs both.
    let role_name = role.rsplit('/').next().unwrap();
    admin
        .detach_role_policy()
        .role_name(role_name)
        .policy_arn(&policy_arn)
        .send()
        .await
        .unwrap();
    admin
        .create_policy_version()
        .policy_arn(&policy_arn)
        .policy_document(doc("*"))
        .set_as_default(true)
        .send()
        .await
        .unwrap();
    let r = engine
        .converge(&factory, &input(vec![desired(true)]))
        .await
        .unwrap();
    assert!(r.is_converged(), "{r:#?}");
    let kinds: Vec<DriftKind> = r.drift_repairs.iter().map(|d| d.kind).collect();
    assert!(
        kinds.contains(&DriftKind::AttachmentRemoved) && kinds.contains(&DriftKind::DocumentEdited),
        "{kinds:?}"
    );
    let attached = iam
        .list_attached_policies(
            &PrincipalRef {
                kind: PrincipalKind::Role,
                name: role_name.into(),
            },
            Some(POLICY_PATH),
        )
        .await
        .unwrap();
    assert!(attached.iter().any(|a| a.arn == policy_arn));
    let p = iam.get_policy(&policy_arn).await.unwrap();
    let v = iam
        .get_policy_version(&policy_arn, &p.default_version_id)
        .await
        .unwrap();
    assert!(ownership::same_document(
        v.document.as_deref().unwrap(),
        &doc("ec2:RunInstances")
    ));

    // Inline fallback path through the SDK: put our inline on the user directly, converge keeps
    // exactly one deny (the managed one) and deletes the duplicate inline.
    let inline = ownership::inline_policy_name(&cluster, &key, MOTO_ACCOUNT);
    let user_ref = PrincipalRef {
        kind: PrincipalKind::User,
        name: user.rsplit('/').next().unwrap().into(),
    };
    iam.put_inline_policy(
        &user_ref,
        &inline,
        &ownership::mark_document(&cluster, &doc("ec2:RunInstances")).unwrap(),
    )
    .await
    .unwrap();
    let r = engine
        .converge(&factory, &input(vec![desired(true)]))
        .await
        .unwrap();
    assert!(r.is_converged(), "{r:#?}");
    assert!(
        !iam.list_inline_policies(&user_ref)
            .await
            .unwrap()
            .contains(&inline)
    );

    // Release.
    let r = engine.converge(&factory, &input(vec![])).await.unwrap();
    assert!(r.errors.is_empty(), "{r:#?}");
    assert_eq!(
        r.targets
            .iter()
            .filter(|t| t.state == TargetState::Detached)
            .count(),
        2
    );
    let e = iam.get_policy(&policy_arn).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NoSuchEntity);
}

/// Issue 18, defect 7, through the real SDK: our policy attached to an IAM group by someone else
/// is listed by `ListEntitiesForPolicy` (groups), detached with `DetachGroupPolicy` on release,
/// and the policy is deleted (no `DeleteConflict`).
#[tokio::test]
async fn release_detaches_our_policy_from_a_group_through_the_sdk() {
    let server = MotoServer::shared();
    let settings = server.settings();
    let base = load_base_config(&settings).await;
    let (admin, _, _) = admin().await;
    let role = create_role(&admin, &unique("dev-ci")).await;
    let group = unique("developers");
    admin
        .create_group()
        .group_name(&group)
        .send()
        .await
        .unwrap();
    let factory = SdkClientFactory::new(base, settings, BTreeMap::new());
    let cluster = unique("cluster");
    let engine = Engine::new(EngineConfig {
        cluster_id: cluster.clone(),
        protected: ProtectedPrincipals::default(),
        settle: Duration::ZERO,
    });
    let key = QuarantineKey {
        namespace: "guardrails".into(),
        name: unique("q"),
        uid: unique("uid"),
    };
    let known = vec![KnownPrincipal {
        kind: PrincipalKind::Role,
        arn: role.clone(),
    }];
    let desired = DesiredQuarantine {
        key: key.clone(),
        account_id: MOTO_ACCOUNT.into(),
        targets: vec![DesiredTarget {
            kind: PrincipalKind::Role,
            arn: role.clone(),
            attached_before: false,
        }],
        document: doc("ec2:RunInstances"),
    };
    let input = |d: Vec<DesiredQuarantine>| ConvergeInput {
        desired: d,
        known_principals: known.clone(),
        accounts: vec![MOTO_ACCOUNT.into()],
        gate: WriteGate::Enforce,
        scope: Scope::only(key.clone()),
    };
    let r = engine
        .converge(&factory, &input(vec![desired]))
        .await
        .unwrap();
    assert!(r.is_converged(), "{r:#?}");
    let policy_name = ownership::managed_policy_name(&cluster, &key, MOTO_ACCOUNT);
    let policy_arn = ownership::managed_policy_arn("aws", MOTO_ACCOUNT, &policy_name);
    admin
        .attach_group_policy()
        .group_name(&group)
        .policy_arn(&policy_arn)
        .send()
        .await
        .unwrap();
    let iam = factory.iam_for(MOTO_ACCOUNT).await.unwrap();
    let entities = iam.list_entities_for_policy(&policy_arn).await.unwrap();
    assert_eq!(entities.groups, vec![group.clone()]);

    let r = engine.converge(&factory, &input(vec![])).await.unwrap();
    assert!(r.errors.is_empty(), "{r:#?}");
    assert_eq!(r.group_detachments.len(), 1, "{r:#?}");
    assert!(
        r.writes
            .iter()
            .any(|w| w.operation == Operation::DetachGroupPolicy && w.error.is_none())
    );
    let attached = admin
        .list_attached_group_policies()
        .group_name(&group)
        .send()
        .await
        .unwrap();
    assert!(attached.attached_policies().is_empty());
    match iam.get_policy(&policy_arn).await {
        Err(e) => assert_eq!(e.code, ErrorCode::NoSuchEntity),
        Ok(p) => panic!("policy still exists: {p:?}"),
    }
}

/// A deny with conditions (issue 22, part 3) goes through the real SDK as built: IAM stores the
/// document, it reads back as the same document, and it also fits a role's inline policy.
#[tokio::test]
async fn a_deny_with_conditions_is_stored_and_read_back_through_the_sdk() {
    use autoguardrails::controller::crd::{ConditionOperator, DenyCondition, DenySpec};
    use autoguardrails::controller::enforce::document;
    let (admin, iam, _) = admin().await;
    let spec = DenySpec {
        actions: vec!["ec2:RunInstances".into(), "ec2:StartInstances".into()],
        regions: vec!["us-east-1".into(), "eu-central-1".into()],
        conditions: vec![
            DenyCondition {
                operator: ConditionOperator::StringLike,
                key: "ec2:InstanceType".into(),
                values: vec!["p4d.*".into(), "p5.*".into()],
            },
            DenyCondition {
                operator: ConditionOperator::StringNotEquals,
                key: "aws:ResourceTag/team".into(),
                values: vec!["ml-platform".into()],
            },
        ],
    };
    let built = document::build(&spec, "Q1").unwrap();
    assert!(built.fits_managed() && built.fits_inline_role());
    let p = iam
        .create_policy(&unique("agr-cond"), POLICY_PATH, &built.json, &[])
        .await
        .unwrap();
    let stored = iam.get_policy_version(&p.arn, "v1").await.unwrap();
    assert!(ownership::same_document(
        stored.document.as_deref().unwrap(),
        &built.json
    ));
    let value: serde_json::Value =
        serde_json::from_str(stored.document.as_deref().unwrap()).unwrap();
    assert_eq!(
        value["Statement"][0]["Condition"]["StringLike"]["ec2:InstanceType"],
        serde_json::json!(["p4d.*", "p5.*"])
    );
    // The same document as an inline role policy (the fallback when the managed quota is full),
    // through the adapter that decodes what IAM returns.
    let role = create_role(&admin, &unique("cond-role")).await;
    let principal = PrincipalRef {
        kind: PrincipalKind::Role,
        name: role.rsplit('/').next().unwrap().to_string(),
    };
    iam.put_inline_policy(&principal, "autoguardrails-cond", &built.json)
        .await
        .unwrap();
    let inline = iam
        .get_inline_policy(&principal, "autoguardrails-cond")
        .await
        .unwrap();
    assert!(ownership::same_document(&inline, &built.json), "{inline}");
}

#[tokio::test]
async fn permissions_boundary_calls_for_roles_and_moto_lacking_the_user_calls() {
    let (admin, iam, _) = admin().await;
    let role = create_role(&admin, &unique("boundary-role")).await;
    let user = create_user(&admin, &unique("boundary-user")).await;
    let rref = PrincipalRef {
        kind: PrincipalKind::Role,
        name: role.rsplit('/').next().unwrap().into(),
    };
    let uref = PrincipalRef {
        kind: PrincipalKind::User,
        name: user.rsplit('/').next().unwrap().into(),
    };
    let previous = iam
        .create_policy(&unique("team-boundary"), "/", &doc("iam:*"), &[])
        .await
        .unwrap();
    let ours = iam
        .create_policy(&unique("agr-boundary"), POLICY_PATH, &doc("ec2:*"), &[])
        .await
        .unwrap();

    assert_eq!(iam.get_permissions_boundary(&rref).await.unwrap(), None);
    iam.put_permissions_boundary(&rref, &previous.arn)
        .await
        .unwrap();
    assert_eq!(
        iam.get_permissions_boundary(&rref).await.unwrap(),
        Some(previous.arn.clone())
    );
    // Put replaces whatever boundary is there.
    iam.put_permissions_boundary(&rref, &ours.arn)
        .await
        .unwrap();
    assert_eq!(
        iam.get_permissions_boundary(&rref).await.unwrap(),
        Some(ours.arn.clone())
    );
    iam.delete_permissions_boundary(&rref).await.unwrap();
    assert_eq!(iam.get_permissions_boundary(&rref).await.unwrap(), None);
    // Deleting a boundary that is not there succeeds, as IAM does.
    iam.delete_permissions_boundary(&rref).await.unwrap();

    // A missing role is NoSuchEntity for every call.
    let missing = PrincipalRef {
        kind: PrincipalKind::Role,
        name: unique("no-such-role"),
    };
    for e in [
        iam.get_permissions_boundary(&missing).await.unwrap_err(),
        iam.put_permissions_boundary(&missing, &ours.arn)
            .await
            .unwrap_err(),
        iam.delete_permissions_boundary(&missing).await.unwrap_err(),
    ] {
        assert_eq!(e.code, ErrorCode::NoSuchEntity, "{e}");
    }
    assert_eq!(
        iam.get_permissions_boundary(&missing)
            .await
            .unwrap_err()
            .operation,
        Operation::GetRole
    );

    // Moto differences (docs/moto-differences.md): IAM refuses a boundary ARN that names no
    // policy; moto only checks the ARN's shape.
    let nowhere = format!("arn:aws:iam::{MOTO_ACCOUNT}:policy/{}", unique("nowhere"));
    assert!(
        iam.put_permissions_boundary(&rref, &nowhere).await.is_ok(),
        "moto now checks that the boundary policy exists: update docs/moto-differences.md"
    );
    iam.delete_permissions_boundary(&rref).await.unwrap();
    // IAM refuses DeletePolicy while the policy is some principal's boundary; moto deletes it.
    let held = iam
        .create_policy(&unique("agr-boundary-held"), POLICY_PATH, &doc("s3:*"), &[])
        .await
        .unwrap();
    iam.put_permissions_boundary(&rref, &held.arn)
        .await
        .unwrap();
    assert!(
        iam.delete_policy(&held.arn).await.is_ok(),
        "moto now refuses DeletePolicy of a boundary in use: update docs/moto-differences.md"
    );
    iam.delete_permissions_boundary(&rref).await.unwrap();
    // GetUser answers without the boundary, and the user boundary calls are not implemented.
    assert_eq!(iam.get_permissions_boundary(&uref).await.unwrap(), None);
    let put_user = iam.put_permissions_boundary(&uref, &ours.arn).await;
    assert!(
        put_user.is_err(),
        "moto now implements PutUserPermissionsBoundary: update docs/moto-differences.md and test users here"
    );
    assert_eq!(
        put_user.unwrap_err().operation,
        Operation::PutUserPermissionsBoundary
    );
}
