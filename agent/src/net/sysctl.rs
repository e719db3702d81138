//! Writing kernel parameters under `/proc/sys` (of the agent's network
//! namespace: `net/*` keys are per namespace).

use std::path::Path;

/// Writes `value` to `/proc/sys/<key>` unless it already holds it.
pub fn set(key: &str, value: &str) -> std::io::Result<()> {
    let path = Path::new("/proc/sys").join(key);
    if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == value) {
        return Ok(());
    }
    std::fs::write(&path, value)
}
