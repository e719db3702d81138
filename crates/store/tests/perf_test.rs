//! Rough throughput numbers (run by hand:
//! `cargo test -p skiff-store --release --test perf_test -- --ignored --nocapture`).

mod common;

use std::time::Instant;

use common::*;
use skiff_store::Kv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn put_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path()).await;
    let value = "x".repeat(1024);

    const SEQ: usize = 2_000;
    let t = Instant::now();
    for i in 0..SEQ {
        s.put(put_req(&format!("/seq/{i}"), &value)).await.unwrap();
    }
    let seq = SEQ as f64 / t.elapsed().as_secs_f64();

    const TASKS: usize = 64;
    const PER_TASK: usize = 200;
    let t = Instant::now();
    let mut handles = Vec::new();
    for k in 0..TASKS {
        let s = s.clone();
        let value = value.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..PER_TASK {
                s.put(put_req(&format!("/con/{k}/{i}"), &value))
                    .await
                    .unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let con = (TASKS * PER_TASK) as f64 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    for i in 0..SEQ {
        s.range(get_req(&format!("/seq/{i}"))).await.unwrap();
    }
    let reads = SEQ as f64 / t.elapsed().as_secs_f64();
    println!("sequential puts/s: {seq:.0}; 64-task puts/s: {con:.0}; sequential linearizable gets/s: {reads:.0} (1 KiB values)");
    s.shutdown().await;
}
