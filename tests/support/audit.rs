//! Audit store support: the audit table created in moto exactly as the templates describe it
//! (docs/audit.md), a TCP forwarder that can refuse connections (DynamoDB "down" while moto keeps
//! its state), and a scan of the stored record ids.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use autoguardrails::audit::dynamodb::{
    DAY_ATTRIBUTE, PARTITION_KEY, SORT_KEY, TIME_INDEX, TTL_ATTRIBUTE,
};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};

use super::moto::MotoServer;

/// A DynamoDB client on `moto`.
pub async fn dynamodb(moto: &MotoServer) -> Client {
    let config = autoguardrails::aws::sdk::load_base_config(&moto.settings()).await;
    autoguardrails::aws::factory::dynamodb_client(&config, None, None)
}

/// Creates the audit table (keys, the time index, TTL on `expiresAt`).
pub async fn create_audit_table(client: &Client, table: &str) {
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .unwrap()
    };
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute(PARTITION_KEY))
        .attribute_definitions(attribute(SORT_KEY))
        .attribute_definitions(attribute(DAY_ATTRIBUTE))
        .key_schema(key(PARTITION_KEY, KeyType::Hash))
        .key_schema(key(SORT_KEY, KeyType::Range))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(TIME_INDEX)
                .key_schema(key(DAY_ATTRIBUTE, KeyType::Hash))
                .key_schema(key(SORT_KEY, KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(TTL_ATTRIBUTE)
                .enabled(true)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// Every item of `table` (scan, all pages).
pub async fn scan(client: &Client, table: &str) -> Vec<HashMap<String, AttributeValue>> {
    let mut items = Vec::new();
    let mut start: Option<HashMap<String, AttributeValue>> = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .unwrap();
        items.extend(page.items().iter().cloned());
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    items
}

/// The record ids of the primary copies in `table`, each as often as stored.
pub async fn primary_ids(client: &Client, table: &str) -> Vec<String> {
    let mut ids: Vec<String> = scan(client, table)
        .await
        .into_iter()
        .filter(|i| {
            i.get(PARTITION_KEY)
                .and_then(|v| v.as_s().ok())
                .is_some_and(|pk| !pk.starts_with("principal#"))
        })
        .filter_map(|i| i.get("id").and_then(|v| v.as_s().ok()).cloned())
        .collect();
    ids.sort();
    ids
}

/// A loopback TCP forwarder to a port that can be switched off: while off, every connection is
/// closed at once (the SDK sees the service as unreachable); existing connections are cut.
pub struct Switch {
    /// `http://127.0.0.1:PORT` of the forwarder.
    pub url: String,
    up: Arc<AtomicBool>,
    generation: Arc<std::sync::atomic::AtomicU64>,
}

impl Switch {
    /// Forwards to `127.0.0.1:target`; starts up.
    pub async fn start(target: u16) -> Switch {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let generation = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (flag, gen_accept) = (up.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !flag.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let (flag, born, generation) = (
                    flag.clone(),
                    gen_accept.load(Ordering::SeqCst),
                    gen_accept.clone(),
                );
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                    let cut = async {
                        loop {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            if !flag.load(Ordering::SeqCst)
                                || generation.load(Ordering::SeqCst) != born
                            {
                                return;
                            }
                        }
                    };
                    tokio::select! {
                        _ = copy => {}
                        _ = cut => {}
                    }
                });
            }
        });
        Switch {
            url: format!("http://127.0.0.1:{port}"),
            up,
            generation,
        }
    }

    /// Switches the service on or off.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

/// The port of a `http://127.0.0.1:PORT` URL.
pub fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}
