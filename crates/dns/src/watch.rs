//! Keeping the [`Cluster`] current: two kube-rs watches (Services and
//! EndpointSlices, all namespaces), each event applied in place. A re-list
//! (`Init` … `InitDone`) removes what the new list no longer has.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};

use crate::cluster::{service_info, slice_info, Cluster};

fn key<K: kube::Resource>(o: &K) -> (String, String) {
    (
        o.meta().namespace.clone().unwrap_or_default(),
        o.meta().name.clone().unwrap_or_default(),
    )
}

/// Watches Services and EndpointSlices forever (kube's watcher re-lists
/// after errors with back-off), applying each event to `cluster`.
pub async fn watch_cluster(client: Client, cluster: Arc<RwLock<Cluster>>) {
    let services = watch_into(
        Api::<Service>::all(client.clone()),
        cluster.clone(),
        |c, ns, name, s: &Service| c.set_service(ns, name, service_info(s)),
        Cluster::remove_service,
        Cluster::service_keys,
    );
    let slices = watch_into(
        Api::<EndpointSlice>::all(client),
        cluster,
        |c, ns, name, s: &EndpointSlice| match slice_info(s) {
            Some(info) => c.set_slice(ns, name, info),
            None => c.remove_slice(ns, name),
        },
        Cluster::remove_slice,
        Cluster::slice_keys,
    );
    tokio::join!(services, slices);
}

/// One watch applied to `cluster`: `set` for an added or changed object,
/// `remove` for a deleted one and, after a re-list, for every key in
/// `keys` the new list no longer has.
async fn watch_into<K>(
    api: Api<K>,
    cluster: Arc<RwLock<Cluster>>,
    set: impl Fn(&mut Cluster, &str, &str, &K),
    remove: impl Fn(&mut Cluster, &str, &str),
    keys: impl Fn(&Cluster) -> Vec<(String, String)>,
) where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + k8s_openapi::serde::de::DeserializeOwned
        + Send
        + 'static,
{
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut seen = BTreeSet::new();
    while let Some(e) = events.next().await {
        let Ok(e) = e else { continue };
        let mut c = cluster.write().unwrap_or_else(|e| e.into_inner());
        match e {
            Event::Init => seen.clear(),
            Event::InitApply(o) | Event::Apply(o) => {
                let (ns, name) = key(&o);
                set(&mut c, &ns, &name, &o);
                seen.insert((ns, name));
            }
            Event::Delete(o) => remove(&mut c, &o.namespace().unwrap_or_default(), &o.name_any()),
            Event::InitDone => {
                for (ns, name) in keys(&c) {
                    if !seen.contains(&(ns.clone(), name.clone())) {
                        remove(&mut c, &ns, &name);
                    }
                }
            }
        }
    }
}
