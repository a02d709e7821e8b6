//! The DynamoDB audit sink and reader with the real SDK against moto: conditional writes store a
//! record once however often it is appended, queries by quarantine, principal, time range, policy
//! and actor, the TTL attribute, and the store unreachable (an error, then the same append
//! succeeds once it is back, with nothing stored twice).

use crate::support::audit::{Switch, create_audit_table, dynamodb, port_of, primary_ids, scan};
use crate::support::moto::{MotoServer, unique};

use autoguardrails::audit::dynamodb::DynamoDbAudit;
use autoguardrails::audit::{
    Actor, AuditError, AuditQuery, AuditReader, AuditRecord, AuditSink, CHANNEL_CONTROLLER,
    CHANNEL_KUBECTL, QuarantineRef, record_id,
};
use jiff::{SignedDuration, Timestamp};

const ROLE_X: &str = "arn:aws:iam::123456789012:role/x";
const ROLE_Y: &str = "arn:aws:iam::123456789012:role/y";

fn record(uid: &str, name: &str, sequence: u64, at: &str, event: &str, actor: &str) -> AuditRecord {
    AuditRecord {
        id: record_id(uid, sequence),
        recorded_at: at.parse().unwrap(),
        sequence,
        cluster: "e2e".into(),
        quarantine: Some(QuarantineRef {
            namespace: "team".into(),
            name: name.into(),
            uid: uid.into(),
        }),
        policy: Some(format!("policy-{name}")),
        principals: vec![
            ROLE_X.into(),
            if name == "q2" { ROLE_Y } else { ROLE_X }.into(),
        ],
        event: event.into(),
        actor: Actor {
            name: actor.into(),
            verified: false,
            channel: if actor == "controller" {
                CHANNEL_CONTROLLER
            } else {
                CHANNEL_KUBECTL
            }
            .into(),
        },
        message: format!("{event} by {actor}"),
        mode: Some("Manual".into()),
        signal: None,
        request_ids: Vec::new(),
    }
}

fn trail() -> Vec<AuditRecord> {
    vec![
        record(
            "u1",
            "q1",
            0,
            "2026-03-02T10:00:00Z",
            "PendingApproval",
            "controller",
        ),
        record("u1", "q1", 1, "2026-03-03T09:30:00Z", "Approved", "alice"),
        record(
            "u1",
            "q1",
            2,
            "2026-03-03T09:30:00Z",
            "Activated",
            "controller",
        ),
        record(
            "u1",
            "q1",
            3,
            "2026-03-04T09:30:00Z",
            "Released",
            "controller",
        ),
        record(
            "u2",
            "q2",
            0,
            "2026-03-05T12:00:00Z",
            "Activated",
            "controller",
        ),
    ]
}

#[tokio::test]
async fn records_are_stored_once_and_found_by_quarantine_principal_time_and_actor() {
    let moto = MotoServer::shared();
    let client = dynamodb(moto).await;
    let table = unique("audit");
    create_audit_table(&client, &table).await;
    let audit = DynamoDbAudit::new(client.clone(), &table, Some(SignedDuration::from_hours(24)));
    let records = trail();

    let first = audit.append(&records).await.unwrap();
    assert_eq!((first.written, first.duplicates), (5, 0));
    // A retry after a lost reply (and one overlapping batch) stores nothing twice.
    let again = audit.append(&records[1..]).await.unwrap();
    assert_eq!((again.written, again.duplicates), (0, 4));
    let ids = primary_ids(&client, &table).await;
    let mut expected: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
    expected.sort();
    assert_eq!(ids, expected, "each record once");
    // One primary item plus one per distinct principal.
    assert_eq!(scan(&client, &table).await.len(), 4 * 2 + 3);

    // Who approved the deny on role X in March, and when was it lifted?
    let on_x = audit
        .query(&AuditQuery {
            principal: Some(ROLE_X.into()),
            since: Some("2026-03-01T00:00:00Z".parse().unwrap()),
            until: Some("2026-04-01T00:00:00Z".parse().unwrap()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let events: Vec<(&str, &str)> = on_x
        .iter()
        .map(|r| (r.event.as_str(), r.actor.name.as_str()))
        .collect();
    assert_eq!(
        events,
        [
            ("PendingApproval", "controller"),
            ("Approved", "alice"),
            ("Activated", "controller"),
            ("Released", "controller"),
            ("Activated", "controller"),
        ]
    );
    assert_eq!(on_x[1], records[1], "the record reads back whole");

    let on_y = audit
        .query(&AuditQuery {
            principal: Some(ROLE_Y.into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(on_y, vec![records[4].clone()]);

    let q1 = audit
        .query(&AuditQuery {
            quarantine: Some(("team".into(), "q1".into())),
            actor: Some("alice".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(q1, vec![records[1].clone()]);

    // A time range without a subject walks the time index day by day; each record once.
    let days = audit
        .query(&AuditQuery {
            since: Some("2026-03-03T00:00:00Z".parse().unwrap()),
            until: Some("2026-03-05T00:00:00Z".parse().unwrap()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = days.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [records[1].id.as_str(), &records[2].id, &records[3].id]
    );
    let by_policy = audit
        .query(&AuditQuery {
            since: Some("2026-03-01T00:00:00Z".parse().unwrap()),
            until: Some("2026-03-31T00:00:00Z".parse().unwrap()),
            policy: Some("policy-q2".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(by_policy, vec![records[4].clone()]);

    // A time range with no bound is refused rather than read in full.
    let unbounded = audit.query(&AuditQuery::default()).await;
    assert!(
        matches!(unbounded, Err(AuditError::Query(_))),
        "{unbounded:?}"
    );

    // The TTL attribute is the record time plus the retention.
    let item = scan(&client, &table)
        .await
        .into_iter()
        .find(|i| i.get("id").and_then(|v| v.as_s().ok()) == Some(&records[0].id))
        .unwrap();
    let expires: i64 = item["expiresAt"].as_n().unwrap().parse().unwrap();
    let at: Timestamp = "2026-03-02T10:00:00Z".parse().unwrap();
    assert_eq!(expires, at.as_second() + 86_400);
}

#[tokio::test]
async fn an_unreachable_table_fails_the_append_and_the_retry_stores_each_record_once() {
    let moto = MotoServer::shared();
    let admin = dynamodb(moto).await;
    let table = unique("audit-down");
    create_audit_table(&admin, &table).await;
    let switch = Switch::start(port_of(&moto.url)).await;
    let config = autoguardrails::aws::sdk::load_base_config(&moto.settings()).await;
    let client = autoguardrails::aws::factory::dynamodb_client(&config, None, Some(&switch.url));
    let audit = DynamoDbAudit::new(client, &table, None);
    let records = trail();

    audit.append(&records[..2]).await.unwrap();
    switch.set_up(false);
    let down = audit.append(&records).await;
    match &down {
        Err(e @ AuditError::Table { operation, .. }) => {
            assert_eq!(*operation, "PutItem");
            assert_eq!(e.category(), "table");
        }
        other => panic!("expected a table error, got {other:?}"),
    }
    let read = audit
        .query(&AuditQuery {
            quarantine: Some(("team".into(), "q1".into())),
            ..AuditQuery::default()
        })
        .await;
    assert!(read.is_err(), "reads fail too while it is down");
    switch.set_up(true);
    let back = audit.append(&records).await.unwrap();
    assert_eq!((back.written, back.duplicates), (3, 2));
    let mut expected: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
    expected.sort();
    assert_eq!(primary_ids(&admin, &table).await, expected);
}
