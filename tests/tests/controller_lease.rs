//! Controllers gated on a Lease with several servers (issues #3, #7):
//! three `skiff server` processes with their controllers on, one
//! replicated store. Exactly one holds `kube-system/kube-controller-manager`
//! and runs the controllers; after it is killed (-9) another takes the
//! Lease over and starts its controllers, while the others keep serving;
//! a holder shut down cleanly releases the Lease, so a standby takes it
//! before the 15 s lease would run out.
//!
//! The Lease is read through the store's etcd API; a holder identity is
//! `<hostname>_<pid>`, which names the server. Ports 23900-23999 only.
//! The takeover time is printed as a `figure:` line (`cargo test -p
//! skiff-tests --test controller_lease -- --nocapture | grep figure:`).

use std::time::{Duration, Instant};

use anyhow::bail;
use skiff_store::etcd::pb::etcdserverpb as pb;
use skiff_tests::store_servers::{StoreServer, START_TIMEOUT};

const LEASE_KEY: &str = "/registry/coordination.k8s.io/leases/kube-system/kube-controller-manager";
/// The Lease lasts 15 s and is retried every 2 s: a takeover needs about
/// 17 s; generous for a loaded machine.
const TAKEOVER_BOUND: Duration = Duration::from_secs(90);
const STARTED: &str = "holding the controller lease: starting the controllers";

/// The Lease's holderIdentity, read through `s`'s etcd API.
async fn holder(s: &StoreServer) -> anyhow::Result<Option<String>> {
    let mut kv = s.kv();
    let resp = kv
        .range(pb::RangeRequest {
            key: LEASE_KEY.as_bytes().to_vec(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let Some(kv) = resp.kvs.first() else {
        return Ok(None);
    };
    let lease: serde_json::Value = serde_json::from_slice(&kv.value)?;
    Ok(lease
        .pointer("/spec/holderIdentity")
        .and_then(|h| h.as_str())
        .map(str::to_string))
}

/// Index of the running server whose pid the holder identity names.
fn holder_index(servers: &[StoreServer], identity: &str) -> Option<usize> {
    servers.iter().position(|s| {
        s.pid()
            .is_some_and(|p| identity.ends_with(&format!("_{p}")))
    })
}

/// Waits until the Lease names a running server other than `not`.
async fn wait_holder(
    servers: &[StoreServer],
    via: usize,
    not: Option<usize>,
) -> anyhow::Result<usize> {
    let deadline = Instant::now() + TAKEOVER_BOUND;
    loop {
        if let Some(id) = holder(&servers[via]).await.ok().flatten() {
            if let Some(i) = holder_index(servers, &id).filter(|i| Some(*i) != not) {
                return Ok(i);
            }
        }
        if Instant::now() > deadline {
            let logs: String = servers
                .iter()
                .map(|s| format!("--- {} ---\n{}\n", s.name, s.log_tail(20)))
                .collect();
            bail!("no running server holds the controller lease\n{logs}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn started_count(s: &StoreServer) -> usize {
    s.log().matches(STARTED).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_runs_the_controllers_and_another_takes_over() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("skiff-ctl-lease-")
        .tempdir_in("/var/tmp")?;
    let mut servers = Vec::new();
    for i in 0..3u16 {
        let base = 23910 + i * 10;
        servers.push(
            StoreServer::new(dir.path(), &format!("s{}", i + 1), None)?
                .with_ports(base, base + 1, base + 2)
                .with_controllers(),
        );
    }
    servers[0].start(None)?;
    servers[0].wait_ready(START_TIMEOUT).await?;
    let (peer, token) = (servers[0].peer_url(), servers[0].token()?);
    for s in &mut servers[1..] {
        s.start(Some((&peer, &token)))?;
    }
    for s in &servers[1..] {
        s.wait_ready(START_TIMEOUT).await?;
    }

    let first = wait_holder(&servers, 0, None).await?;
    // Give the standbys several retry periods to (wrongly) start theirs.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let starts: Vec<usize> = servers.iter().map(started_count).collect();
    assert_eq!(
        starts[first], 1,
        "the holder started its controllers once: {starts:?}"
    );
    assert_eq!(
        starts.iter().sum::<usize>(),
        1,
        "only the holder runs controllers: {starts:?}"
    );
    assert_eq!(
        holder_index(
            &servers,
            &holder(&servers[first]).await?.unwrap_or_default()
        ),
        Some(first)
    );

    let killed_at = Instant::now();
    servers[first].kill();
    let via = (first + 1) % 3;
    let next = wait_holder(&servers, via, Some(first)).await?;
    let took = killed_at.elapsed();
    let deadline = Instant::now() + TAKEOVER_BOUND;
    while started_count(&servers[next]) == 0 {
        if Instant::now() > deadline {
            bail!(
                "s{} holds the lease but started no controllers:\n{}",
                next + 1,
                servers[next].log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let other = 3 - first - next;
    assert_eq!(
        started_count(&servers[other]),
        0,
        "the third server stayed a standby"
    );
    println!(
        "figure: controller lease taken over by s{} {took:?} after kill -9 of s{} (lease 15 s, retry 2 s)",
        next + 1,
        first + 1
    );

    // The killed server comes back as a standby; then the holder shuts
    // down cleanly and releases the Lease, so a standby takes it at once
    // rather than after the 15 s.
    servers[first].start(None)?;
    servers[first].wait_ready(START_TIMEOUT).await?;
    let stopped_at = Instant::now();
    servers[next].stop();
    let stop_took = stopped_at.elapsed();
    let last = wait_holder(&servers, other, Some(next)).await?;
    let handover = stopped_at.elapsed();
    println!(
        "figure: clean shutdown of holder s{} ({stop_took:?}): s{} holds the lease {handover:?} after the SIGTERM",
        next + 1,
        last + 1
    );
    assert!(
        handover < Duration::from_secs(15),
        "a released lease was taken over only after {handover:?}"
    );
    drop(servers);
    Ok(())
}
