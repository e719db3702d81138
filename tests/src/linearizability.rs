//! A linearizability checker for a history of operations on registers
//! (keys): reads, writes and compare-and-swaps, each with the time it was
//! invoked and the time its answer came back.
//!
//! The search is Wing & Gong's, with Lowe's memoization (as in Knossos and
//! porcupine): walk the history in time order; at each invocation try to
//! take the operation as the next one in the linear order (it must give
//! the answer it gave in the history); at a response whose operation was
//! not taken yet, undo the last choice. A (taken-set, value) pair seen
//! before is not explored again. Keys are independent registers, so each
//! is checked on its own (etcd's keys are; P-compositionality).
//!
//! An operation whose answer never came (a timeout, a killed server) may
//! or may not have taken effect: it has no response event, so the search
//! may take it anywhere after its invocation, or never. Failed reads tell
//! nothing and are dropped.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// What a client did to one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Read; the value seen (`None`: no key).
    Read(Option<String>),
    /// Write the value.
    Write(String),
    /// Compare-and-swap: if the value is `expect` (`None`: the key is
    /// absent), write `new`. `Some(ok)`: whether it succeeded.
    Cas {
        /// Expected current value.
        expect: Option<String>,
        /// New value.
        new: String,
        /// The answer, if one came.
        ok: Option<bool>,
    },
}

/// One operation of the history.
#[derive(Clone, Debug)]
pub struct Event {
    /// The client that ran it (for printing).
    pub client: usize,
    /// The key.
    pub key: String,
    /// The operation and its answer.
    pub op: Op,
    /// When it was invoked (any monotonic unit).
    pub call: u64,
    /// When its answer came; `None` if it failed or timed out (unknown
    /// outcome).
    pub ret: Option<u64>,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ret = self.ret.map_or("?".to_string(), |r| r.to_string());
        write!(
            f,
            "[{:>10} .. {:>10}] client {:>2} {} {:?}",
            self.call, ret, self.client, self.key, self.op
        )
    }
}

/// The register model: apply `op` to `state`; the new state, or `None`
/// if the op's recorded answer is impossible from `state`.
fn step(state: &Option<String>, op: &Op) -> Option<Option<String>> {
    match op {
        Op::Read(seen) => (seen == state).then(|| state.clone()),
        Op::Write(v) => Some(Some(v.clone())),
        Op::Cas { expect, new, ok } => {
            let matches = expect == state;
            match ok {
                Some(true) if matches => Some(Some(new.clone())),
                Some(false) if !matches => Some(state.clone()),
                Some(_) => None,
                // Unknown answer: it did whatever the state made it do.
                None if matches => Some(Some(new.clone())),
                None => Some(state.clone()),
            }
        }
    }
}

/// Check one key's operations, starting from `initial`.
fn check_key(initial: Option<String>, ops: &[&Event]) -> bool {
    // Entries: (time, op index, is_call). Calls before returns at equal
    // times (an op that returned at t overlaps one invoked at t).
    let mut entries: Vec<(u64, bool, usize)> = Vec::new();
    for (i, e) in ops.iter().enumerate() {
        entries.push((e.call, false, i));
        if let Some(r) = e.ret {
            entries.push((r, true, i));
        }
    }
    entries.sort();
    let n = entries.len();
    // A doubly linked list over entries, with a head sentinel at index n.
    let mut next: Vec<usize> = (1..=n).collect();
    next.push(if n == 0 { n + 1 } else { 0 });
    let mut prev: Vec<usize> = (0..=n).map(|i| if i == 0 { n } else { i - 1 }).collect();
    prev[n] = n;
    const END: usize = usize::MAX;
    let end = |i: usize| if i >= n { END } else { i };
    let next_of = |next: &Vec<usize>, i: usize| end(next[i]);
    // Where each op's call and return entries are.
    let mut call_at = vec![0; ops.len()];
    let mut ret_at = vec![None; ops.len()];
    for (pos, (_, is_ret, i)) in entries.iter().enumerate() {
        if *is_ret {
            ret_at[*i] = Some(pos);
        } else {
            call_at[*i] = pos;
        }
    }
    let words = ops.len().div_ceil(64);
    let mut taken = vec![0u64; words];
    let mut seen: HashSet<(Vec<u64>, Option<String>)> = HashSet::new();
    let mut stack: Vec<(usize, Option<String>)> = Vec::new();
    let mut state = initial;
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, p: usize| {
        let (a, b) = (prev[p], next[p]);
        next[a] = b;
        if b < n {
            prev[b] = a;
        }
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, p: usize| {
        let (a, b) = (prev[p], next[p]);
        next[a] = p;
        if b < n {
            prev[b] = p;
        }
    };
    let mut cur = next_of(&next, n);
    loop {
        // Done when no response of an untaken op is left.
        let mut any_ret = false;
        let mut probe = next_of(&next, n);
        while probe != END {
            if entries[probe].1 {
                any_ret = true;
                break;
            }
            probe = next_of(&next, probe);
        }
        if !any_ret {
            return true;
        }
        if cur == END {
            // Only calls of unknown-outcome ops remain ahead; a response is
            // still pending behind: undo.
            cur = match backtrack(
                &mut stack, &mut state, &mut taken, &call_at, &ret_at, &mut next, &mut prev,
                &relink,
            ) {
                Some(c) => next_of(&next, c),
                None => return false,
            };
            continue;
        }
        let (_, is_ret, i) = entries[cur];
        if !is_ret {
            if let Some(new_state) = step(&state, &ops[i].op) {
                let mut t = taken.clone();
                t[i / 64] |= 1 << (i % 64);
                if seen.insert((t.clone(), new_state.clone())) {
                    stack.push((i, state.clone()));
                    state = new_state;
                    taken = t;
                    unlink(&mut next, &mut prev, call_at[i]);
                    if let Some(r) = ret_at[i] {
                        unlink(&mut next, &mut prev, r);
                    }
                    cur = next_of(&next, n);
                    continue;
                }
            }
            cur = next_of(&next, cur);
        } else {
            cur = match backtrack(
                &mut stack, &mut state, &mut taken, &call_at, &ret_at, &mut next, &mut prev,
                &relink,
            ) {
                Some(c) => next_of(&next, c),
                None => return false,
            };
        }
    }
}

/// Undo the last taken op; returns its call entry (the search goes on
/// after it), or `None` if nothing is left to undo.
#[allow(clippy::too_many_arguments)]
fn backtrack(
    stack: &mut Vec<(usize, Option<String>)>,
    state: &mut Option<String>,
    taken: &mut [u64],
    call_at: &[usize],
    ret_at: &[Option<usize>],
    next: &mut Vec<usize>,
    prev: &mut Vec<usize>,
    relink: &impl Fn(&mut Vec<usize>, &mut Vec<usize>, usize),
) -> Option<usize> {
    let (i, old) = stack.pop()?;
    *state = old;
    taken[i / 64] &= !(1 << (i % 64));
    if let Some(r) = ret_at[i] {
        relink(next, prev, r);
    }
    relink(next, prev, call_at[i]);
    Some(call_at[i])
}

/// Check a whole history (every key starts absent). On failure, returns
/// the offending key's history, printable.
pub fn check(history: &[Event]) -> Result<(), String> {
    let mut by_key: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in history {
        if matches!(e.op, Op::Read(_)) && e.ret.is_none() {
            continue;
        }
        by_key.entry(&e.key).or_default().push(e);
    }
    for (key, ops) in by_key {
        if !check_key(None, &ops) {
            let mut text = format!("history of key {key} is not linearizable:\n");
            let mut sorted = ops.clone();
            sorted.sort_by_key(|e| e.call);
            for e in sorted {
                text.push_str(&format!("  {e}\n"));
            }
            return Err(text);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(client: usize, op: Op, call: u64, ret: Option<u64>) -> Event {
        Event {
            client,
            key: "k".into(),
            op,
            call,
            ret,
        }
    }
    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = vec![
            ev(0, Op::Read(None), 0, Some(1)),
            ev(0, Op::Write("a".into()), 2, Some(3)),
            ev(1, Op::Read(s("a")), 4, Some(5)),
            ev(
                1,
                Op::Cas {
                    expect: s("a"),
                    new: "b".into(),
                    ok: Some(true),
                },
                6,
                Some(7),
            ),
            ev(0, Op::Read(s("b")), 8, Some(9)),
        ];
        assert!(check(&h).is_ok());
    }

    #[test]
    fn concurrent_ops_may_order_either_way() {
        // The read overlaps the write: it may see the old or new value.
        let h = vec![
            ev(0, Op::Write("a".into()), 0, Some(10)),
            ev(1, Op::Read(s("a")), 1, Some(2)),
            ev(2, Op::Read(None), 3, Some(4)),
        ];
        // Reading "a" then None is impossible: once the write is taken the
        // key is never absent again.
        assert!(check(&h).is_err());
        let h = vec![
            ev(0, Op::Write("a".into()), 0, Some(10)),
            ev(1, Op::Read(None), 1, Some(2)),
            ev(2, Op::Read(s("a")), 3, Some(4)),
        ];
        assert!(check(&h).is_ok());
    }

    #[test]
    fn stale_read_after_acknowledged_write_is_caught() {
        let h = vec![
            ev(0, Op::Write("a".into()), 0, Some(1)),
            ev(0, Op::Write("b".into()), 2, Some(3)),
            ev(1, Op::Read(s("a")), 4, Some(5)),
        ];
        let err = check(&h).unwrap_err();
        assert!(err.contains("client  1"), "{err}");
    }

    #[test]
    fn unknown_outcomes_may_or_may_not_apply() {
        // A write that timed out was seen later...
        let h = vec![
            ev(0, Op::Write("a".into()), 0, None),
            ev(1, Op::Read(s("a")), 5, Some(6)),
        ];
        assert!(check(&h).is_ok());
        // ...or never.
        let h = vec![
            ev(0, Op::Write("a".into()), 0, None),
            ev(1, Op::Read(None), 5, Some(6)),
        ];
        assert!(check(&h).is_ok());
        // But not before it was invoked.
        let h = vec![
            ev(1, Op::Read(s("a")), 0, Some(1)),
            ev(0, Op::Write("a".into()), 2, None),
        ];
        assert!(check(&h).is_err());
    }

    #[test]
    fn failed_cas_must_see_another_value() {
        let h = vec![
            ev(0, Op::Write("a".into()), 0, Some(1)),
            ev(
                1,
                Op::Cas {
                    expect: s("a"),
                    new: "b".into(),
                    ok: Some(false),
                },
                2,
                Some(3),
            ),
        ];
        assert!(check(&h).is_err());
    }
}
