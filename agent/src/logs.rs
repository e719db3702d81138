//! Container logs in the CRI log format, read back for `kubectl logs`.
//!
//! The runtime writes each chunk of a container's stdout/stderr as one line
//! (CRI `pkg/kubelet/kuberuntime/logs`):
//!
//! ```text
//! 2016-10-06T00:17:09.669794202Z stdout F hello world
//! 2016-10-06T00:17:09.669794202Z stdout P a long line is split into parti
//! 2016-10-06T00:17:09.669794203Z stdout F al lines ending with a full one
//! ```
//!
//! `F` ends a line, `P` is a partial chunk to be joined with what follows on
//! the same stream. Kubelet strips the prefix, or keeps the RFC 3339 time
//! when `timestamps=true`.

use std::collections::VecDeque;

use k8s_openapi::jiff::Timestamp;

/// One parsed line of a CRI log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CriLogLine<'a> {
    /// The timestamp as written (RFC 3339 with nanoseconds).
    pub time: &'a str,
    /// `stdout` or `stderr`.
    pub stream: &'a str,
    /// A `P` (partial) chunk.
    pub partial: bool,
    /// The text, without the trailing newline.
    pub content: &'a str,
}

/// Parses one line (without its `\n`); `None` for lines not in the format.
pub fn parse_cri_line(line: &str) -> Option<CriLogLine<'_>> {
    let (time, rest) = line.split_once(' ')?;
    let (stream, rest) = rest.split_once(' ')?;
    // The tag field may carry more tags after ':' (CRI allows "F:x").
    let (tag, content) = match rest.split_once(' ') {
        Some((tag, content)) => (tag, content),
        None => (rest, ""),
    };
    let partial = match tag.split(':').next() {
        Some("P") => true,
        Some("F") => false,
        _ => return None,
    };
    Some(CriLogLine {
        time,
        stream,
        partial,
        content,
    })
}

/// What the caller asked for (the `containerLogs` query, kubelet's
/// `PodLogOptions`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep streaming new lines.
    pub follow: bool,
    /// Only the last N lines.
    pub tail_lines: Option<usize>,
    /// Prefix each line with its RFC 3339 time.
    pub timestamps: bool,
    /// The previous attempt of the container.
    pub previous: bool,
    /// Only lines newer than this many seconds.
    pub since_seconds: Option<i64>,
    /// Only lines at or after this time (`sinceTime`, RFC 3339).
    pub since_time: Option<Timestamp>,
    /// Stop after this many bytes.
    pub limit_bytes: Option<usize>,
}

/// Turns CRI log lines into user-visible lines: joins partials, drops lines
/// before `since`, formats with or without timestamps.
#[derive(Debug, Default)]
pub struct LogAssembler {
    timestamps: bool,
    since: Option<Timestamp>,
    /// Partial text per stream. A joined line carries the time of its
    /// final (`F`) chunk: the moment the line was complete.
    pending: Vec<(String, String)>,
}

impl LogAssembler {
    /// An assembler for these options; `now` anchors `sinceSeconds`.
    pub fn new(opts: &LogOptions, now: Timestamp) -> Self {
        let since_seconds = opts.since_seconds.and_then(|s| {
            now.checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(s))
                .ok()
        });
        // Both given: the later bound wins (the API server rejects both at
        // once; this is just the safe reading).
        let since = match (since_seconds, opts.since_time) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        LogAssembler {
            timestamps: opts.timestamps,
            since,
            pending: vec![],
        }
    }

    /// Feeds one raw line; returns a finished output line (with `\n`) if any.
    pub fn push(&mut self, raw: &str) -> Option<String> {
        let line = parse_cri_line(raw)?;
        let idx = self.pending.iter().position(|(s, _)| s == line.stream);
        if line.partial {
            match idx {
                Some(i) => self.pending[i].1.push_str(line.content),
                None => self
                    .pending
                    .push((line.stream.to_string(), line.content.to_string())),
            }
            return None;
        }
        let time = line.time;
        let text = match idx {
            Some(i) => {
                let (_, mut text) = self.pending.remove(i);
                text.push_str(line.content);
                text
            }
            None => line.content.to_string(),
        };
        if let Some(since) = self.since {
            match time.parse::<Timestamp>() {
                Ok(t) if t < since => return None,
                _ => {}
            }
        }
        Some(if self.timestamps {
            format!("{time} {text}\n")
        } else {
            format!("{text}\n")
        })
    }
}

/// Keeps the last `n` lines (for `tailLines`).
#[derive(Debug)]
pub struct Tail {
    n: usize,
    lines: VecDeque<String>,
}

impl Tail {
    /// Keeps at most `n` lines.
    pub fn new(n: usize) -> Self {
        Tail {
            n,
            lines: VecDeque::new(),
        }
    }

    /// Adds a line, dropping the oldest beyond `n`.
    pub fn push(&mut self, line: String) {
        if self.n == 0 {
            return;
        }
        if self.lines.len() == self.n {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    /// The kept lines, oldest first.
    pub fn into_lines(self) -> impl Iterator<Item = String> {
        self.lines.into_iter()
    }
}

/// Applies `limitBytes` across output chunks.
#[derive(Debug)]
pub struct ByteLimit(Option<usize>);

impl ByteLimit {
    /// A limit, or none.
    pub fn new(limit: Option<usize>) -> Self {
        ByteLimit(limit)
    }

    /// Cuts `chunk` to what is left; `None` once the limit is reached.
    pub fn take(&mut self, mut chunk: String) -> Option<String> {
        match &mut self.0 {
            None => Some(chunk),
            Some(0) => None,
            Some(left) => {
                if chunk.len() > *left {
                    let mut cut = *left;
                    while !chunk.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    chunk.truncate(cut);
                }
                *left -= chunk.len();
                Some(chunk)
            }
        }
    }

    /// Whether nothing more may be sent.
    pub fn exhausted(&self) -> bool {
        self.0 == Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn parses_lines() {
        let cases = [
            (
                "2016-10-06T00:17:09.669794202Z stdout F hello world",
                Some(("stdout", false, "hello world")),
            ),
            (
                "2016-10-06T00:17:09.669794202Z stderr P part",
                Some(("stderr", true, "part")),
            ),
            (
                "2016-10-06T00:17:09.669794202Z stdout F",
                Some(("stdout", false, "")),
            ),
            (
                "2016-10-06T00:17:09.669794202Z stdout F:x tagged",
                Some(("stdout", false, "tagged")),
            ),
            ("garbage", None),
            ("2016-10-06T00:17:09Z stdout X nope", None),
        ];
        for (raw, want) in cases {
            let got = parse_cri_line(raw).map(|l| (l.stream, l.partial, l.content));
            assert_eq!(got, want, "{raw}");
        }
    }

    #[test]
    fn joins_partials_and_formats() {
        let lines = [
            "2024-01-01T00:00:01.000000001Z stdout P hel",
            "2024-01-01T00:00:01.500000000Z stderr F oops",
            "2024-01-01T00:00:02.000000000Z stdout F lo",
            "2024-01-01T00:00:03.000000000Z stdout F  spaced ",
        ];
        let mut plain = LogAssembler::new(&LogOptions::default(), ts("2024-01-01T00:00:10Z"));
        let out: Vec<_> = lines.iter().filter_map(|l| plain.push(l)).collect();
        assert_eq!(out, ["oops\n", "hello\n", " spaced \n"]);

        let opts = LogOptions {
            timestamps: true,
            since_seconds: Some(8),
            ..Default::default()
        };
        let mut timed = LogAssembler::new(&opts, ts("2024-01-01T00:00:10Z"));
        let out: Vec<_> = lines.iter().filter_map(|l| timed.push(l)).collect();
        assert_eq!(
            out,
            [
                "2024-01-01T00:00:02.000000000Z hello\n",
                "2024-01-01T00:00:03.000000000Z  spaced \n"
            ]
        );
    }

    #[test]
    fn tail_and_limit() {
        let mut t = Tail::new(2);
        for l in ["a", "b", "c"] {
            t.push(l.into());
        }
        assert_eq!(t.into_lines().collect::<Vec<_>>(), ["b", "c"]);
        let mut zero = Tail::new(0);
        zero.push("a".into());
        assert_eq!(zero.into_lines().count(), 0);

        let mut lim = ByteLimit::new(Some(5));
        assert_eq!(lim.take("abc".into()).as_deref(), Some("abc"));
        assert_eq!(lim.take("défg".into()).as_deref(), Some("d"));
        assert!(!lim.exhausted());
        assert_eq!(lim.take("xy".into()).as_deref(), Some("x"));
        assert!(lim.exhausted());
        assert_eq!(lim.take("x".into()), None);
    }
}
