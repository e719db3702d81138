//! The incremental sync: what changed between the ruleset last applied and
//! the next one, as data ([`Delta`]), and the one `nft -f -` transaction that
//! applies only that.
//!
//! A full load makes `nft` parse and the kernel rebuild every chain and map
//! element (seconds for thousands of services); a changed endpoint touches a
//! handful of chains. kube-proxy's nftables mode syncs the same way: after
//! the first full load, only changed chains and map elements are sent.
//!
//! ```text
//!  order inside the one transaction (each step only needs the ones before):
//!   1. add chain / add set|map          new objects exist before anything names them
//!   2. delete element                   old map entries stop naming old chains
//!   3. flush set|map                    interval sets are refilled whole
//!   4. flush chain                      changed and removed chains lose their rules
//!   5. delete chain / delete set|map    nothing refers to them any more
//!   6. add element                      may name chains added in 1
//!   7. add rule                         refill new and changed chains
//! ```
//!
//! A chain is the unit for rules (rules have no stable identity but their
//! chain; a changed chain is flushed and refilled), an element the unit for
//! sets and maps. Interval sets (`flags interval`) are refilled whole, since
//! `auto-merge` may have joined the elements we would delete one by one.
//! Kept sets ([`super::ruleset::SetDef::keep`], the affinity memory) never have their
//! elements touched. A changed base-chain hook or set declaration cannot be
//! expressed as a delta ([`delta`] returns `None`): the caller does a full
//! rewrite. A delta never creates the table, so against a missing table it
//! fails as a whole and the caller falls back to a full rewrite too.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::ruleset::{Ruleset, ELEMENTS_PER_COMMAND, FAMILY};

/// The difference between two rulesets, in the terms of an nft transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    /// Chains new in `next`: created, then filled.
    pub added_chains: BTreeSet<String>,
    /// Chains in both whose rules differ: flushed, then refilled.
    pub changed_chains: BTreeSet<String>,
    /// Chains gone from `next`: flushed, then deleted.
    pub removed_chains: BTreeSet<String>,
    /// Sets and maps new in `next`: declared, then filled.
    pub added_sets: BTreeSet<String>,
    /// Sets and maps gone from `next`: deleted.
    pub removed_sets: BTreeSet<String>,
    /// Interval sets whose elements changed: flushed, then refilled whole.
    pub refilled_sets: BTreeSet<String>,
    /// Elements to delete, by set (as rendered; maps are deleted by key).
    pub removed_elements: BTreeMap<String, Vec<String>>,
    /// Elements to add, by set (including all of an added or refilled set's).
    pub added_elements: BTreeMap<String, Vec<String>>,
}

impl Delta {
    /// Whether applying it would change nothing.
    pub fn is_empty(&self) -> bool {
        *self == Delta::default()
    }

    /// The `nft -f -` input applying this delta to table `table`, which
    /// must hold `prev`; `next` supplies the rules and declarations.
    pub fn transaction(&self, table: &str, prev: &Ruleset, next: &Ruleset) -> String {
        let t = format!("{FAMILY} {table}");
        let mut out = String::with_capacity(4096);
        for name in &self.added_chains {
            match &next.chains[name].hook {
                Some(hook) => {
                    let _ = writeln!(out, "add chain {t} {name} {{ {hook} }}");
                }
                None => {
                    let _ = writeln!(out, "add chain {t} {name}");
                }
            }
        }
        for name in &self.added_sets {
            let set = &next.sets[name];
            let _ = writeln!(out, "add {} {t} {name} {{ {} }}", set.kind(), set.decl);
        }
        for (name, elements) in &self.removed_elements {
            let keys: Vec<&str> = elements.iter().map(|e| element_key(e)).collect();
            for chunk in keys.chunks(ELEMENTS_PER_COMMAND) {
                let _ = writeln!(out, "delete element {t} {name} {{ {} }}", chunk.join(", "));
            }
        }
        for name in &self.refilled_sets {
            let _ = writeln!(out, "flush {} {t} {name}", next.sets[name].kind());
        }
        for name in self.changed_chains.iter().chain(&self.removed_chains) {
            let _ = writeln!(out, "flush chain {t} {name}");
        }
        for name in &self.removed_chains {
            let _ = writeln!(out, "delete chain {t} {name}");
        }
        for name in &self.removed_sets {
            let _ = writeln!(out, "delete {} {t} {name}", prev.sets[name].kind());
        }
        for (name, elements) in &self.added_elements {
            for chunk in elements.chunks(ELEMENTS_PER_COMMAND) {
                let _ = writeln!(out, "add element {t} {name} {{ {} }}", chunk.join(", "));
            }
        }
        for name in self.added_chains.iter().chain(&self.changed_chains) {
            for rule in &next.chains[name].rules {
                let _ = writeln!(out, "add rule {t} {name} {rule}");
            }
        }
        out
    }
}

/// What turns `prev` into `next`, or `None` when only a full rewrite can
/// (a base chain's hook or a set's declaration changed).
pub fn delta(prev: &Ruleset, next: &Ruleset) -> Option<Delta> {
    let mut d = Delta::default();
    for (name, chain) in &next.chains {
        match prev.chains.get(name) {
            None => {
                d.added_chains.insert(name.clone());
            }
            Some(old) if old.hook != chain.hook => return None,
            Some(old) if old.rules != chain.rules => {
                d.changed_chains.insert(name.clone());
            }
            Some(_) => {}
        }
    }
    d.removed_chains = prev
        .chains
        .keys()
        .filter(|n| !next.chains.contains_key(*n))
        .cloned()
        .collect();

    for (name, set) in &next.sets {
        let Some(old) = prev.sets.get(name) else {
            d.added_sets.insert(name.clone());
            if !set.elements.is_empty() {
                d.added_elements.insert(name.clone(), set.elements.clone());
            }
            continue;
        };
        if old.decl != set.decl || old.is_map != set.is_map || old.keep != set.keep {
            return None;
        }
        if set.keep || old.elements == set.elements {
            continue;
        }
        if set.decl.contains("interval") {
            d.refilled_sets.insert(name.clone());
            if !set.elements.is_empty() {
                d.added_elements.insert(name.clone(), set.elements.clone());
            }
            continue;
        }
        let before: BTreeSet<&String> = old.elements.iter().collect();
        let after: BTreeSet<&String> = set.elements.iter().collect();
        let removed: Vec<String> = before.difference(&after).map(|e| (*e).clone()).collect();
        let added: Vec<String> = after.difference(&before).map(|e| (*e).clone()).collect();
        if !removed.is_empty() {
            d.removed_elements.insert(name.clone(), removed);
        }
        if !added.is_empty() {
            d.added_elements.insert(name.clone(), added);
        }
    }
    d.removed_sets = prev
        .sets
        .keys()
        .filter(|n| !next.sets.contains_key(*n))
        .cloned()
        .collect();
    Some(d)
}

/// The key of an element: a map element `k : v` is deleted by `k`.
fn element_key(element: &str) -> &str {
    element.split_once(" : ").map_or(element, |(k, _)| k)
}

#[cfg(test)]
#[path = "delta_test.rs"]
mod tests;
