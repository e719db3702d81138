//! `run_controllers`: builds the shared informers, the controllers on top of
//! them, and runs everything until shutdown.
//!
//! One informer per kind, shared by every controller that reads it (pods
//! are watched once for every controller that reads them, and cached as
//! [`SlimPod`]s). Workers of a controller start only once the caches it
//! reads have listed everything: acting on a half-filled cache would, for
//! example, make the ReplicaSet controller create pods that already exist.

use std::future::Future;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Service,
    ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::watcher;
use kube::{Api, Client};
use skiff_client::leader::LeaseConfig;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::ControllersConfig;
use crate::cronjob::controller::CronJobController;
use crate::daemonset::controller::DaemonSetController;
use crate::deployment::controller::DeploymentController;
use crate::disruption::controller::{DisruptionController, Informers as DisruptionInformers};
use crate::endpoints::controller::{EndpointSliceController, EndpointsController};
use crate::error::ControllerError;
use crate::gc::controller::GarbageCollector;
use crate::hpa::controller::HpaController;
use crate::job::controller::JobController;
use crate::namespace::controller::NamespaceController;
use crate::nodeipam::NodeIpamController;
use crate::nodelifecycle::controller::{NodeLifecycleController, NODE_LEASE_NAMESPACE};
use crate::podgc::controller::PodGcController;
use crate::quota::controller::QuotaController;
use crate::replicaset::controller::ReplicaSetController;
use crate::runtime::{run_workers, Informer, WorkQueue};
use crate::serviceaccount::ServiceAccountController;
use crate::slim_pod::SlimPod;
use crate::statefulset::controller::StatefulSetController;
use crate::volume::controller::VolumeController;
use crate::volume::local_path::ensure_storage_class;

/// The controllers' Lease and timings: kube-controller-manager's
/// (`kube-system/kube-controller-manager`, 15 s lease, 10 s renew
/// deadline, 2 s retry).
pub const LEASE: LeaseConfig = LeaseConfig {
    namespace: "kube-system",
    name: "kube-controller-manager",
    lease_duration: std::time::Duration::from_secs(15),
    renew_deadline: std::time::Duration::from_secs(10),
    retry_period: std::time::Duration::from_secs(2),
};

/// Runs the controllers only while this process holds the [`LEASE`] under
/// `identity`, as kube-controller-manager does with several servers:
/// they start on acquiring it and stop on losing it (the process keeps
/// serving the API and stands by again). On `shutdown` the controllers
/// stop first, then the Lease is released so a standby takes over at once.
pub async fn run_controllers_when_leading(
    client: Client,
    config: ControllersConfig,
    identity: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ControllerError> {
    let (leading_tx, mut leading) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let elector = tokio::spawn(skiff_client::leader::elect(
        client.clone(),
        LEASE,
        identity,
        leading_tx,
        stop_rx,
    ));
    let (quit_tx, mut quit) = watch::channel(false);
    let watcher = tokio::spawn(async move {
        shutdown.await;
        quit_tx.send_replace(true);
    });
    let result = loop {
        tokio::select! {
            _ = quit.wait_for(|q| *q) => break Ok(()),
            r = leading.wait_for(|l| *l) => if r.is_err() { break Ok(()) },
        }
        tracing::info!("holding the controller lease: starting the controllers");
        let (mut lost, mut stopping) = (leading.clone(), quit.clone());
        let stop = async move {
            tokio::select! {
                _ = lost.wait_for(|l| !*l) => {}
                _ = stopping.wait_for(|q| *q) => {}
            }
        };
        if let Err(e) = run_controllers(client.clone(), config.clone(), stop).await {
            break Err(e);
        }
        if *quit.borrow() {
            break Ok(());
        }
        tracing::warn!("lost the controller lease: controllers stopped; standing by");
    };
    stop_tx.send_replace(true);
    let _ = elector.await;
    watcher.abort();
    result
}

/// Runs every controller until `shutdown` completes. Call it on the active
/// (leader) server only: two controller managers would both act
/// ([`run_controllers_when_leading`] does that).
pub async fn run_controllers(
    client: Client,
    config: ControllersConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ControllerError> {
    if config.workers == 0 {
        return Err(ControllerError::Config("workers must be at least 1".into()));
    }
    let wc = watcher::Config::default();
    let mut pods = Informer::new(Api::<SlimPod>::all(client.clone()), wc.clone());
    let mut replicasets = Informer::new(Api::<ReplicaSet>::all(client.clone()), wc.clone());
    let mut deployments = Informer::new(Api::<Deployment>::all(client.clone()), wc.clone());
    let mut namespaces = Informer::new(Api::<Namespace>::all(client.clone()), wc.clone());
    let mut accounts = Informer::new(Api::<ServiceAccount>::all(client.clone()), wc.clone());
    let mut nodes = Informer::new(Api::<Node>::all(client.clone()), wc.clone());
    let mut services = Informer::new(Api::<Service>::all(client.clone()), wc.clone());
    let mut endpoints = Informer::new(Api::<Endpoints>::all(client.clone()), wc.clone());
    let mut slices = Informer::new(Api::<EndpointSlice>::all(client.clone()), wc.clone());
    let mut jobs = Informer::new(Api::<Job>::all(client.clone()), wc.clone());
    let mut cronjobs = Informer::new(Api::<CronJob>::all(client.clone()), wc.clone());
    let mut daemonsets = Informer::new(Api::<DaemonSet>::all(client.clone()), wc.clone());
    let mut revisions = Informer::new(Api::<ControllerRevision>::all(client.clone()), wc.clone());
    let mut budgets = Informer::new(Api::<PodDisruptionBudget>::all(client.clone()), wc.clone());
    let mut statefulsets = Informer::new(Api::<StatefulSet>::all(client.clone()), wc.clone());
    let mut claims = Informer::new(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        wc.clone(),
    );
    let mut volumes = Informer::new(Api::<PersistentVolume>::all(client.clone()), wc.clone());
    let classes = Informer::new(Api::<StorageClass>::all(client.clone()), wc.clone());
    let leases = Informer::new(
        Api::<Lease>::namespaced(client.clone(), NODE_LEASE_NAMESPACE),
        wc.clone(),
    );

    let rs_queue = WorkQueue::new();
    let d_queue = WorkQueue::new();
    let sa_queue = WorkQueue::new();
    let rs_ctl = ReplicaSetController::new(client.clone(), &mut replicasets, &mut pods, &rs_queue);
    let d_ctl = DeploymentController::new(
        client.clone(),
        &mut deployments,
        &mut replicasets,
        &mut pods,
        &d_queue,
    );
    let sa_ctl =
        ServiceAccountController::new(client.clone(), &mut namespaces, &mut accounts, &sa_queue);
    let ns_queue = WorkQueue::new();
    let ns_ctl = NamespaceController::new(client.clone(), &mut namespaces, &ns_queue);
    // The root CA publisher, when the server's CA is known.
    let ca_queue = WorkQueue::new();
    let mut ca_maps = Informer::new(
        Api::<ConfigMap>::all(client.clone()),
        crate::rootca::config_map_watch(wc.clone()),
    );
    let ca_ctl = config.root_ca_pem.clone().map(|ca| {
        crate::rootca::RootCaPublisher::new(
            client.clone(),
            ca,
            &mut namespaces,
            &mut ca_maps,
            &ca_queue,
        )
    });
    let node_ctl = NodeLifecycleController::new(
        client.clone(),
        nodes.store(),
        leases.store(),
        pods.store(),
        config.clone(),
    );
    let pod_gc = PodGcController::new(
        client.clone(),
        pods.store(),
        nodes.store(),
        config.terminated_pod_gc_threshold,
    );
    let job_queue = WorkQueue::new();
    let job_ctl = JobController::new(client.clone(), &mut jobs, &mut pods, &job_queue);
    let cj_queue = WorkQueue::new();
    let cj_ctl = CronJobController::new(
        client.clone(),
        &mut cronjobs,
        &mut jobs,
        &cj_queue,
        crate::clock::system_clock(),
    );
    let ds_queue = WorkQueue::new();
    let ds_ctl = DaemonSetController::new(
        client.clone(),
        &mut daemonsets,
        &mut pods,
        &mut nodes,
        &mut revisions,
        &ds_queue,
    );
    let pdb_queue = WorkQueue::new();
    let pdb_ctl = DisruptionController::new(
        client.clone(),
        DisruptionInformers {
            budgets: &mut budgets,
            pods: &mut pods,
            replicasets: &mut replicasets,
            deployments: &mut deployments,
            statefulsets: &mut statefulsets,
        },
        &pdb_queue,
    );
    let sts_queue = WorkQueue::new();
    let sts_ctl = StatefulSetController::new(
        client.clone(),
        &mut statefulsets,
        &mut pods,
        claims.store(),
        revisions.store(),
        &sts_queue,
    );
    let pv_queue = WorkQueue::new();
    let pv_ctl = VolumeController::new(
        client.clone(),
        &mut claims,
        &mut volumes,
        classes.store(),
        nodes.store(),
        &pv_queue,
    );
    let mut hpas = Informer::new(
        Api::<HorizontalPodAutoscaler>::all(client.clone()),
        wc.clone(),
    );
    let hpa_queue = WorkQueue::new();
    let hpa_ctl = HpaController::new(
        client.clone(),
        &mut hpas,
        &hpa_queue,
        crate::clock::system_clock(),
    );
    let hpa_synced = hpas.synced();
    let mut quotas = Informer::new(
        Api::<k8s_openapi::api::core::v1::ResourceQuota>::all(client.clone()),
        wc.clone(),
    );
    let quota_queue = WorkQueue::new();
    let quota_ctl = QuotaController::new(
        client.clone(),
        &mut quotas,
        &mut pods,
        &mut services,
        &mut claims,
        &quota_queue,
    );
    let quota_synced = quotas.synced();
    let gc = GarbageCollector::new(client.clone(), config.clone());
    let (ep_queue, eps_queue, ipam_queue) = (WorkQueue::new(), WorkQueue::new(), WorkQueue::new());
    let ep_ctl = EndpointsController::new(
        client.clone(),
        &mut services,
        &mut pods,
        &mut endpoints,
        &ep_queue,
    );
    let eps_ctl = EndpointSliceController::new(
        client.clone(),
        &mut services,
        &mut pods,
        &mut slices,
        &nodes,
        &eps_queue,
    );
    let ipam_ctl = NodeIpamController::new(client.clone(), &mut nodes, &ipam_queue, &config)?;
    let (svc_synced, ep_synced, eps_synced) =
        (services.synced(), endpoints.synced(), slices.synced());
    let (pods_synced_for_gc, nodes_synced_for_gc) = (pods.synced(), nodes.synced());

    let (pod_synced, rs_synced, d_synced) =
        (pods.synced(), replicasets.synced(), deployments.synced());
    let (pdb_synced, sts_synced) = (budgets.synced(), statefulsets.synced());
    let pdb_sts_synced = sts_synced.clone();
    let (ns_synced, sa_synced) = (namespaces.synced(), accounts.synced());
    let (node_synced, lease_synced) = (nodes.synced(), leases.synced());
    let job_synced = jobs.synced();
    let cj_synced = cronjobs.synced();
    let (ds_synced, rev_synced) = (daemonsets.synced(), revisions.synced());
    let claims_synced = claims.synced();
    let pv_synced = volumes.synced();

    let mut informers = JoinSet::new();
    informers.spawn(pods.run());
    informers.spawn(replicasets.run());
    informers.spawn(deployments.run());
    informers.spawn(namespaces.run());
    informers.spawn(accounts.run());
    let ca_synced = ca_maps.synced();
    if ca_ctl.is_some() {
        informers.spawn(ca_maps.run());
    }
    informers.spawn(nodes.run());
    informers.spawn(leases.run());
    informers.spawn(services.run());
    informers.spawn(endpoints.run());
    informers.spawn(slices.run());
    informers.spawn(jobs.run());
    informers.spawn(cronjobs.run());
    informers.spawn(daemonsets.run());
    informers.spawn(revisions.run());
    informers.spawn(budgets.run());
    informers.spawn(statefulsets.run());
    informers.spawn(claims.run());
    informers.spawn(volumes.run());
    informers.spawn(classes.run());
    informers.spawn(hpas.run());
    informers.spawn(quotas.run());

    let mut workers = JoinSet::new();
    let n = config.workers;
    {
        let (q, p, r) = (rs_queue.clone(), pod_synced.clone(), rs_synced.clone());
        workers.spawn(async move {
            tokio::join!(p.wait(), r.wait());
            run_workers(rs_ctl, q, n).await;
        });
    }
    {
        let (q, p, r, d) = (
            pdb_queue.clone(),
            pod_synced.clone(),
            rs_synced.clone(),
            d_synced.clone(),
        );
        workers.spawn(async move {
            tokio::join!(
                p.wait(),
                r.wait(),
                d.wait(),
                pdb_synced.wait(),
                pdb_sts_synced.wait()
            );
            run_workers(pdb_ctl, q, n).await;
        });
    }
    {
        let (q, p, r, d) = (d_queue.clone(), pod_synced.clone(), rs_synced, d_synced);
        workers.spawn(async move {
            tokio::join!(p.wait(), r.wait(), d.wait());
            run_workers(d_ctl, q, n).await;
        });
    }
    {
        let q = ns_queue.clone();
        let synced = ns_synced.clone();
        workers.spawn(async move {
            synced.wait().await;
            run_workers(ns_ctl, q, n).await;
        });
    }
    if let Some(ca_ctl) = ca_ctl {
        let (q, ns) = (ca_queue.clone(), ns_synced.clone());
        workers.spawn(async move {
            tokio::join!(ns.wait(), ca_synced.wait());
            run_workers(ca_ctl, q, 1).await;
        });
    }
    {
        let q = sa_queue.clone();
        workers.spawn(async move {
            tokio::join!(ns_synced.wait(), sa_synced.wait());
            run_workers(sa_ctl, q, 1).await;
        });
    }
    {
        let (q, p, sv) = (ep_queue.clone(), pod_synced.clone(), svc_synced.clone());
        workers.spawn(async move {
            tokio::join!(p.wait(), sv.wait(), ep_synced.wait());
            run_workers(ep_ctl, q, n).await;
        });
    }
    {
        let (q, p, sv, nd) = (
            eps_queue.clone(),
            pod_synced.clone(),
            svc_synced,
            node_synced.clone(),
        );
        workers.spawn(async move {
            tokio::join!(p.wait(), sv.wait(), eps_synced.wait(), nd.wait());
            run_workers(eps_ctl, q, n).await;
        });
    }
    {
        // One worker: CIDRs are handed out one node at a time.
        let (q, nd) = (ipam_queue.clone(), node_synced.clone());
        workers.spawn(async move {
            nd.wait().await;
            run_workers(ipam_ctl, q, 1).await;
        });
    }
    {
        let (q, p, js) = (job_queue.clone(), pod_synced.clone(), job_synced.clone());
        workers.spawn(async move {
            tokio::join!(p.wait(), js.wait());
            run_workers(job_ctl, q, n).await;
        });
    }
    {
        let q = cj_queue.clone();
        workers.spawn(async move {
            tokio::join!(job_synced.wait(), cj_synced.wait());
            run_workers(cj_ctl, q, 1).await;
        });
    }
    {
        let (q, p, nd) = (ds_queue.clone(), pod_synced.clone(), node_synced.clone());
        let rv = rev_synced.clone();
        workers.spawn(async move {
            tokio::join!(p.wait(), nd.wait(), ds_synced.wait(), rv.wait());
            run_workers(ds_ctl, q, n).await;
        });
    }
    {
        let (q, p, s, c) = (
            sts_queue.clone(),
            pod_synced.clone(),
            sts_synced,
            claims_synced.clone(),
        );
        workers.spawn(async move {
            tokio::join!(p.wait(), s.wait(), c.wait(), rev_synced.wait());
            run_workers(sts_ctl, q, n).await;
        });
    }
    {
        let (q, c, nd) = (pv_queue.clone(), claims_synced, node_synced.clone());
        let client = client.clone();
        workers.spawn(async move {
            // The default class first, so claims without a class get it.
            while let Err(e) = ensure_storage_class(&client).await {
                tracing::warn!(error = %e, "could not create the local-path StorageClass; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
            // Not the classes: an API server may not serve them, and the
            // local-path class is built in.
            tokio::join!(c.wait(), nd.wait(), pv_synced.wait());
            // One worker: a claim and its volume are never synced at once.
            run_workers(pv_ctl, q, 1).await;
        });
    }
    {
        let q = hpa_queue.clone();
        workers.spawn(async move {
            hpa_synced.wait().await;
            run_workers(hpa_ctl, q, n).await;
        });
    }
    {
        // Reconciles read live; the cache only says which quotas exist.
        let q = quota_queue.clone();
        workers.spawn(async move {
            quota_synced.wait().await;
            run_workers(quota_ctl, q, n).await;
        });
    }
    let mut loops = JoinSet::new();
    {
        let p = pod_synced;
        loops.spawn(async move {
            tokio::join!(p.wait(), node_synced.wait(), lease_synced.wait());
            node_ctl.run().await;
        });
    }
    loops.spawn(Arc::clone(&gc).run());
    {
        let (p, n) = (pods_synced_for_gc, nodes_synced_for_gc);
        loops.spawn(async move {
            tokio::join!(p.wait(), n.wait());
            pod_gc.run().await;
        });
    }

    tracing::info!("controllers started");
    shutdown.await;
    tracing::info!("controllers stopping");
    for q in [
        &rs_queue,
        &d_queue,
        &sa_queue,
        &ca_queue,
        &ns_queue,
        &ep_queue,
        &eps_queue,
        &ipam_queue,
        &job_queue,
        &cj_queue,
        &ds_queue,
        &pdb_queue,
        &sts_queue,
        &pv_queue,
        &hpa_queue,
        &quota_queue,
    ] {
        q.shut_down();
    }
    loops.abort_all();
    informers.abort_all();
    // Workers finish the reconcile they are in, then see the shut-down queue.
    let drain = async { while workers.join_next().await.is_some() {} };
    if tokio::time::timeout(std::time::Duration::from_secs(10), drain)
        .await
        .is_err()
    {
        workers.abort_all();
    }
    while loops.join_next().await.is_some() {}
    while informers.join_next().await.is_some() {}
    Ok(())
}
