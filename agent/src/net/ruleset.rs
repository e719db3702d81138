//! An nftables table as data, and the one transaction that moves the kernel
//! from the previous table to the next.
//!
//! The renderers ([`super::proxy`], [`super::policy`]) fill a [`Ruleset`];
//! [`transaction`] turns it into `nft -f -` input that rewrites the whole
//! table (at agent start, hourly, and when a delta fails; other syncs send
//! only a [`super::delta`]). Each sync is one transaction, so the kernel
//! switches atomically: a packet sees either the old rules or the new ones,
//! never a half-written table.
//!
//! ```text
//!  first sync:   add table ip T; delete table ip T             (start clean)
//!  full resync:  flush table ip T                              (rules only)
//!                flush map/set of every set not marked `keep`
//!                delete chains and sets the new ruleset lacks
//!  then:         add chain …   (all chains, base chains with their hook)
//!                add set/map … add element …
//!                add rule …
//! ```
//!
//! `flush table` removes rules but keeps set elements: that is how the
//! dynamic `sessionAffinity` sets ([`SetDef::keep`]) keep their client → endpoint
//! memory across syncs, as kube-proxy's nftables mode does. Only this table
//! is ever touched.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The nftables family of Skiff's tables (IPv4 only, see the caveats).
pub const FAMILY: &str = "ip";
/// The name of the table an agent with the default CNI bridge owns.
pub const DEFAULT_TABLE: &str = "skiff";

/// The table an agent owns: `skiff` for the default bridge `skiff0`, else
/// `skiff-<bridge>`, so several agents sharing one network namespace (test
/// clusters on one host) never rewrite each other's rules.
pub fn table_name(bridge: &str) -> String {
    if bridge == crate::config::DEFAULT_CNI_BRIDGE {
        DEFAULT_TABLE.to_string()
    } else {
        format!("{DEFAULT_TABLE}-{bridge}")
    }
}

/// A set or a map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetDef {
    /// `true` for a map (`add map`), `false` for a set.
    pub is_map: bool,
    /// The declaration inside the braces, e.g. `type ipv4_addr; flags interval;`.
    pub decl: String,
    /// Elements, each as nft writes it (`10.0.0.1 . tcp . 80 : goto svc-x`).
    pub elements: Vec<String>,
    /// Keep the elements the kernel holds across syncs (dynamic sets filled
    /// by the packet path); the renderer lists none for them.
    pub keep: bool,
}

/// A chain: an optional hook declaration and its rules in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    /// For base chains: `type nat hook prerouting priority dstnat; policy accept;`.
    pub hook: Option<String>,
    /// The rules.
    pub rules: Vec<String>,
}

/// The whole table as data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Sets and maps by name.
    pub sets: BTreeMap<String, SetDef>,
    /// Chains by name.
    pub chains: BTreeMap<String, Chain>,
}

impl Ruleset {
    /// The chain named `name`, created empty if missing.
    pub fn chain(&mut self, name: &str) -> &mut Chain {
        self.chains.entry(name.to_string()).or_default()
    }

    /// Declares a base chain with its hook.
    pub fn base_chain(&mut self, name: &str, hook: &str) -> &mut Chain {
        let c = self.chain(name);
        c.hook = Some(hook.to_string());
        c
    }

    /// Declares a set or map (elements added later with [`Ruleset::element`]).
    pub fn declare(&mut self, name: &str, is_map: bool, decl: &str, keep: bool) {
        self.sets.insert(
            name.to_string(),
            SetDef {
                is_map,
                decl: decl.to_string(),
                elements: Vec::new(),
                keep,
            },
        );
    }

    /// Adds an element to a declared set or map (ignored if undeclared).
    pub fn element(&mut self, set: &str, element: String) {
        if let Some(s) = self.sets.get_mut(set) {
            s.elements.push(element);
        }
    }

    /// Number of rules over all chains (for logs and benchmarks).
    pub fn rule_count(&self) -> usize {
        self.chains.values().map(|c| c.rules.len()).sum()
    }
}

/// Elements per `add element` command: keeps single lines (and nft's
/// parser buffers) small for big maps.
pub(crate) const ELEMENTS_PER_COMMAND: usize = 500;

/// The `nft -f -` input that turns `prev` (what we last applied; `None` when
/// unknown, e.g. at agent start) into `next`.
pub fn transaction(table: &str, prev: Option<&Ruleset>, next: &Ruleset) -> String {
    let t = format!("{FAMILY} {table}");
    let mut out = String::with_capacity(256 + next.rule_count() * 80);
    let _ = writeln!(out, "add table {t}");
    match prev {
        None => {
            let _ = writeln!(out, "delete table {t}");
            let _ = writeln!(out, "add table {t}");
        }
        Some(prev) => {
            let _ = writeln!(out, "flush table {t}");
            for (name, set) in &prev.sets {
                let changed = next
                    .sets
                    .get(name)
                    .is_none_or(|n| n.decl != set.decl || n.is_map != set.is_map);
                if changed {
                    // Rules are gone (flushed), so nothing refers to it any more.
                    let _ = writeln!(out, "delete {} {t} {name}", set.kind());
                } else if !set.keep {
                    let _ = writeln!(out, "flush {} {t} {name}", set.kind());
                }
            }
            for name in prev.chains.keys() {
                if !next.chains.contains_key(name) {
                    let _ = writeln!(out, "delete chain {t} {name}");
                }
            }
        }
    }
    for (name, chain) in &next.chains {
        match &chain.hook {
            Some(hook) => {
                let _ = writeln!(out, "add chain {t} {name} {{ {hook} }}");
            }
            None => {
                let _ = writeln!(out, "add chain {t} {name}");
            }
        }
    }
    for (name, set) in &next.sets {
        let _ = writeln!(out, "add {} {t} {name} {{ {} }}", set.kind(), set.decl);
        for chunk in set.elements.chunks(ELEMENTS_PER_COMMAND) {
            let _ = writeln!(out, "add element {t} {name} {{ {} }}", chunk.join(", "));
        }
    }
    for (name, chain) in &next.chains {
        for rule in &chain.rules {
            let _ = writeln!(out, "add rule {t} {name} {rule}");
        }
    }
    out
}

impl SetDef {
    /// `map` or `set`, as nft's commands name it.
    pub fn kind(&self) -> &'static str {
        if self.is_map {
            "map"
        } else {
            "set"
        }
    }
}

/// The `nft -f -` input that removes the table (agent shutdown, tests).
pub fn delete_transaction(table: &str) -> String {
    let t = format!("{FAMILY} {table}");
    format!("add table {t}\ndelete table {t}\n")
}
