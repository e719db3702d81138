//! The garbage collector's decisions, pure (`pkg/controller/garbagecollector`,
//! `attemptToDeleteItem` and `processDeletingDependentsItem`).
//!
//! For a dependent (an object with `ownerReferences`), each owner is
//! - *present* — it exists with that uid and is not being deleted in a
//!   way that concerns its dependents;
//! - *absent* — not found, or found with another uid (a new object of the
//!   same name is not the owner);
//! - *orphaning* — being deleted with the `orphan` finalizer
//!   (`propagationPolicy=Orphan`): dependents drop the reference and stay;
//! - *waiting for dependents* — being deleted with the
//!   `foregroundDeletion` finalizer (`propagationPolicy=Foreground`):
//!   dependents are deleted first.
//!
//! Then: any present owner keeps the dependent (dangling and orphaning
//! references are removed); otherwise a foreground owner makes it deleted
//! in the foreground; otherwise, if some owner orphans it, it loses those
//! references and lives; otherwise (all owners absent) it is deleted in
//! the background.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// `metadata.finalizers` entry of `propagationPolicy=Orphan`.
pub const ORPHAN_FINALIZER: &str = "orphan";
/// `metadata.finalizers` entry of `propagationPolicy=Foreground`.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// What an owner looks like to its dependent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerState {
    /// Exists with the referenced uid.
    Present,
    /// Gone, or replaced by an object with another uid.
    Absent,
    /// Being deleted with the `orphan` finalizer.
    Orphaning,
    /// Being deleted with the `foregroundDeletion` finalizer.
    WaitingForDependents,
}

/// What to do with one dependent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DependentAction {
    /// Leave it.
    Keep,
    /// Remove these owner references (by owner uid).
    RemoveOwnerRefs(Vec<String>),
    /// Delete it (in the foreground if an owner waits for it).
    Delete {
        /// `propagationPolicy=Foreground` rather than `Background`.
        foreground: bool,
    },
}

/// Decides for one dependent, given each owner's state.
pub fn decide_dependent(
    owners: &[OwnerReference],
    state: impl Fn(&OwnerReference) -> OwnerState,
) -> DependentAction {
    if owners.is_empty() {
        return DependentAction::Keep;
    }
    let states: Vec<(&OwnerReference, OwnerState)> = owners.iter().map(|o| (o, state(o))).collect();
    let uids_in = |s: OwnerState| -> Vec<String> {
        states
            .iter()
            .filter(|(_, st)| *st == s)
            .map(|(o, _)| o.uid.clone())
            .collect()
    };
    let absent = uids_in(OwnerState::Absent);
    let orphaning = uids_in(OwnerState::Orphaning);
    let present = states.iter().any(|(_, s)| *s == OwnerState::Present);
    let waiting = states
        .iter()
        .any(|(_, s)| *s == OwnerState::WaitingForDependents);
    let removable: Vec<String> = absent.iter().chain(orphaning.iter()).cloned().collect();
    if present {
        if removable.is_empty() {
            DependentAction::Keep
        } else {
            DependentAction::RemoveOwnerRefs(removable)
        }
    } else if waiting {
        DependentAction::Delete { foreground: true }
    } else if !orphaning.is_empty() {
        DependentAction::RemoveOwnerRefs(removable)
    } else {
        DependentAction::Delete { foreground: false }
    }
}

/// The finalizer an owner being deleted may now drop: `orphan` once no
/// dependent refers to it, `foregroundDeletion` once no dependent is left.
pub fn finalizer_to_remove(
    deleting: bool,
    finalizers: &[String],
    dependents: usize,
) -> Option<&'static str> {
    if !deleting || dependents > 0 {
        return None;
    }
    [ORPHAN_FINALIZER, FOREGROUND_FINALIZER]
        .into_iter()
        .find(|f| finalizers.iter().any(|x| x == f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use OwnerState::*;

    fn refs(uids: &[&str]) -> Vec<OwnerReference> {
        uids.iter()
            .map(|u| OwnerReference {
                uid: u.to_string(),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn dependent_decisions() {
        let cases: Vec<(&str, Vec<OwnerState>, DependentAction)> = vec![
            ("no owners", vec![], DependentAction::Keep),
            ("owner present", vec![Present], DependentAction::Keep),
            (
                "owner gone: background delete",
                vec![Absent],
                DependentAction::Delete { foreground: false },
            ),
            (
                "one of two gone: drop the dangling ref",
                vec![Present, Absent],
                DependentAction::RemoveOwnerRefs(vec!["1".into()]),
            ),
            (
                "orphaned",
                vec![Orphaning],
                DependentAction::RemoveOwnerRefs(vec!["0".into()]),
            ),
            (
                "orphaned and dangling",
                vec![Absent, Orphaning],
                DependentAction::RemoveOwnerRefs(vec!["0".into(), "1".into()]),
            ),
            (
                "foreground owner",
                vec![WaitingForDependents],
                DependentAction::Delete { foreground: true },
            ),
            (
                "foreground but another owner stays",
                vec![WaitingForDependents, Present],
                DependentAction::Keep,
            ),
        ];
        for (name, states, want) in cases {
            let uids: Vec<String> = (0..states.len()).map(|i| i.to_string()).collect();
            let owners = refs(&uids.iter().map(String::as_str).collect::<Vec<_>>());
            let got = decide_dependent(&owners, |o| states[o.uid.parse::<usize>().unwrap()]);
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn owner_finalizers() {
        let f = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            finalizer_to_remove(true, &f(&["orphan"]), 0),
            Some("orphan")
        );
        assert_eq!(finalizer_to_remove(true, &f(&["orphan"]), 2), None);
        assert_eq!(finalizer_to_remove(false, &f(&["orphan"]), 0), None);
        assert_eq!(
            finalizer_to_remove(true, &f(&["foregroundDeletion"]), 0),
            Some("foregroundDeletion")
        );
        assert_eq!(finalizer_to_remove(true, &f(&["example.com/x"]), 0), None);
    }
}
