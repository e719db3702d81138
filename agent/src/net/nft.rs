//! Applying a transaction with the `nft` command (Debian's `nftables`
//! package): `nft -f -` reads the whole text and commits it as one netlink
//! batch, so either all of it applies or none does.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;

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
