//! Concurrent clients that drive a store cluster's etcd API while servers
//! fail, and record what they saw.
//!
//! Two kinds of client run until [`Workload::stop`]:
//! - *register clients* read, write and compare-and-swap a few shared keys
//!   (`/lin/k0`, …) and record every operation with its invocation and
//!   answer time: the history that [`crate::linearizability::check`] takes.
//!   A write or CAS that failed (error or timeout) may still have taken
//!   effect; it is recorded without an answer;
//! - *writers* put unique keys (`/acked/w<id>/<n>`) and keep the ones that
//!   were acknowledged: after the faults every server must hold all of
//!   them.
//!
//! Each client starts on one server and moves to the next on any error,
//! so a killed server costs one failed call per client.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skiff_store::etcd::pb::etcdserverpb as pb;
use tokio::task::JoinHandle;

use crate::linearizability::{Event, Op};
use crate::store_servers::kv_client;

/// Prefix of the writers' keys.
pub const ACKED_PREFIX: &str = "/acked/";
fn take<T>(m: &Mutex<Vec<T>>) -> Vec<T> {
    std::mem::take(&mut *m.lock().unwrap())
}

/// A register client's pause between operations: keeps the history a size
/// the checker searches quickly (a few thousand operations).
const REGISTER_PAUSE: Duration = Duration::from_millis(10);
/// A client's pause after a failed call, before it tries the next server.
const ERROR_PAUSE: Duration = Duration::from_millis(50);

/// An acknowledged write of a writer.
#[derive(Clone, Debug)]
pub struct Ack {
    /// The key written.
    pub key: String,
    /// When the call was made and when its answer came.
    pub call: Instant,
    /// When the answer came.
    pub ret: Instant,
}

#[derive(Default)]
struct Shared {
    history: Mutex<Vec<Event>>,
    acks: Mutex<Vec<Ack>>,
    errors: Mutex<Vec<String>>,
}

/// The running clients.
pub struct Workload {
    start: Instant,
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

/// What the clients recorded.
pub struct Recorded {
    /// The register clients' history (times in µs since the start).
    pub history: Vec<Event>,
    /// The writers' acknowledged writes.
    pub acks: Vec<Ack>,
    /// Every error a client saw (the server's message), in order.
    pub errors: Vec<String>,
}

impl Workload {
    /// Start `registers` register clients on `keys` keys and `writers`
    /// writers, spread over `endpoints` (etcd API URLs).
    pub fn start(endpoints: &[String], registers: usize, keys: usize, writers: usize) -> Workload {
        let w = Workload {
            start: Instant::now(),
            stop: Arc::new(AtomicBool::new(false)),
            shared: Arc::default(),
            tasks: Vec::new(),
        };
        let mut tasks = Vec::new();
        for id in 0..registers {
            let c = Client::new(id, endpoints, &w);
            tasks.push(tokio::spawn(c.run_register(keys)));
        }
        for id in 0..writers {
            let c = Client::new(id, endpoints, &w);
            tasks.push(tokio::spawn(c.run_writer()));
        }
        Workload { tasks, ..w }
    }

    /// Acknowledged writes so far.
    pub fn acks(&self) -> usize {
        self.shared.acks.lock().unwrap().len()
    }

    /// The first acknowledged write invoked after `t`.
    pub fn first_ack_called_after(&self, t: Instant) -> Option<Instant> {
        self.shared
            .acks
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.call >= t)
            .map(|a| a.ret)
            .min()
    }

    /// Stop the clients and wait for their last calls.
    pub async fn stop(self) -> Recorded {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            let _ = t.await;
        }
        Recorded {
            history: take(&self.shared.history),
            acks: take(&self.shared.acks),
            errors: take(&self.shared.errors),
        }
    }
}

struct Client {
    id: usize,
    start: Instant,
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    servers: Vec<pb::kv_client::KvClient<tonic::transport::Channel>>,
    at: usize,
    rng: u64,
}

impl Client {
    fn new(id: usize, endpoints: &[String], w: &Workload) -> Client {
        Client {
            id,
            start: w.start,
            stop: w.stop.clone(),
            shared: w.shared.clone(),
            servers: endpoints.iter().map(|e| kv_client(e)).collect(),
            at: id % endpoints.len(),
            rng: 0x9e37_79b9_7f4a_7c15 ^ (id as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d),
        }
    }

    /// xorshift64: reproducible enough, no dependency.
    fn rand(&mut self, n: usize) -> usize {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % n as u64) as usize
    }

    fn micros(&self, t: Instant) -> u64 {
        t.duration_since(self.start).as_micros() as u64
    }

    fn kv(&mut self) -> &mut pb::kv_client::KvClient<tonic::transport::Channel> {
        &mut self.servers[self.at]
    }

    async fn failed(&mut self, status: tonic::Status) {
        self.shared.errors.lock().unwrap().push(format!(
            "{:?}: {}",
            status.code(),
            status.message()
        ));
        self.at = (self.at + 1) % self.servers.len();
        tokio::time::sleep(ERROR_PAUSE).await;
    }

    async fn run_writer(mut self) {
        let mut n = 0u64;
        while !self.stop.load(Ordering::SeqCst) {
            let key = format!("{ACKED_PREFIX}w{}/{n:06}", self.id);
            n += 1;
            let call = Instant::now();
            let put = pb::PutRequest {
                key: key.clone().into_bytes(),
                value: b"v".to_vec(),
                ..Default::default()
            };
            match self.kv().put(put).await {
                Ok(_) => self.shared.acks.lock().unwrap().push(Ack {
                    key,
                    call,
                    ret: Instant::now(),
                }),
                Err(s) => self.failed(s).await,
            }
        }
    }

    async fn run_register(mut self, keys: usize) {
        let mut n = 0u64;
        // The value this client last saw per key: what its CASes expect.
        let mut seen: Vec<Option<String>> = vec![None; keys];
        while !self.stop.load(Ordering::SeqCst) {
            let k = self.rand(keys);
            let key = format!("/lin/k{k}");
            let call = Instant::now();
            let (op, result) = match self.rand(3) {
                0 => {
                    let r = self
                        .kv()
                        .range(pb::RangeRequest {
                            key: key.clone().into_bytes(),
                            ..Default::default()
                        })
                        .await;
                    match r {
                        Ok(r) => {
                            let v = r
                                .into_inner()
                                .kvs
                                .first()
                                .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
                            seen[k] = v.clone();
                            (Op::Read(v), Ok(()))
                        }
                        Err(s) => (Op::Read(None), Err(s)),
                    }
                }
                1 => {
                    let v = format!("c{}-{n}", self.id);
                    n += 1;
                    let r = self
                        .kv()
                        .put(pb::PutRequest {
                            key: key.clone().into_bytes(),
                            value: v.clone().into_bytes(),
                            ..Default::default()
                        })
                        .await;
                    (Op::Write(v), r.map(|_| ()))
                }
                _ => {
                    let new = format!("c{}-{n}", self.id);
                    n += 1;
                    let expect = seen[k].clone();
                    let r = self.kv().txn(cas(&key, expect.as_deref(), &new)).await;
                    let ok = r.as_ref().ok().map(|r| r.get_ref().succeeded);
                    (Op::Cas { expect, new, ok }, r.map(|_| ()))
                }
            };
            let ret = result.as_ref().ok().map(|_| self.micros(Instant::now()));
            self.shared.history.lock().unwrap().push(Event {
                client: self.id,
                key,
                op,
                call: self.micros(call),
                ret,
            });
            match result {
                Ok(()) => tokio::time::sleep(REGISTER_PAUSE).await,
                Err(s) => self.failed(s).await,
            }
        }
    }
}

/// A Txn that puts `new` at `key` if its value is `expect` (`None`: the
/// key does not exist, etcd's `create_revision == 0`).
pub fn cas(key: &str, expect: Option<&str>, new: &str) -> pb::TxnRequest {
    use pb::compare::{CompareResult, CompareTarget, TargetUnion};
    let (target, union) = match expect {
        Some(v) => (
            CompareTarget::Value,
            TargetUnion::Value(v.as_bytes().to_vec()),
        ),
        None => (CompareTarget::Create, TargetUnion::CreateRevision(0)),
    };
    pb::TxnRequest {
        compare: vec![pb::Compare {
            result: CompareResult::Equal as i32,
            target: target as i32,
            key: key.as_bytes().to_vec(),
            target_union: Some(union),
            ..Default::default()
        }],
        success: vec![pb::RequestOp {
            request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                key: key.as_bytes().to_vec(),
                value: new.as_bytes().to_vec(),
                ..Default::default()
            })),
        }],
        failure: vec![],
    }
}
