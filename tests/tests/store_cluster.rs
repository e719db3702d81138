//! The replicated store as real `skiff server` processes on loopback,
//! driven through each server's etcd v3 gRPC API (issue #3): kill -9 of the
//! leader under concurrent writes, restart and catch-up, a wiped server
//! rejoining by snapshot, a minority that cannot commit, five servers and
//! member removal, and servers that refuse bad data directories. The
//! register clients' history under these faults is checked for
//! linearizability (`skiff_tests::linearizability`).
//!
//! Timings are printed as `figure: …` lines (`cargo test -p skiff-tests
//! --test store_cluster -- --nocapture | grep figure:`) and asserted only
//! against generous bounds. The tests take turns (one cluster at a time),
//! so that a 2-core machine measures elections, not its own overload.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use skiff_store::etcd::pb::etcdserverpb as pb;
use skiff_tests::kv_history::{Workload, ACKED_PREFIX};
use skiff_tests::linearizability;
use skiff_tests::store_servers::{StoreCluster, StoreServer, START_TIMEOUT};
use tonic::Code;

/// One cluster at a time (see the module doc).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The goal for a new leader after the old one dies.
const ELECTION_GOAL: Duration = Duration::from_secs(3);
/// What the tests assert: generous, for a loaded machine.
const ELECTION_BOUND: Duration = Duration::from_secs(20);
/// How long a server may take to hold everything after a restart.
const CATCH_UP_BOUND: Duration = Duration::from_secs(60);

fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

fn put(key: &str, value: &[u8]) -> pb::PutRequest {
    pb::PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.to_vec(),
        ..Default::default()
    }
}

/// The keys under `prefix` in `s`'s own applied state (a serializable
/// read: no leader involved).
async fn local_keys(s: &StoreServer, prefix: &str) -> anyhow::Result<BTreeSet<String>> {
    let r = s
        .kv()
        .range(pb::RangeRequest {
            key: prefix.as_bytes().to_vec(),
            range_end: prefix_end(prefix),
            keys_only: true,
            serializable: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(r.kvs
        .into_iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect())
}

/// Wait until `s` holds every key of `want` (under `prefix`); how long
/// that took.
async fn wait_holds(
    s: &StoreServer,
    prefix: &str,
    want: &BTreeSet<String>,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let missing: Vec<String> = match local_keys(s, prefix).await {
            Ok(have) => want.difference(&have).cloned().collect(),
            Err(e) => vec![format!("(read failed: {e})")],
        };
        if missing.is_empty() {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            bail!(
                "{} lacks {} acknowledged keys after {timeout:?}, e.g. {:?}\n{}",
                s.name,
                missing.len(),
                &missing[..missing.len().min(5)],
                s.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A linearizable read of one key through `s`.
async fn get(s: &StoreServer, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
    let r = s
        .kv()
        .range(pb::RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        })
        .await
        .with_context(|| format!("reading {key} through {}", s.name))?;
    Ok(r.into_inner().kvs.into_iter().next().map(|kv| kv.value))
}

/// `skiff server members` through server `i`: (node id, voter) pairs.
fn members(c: &StoreCluster, i: usize) -> anyhow::Result<Vec<(u64, bool)>> {
    let out = c.server_cmd(i, &["members"])?;
    let mut list = Vec::new();
    for line in out.lines().skip(1) {
        let mut cols = line.split_whitespace();
        let (Some(id), Some(role)) = (cols.next(), cols.next()) else {
            continue;
        };
        list.push((id.parse()?, role == "voter"));
    }
    Ok(list)
}

/// Wait until server `i` lists `n` members; the list.
async fn wait_members(c: &StoreCluster, i: usize, n: usize) -> anyhow::Result<Vec<(u64, bool)>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = members(c, i)?;
        if m.len() == n || Instant::now() > deadline {
            return Ok(m);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Stop the clients; check that every server holds every acknowledged
/// write (how long each took to), and that the history is linearizable.
async fn finish(
    c: &StoreCluster,
    w: Workload,
) -> anyhow::Result<(skiff_tests::kv_history::Recorded, Vec<Duration>)> {
    let rec = w.stop().await;
    let acked: BTreeSet<String> = rec.acks.iter().map(|a| a.key.clone()).collect();
    let mut took = Vec::new();
    for s in &c.servers {
        took.push(wait_holds(s, ACKED_PREFIX, &acked, CATCH_UP_BOUND).await?);
    }
    let mut kinds: std::collections::BTreeMap<&str, usize> = Default::default();
    for e in &rec.errors {
        *kinds.entry(e.as_str()).or_default() += 1;
    }
    println!(
        "figure: {} acknowledged writes on every server; errors seen by clients: {kinds:?}",
        acked.len()
    );
    check_history(&rec);
    Ok((rec, took))
}

fn check_history(rec: &skiff_tests::kv_history::Recorded) {
    let unknown = rec.history.iter().filter(|e| e.ret.is_none()).count();
    let keys: BTreeSet<&str> = rec.history.iter().map(|e| e.key.as_str()).collect();
    let start = Instant::now();
    let verdict = linearizability::check(&rec.history);
    println!(
        "figure: linearizability check of {} operations on {} keys ({unknown} without an answer) took {:?}",
        rec.history.len(),
        keys.len(),
        start.elapsed()
    );
    if let Err(history) = verdict {
        panic!("{history}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_leader_under_writes_loses_no_acknowledged_write() -> anyhow::Result<()> {
    let _one_at_a_time = SERIAL.lock().await;
    let mut c = StoreCluster::start(3, None).await?;
    let endpoints: Vec<String> = c.servers.iter().map(|s| s.endpoint()).collect();
    let w = Workload::start(&endpoints, 6, 4, 6);
    let warm = Instant::now();
    while w.acks() < 200 && warm.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let old = c.wait_leader(Duration::from_secs(30)).await?;
    let acks_before = w.acks();

    let killed_at = Instant::now();
    c.servers[old].kill();
    let new = c.wait_leader(ELECTION_BOUND).await?;
    let election = killed_at.elapsed();
    // Writes go on under the new leader.
    let deadline = Instant::now() + ELECTION_BOUND;
    let first_write = loop {
        if let Some(t) = w.first_ack_called_after(killed_at) {
            break t.duration_since(killed_at);
        }
        if Instant::now() > deadline {
            bail!("no write acknowledged after the kill\n{}", c.logs(30));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The old leader comes back (no --join) while the writes go on.
    let restarted_at = Instant::now();
    c.servers[old].start(None)?;
    c.servers[old].wait_ready(START_TIMEOUT).await?;
    let ready = restarted_at.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rec, took) = finish(&c, w).await?;
    println!(
        "figure: kill -9 of the leader: new leader (s{} → s{}) agreed after {election:?} (goal {ELECTION_GOAL:?}), first write acknowledged {first_write:?} after the kill",
        old + 1,
        new + 1
    );
    println!(
        "figure: old leader restarted: serving after {ready:?}, held every acknowledged write {:?} later; {} writes acknowledged ({acks_before} before the kill)",
        took[old],
        rec.acks.len(),
    );
    assert!(election < ELECTION_BOUND, "election took {election:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_server_rejoins_by_snapshot() -> anyhow::Result<()> {
    let _one_at_a_time = SERIAL.lock().await;
    // A snapshot every 10 entries: the leader's log is purged long before
    // the wiped server comes back, so only a snapshot can catch it up.
    let mut c = StoreCluster::start(3, Some(10)).await?;
    let mut want = BTreeSet::new();
    let mut kv = c.servers[0].kv();
    for i in 0..150 {
        let key = format!("/snap/{i:04}");
        kv.put(put(&key, b"before")).await?;
        want.insert(key);
    }
    let endpoints: Vec<String> = c.servers.iter().map(|s| s.endpoint()).collect();
    let w = Workload::start(&endpoints, 4, 4, 2);
    let leader = c.wait_leader(Duration::from_secs(30)).await?;
    let victim = (leader + 1) % 3;
    let old_id = c.servers[victim]
        .node_id()
        .await
        .context("victim's node id")?;
    c.servers[victim].kill();
    c.servers[victim].wipe()?;
    let mut kv = c.servers[leader].kv();
    for i in 150..300 {
        let key = format!("/snap/{i:04}");
        kv.put(put(&key, b"while it was gone")).await?;
        want.insert(key);
    }

    let token = c.servers[leader].token()?;
    let peer = c.servers[leader].peer_url();
    let started = Instant::now();
    c.servers[victim].start(Some((&peer, &token)))?;
    c.servers[victim].wait_ready(START_TIMEOUT).await?;
    let ready = started.elapsed();
    let caught_up = wait_holds(&c.servers[victim], "/snap/", &want, CATCH_UP_BOUND).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    finish(&c, w).await?;
    println!(
        "figure: wiped server rejoined: serving after {ready:?}, held all {} keys {caught_up:?} later",
        want.len()
    );
    let log = c.servers[victim].log();
    assert!(
        log.contains("installed a snapshot"),
        "the rejoined server did not install a snapshot:\n{}",
        c.servers[victim].log_tail(40)
    );

    // It replaced its old identity: three voters, the old id gone.
    let new_id = c.servers[victim].node_id().await.context("new node id")?;
    assert_ne!(new_id, old_id);
    let m = members(&c, leader)?;
    let ids: BTreeSet<u64> = m.iter().map(|(id, _)| *id).collect();
    assert_eq!(m.len(), 3, "{m:?}");
    assert!(m.iter().all(|(_, voter)| *voter), "{m:?}");
    assert!(ids.contains(&new_id) && !ids.contains(&old_id), "{m:?}");

    // And it takes part: a write through it is seen by every server.
    c.servers[victim].kv().put(put("/snap/after", b"x")).await?;
    for s in &c.servers {
        assert_eq!(
            get(s, "/snap/after").await?,
            Some(b"x".to_vec()),
            "{}",
            s.name
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_minority_cannot_commit() -> anyhow::Result<()> {
    let _one_at_a_time = SERIAL.lock().await;
    let mut c = StoreCluster::start(3, None).await?;
    c.servers[0].kv().put(put("/m/before", b"1")).await?;
    let endpoints: Vec<String> = c.servers.iter().map(|s| s.endpoint()).collect();
    let w = Workload::start(&endpoints, 4, 4, 2);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let leader = c.wait_leader(Duration::from_secs(30)).await?;
    let (f1, f2) = ((leader + 1) % 3, (leader + 2) % 3);

    // A follower left alone: nothing is proposed, the write fails.
    c.servers[leader].kill();
    c.servers[f1].kill();
    let t = Instant::now();
    let err = c.servers[f2]
        .kv()
        .put(put("/m/lost", b"x"))
        .await
        .expect_err("a lone follower acknowledged a write");
    println!(
        "figure: write on a lone follower failed after {:?}: {:?} {}",
        t.elapsed(),
        err.code(),
        err.message()
    );
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("no leader"), "{err:?}");
    let read = c.servers[f2]
        .kv()
        .range(pb::RangeRequest {
            key: b"/m/before".to_vec(),
            ..Default::default()
        })
        .await;
    assert!(read.is_err(), "a linearizable read without a quorum");

    c.servers[leader].start(None)?;
    c.servers[f1].start(None)?;
    for s in &c.servers {
        s.wait_ready(START_TIMEOUT).await?;
    }
    for s in &c.servers {
        assert_eq!(get(s, "/m/lost").await?, None, "{}", s.name);
        assert_eq!(
            get(s, "/m/before").await?,
            Some(b"1".to_vec()),
            "{}",
            s.name
        );
    }

    // A leader left alone: it cannot commit either, and says that the
    // outcome is unknown (it has the entry in its log).
    let leader = c.wait_leader(Duration::from_secs(30)).await?;
    let (f1, f2) = ((leader + 1) % 3, (leader + 2) % 3);
    c.servers[f1].kill();
    c.servers[f2].kill();
    let t = Instant::now();
    let err = c.servers[leader]
        .kv()
        .put(put("/m/maybe", b"x"))
        .await
        .expect_err("a lone leader acknowledged a write");
    println!(
        "figure: write on a lone leader failed after {:?}: {:?} {}",
        t.elapsed(),
        err.code(),
        err.message()
    );
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("timed out"), "{err:?}");
    c.servers[f1].start(None)?;
    c.servers[f2].start(None)?;
    for s in &c.servers {
        s.wait_ready(START_TIMEOUT).await?;
    }
    // Whoever leads now commits a write: the lone leader's entry is
    // committed before it, or was truncated; either way every read agrees.
    c.servers[0].kv().put(put("/m/sync", b"1")).await?;
    let after: Vec<Option<Vec<u8>>> = [
        get(&c.servers[0], "/m/maybe").await?,
        get(&c.servers[1], "/m/maybe").await?,
        get(&c.servers[2], "/m/maybe").await?,
    ]
    .into();
    assert!(
        after.iter().all(|v| *v == after[0]) && after[0].as_deref().is_none_or(|v| v == b"x"),
        "servers disagree on the unacknowledged write: {after:?}"
    );
    println!(
        "figure: the lone leader's unacknowledged write was {} after the others returned",
        if after[0].is_some() {
            "applied"
        } else {
            "dropped"
        }
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    finish(&c, w).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_servers_and_member_removal() -> anyhow::Result<()> {
    let _one_at_a_time = SERIAL.lock().await;
    let started = Instant::now();
    let mut c = StoreCluster::start(5, None).await?;
    println!("figure: five servers serving after {:?}", started.elapsed());
    let five: BTreeSet<String> = (0..5).map(|i| format!("/five/{i}")).collect();
    for (i, s) in c.servers.iter().enumerate() {
        s.kv().put(put(&format!("/five/{i}"), b"v")).await?;
    }
    for s in &c.servers {
        for k in &five {
            assert!(get(s, k).await?.is_some(), "{k} through {}", s.name);
        }
    }
    let m = members(&c, 0)?;
    assert_eq!(m.iter().filter(|(_, voter)| *voter).count(), 5, "{m:?}");

    // Remove a follower (not s1, whose data directory the commands use).
    let leader = c.wait_leader(Duration::from_secs(30)).await?;
    let victim = (1..5).find(|i| *i != leader).context("a follower")?;
    let id = c.servers[victim].node_id().await.context("node id")?;
    c.server_cmd(0, &["remove-member", &id.to_string()])?;
    c.servers[victim].kill();
    let m = wait_members(&c, 0, 4).await?;
    assert_eq!(m.len(), 4, "{m:?}");
    assert!(m.iter().all(|(i, _)| *i != id), "{m:?}");

    // Remove the leader: the other three elect one of them.
    let leader = c.wait_leader(Duration::from_secs(30)).await?;
    let via = (0..5)
        .find(|i| *i != leader && c.servers[*i].is_running())
        .context("a running follower")?;
    let id = c.servers[leader].node_id().await.context("node id")?;
    c.server_cmd(via, &["remove-member", &id.to_string()])?;
    let removed_at = Instant::now();
    c.servers[leader].kill();
    let new = c.wait_leader(ELECTION_BOUND).await?;
    println!(
        "figure: leader removed; s{} leads {:?} after the removal",
        new + 1,
        removed_at.elapsed()
    );
    let m = wait_members(&c, via, 3).await?;
    assert_eq!(m.len(), 3, "{m:?}");
    for s in c.servers.iter().filter(|s| s.is_running()) {
        let key = format!("/five/after/{}", s.name);
        s.kv().put(put(&key, b"v")).await?;
        for r in c.servers.iter().filter(|s| s.is_running()) {
            assert!(get(r, &key).await?.is_some(), "{key} through {}", r.name);
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_over_the_limit_are_refused_through_any_server() -> anyhow::Result<()> {
    let _one_at_a_time = SERIAL.lock().await;
    let c = StoreCluster::start(3, None).await?;
    let leader = c.wait_leader(Duration::from_secs(30)).await?;
    let follower = &c.servers[(leader + 1) % 3];
    let limit = skiff_store::MAX_VALUE_BYTES;
    let err = follower
        .kv()
        .put(put("/big", &vec![b'x'; limit + 1]))
        .await
        .expect_err("a value over 1.5 MiB was accepted");
    // etcd's own words for it (etcd counts the key too).
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(err.message(), "etcdserver: request is too large", "{err:?}");
    // Exactly the limit goes through the follower, the leader and back.
    let fits = limit - "/big".len();
    if let Err(e) = follower.kv().put(put("/big", &vec![b'x'; fits])).await {
        bail!("{e:?}\n{}", c.logs(30));
    }
    for s in &c.servers {
        assert_eq!(get(s, "/big").await?.map(|v| v.len()), Some(fits));
    }
    Ok(())
}

/// `skiff server` runs with glibc's larger per-thread malloc cache: it set
/// `GLIBC_TUNABLES` and executed itself again (same pid) before serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_with_a_larger_malloc_cache() -> anyhow::Result<()> {
    let _one_at_a_time = SERIAL.lock().await;
    let c = StoreCluster::start(1, None).await?;
    c.wait_leader(Duration::from_secs(30)).await?;
    let pid = c.servers[0].pid().context("server not running")?;
    let environ = std::fs::read(format!("/proc/{pid}/environ"))?;
    // `TCACHE_COUNT` in crates/skiff/src/memory.rs.
    let wanted = "GLIBC_TUNABLES=glibc.malloc.tcache_count=64";
    assert!(
        environ.split(|b| *b == 0).any(|v| v == wanted.as_bytes()),
        "{wanted} not in the server's environment"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_or_damaged_data_dir_stops_the_server() -> anyhow::Result<()> {
    let _one_at_a_time = SERIAL.lock().await;
    let root = tempfile::Builder::new()
        .prefix("skiff-store-baddir-")
        .tempdir_in("/var/tmp")?;

    // Someone else's files where the store should be.
    let mut s = StoreServer::new(root.path(), "foreign", None)?;
    std::fs::create_dir_all(s.data_dir.join("store"))?;
    std::fs::write(s.data_dir.join("store/member"), b"an etcd data dir?")?;
    s.start(None)?;
    let status = s.wait_exit(Duration::from_secs(60));
    assert!(
        status.is_some_and(|st| !st.success()),
        "{status:?}\n{}",
        s.log_tail(20)
    );
    let log = s.log();
    assert!(log.contains("skiff-store.json"), "{log}");
    assert!(!s.data_dir.join("store/raft-log").exists(), "wrote over it");

    // A damaged raft log (a flipped byte in the first record).
    let mut c = StoreCluster::start(1, None).await?;
    let mut kv = c.servers[0].kv();
    for i in 0..20 {
        kv.put(put(&format!("/d/{i}"), b"v")).await?;
    }
    let s = &mut c.servers[0];
    s.kill();
    let log_file = s.data_dir.join("store/raft-log");
    let mut data = std::fs::read(&log_file)?;
    data[12] ^= 0xff;
    std::fs::write(&log_file, &data)?;
    s.start(None)?;
    let status = s.wait_exit(Duration::from_secs(60));
    assert!(
        status.is_some_and(|st| !st.success()),
        "{status:?}\n{}",
        s.log_tail(20)
    );
    let log = s.log();
    assert!(
        log.contains("Error: opening the store") && log.contains("raft-log: damaged"),
        "{log}"
    );
    Ok(())
}
