//! Applying a transaction with the `nft` command (Debian's `nftables`
//! package): `nft -f -` reads the whole text and commits it as one netlink
//! batch, so either all of it applies or none does. [`sync_table`] chooses
//! what to send: a delta ([`super::delta`]) after the first full load, the
//! whole table when there is no known previous state or the delta fails.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tracing::warn;

use super::delta;
use super::ruleset::{self, Ruleset};

/// Errors from `nft`.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// `nft` could not be run (not installed?). Not retryable.
    #[error("running nft (apt-get install nftables): {0}")]
    Spawn(#[source] std::io::Error),
    /// `nft` rejected the transaction; nothing was applied. Retryable after
    /// a full resync (the previous state may not be what we thought).
    #[error("nft -f - failed: {0}")]
    Rejected(String),
}

/// Runs `nft -f -` with `text` on stdin.
pub async fn apply(text: &str) -> Result<(), NftError> {
    apply_in(None, text).await
}

/// Runs `nft -f -` in the named network namespace (`ip netns exec`), or in
/// ours for `None`. Benchmarks and tests use a namespace of their own.
pub async fn apply_in(netns: Option<&str>, text: &str) -> Result<(), NftError> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = tokio::process::Command::new("ip");
            c.args(["netns", "exec", ns, "nft"]);
            c
        }
        None => tokio::process::Command::new("nft"),
    };
    let mut child = cmd
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .await
            .map_err(NftError::Spawn)?;
    }
    let out = child.wait_with_output().await.map_err(NftError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // nft echoes the failing lines; keep the message bounded.
        let msg: String = stderr.chars().take(4000).collect();
        Err(NftError::Rejected(msg))
    }
}

/// How [`sync_table`] brought the table to the next ruleset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Nothing changed; nothing was sent.
    Unchanged,
    /// Only the difference was sent ([`super::delta`]); its size in bytes.
    Delta(usize),
    /// The whole table was rewritten; its size in bytes.
    Full(usize),
    /// The delta was rejected (table missing or changed behind our back),
    /// then the whole table was recreated; the full size in bytes.
    FullAfterRejectedDelta(usize),
}

impl Applied {
    /// Whether the whole table was written.
    pub fn was_full(self) -> bool {
        matches!(self, Applied::Full(_) | Applied::FullAfterRejectedDelta(_))
    }
}

/// Moves table `table` (in `netns`, or ours) from `prev` — what we last
/// applied, `None` if unknown — to `next` in one transaction: a delta when
/// one can express the change, else a full rewrite. A rejected delta is
/// retried once as a full rewrite that recreates the table, so a table
/// deleted or edited by hand is repaired at the next change.
pub async fn sync_table(
    netns: Option<&str>,
    table: &str,
    prev: Option<&Ruleset>,
    next: &Ruleset,
) -> Result<Applied, NftError> {
    let Some((prev, delta)) = prev.and_then(|p| Some((p, delta::delta(p, next)?))) else {
        return rewrite_table(netns, table, prev, next).await;
    };
    if delta.is_empty() {
        return Ok(Applied::Unchanged);
    }
    let text = delta.transaction(table, prev, next);
    match apply_in(netns, &text).await {
        Ok(()) => Ok(Applied::Delta(text.len())),
        Err(NftError::Rejected(e)) => {
            warn!(
                table,
                "incremental nft sync rejected, rewriting the table: {e}"
            );
            match rewrite_table(netns, table, None, next).await? {
                Applied::Full(n) => Ok(Applied::FullAfterRejectedDelta(n)),
                other => Ok(other),
            }
        }
        Err(e) => Err(e),
    }
}

/// Rewrites the whole table: from `prev` it flushes the table and keeps
/// the affinity sets' elements; from `None` it deletes and recreates it
/// ([`ruleset::transaction`]).
pub async fn rewrite_table(
    netns: Option<&str>,
    table: &str,
    prev: Option<&Ruleset>,
    next: &Ruleset,
) -> Result<Applied, NftError> {
    let text = ruleset::transaction(table, prev, next);
    apply_in(netns, &text).await?;
    Ok(Applied::Full(text.len()))
}
