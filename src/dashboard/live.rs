//! Live updates: a counter that ticks when something a page shows changed (the caches' watch
//! events, a signal delivery), and the Server-Sent Events stream that tells browsers so. A
//! browser then fetches the page's `<main>` again; the stream itself carries no data (decision
//! 183). Bursts are coalesced: at most one event per [`COALESCE`].

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use tokio::sync::watch;

/// Changes closer together than this become one event.
pub const COALESCE: Duration = Duration::from_millis(250);
/// A comment line this often keeps proxies from closing an idle stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long a browser waits before reconnecting a dropped stream.
pub const RETRY: Duration = Duration::from_secs(5);

/// The change counter. Cheap to clone (shared).
#[derive(Clone)]
pub struct Changes {
    tx: watch::Sender<u64>,
}

impl Default for Changes {
    fn default() -> Self {
        Changes {
            tx: watch::Sender::new(0),
        }
    }
}

impl Changes {
    /// Something changed.
    pub fn bump(&self) {
        self.tx.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The current count.
    pub fn current(&self) -> u64 {
        *self.tx.borrow()
    }

    /// A receiver that sees every later change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }

    /// Bumps once per item of `stream` until it ends.
    pub async fn follow(self, stream: impl Stream<Item = ()> + Send) {
        futures::pin_mut!(stream);
        while stream.next().await.is_some() {
            self.bump();
        }
    }
}

/// The event stream of `changes`, ending when `stop` turns true.
pub fn stream(
    changes: &Changes,
    stop: watch::Receiver<bool>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + Send + 'static> {
    let mut rx = changes.subscribe();
    rx.borrow_and_update();
    let hello = futures::stream::once(async { Ok(Event::default().retry(RETRY).comment("live")) });
    let events = futures::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        tokio::time::sleep(COALESCE).await;
        let n = *rx.borrow_and_update();
        Some((Ok(Event::default().event("change").data(n.to_string())), rx))
    });
    let stopped = crate::controller::reconcile::wait_for_shutdown(stop);
    Sse::new(hello.chain(events).take_until(Box::pin(stopped)))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}
