//! Scope selectors through the real SDK against moto: `ListRoles`/`ListUsers` by path prefix,
//! `ListRoleTags`/`ListUserTags`, and an Organizations OU walked with `ListChildren` /
//! `ListAccountsForParent`, through the one client factory.

use crate::support::moto;

use std::collections::BTreeMap;

use autoguardrails::aws::PrincipalKind as AwsKind;
use autoguardrails::aws::directory;
use autoguardrails::aws::factory::ClientFactory;
use autoguardrails::aws::sdk::{SdkClientFactory, load_base_config};
use autoguardrails::controller::crd::{PrincipalKind, PrincipalSelector, ScopeSpec, TagSelector};
use autoguardrails::controller::resolver;
use moto::{MotoServer, unique};

const MOTO_ACCOUNT: &str = "123456789012";
const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

async fn factory(server: &MotoServer) -> SdkClientFactory {
    let config = load_base_config(&server.settings()).await;
    SdkClientFactory::new(config, server.settings(), BTreeMap::new())
}

async fn role(admin: &aws_sdk_iam::Client, path: &str, name: &str, tags: &[(&str, &str)]) {
    let tags: Vec<aws_sdk_iam::types::Tag> = tags
        .iter()
        .map(|(k, v)| {
            aws_sdk_iam::types::Tag::builder()
                .key(*k)
                .value(*v)
                .build()
                .unwrap()
        })
        .collect();
    admin
        .create_role()
        .role_name(name)
        .path(path)
        .assume_role_policy_document(TRUST)
        .set_tags(Some(tags))
        .send()
        .await
        .unwrap();
}

fn selector(path: &str) -> PrincipalSelector {
    PrincipalSelector {
        kinds: vec![PrincipalKind::IamRole],
        accounts: vec![MOTO_ACCOUNT.into()],
        organizational_unit: None,
        path_prefix: Some(path.into()),
        name_pattern: None,
        tags: Vec::new(),
    }
}

fn scope(selectors: Vec<PrincipalSelector>) -> ScopeSpec {
    ScopeSpec {
        principals: Vec::new(),
        selectors,
        max_targets: None,
        regions: Vec::new(),
    }
}

#[tokio::test]
async fn path_prefix_names_and_tags_resolve_through_the_sdk() {
    let server = MotoServer::shared();
    let factory = factory(server).await;
    let admin = aws_sdk_iam::Client::new(factory.base());
    let path = format!("/{}/", unique("sel"));
    role(&admin, &path, "train-a", &[("team", "ml")]).await;
    role(&admin, &path, "train-b", &[("team", "web")]).await;
    role(
        &admin,
        &format!("{path}deep/"),
        "train-c",
        &[("team", "ml"), ("x", "1")],
    )
    .await;
    role(&admin, "/elsewhere/", &unique("train-d"), &[("team", "ml")]).await;
    admin
        .create_user()
        .user_name(unique("alice"))
        .path(&path)
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("team")
                .value("ml")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    // The adapter itself: the path prefix is IAM's, nested paths included.
    let dir = factory.directory_for(MOTO_ACCOUNT).await.unwrap();
    let listed = dir.list_principals(AwsKind::Role, &path).await.unwrap();
    let mut names: Vec<&str> = listed.iter().map(|l| l.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["train-a", "train-b", "train-c"]);
    let tags = dir.principal_tags(AwsKind::Role, "train-c").await.unwrap();
    assert_eq!(tags.get("x").map(String::as_str), Some("1"));
    assert!(
        dir.principal_tags(AwsKind::Role, "no-such-role")
            .await
            .is_err()
    );

    // Tags with a value, a key that exists, and users.
    let mut s = selector(&path);
    s.tags = vec![TagSelector {
        key: "team".into(),
        value: Some("ml".into()),
    }];
    s.kinds = vec![PrincipalKind::IamRole, PrincipalKind::IamUser];
    let (targets, effort) = resolver::resolve_scope(&factory, &scope(vec![s]))
        .await
        .unwrap();
    let arns: Vec<&str> = targets.iter().map(|t| t.principal.arn.as_str()).collect();
    assert_eq!(arns.len(), 3, "{arns:?}");
    assert!(
        arns.iter()
            .any(|a| a.ends_with(&format!("role{path}train-a")))
    );
    assert!(
        arns.iter()
            .any(|a| a.ends_with(&format!("role{path}deep/train-c")))
    );
    assert!(arns.iter().any(|a| a.contains(":user/")));
    assert_eq!(
        effort.tag_reads, 4,
        "three roles and one user under the path"
    );
    let user = targets
        .iter()
        .find(|t| t.principal.kind == PrincipalKind::IamUser)
        .unwrap();
    assert!(
        user.matched_by.contains("tag team=ml"),
        "{}",
        user.matched_by
    );

    let mut by_name = selector(&path);
    by_name.name_pattern = Some("train-?".into());
    by_name.tags = vec![TagSelector {
        key: "x".into(),
        value: None,
    }];
    let (targets, _) = resolver::resolve_scope(&factory, &scope(vec![by_name]))
        .await
        .unwrap();
    assert_eq!(targets.len(), 1);
    assert!(targets[0].principal.arn.ends_with("deep/train-c"));
    assert!(targets[0].matched_by.contains("tag x exists"));
}

#[tokio::test]
async fn an_account_the_factory_cannot_reach_fails_the_resolution() {
    let server = MotoServer::shared();
    let factory = factory(server).await;
    let mut s = selector("/");
    s.accounts = vec![MOTO_ACCOUNT.into(), "210987654321".into()];
    let err = resolver::resolve_scope(&factory, &scope(vec![s]))
        .await
        .unwrap_err();
    assert!(err.contains("210987654321"), "{err}");
}

#[tokio::test]
async fn organizational_units_are_walked_through_the_sdk() {
    // Its own server: an organization is global state.
    let server = MotoServer::start();
    let factory = factory(&server).await;
    let orgs = aws_sdk_organizations::Client::new(factory.base());
    orgs.create_organization()
        .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
        .send()
        .await
        .unwrap();
    let roots = orgs.list_roots().send().await.unwrap();
    let root = roots.roots()[0].id().unwrap().to_string();
    let unit = |parent: String, name: &'static str| {
        let orgs = orgs.clone();
        async move {
            orgs.create_organizational_unit()
                .parent_id(parent)
                .name(name)
                .send()
                .await
                .unwrap()
                .organizational_unit()
                .unwrap()
                .id()
                .unwrap()
                .to_string()
        }
    };
    let ml = unit(root.clone(), "ml").await;
    let ml_dev = unit(ml.clone(), "ml-dev").await;
    let web = unit(root.clone(), "web").await;
    let account = |name: &'static str, parent: String| {
        let orgs = orgs.clone();
        let root = root.clone();
        async move {
            let created = orgs
                .create_account()
                .account_name(name)
                .email(format!("{name}@example.com"))
                .send()
                .await
                .unwrap();
            let id = created
                .create_account_status()
                .unwrap()
                .account_id()
                .unwrap()
                .to_string();
            orgs.move_account()
                .account_id(&id)
                .source_parent_id(root)
                .destination_parent_id(parent)
                .send()
                .await
                .unwrap();
            id
        }
    };
    let a = account("ml-prod", ml.clone()).await;
    let b = account("ml-dev-1", ml_dev.clone()).await;
    let c = account("web-1", web.clone()).await;

    let organization = factory.organization().await.unwrap();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(
        directory::accounts_under(organization.as_ref(), &ml, 100)
            .await
            .unwrap(),
        expected
    );
    assert_eq!(
        directory::accounts_under(organization.as_ref(), &ml_dev, 100)
            .await
            .unwrap(),
        vec![b.clone()]
    );

    // The management account moved into the OU: its roles resolve through the OU selector; the
    // member accounts cannot be reached (no role configured), which fails the whole resolution.
    orgs.move_account()
        .account_id(MOTO_ACCOUNT)
        .source_parent_id(&root)
        .destination_parent_id(&web)
        .send()
        .await
        .unwrap();
    let admin = aws_sdk_iam::Client::new(factory.base());
    role(&admin, "/ou/", "web-ci", &[]).await;
    let mut s = selector("/ou/");
    s.accounts = Vec::new();
    s.organizational_unit = Some(web.clone());
    let err = resolver::resolve_scope(&factory, &scope(vec![s.clone()]))
        .await
        .unwrap_err();
    assert!(err.contains(&c), "{err}");
    // A closed (suspended) account is not listed: the OU is now just the management account.
    orgs.close_account().account_id(&c).send().await.unwrap();
    let (targets, _) = resolver::resolve_scope(&factory, &scope(vec![s]))
        .await
        .unwrap();
    assert_eq!(targets.len(), 1);
    assert_eq!(
        targets[0].principal.arn,
        format!("arn:aws:iam::{MOTO_ACCOUNT}:role/ou/web-ci")
    );
    assert!(targets[0].matched_by.contains(&format!("(in {web})")));
}
