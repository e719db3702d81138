//! Tests of the follower's batching: which queued requests share a call,
//! and how one call's outcome is split into each request's answer.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::*;
use crate::kv::{PutRequest, PutResponse};
use crate::peer::WireError;
use crate::raft_types::ApplyError;

/// A queued request in the pure tests: (leader, id, bytes).
type Q = (&'static str, usize, usize);

fn cut(queue: &mut VecDeque<Q>) -> Vec<usize> {
    next_batch(queue, |q| q.0, |q| q.2)
        .into_iter()
        .map(|q| q.1)
        .collect()
}

#[test]
fn a_batch_takes_everything_queued_in_order_up_to_the_command_cap() {
    let mut queue: VecDeque<Q> = (0..MAX_BATCH_COMMANDS + 44).map(|i| ("a", i, 10)).collect();
    assert_eq!(cut(&mut queue), (0..MAX_BATCH_COMMANDS).collect::<Vec<_>>());
    assert_eq!(
        cut(&mut queue),
        (MAX_BATCH_COMMANDS..MAX_BATCH_COMMANDS + 44).collect::<Vec<_>>()
    );
    assert!(cut(&mut queue).is_empty());
    assert!(queue.is_empty());
}

#[test]
fn a_batch_stops_at_the_byte_cap_but_always_sends_one() {
    let big = 1_572_864; // 1.5 MiB, the largest value
    let mut queue: VecDeque<Q> = (0..5).map(|i| ("a", i, big)).collect();
    assert_eq!(cut(&mut queue), [0, 1]);
    assert_eq!(cut(&mut queue), [2, 3]);
    assert_eq!(cut(&mut queue), [4]);

    let mut queue: VecDeque<Q> = VecDeque::from([("a", 0, MAX_BATCH_BYTES * 2), ("a", 1, 1)]);
    assert_eq!(cut(&mut queue), [0], "an oversized request goes alone");
    assert_eq!(cut(&mut queue), [1]);
}

#[test]
fn requests_for_another_leader_wait_for_their_own_call_in_order() {
    let mut queue: VecDeque<Q> = VecDeque::from([
        ("a", 0, 1),
        ("b", 1, 1),
        ("a", 2, 1),
        ("b", 3, 1),
        ("a", 4, 1),
    ]);
    assert_eq!(cut(&mut queue), [0, 2, 4]);
    assert_eq!(cut(&mut queue), [1, 3]);
    assert!(queue.is_empty());
}

#[test]
fn a_full_batch_leaves_the_rest_in_order() {
    let mut queue: VecDeque<Q> = (0..MAX_BATCH_COMMANDS)
        .map(|i| ("a", i, 1))
        .chain([("b", 1000, 1), ("a", 1001, 1), ("b", 1002, 1)])
        .collect();
    assert_eq!(cut(&mut queue).len(), MAX_BATCH_COMMANDS);
    assert_eq!(cut(&mut queue), [1000, 1002]);
    assert_eq!(cut(&mut queue), [1001]);
}

#[test]
fn only_requests_past_their_deadline_expire() {
    let now = Instant::now();
    let later = now + Duration::from_secs(5);
    let earlier = now - Duration::from_millis(1);
    let mut queue = VecDeque::from([(0, later), (1, earlier), (2, now), (3, earlier)]);
    let expired: Vec<_> = take_expired(&mut queue, |q| q.1, now)
        .into_iter()
        .map(|q| q.0)
        .collect();
    assert_eq!(expired, [1, 3]);
    assert_eq!(queue.iter().map(|q| q.0).collect::<Vec<_>>(), [0, 2]);
    assert!(take_expired(&mut queue, |q| q.1, now).is_empty());
}

fn put(revision: i64) -> CommandResponse {
    CommandResponse::Put(PutResponse {
        revision,
        prev_kv: None,
    })
}

/// One word per answer: "ok N" (a put's revision), "retry" (not
/// proposed), or the final error's kind.
fn summary(answers: Vec<<Writes as Forward>::Answer>) -> Vec<String> {
    answers
        .into_iter()
        .map(|a| match a {
            Ok(CommandResponse::Put(p)) => format!("ok {}", p.revision),
            Ok(CommandResponse::Failed(e)) => format!("refused: {e}"),
            Ok(other) => format!("ok {other:?}"),
            Err(WriteFailure::NotProposed(StoreError::NoLeader(_))) => "retry".into(),
            Err(WriteFailure::NotProposed(e)) => format!("retry (not NoLeader: {e})"),
            Err(WriteFailure::Final(StoreError::Timeout(_))) => "timeout".into(),
            Err(WriteFailure::Final(StoreError::InvalidRequest(_))) => "invalid".into(),
            Err(WriteFailure::Final(StoreError::Storage(_))) => "storage".into(),
            Err(WriteFailure::Final(e)) => format!("final: {e}"),
        })
        .collect()
}

#[test]
fn each_forwarded_write_gets_its_own_answer_in_order() {
    let reply = Ok(PeerReply::Write(vec![
        Ok(put(7)),
        Ok(CommandResponse::Failed(ApplyError::InvalidRequest(
            "txn refused".into(),
        ))),
        Err(WireError::NoLeader("leadership moved".into())),
        Err(WireError::Invalid("value too large".into())),
        Err(WireError::Timeout("no quorum".into())),
        Ok(put(8)),
    ]));
    assert_eq!(
        summary(Writes::answers(reply, 6)),
        [
            "ok 7",
            "refused: txn refused",
            "retry",
            "invalid",
            "timeout",
            "ok 8"
        ]
    );
}

#[test]
fn a_failed_call_fails_every_write_of_it_by_whether_it_was_sent() {
    let cases: Vec<(Result<PeerReply, CallError>, &str)> = vec![
        // The leader refused the whole call before proposing anything.
        (
            Ok(PeerReply::Failed(WireError::NoLeader("stopping".into()))),
            "retry",
        ),
        // Nothing was sent.
        (Err(CallError::Unreachable("refused".into())), "retry"),
        // Sent, then the connection broke: the writes may be applied.
        (Err(CallError::Network("reset".into())), "timeout"),
        // An answer that does not fit: nothing says they were not applied.
        (Ok(PeerReply::Write(vec![Ok(put(1))])), "storage"),
        (Ok(PeerReply::Done), "storage"),
    ];
    for (reply, want) in cases {
        let what = format!("{reply:?}");
        assert_eq!(summary(Writes::answers(reply, 3)), [want; 3], "{what}");
    }
    assert_eq!(summary(vec![Writes::expired()]), ["retry"]);
}

#[test]
fn one_read_index_answers_every_get_of_its_call() {
    let answers = ReadIndexes::answers(Ok(PeerReply::ReadIndex(42)), 3);
    assert_eq!(
        answers.into_iter().map(|a| a.ok()).collect::<Vec<_>>(),
        [Some(42); 3]
    );
    for reply in [
        Ok(PeerReply::Failed(WireError::NoLeader("no quorum".into()))),
        Err(CallError::Unreachable("refused".into())),
        Err(CallError::Network("reset".into())),
    ] {
        let answers = ReadIndexes::answers(reply, 2);
        assert_eq!(answers.len(), 2);
        assert!(answers
            .iter()
            .all(|a| matches!(a, Err(StoreError::NoLeader(_)))));
    }
    let answers = ReadIndexes::answers(Ok(PeerReply::Done), 2);
    assert!(answers
        .iter()
        .all(|a| matches!(a, Err(StoreError::Storage(_)))));
}

fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    addr
}

fn a_put() -> Command {
    Command::Put(PutRequest {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    })
}

/// Through the pump: writes to a leader that refuses connections are all
/// answered "not proposed", and one queued past its deadline is answered
/// without being sent.
#[tokio::test]
async fn the_pump_answers_every_queued_write() {
    let forwarder: Forwarder<Writes> = Forwarder::start(Peers::new("token"));
    let leader = closed_port();
    let deadline = Instant::now() + Duration::from_secs(10);
    let writes = (0..20).map(|_| forwarder.forward(leader.clone(), a_put(), deadline));
    let answers: Vec<_> = futures::future::join_all(writes)
        .await
        .into_iter()
        .map(|a| a.expect("the pump answers"))
        .collect();
    assert_eq!(summary(answers), vec!["retry"; 20]);

    let past = Instant::now() - Duration::from_millis(1);
    let answer = forwarder
        .forward(leader, a_put(), past)
        .await
        .expect("the pump answers");
    assert_eq!(summary(vec![answer]), ["retry"]);
}

/// A leader whose calls wait until the test lets one finish; call N
/// answers read index N.
#[derive(Clone)]
struct GatedLeader {
    started: Arc<std::sync::atomic::AtomicU64>,
    gate: Arc<Semaphore>,
}

impl LeaderCall for GatedLeader {
    async fn call(
        &self,
        _leader: &str,
        _req: &PeerRequest,
        _timeout: Duration,
    ) -> Result<PeerReply, CallError> {
        let n = self
            .started
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        self.gate.acquire().await.expect("gate open").forget();
        Ok(PeerReply::ReadIndex(n))
    }
}

impl GatedLeader {
    fn new() -> GatedLeader {
        GatedLeader {
            started: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
        }
    }

    fn started(&self) -> u64 {
        self.started.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Wait (generously) until `n` calls have started.
    async fn wait_started(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.started() < n {
            assert!(Instant::now() < deadline, "call {n} never started");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Linearizability of a follower's reads: a get may use only the index of
/// a call sent after it arrived. Gets arriving while every call slot is
/// busy wait, and then share the next call.
#[tokio::test]
async fn gets_arriving_during_calls_in_flight_share_the_next_call() {
    let leader = GatedLeader::new();
    let forwarder: Arc<Forwarder<ReadIndexes>> = Arc::new(Forwarder::start(leader.clone()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let get = || {
        let f = forwarder.clone();
        tokio::spawn(async move { f.forward("leader".into(), (), deadline).await })
    };
    let slots = MAX_CALLS_IN_FLIGHT as u64;
    let mut alone = Vec::new();
    for n in 1..=slots {
        alone.push(get());
        leader.wait_started(n).await;
    }
    let (late1, late2) = (get(), get());
    // Every slot is busy: the late gets wait (whatever the machine's
    // speed, nothing may start another call now).
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(leader.started(), slots);

    leader.gate.add_permits(1); // call 1 answers; the late gets go out together
    leader.wait_started(slots + 1).await;
    leader.gate.add_permits(MAX_CALLS_IN_FLIGHT);
    let index = |h: tokio::task::JoinHandle<Result<Result<u64, StoreError>, StoreError>>| async {
        h.await.expect("get task").expect("pump").expect("index")
    };
    for (n, h) in (1..).zip(alone) {
        assert_eq!(
            index(h).await,
            n,
            "a get that found a free slot has its own call"
        );
    }
    assert_eq!(index(late1).await, slots + 1);
    assert_eq!(index(late2).await, slots + 1);
    assert_eq!(leader.started(), slots + 1, "the late gets shared one call");
}
