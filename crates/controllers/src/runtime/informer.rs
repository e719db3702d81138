//! An informer: one kube-rs watcher feeding a reflector [`Store`] (the
//! local cache reconcilers read) and a handler that turns each event into
//! work-queue keys — client-go's `SharedIndexInformer` with its event
//! handlers, built from kube-rs's `watcher` and `reflector` pieces.
//!
//! The store is updated before the handler runs, so a reconcile triggered by
//! an event always sees at least that event's state. Objects are cached
//! without `metadata.managedFields`.

use std::fmt::Debug;

use futures::StreamExt;
use kube::runtime::reflector::{self, store::Writer, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

/// What a handler is called with.
pub type Handler<K> = Box<dyn FnMut(&Event<K>) + Send>;

/// Resolves once an informer's first list is in its store.
///
/// Skiff keeps its own flag rather than kube-rs's
/// `Store::wait_until_ready`: that one wakes only the most recent of
/// several concurrent waiters (a one-shot receiver shared behind a lock
/// keeps one waker), and several controllers wait on the pod cache at once.
#[derive(Clone)]
pub struct Synced(tokio::sync::watch::Receiver<bool>);

impl Synced {
    /// Waits until the first list completed (forever if the informer
    /// stopped before that).
    pub async fn wait(mut self) {
        if self.0.wait_for(|ready| *ready).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Whether the first list completed.
    pub fn is_synced(&self) -> bool {
        *self.0.borrow()
    }
}

/// A store and the task-to-be that keeps it filled.
pub struct Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    api: Api<K>,
    config: watcher::Config,
    writer: Writer<K>,
    store: Store<K>,
    handlers: Vec<Handler<K>>,
    synced: tokio::sync::watch::Sender<bool>,
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// An informer over `api` (all namespaces or one), not yet running.
    pub fn new(api: Api<K>, config: watcher::Config) -> Informer<K> {
        let (store, writer) = reflector::store();
        Informer {
            api,
            config,
            writer,
            store,
            handlers: Vec::new(),
            synced: tokio::sync::watch::channel(false).0,
        }
    }

    /// The cache; empty until the first list completes ([`Self::synced`]).
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// A handle that resolves once the cache holds the first full list.
    pub fn synced(&self) -> Synced {
        Synced(self.synced.subscribe())
    }

    /// Adds an event handler (several controllers may share one informer).
    pub fn on_event(&mut self, handler: impl FnMut(&Event<K>) + Send + 'static) {
        self.handlers.push(Box::new(handler));
    }

    /// Runs the watch until the stream ends (it does not: kube's watcher
    /// re-lists and re-watches after errors, with back-off).
    pub async fn run(self) {
        let Informer {
            api,
            config,
            mut writer,
            mut handlers,
            synced,
            ..
        } = self;
        // No controller reads managedFields, and a write without them keeps
        // the stored ones: drop them before they reach the cache (client-go
        // informers do the same with a transform). With 10,000 pods they
        // were a large part of the server's memory.
        let mut events = watcher::watcher(api, config)
            .modify(|obj| obj.meta_mut().managed_fields = None)
            .default_backoff()
            .boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => {
                    writer.apply_watcher_event(&event);
                    for h in handlers.iter_mut() {
                        h(&event);
                    }
                    if matches!(event, Event::InitDone) {
                        synced.send_replace(true);
                    }
                }
                Err(e) => {
                    tracing::debug!(kind = %K::kind(&()), error = %e, "watch error; retrying")
                }
            }
        }
    }
}

/// The objects of an event that changed (applied or deleted); none for the
/// `Init`/`InitDone` markers.
pub fn event_objects<K>(event: &Event<K>) -> Option<&K> {
    match event {
        Event::Apply(o) | Event::Delete(o) | Event::InitApply(o) => Some(o),
        Event::Init | Event::InitDone => None,
    }
}
