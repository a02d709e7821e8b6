//! One cache per kind and watched namespace, shared by intake and the controllers (decision 142).
//! Each cache is one watch: its events go to the indexes (every object), to the store (only what
//! `keep` accepts: settled ended Quarantines are left out, decision 140), and to the controllers
//! that subscribed (a leader subscribes when its term starts and gets every cached object first,
//! so each is reconciled once). A standby runs the same caches for intake without subscribers.

use std::sync::{Arc, Mutex};

use futures::StreamExt as _;
use kube::Resource;
use kube::api::Api;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event, watcher as watch};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

/// What `kubectl apply` (client side) keeps on every object it applied: the whole object again.
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// One change a subscriber hears of: the object as the watch delivered it, and whether it was
/// deleted.
type Change<K> = (Arc<K>, bool);

/// Hands a cache's changes to the controllers subscribed to it. Cheap to clone (shared).
pub struct Fanout<K: Resource<DynamicType = ()> + Clone + 'static> {
    subscribers: Arc<Mutex<Vec<mpsc::UnboundedSender<Change<K>>>>>,
    reader: Store<K>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Clone for Fanout<K> {
    fn clone(&self) -> Self {
        Fanout {
            subscribers: self.subscribers.clone(),
            reader: self.reader.clone(),
        }
    }
}

impl<K> Fanout<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    /// Every change from now on, after every object the cache holds now (so a controller that
    /// starts on a synced cache still reconciles each object once). With `deletions`, deleted
    /// objects are included (an owner's controller needs them; an object's own does not). The
    /// objects are shared, not copied: the snapshot hands out the store's own `Arc`s, so a leader
    /// subscribing three times to 20,000 cached objects adds references, not 60,000 copies.
    pub fn subscribe(
        &self,
        deletions: bool,
    ) -> impl futures::Stream<Item = Arc<K>> + Send + 'static {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut subscribers) = self.subscribers.lock() {
            // Under the lock, so no change slips between the snapshot and the subscription.
            for object in self.reader.state() {
                let _ = tx.send((object, false));
            }
            subscribers.push(tx);
        }
        futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|change| (change, rx))
        })
        .filter_map(move |(object, deleted)| {
            futures::future::ready((deletions || !deleted).then_some(object))
        })
    }

    fn send(&self, object: &K, deleted: bool) {
        let Ok(mut subscribers) = self.subscribers.lock() else {
            return;
        };
        if subscribers.is_empty() {
            return;
        }
        // One copy per change, shared by every subscriber.
        let shared = Arc::new(object.clone());
        subscribers.retain(|tx| tx.send((shared.clone(), deleted)).is_ok());
    }
}

/// A cache of `api`: its store, its fan-out, and the future that keeps both current (with backoff
/// on watch errors) until `shutdown` resolves. `observe` sees every watch event; the store holds
/// only the objects `keep` accepts (one it stops accepting is removed). Objects are stored without
/// `metadata.managedFields` and kubectl's last-applied annotation: nothing here reads them, and at
/// 100,000 Quarantines they were most of the memory (decision 082).
pub fn cached<K>(
    api: Api<K>,
    config: &watcher::Config,
    keep: fn(&K) -> bool,
    observe: impl Fn(&Event<K>) + Send + Sync + 'static,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    kind: &'static str,
) -> (Store<K>, Fanout<K>, futures::future::BoxFuture<'static, ()>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, mut writer) = reflector::store();
    let fanout = Fanout {
        subscribers: Arc::default(),
        reader: reader.clone(),
    };
    let feed = fanout.clone();
    let future = watch(api, config.clone())
        .default_backoff()
        .modify(|object: &mut K| {
            let meta = object.meta_mut();
            meta.managed_fields = None;
            if let Some(annotations) = meta.annotations.as_mut() {
                annotations.remove(LAST_APPLIED_ANNOTATION);
            }
        })
        .take_until(shutdown)
        .for_each(move |event| {
            match event {
                Ok(event) => {
                    observe(&event);
                    match &event {
                        Event::Apply(object) if !keep(object) => {
                            // It may have been kept before: drop it; the owners still hear of it.
                            writer.apply_watcher_event(&Event::Delete(object.clone()));
                            feed.send(object, false);
                        }
                        Event::InitApply(object) if !keep(object) => {}
                        Event::Apply(object) | Event::InitApply(object) => {
                            writer.apply_watcher_event(&event);
                            feed.send(object, false);
                        }
                        Event::Delete(object) => {
                            writer.apply_watcher_event(&event);
                            feed.send(object, true);
                        }
                        Event::Init | Event::InitDone => writer.apply_watcher_event(&event),
                    }
                }
                Err(e) => tracing::warn!(error = %e, kind, "cache: watch failed"),
            }
            futures::future::ready(())
        });
    (reader, fanout, Box::pin(future))
}

/// Keeps every object.
pub fn keep_all<K>(_: &K) -> bool {
    true
}
