//! Links the agent's steady-state code together (NOTES.md, "Memory").
//!
//! `skiff agent` runs a small part of this binary every few seconds, but
//! that part is spread over all ~40 MB of code, and the kernel maps code in
//! 64 KiB windows (and whole large folios), so the agent kept ~18 MiB of
//! the file resident for ~3 MiB of functions. `agent-hot.order` lists those
//! functions (found by `scripts/hot_order.py` on a running agent); lld
//! places them first in `.text`, so they share a few windows.
//!
//! The list holds mangled names, whose hashes depend on the build profile's
//! settings and on the dependency graph: it is made from, and matches, the
//! `release` build (`profiling` has the same settings). Names that do not
//! match are skipped, which only loses the packing; refresh the list after
//! dependency upgrades (see the script). Only for x86_64 Linux, where
//! rustc links with its bundled lld; `SKIFF_NO_HOT_ORDER=1` turns it off,
//! e.g. for a linker without `--symbol-ordering-file`.

fn main() {
    println!("cargo:rerun-if-changed=agent-hot.order");
    println!("cargo:rerun-if-env-changed=SKIFF_NO_HOT_ORDER");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let wanted = var("PROFILE") == "release"
        && var("CARGO_CFG_TARGET_ARCH") == "x86_64"
        && var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
        && var("SKIFF_NO_HOT_ORDER").is_empty();
    if !wanted {
        return;
    }
    let order = format!("{}/agent-hot.order", var("CARGO_MANIFEST_DIR"));
    println!("cargo:rustc-link-arg-bin=skiff=-Wl,--symbol-ordering-file={order}");
    println!("cargo:rustc-link-arg-bin=skiff=-Wl,--no-warn-symbol-ordering");
}
