//! Indexed Jobs (`completionMode: Indexed`, KEP-2214): each pod carries its
//! completion index in the `batch.kubernetes.io/job-completion-index`
//! annotation (and label), and `JOB_COMPLETION_INDEX` in its environment;
//! `status.completedIndexes` lists the indexes that succeeded as intervals,
//! e.g. `0-3,5,7-9`.

use std::collections::BTreeSet;

use crate::slim_pod::SlimPod;

/// Annotation (and, since Kubernetes 1.28, label) with a pod's index.
pub const COMPLETION_INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";
/// The environment variable that carries the index into the containers.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// A pod's completion index, if it has a valid one below `completions`.
pub fn pod_index(pod: &SlimPod, completions: i32) -> Option<i32> {
    let v = pod
        .metadata
        .annotations
        .as_ref()?
        .get(COMPLETION_INDEX_ANNOTATION)?;
    let i: i32 = v.parse().ok()?;
    (0..completions).contains(&i).then_some(i)
}

/// Formats a set of indexes as Kubernetes' interval list (`0-3,5`).
pub fn format_intervals(set: &BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(",")
}

/// Parses an interval list, keeping indexes below `completions` and
/// skipping malformed parts (the status is ours, but may be edited).
pub fn parse_intervals(s: &str, completions: i32) -> BTreeSet<i32> {
    let mut set = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
            for i in a.max(0)..=b.min(completions - 1) {
                set.insert(i);
            }
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_round_trip() {
        let cases: &[(&[i32], &str)] = &[
            (&[], ""),
            (&[0], "0"),
            (&[0, 1, 2, 3, 5, 7, 8, 9], "0-3,5,7-9"),
            (&[2, 4], "2,4"),
        ];
        for (set, text) in cases {
            let set: BTreeSet<i32> = set.iter().copied().collect();
            assert_eq!(format_intervals(&set), *text);
            assert_eq!(parse_intervals(text, 100), set);
        }
        // Out of range and junk are dropped.
        assert_eq!(parse_intervals("1-5,x,9", 3), BTreeSet::from([1, 2]));
    }
}
