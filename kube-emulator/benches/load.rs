//! Load benchmark: 100,000 custom objects and 50 watchers; prints list latency, watch fan-out latency and RSS.
//!
//! Run with `cargo bench -p kube-emulator --bench load` (release profile). `LOAD_OBJECTS` and `LOAD_WATCHERS`
//! override the sizes.

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams, WatchEvent, WatchParams};
use kube::core::GroupVersionKind;
use kube_emulator::{Emulator, Options};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// A `/proc/self/status` field in kB.
fn proc_status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|line| line.starts_with(field))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|value| value.parse().ok())
        .unwrap_or_default()
}

/// Percentile of sorted durations.
fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index]
}

fn widget(name: &str, index: usize) -> DynamicObject {
    let mut object = DynamicObject::new(name, &api_resource());
    object.metadata.namespace = Some(format!("ns-{}", index % 10));
    object.metadata.labels = Some([("shard".to_string(), (index % 100).to_string())].into());
    object.data = json!({"spec": {"size": (index % 100) + 1, "color": "blue"}});
    object
}

fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("autoguardrails.io", "v1", "Widget"),
        "widgets",
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let objects: usize = std::env::var("LOAD_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let watchers: usize = std::env::var("LOAD_WATCHERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let rss_before = proc_status_kb("VmRSS:");
    let emulator = Emulator::start_with(Options {
        history_capacity: 10_000,
        ..Options::default()
    })
    .await
    .unwrap();
    let crd = include_str!("../tests/fixtures/widget-crd.yaml");
    emulator.apply_crd_yaml(crd).unwrap();
    let client = emulator.client().await.unwrap();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    for index in 0..10 {
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("ns-{index}")}});
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(namespace).unwrap(),
            )
            .await
            .unwrap();
    }
    let resource = api_resource();

    // Load.
    let started = Instant::now();
    futures::stream::iter(0..objects)
        .map(|index| {
            let client = client.clone();
            let resource = resource.clone();
            async move {
                let object = widget(&format!("w-{index:06}"), index);
                let api: Api<DynamicObject> = Api::namespaced_with(
                    client,
                    object.metadata.namespace.as_deref().unwrap(),
                    &resource,
                );
                api.create(&PostParams::default(), &object).await.unwrap();
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let load_time = started.elapsed();
    println!(
        "loaded {objects} objects through the API in {:.1?} ({:.0} creates/s)",
        load_time,
        objects as f64 / load_time.as_secs_f64()
    );
    let rss_loaded = proc_status_kb("VmRSS:");

    // List latency.
    let all: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let mut full = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let list = all.list(&ListParams::default()).await.unwrap();
        full.push(started.elapsed());
        assert_eq!(list.items.len(), objects);
    }
    full.sort();
    println!(
        "full list of {objects} objects (cluster-wide, one request, incl. client decode): best {:.1?}, worst {:.1?}",
        full[0],
        full[full.len() - 1]
    );
    let started = Instant::now();
    let mut pages = 0;
    let mut params = ListParams::default().limit(500);
    loop {
        let page = all.list(&params).await.unwrap();
        pages += 1;
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    println!(
        "paginated list (limit=500): {pages} pages in {:.1?}",
        started.elapsed()
    );
    let namespaced: Api<DynamicObject> = Api::namespaced_with(client.clone(), "ns-3", &resource);
    let mut selected = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        let list = namespaced
            .list(&ListParams::default().labels("shard=3"))
            .await
            .unwrap();
        selected.push(started.elapsed());
        assert_eq!(list.items.len(), objects / 100);
    }
    selected.sort();
    println!(
        "namespaced list with label selector ({} matches of {} in the namespace): median {:.1?}",
        objects / 100,
        objects / 10,
        selected[selected.len() / 2]
    );

    // Watch fan-out.
    let version = emulator.resource_version().to_string();
    let received: Arc<Mutex<Vec<(String, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let api = all.clone();
        let received = received.clone();
        let version = version.clone();
        let stream = api
            .watch(&WatchParams::default().disable_bookmarks(), &version)
            .await
            .unwrap();
        tasks.push(tokio::spawn(async move {
            let mut stream = stream.boxed();
            while let Ok(Some(event)) = stream.try_next().await {
                if let WatchEvent::Added(object) = event {
                    received
                        .lock()
                        .await
                        .push((object.metadata.name.unwrap_or_default(), Instant::now()));
                }
            }
        }));
    }
    let events = 200;
    let mut sent = Vec::new();
    let target: Api<DynamicObject> = Api::namespaced_with(client.clone(), "ns-0", &resource);
    for index in 0..events {
        let name = format!("fanout-{index:04}");
        let mut object = widget(&name, 0);
        object.metadata.namespace = Some("ns-0".into());
        let started = Instant::now();
        target
            .create(&PostParams::default(), &object)
            .await
            .unwrap();
        sent.push((name, started));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.lock().await.len() < events * watchers && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let received = received.lock().await.clone();
    let mut latencies = Vec::new();
    let mut last_watcher = Vec::new();
    for (name, started) in &sent {
        let times: Vec<Duration> = received
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, at)| at.duration_since(*started))
            .collect();
        latencies.extend(times.iter().copied());
        if let Some(max) = times.iter().max() {
            last_watcher.push(*max);
        }
    }
    latencies.sort();
    last_watcher.sort();
    println!(
        "watch fan-out: {events} creates x {watchers} watchers = {} deliveries (expected {}); create-to-delivery p50 {:.2?}, p99 {:.2?}, max {:.2?}; time until the last watcher got an event: p50 {:.2?}, p99 {:.2?}",
        latencies.len(),
        events * watchers,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
        percentile(&last_watcher, 0.5),
        percentile(&last_watcher, 0.99),
    );
    println!(
        "process RSS (emulator and client in one process): before start {} MiB, after load {} MiB, now {} MiB, peak {} MiB",
        rss_before / 1024,
        rss_loaded / 1024,
        proc_status_kb("VmRSS:") / 1024,
        proc_status_kb("VmHWM:") / 1024
    );
    for task in tasks {
        task.abort();
    }
}
