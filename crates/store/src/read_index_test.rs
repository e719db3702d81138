//! Tests of the leader's read-index batching: which requests share a
//! round, and that no request is answered by a round that began before it
//! arrived.

use std::sync::Arc;

use tokio::sync::{mpsc, Mutex};

use super::*;

/// A read-index source whose rounds the test starts and ends: each round
/// reports that it began, then waits for the test to hand it its answer.
struct Fake {
    began: mpsc::UnboundedSender<()>,
    answers: Arc<Mutex<mpsc::UnboundedReceiver<Answer>>>,
}

impl ReadIndexSource for Fake {
    async fn read_index(&self) -> Answer {
        let _ = self.began.send(());
        let mut answers = self.answers.lock().await;
        answers
            .recv()
            .await
            .unwrap_or_else(|| Err(StoreError::Stopped("test over".into())))
    }
}

struct Rig {
    batcher: Arc<ReadIndexBatcher>,
    began: mpsc::UnboundedReceiver<()>,
    answer: mpsc::UnboundedSender<Answer>,
}

fn rig() -> Rig {
    let (began_tx, began) = mpsc::unbounded_channel();
    let (answer, answers) = mpsc::unbounded_channel();
    let batcher = Arc::new(ReadIndexBatcher::start(Fake {
        began: began_tx,
        answers: Arc::new(Mutex::new(answers)),
    }));
    Rig {
        batcher,
        began,
        answer,
    }
}

impl Rig {
    fn get(&self) -> tokio::task::JoinHandle<Answer> {
        let b = self.batcher.clone();
        tokio::spawn(async move { b.read_index().await })
    }

    /// Wait until `n` requests sit in the queue (not yet taken by a round).
    async fn queued(&self, n: usize) {
        let tx = &self.batcher.tx;
        while tx.max_capacity() - tx.capacity() < n {
            tokio::task::yield_now().await;
        }
    }
}

#[tokio::test]
async fn reads_queued_during_a_round_share_the_next_round_not_that_one() {
    let mut r = rig();
    let a = r.get();
    r.began.recv().await.expect("round 1 began");
    // b and c arrive while round 1 is in flight.
    let b = r.get();
    let c = r.get();
    r.queued(2).await;
    r.answer.send(Ok(10)).unwrap();
    assert_eq!(a.await.unwrap().unwrap(), 10);
    r.began.recv().await.expect("round 2 began");
    r.answer.send(Ok(11)).unwrap();
    assert_eq!(
        b.await.unwrap().unwrap(),
        11,
        "b arrived after round 1 began"
    );
    assert_eq!(c.await.unwrap().unwrap(), 11, "c shares b's round");
    assert!(r.began.try_recv().is_err(), "two rounds for three reads");
}

#[tokio::test]
async fn a_failed_round_fails_every_read_of_it_and_the_next_round_starts_afresh() {
    let mut r = rig();
    let a = r.get();
    r.began.recv().await.expect("round 1 began");
    let b = r.get();
    let c = r.get();
    r.queued(2).await;
    r.answer.send(Ok(5)).unwrap();
    r.began.recv().await.expect("round 2 began");
    r.answer
        .send(Err(StoreError::NoLeader("not the leader".into())))
        .unwrap();
    assert_eq!(a.await.unwrap().unwrap(), 5);
    for read in [b, c] {
        assert!(matches!(read.await.unwrap(), Err(StoreError::NoLeader(_))));
    }
    let d = r.get();
    r.began.recv().await.expect("round 3 began");
    r.answer.send(Ok(7)).unwrap();
    assert_eq!(d.await.unwrap().unwrap(), 7);
}

#[tokio::test]
async fn a_lone_read_starts_a_round_at_once() {
    let mut r = rig();
    for index in 1..=3 {
        let read = r.get();
        r.began.recv().await.expect("a round began");
        r.answer.send(Ok(index)).unwrap();
        assert_eq!(read.await.unwrap().unwrap(), index);
    }
}
