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
    let services = watch_services(Api::<Service>::all(client.clone()), cluster.clone());
    let slices = watch_slices(Api::<EndpointSlice>::all(client), cluster);
    tokio::join!(services, slices);
}

async fn watch_services(api: Api<Service>, cluster: Arc<RwLock<Cluster>>) {
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut seen = BTreeSet::new();
    while let Some(e) = events.next().await {
        let Ok(e) = e else { continue };
        let mut c = cluster.write().unwrap_or_else(|e| e.into_inner());
        match e {
            Event::Init => seen.clear(),
            Event::InitApply(s) | Event::Apply(s) => {
                let (ns, name) = key(&s);
                c.set_service(&ns, &name, service_info(&s));
                seen.insert((ns, name));
            }
            Event::Delete(s) => c.remove_service(&s.namespace().unwrap_or_default(), &s.name_any()),
            Event::InitDone => {
                for (ns, name) in c.service_keys() {
                    if !seen.contains(&(ns.clone(), name.clone())) {
                        c.remove_service(&ns, &name);
                    }
                }
            }
        }
    }
}

async fn watch_slices(api: Api<EndpointSlice>, cluster: Arc<RwLock<Cluster>>) {
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut seen = BTreeSet::new();
    while let Some(e) = events.next().await {
        let Ok(e) = e else { continue };
        let mut c = cluster.write().unwrap_or_else(|e| e.into_inner());
        match e {
            Event::Init => seen.clear(),
            Event::InitApply(s) | Event::Apply(s) => {
                let (ns, name) = key(&s);
                match slice_info(&s) {
                    Some(info) => c.set_slice(&ns, &name, info),
                    None => c.remove_slice(&ns, &name),
                }
                seen.insert((ns, name));
            }
            Event::Delete(s) => c.remove_slice(&s.namespace().unwrap_or_default(), &s.name_any()),
            Event::InitDone => {
                for (ns, name) in c.slice_keys() {
                    if !seen.contains(&(ns.clone(), name.clone())) {
                        c.remove_slice(&ns, &name);
                    }
                }
            }
        }
    }
}
