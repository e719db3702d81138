//! The Deployment controller's decision, as a pure function: the
//! Deployment, the ReplicaSets and pods of its namespace and the clock in;
//! ReplicaSet creations, scalings, deletions and the new status out.
//!
//! It follows `pkg/controller/deployment` step by step:
//! `syncDeployment` picks one path per reconcile —
//! 1. being deleted: status only;
//! 2. paused, or a scaling event (`replicas` changed): `sync` —
//!    proportional scaling, and history cleanup while paused;
//! 3. `Recreate`: scale every old ReplicaSet to 0, wait until their pods
//!    are gone, then create/scale up the new one;
//! 4. `RollingUpdate`: scale the new ReplicaSet up within `maxSurge`, else
//!    scale old ones down within `maxUnavailable`, else clean up history.
//!
//! Each path ends with the status and conditions. Like Kubernetes, one
//! reconcile takes one step; the ReplicaSet events it causes bring the
//! next reconcile.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::deployment::hash::{compute_hash, equal_ignore_hash, POD_TEMPLATE_HASH_LABEL};
use crate::deployment::progress::{self, PROGRESSING};
use crate::deployment::util::*;
use crate::owner::{claim, new_controller_ref, Claim};
use crate::pod_util::{created_ms, phase};
use crate::selector;
use crate::slim_pod::SlimPod;

/// One API action on a ReplicaSet.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Add the Deployment's controller reference to an orphan ReplicaSet.
    Adopt {
        /// ReplicaSet name.
        name: String,
    },
    /// Remove the Deployment's reference from a ReplicaSet it no longer selects.
    Release {
        /// ReplicaSet name.
        name: String,
    },
    /// Create this ReplicaSet.
    Create(Box<ReplicaSet>),
    /// Write `spec.replicas`, `spec.minReadySeconds` and annotations of this
    /// ReplicaSet; `from` is the replica count before, if it changed.
    Update {
        /// The ReplicaSet as it should be.
        rs: Box<ReplicaSet>,
        /// Replicas before the change (for the `ScalingReplicaSet` event).
        from: Option<i32>,
    },
    /// Delete this old ReplicaSet (history cleanup).
    Delete {
        /// ReplicaSet name.
        name: String,
        /// ReplicaSet uid (a delete precondition).
        uid: String,
    },
}

/// What the Deployment controller decided for one Deployment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// ReplicaSet actions, in order.
    pub actions: Vec<Action>,
    /// The Deployment's `deployment.kubernetes.io/revision` annotation, if
    /// it must change.
    pub revision: Option<String>,
    /// The status to write, if it differs from the stored one.
    pub status: Option<DeploymentStatus>,
    /// Reconcile again after this many milliseconds (progress deadline).
    pub requeue_after_ms: Option<i64>,
}

/// The inputs of one decision.
pub struct Input<'a> {
    /// The Deployment.
    pub deployment: &'a Deployment,
    /// Every ReplicaSet of its namespace.
    pub replicasets: &'a [&'a ReplicaSet],
    /// Every pod of its namespace (`Recreate` waits for old pods).
    pub pods: &'a [&'a SlimPod],
    /// The clock, milliseconds since the epoch.
    pub now_ms: i64,
}

/// Decides what to do for one Deployment.
pub fn reconcile(input: &Input<'_>) -> Plan {
    let mut s = Sync::new(input);
    let d = input.deployment;
    if d.metadata.deletion_timestamp.is_some() {
        s.finish(false);
    } else {
        s.check_paused_conditions();
        if d.spec.paused == Some(true) || s.is_scaling_event() {
            s.sync();
        } else if is_recreate(d) {
            s.rollout_recreate();
        } else {
            s.rollout_rolling();
        }
    }
    s.plan
}

/// The working state of one reconcile: the ReplicaSets as they will be
/// after the actions so far.
struct Sync<'a> {
    d: &'a Deployment,
    input: &'a Input<'a>,
    now: i64,
    /// Owned ReplicaSets (after claims), mutated as actions are planned.
    rss: Vec<ReplicaSet>,
    new_idx: Option<usize>,
    conditions: Vec<DeploymentCondition>,
    collision_count: Option<i32>,
    plan: Plan,
}

impl<'a> Sync<'a> {
    fn new(input: &'a Input<'a>) -> Sync<'a> {
        let d = input.deployment;
        let uid = d.metadata.uid.as_deref().unwrap_or_default();
        let deleting = d.metadata.deletion_timestamp.is_some();
        let mut plan = Plan::default();
        let mut rss = Vec::new();
        for rs in input.replicasets.iter().copied() {
            let selected = selector::matches(&d.spec.selector, rs.metadata.labels.as_ref());
            let name = rs.metadata.name.clone().unwrap_or_default();
            match claim(uid, deleting, &rs.metadata, selected) {
                Claim::Owned => rss.push(rs.clone()),
                Claim::Adopt => {
                    plan.actions.push(Action::Adopt { name });
                    rss.push(rs.clone());
                }
                Claim::Release => plan.actions.push(Action::Release { name }),
                Claim::Ignore => {}
            }
        }
        // Oldest first: FindNewReplicaSet takes the oldest matching one, and
        // the rolling steps walk old ReplicaSets oldest first.
        rss.sort_by(|a, b| {
            created_ms(&a.metadata)
                .cmp(&created_ms(&b.metadata))
                .then_with(|| a.metadata.name.cmp(&b.metadata.name))
        });
        let new_idx = rss.iter().position(|rs| {
            rs.spec
                .template
                .as_ref()
                .is_some_and(|t| equal_ignore_hash(t, &d.spec.template))
        });
        Sync {
            d,
            input,
            now: input.now_ms,
            rss,
            new_idx,
            conditions: d
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default(),
            collision_count: d.status.as_ref().and_then(|s| s.collision_count),
            plan,
        }
    }

    fn old_indices(&self) -> Vec<usize> {
        (0..self.rss.len())
            .filter(|i| Some(*i) != self.new_idx)
            .collect()
    }

    fn new_rs(&self) -> Option<&ReplicaSet> {
        self.new_idx.map(|i| &self.rss[i])
    }

    /// Records an update of ReplicaSet `i` (merged with an earlier one).
    fn push_update(&mut self, i: usize, from: i32) {
        let rs = self.rss[i].clone();
        let to = rs_replicas(&rs);
        for a in self.plan.actions.iter_mut() {
            match a {
                Action::Update {
                    rs: prev,
                    from: prev_from,
                } if prev.metadata.name == rs.metadata.name => {
                    let first = prev_from.unwrap_or(from);
                    **prev = rs;
                    *prev_from = (first != to).then_some(first);
                    return;
                }
                Action::Create(prev) if prev.metadata.name == rs.metadata.name => {
                    **prev = rs;
                    return;
                }
                _ => {}
            }
        }
        self.plan.actions.push(Action::Update {
            rs: Box::new(rs),
            from: (from != to).then_some(from),
        });
    }

    /// `scaleReplicaSet`: sets the size and the replica annotations;
    /// returns whether anything changed.
    fn scale(&mut self, i: usize, to: i32) -> bool {
        let d = self.d;
        let rs = &mut self.rss[i];
        let from = rs_replicas(rs);
        let annotations_changed =
            set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d));
        if from == to && !annotations_changed {
            return false;
        }
        rs.spec.replicas = Some(to);
        self.push_update(i, from);
        true
    }

    /// `getAllReplicaSetsAndSyncRevision`: brings the new ReplicaSet's
    /// revision and annotations up to date, or creates it. Returns false
    /// if a hash collision stopped the creation.
    fn sync_revision(&mut self, create: bool) -> bool {
        let d = self.d;
        let max_old = self
            .old_indices()
            .iter()
            .map(|i| revision(&self.rss[*i]))
            .max()
            .unwrap_or(0);
        let new_revision = (max_old + 1).to_string();
        if let Some(i) = self.new_idx {
            let rs = &mut self.rss[i];
            let mut changed = false;
            if rs.spec.min_ready_seconds.unwrap_or(0) != min_ready_seconds(d) {
                rs.spec.min_ready_seconds = Some(min_ready_seconds(d));
                changed = true;
            }
            let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
            for (k, v) in copyable_annotations(d) {
                if a.get(&k) != Some(&v) {
                    a.insert(k, v);
                    changed = true;
                }
            }
            let old_revision = a.get(REVISION_ANNOTATION).cloned().unwrap_or_default();
            if old_revision.parse::<i64>().unwrap_or(0) < max_old + 1 {
                if !old_revision.is_empty() {
                    // rollout undo reuses an old ReplicaSet: remember the
                    // revision numbers it had.
                    let history = match a.get(REVISION_HISTORY_ANNOTATION) {
                        Some(h) if !h.is_empty() => format!("{h},{old_revision}"),
                        _ => old_revision.clone(),
                    };
                    a.insert(REVISION_HISTORY_ANNOTATION.into(), history);
                }
                a.insert(REVISION_ANNOTATION.into(), new_revision.clone());
                changed = true;
            }
            let current = a.get(REVISION_ANNOTATION).cloned();
            let name = rs.metadata.name.clone().unwrap_or_default();
            if changed {
                let from = rs_replicas(&self.rss[i]);
                self.push_update(i, from);
            }
            if progress_deadline_seconds(d).is_some()
                && progress::get(&self.conditions, PROGRESSING).is_none()
            {
                progress::set(
                    &mut self.conditions,
                    progress::new_condition(
                        PROGRESSING,
                        "True",
                        progress::FOUND_NEW_RS_REASON,
                        format!("Found new replica set \"{name}\""),
                        self.now,
                    ),
                );
            }
            self.set_revision(current);
            return true;
        }
        if !create {
            return true;
        }
        let hash = compute_hash(&d.spec.template, self.collision_count);
        let name = format!("{}-{hash}", d.metadata.name.as_deref().unwrap_or_default());
        if self
            .input
            .replicasets
            .iter()
            .any(|rs| rs.metadata.name.as_deref() == Some(name.as_str()))
        {
            // Another ReplicaSet holds the name but not our template (else
            // it would be the new one): bump collisionCount so the next
            // hash differs (Kubernetes does the same).
            self.collision_count = Some(self.collision_count.unwrap_or(0) + 1);
            return false;
        }
        let mut template = d.spec.template.clone();
        template
            .metadata
            .get_or_insert_with(ObjectMeta::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        let mut selector = d.spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        let mut annotations = copyable_annotations(d);
        annotations.insert(REVISION_ANNOTATION.into(), new_revision.clone());
        let old: Vec<&ReplicaSet> = self.old_indices().iter().map(|i| &self.rss[*i]).collect();
        let size = new_rs_new_replicas(d, &old, None);
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: d.metadata.namespace.clone(),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                annotations: Some(annotations),
                owner_references: new_controller_ref("apps/v1", "Deployment", &d.metadata)
                    .map(|r| vec![r]),
                ..Default::default()
            },
            spec: ReplicaSetSpec {
                replicas: Some(size),
                min_ready_seconds: Some(min_ready_seconds(d)),
                selector,
                template: Some(template),
            },
            status: None,
        };
        set_replicas_annotations(&mut rs, replicas(d), replicas(d) + max_surge(d));
        self.plan.actions.push(Action::Create(Box::new(rs.clone())));
        self.rss.push(rs);
        self.new_idx = Some(self.rss.len() - 1);
        if progress_deadline_seconds(d).is_some() {
            progress::set(
                &mut self.conditions,
                progress::new_condition(
                    PROGRESSING,
                    "True",
                    progress::NEW_RS_REASON,
                    format!("Created new replica set \"{name}\""),
                    self.now,
                ),
            );
        }
        self.set_revision(Some(new_revision));
        true
    }

    fn set_revision(&mut self, rev: Option<String>) {
        if let Some(rev) = rev {
            if annotation(&self.d.metadata, REVISION_ANNOTATION) != Some(rev.as_str()) {
                self.plan.revision = Some(rev);
            }
        }
    }

    /// `checkPausedConditions`.
    fn check_paused_conditions(&mut self) {
        if progress_deadline_seconds(self.d).is_none() {
            return;
        }
        let cond = progress::get(&self.conditions, PROGRESSING);
        if cond.is_some_and(|c| c.reason.as_deref() == Some(progress::TIMED_OUT_REASON)) {
            return;
        }
        let paused_cond =
            cond.is_some_and(|c| c.reason.as_deref() == Some(progress::PAUSED_REASON));
        let paused = self.d.spec.paused == Some(true);
        if paused && !paused_cond {
            progress::set(
                &mut self.conditions,
                progress::new_condition(
                    PROGRESSING,
                    "Unknown",
                    progress::PAUSED_REASON,
                    "Deployment is paused".into(),
                    self.now,
                ),
            );
        } else if !paused && paused_cond {
            progress::set(
                &mut self.conditions,
                progress::new_condition(
                    PROGRESSING,
                    "Unknown",
                    progress::RESUMED_REASON,
                    "Deployment is resumed".into(),
                    self.now,
                ),
            );
        }
    }

    /// `isScalingEvent`: an active ReplicaSet was sized for another
    /// `replicas` than the Deployment now asks for.
    fn is_scaling_event(&mut self) -> bool {
        let n = replicas(self.d);
        self.rss.iter().enumerate().any(|(i, rs)| {
            (Some(i) == self.new_idx || rs_replicas(rs) > 0)
                && int_annotation(rs, DESIRED_REPLICAS_ANNOTATION).is_some_and(|want| want != n)
        })
    }

    /// `sync`: scale and, while paused, clean up; status without rollout
    /// conditions.
    fn sync(&mut self) {
        self.sync_revision(false);
        self.scale_deployment();
        if self.d.spec.paused == Some(true) {
            self.cleanup();
        }
        self.finish(false);
    }

    /// `scale`: brings the total to `replicas` (+ surge during a rollout),
    /// proportionally to each ReplicaSet's size.
    fn scale_deployment(&mut self) {
        let d = self.d;
        let n = replicas(d);
        let active: Vec<usize> = (0..self.rss.len())
            .filter(|i| rs_replicas(&self.rss[*i]) > 0)
            .collect();
        // FindActiveOrLatest.
        let target = match active.len() {
            0 => self.new_idx.or_else(|| self.old_indices().last().copied()),
            1 => Some(active[0]),
            _ => None,
        };
        if let Some(i) = target {
            self.scale(i, n);
            return;
        }
        // IsSaturated: the new ReplicaSet is fully rolled out.
        if let Some(i) = self.new_idx {
            let rs = &self.rss[i];
            if int_annotation(rs, DESIRED_REPLICAS_ANNOTATION) == Some(n)
                && rs_replicas(rs) == n
                && rs_available(rs) == n
            {
                for j in self.old_indices() {
                    if rs_replicas(&self.rss[j]) > 0 {
                        self.scale(j, 0);
                    }
                }
                return;
            }
        }
        if is_recreate(d) {
            return;
        }
        let allowed = if n > 0 { n + max_surge(d) } else { 0 };
        let total = spec_sum(active.iter().map(|i| &self.rss[*i]));
        let to_add = allowed - total;
        let mut order = active.clone();
        // Bigger first; ties: newer first when growing, older first when shrinking.
        order.sort_by(|a, b| {
            let (ra, rb) = (&self.rss[*a], &self.rss[*b]);
            rs_replicas(rb).cmp(&rs_replicas(ra)).then_with(|| {
                let (ca, cb) = (created_ms(&ra.metadata), created_ms(&rb.metadata));
                if to_add > 0 {
                    cb.cmp(&ca)
                } else {
                    ca.cmp(&cb)
                }
            })
        });
        let mut sizes: Vec<(usize, i32)> = Vec::new();
        let mut added = 0;
        for i in &order {
            let rs = &self.rss[*i];
            let mut size = rs_replicas(rs);
            if to_add != 0 {
                let p = proportion(d, rs, to_add, added);
                size += p;
                added += p;
            }
            sizes.push((*i, size));
        }
        if to_add != 0 {
            if let Some(first) = sizes.first_mut() {
                first.1 = (first.1 + to_add - added).max(0);
            }
        }
        for (i, size) in sizes {
            self.scale(i, size);
        }
    }

    /// `rolloutRolling`.
    fn rollout_rolling(&mut self) {
        if !self.sync_revision(true) {
            return self.finish(false);
        }
        if self.reconcile_new_replica_set() || self.reconcile_old_replica_sets() {
            return self.finish(true);
        }
        let stored = self.d.status.clone().unwrap_or_default();
        if progress::is_complete(self.d, &stored) {
            self.cleanup();
        }
        self.finish(true);
    }

    /// `reconcileNewReplicaSet`.
    fn reconcile_new_replica_set(&mut self) -> bool {
        let Some(i) = self.new_idx else { return false };
        let n = replicas(self.d);
        let cur = rs_replicas(&self.rss[i]);
        if cur == n {
            return false;
        }
        if cur > n {
            return self.scale(i, n);
        }
        let all: Vec<&ReplicaSet> = self.rss.iter().collect();
        let want = new_rs_new_replicas(self.d, &all, Some(&self.rss[i]));
        self.scale(i, want)
    }

    /// `reconcileOldReplicaSets`.
    fn reconcile_old_replica_sets(&mut self) -> bool {
        let old = self.old_indices();
        if spec_sum(old.iter().map(|i| &self.rss[*i])) == 0 {
            return false;
        }
        let d = self.d;
        let all_pods = spec_sum(self.rss.iter());
        let min_available = replicas(d) - max_unavailable(d);
        let new_unavailable = self
            .new_rs()
            .map_or(0, |rs| rs_replicas(rs) - rs_available(rs));
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return false;
        }
        // cleanupUnhealthyReplicas: old pods that are not available go first,
        // they cost no availability.
        let mut cleaned = 0;
        for &i in &old {
            if cleaned >= max_scaled_down {
                break;
            }
            let rs = &self.rss[i];
            let (size, available) = (rs_replicas(rs), rs_available(rs));
            if size == 0 || available >= size {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(size - available);
            self.scale(i, size - down);
            cleaned += down;
        }
        // scaleDownOldReplicaSetsForRollingUpdate.
        let available = available_sum(self.rss.iter());
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            for &i in &old {
                if scaled >= total {
                    break;
                }
                let size = rs_replicas(&self.rss[i]);
                if size == 0 {
                    continue;
                }
                let down = size.min(total - scaled);
                self.scale(i, size - down);
                scaled += down;
            }
        }
        cleaned + scaled > 0
    }

    /// `rolloutRecreate`.
    fn rollout_recreate(&mut self) {
        self.sync_revision(false);
        let mut scaled_down = false;
        for i in self.old_indices() {
            if rs_replicas(&self.rss[i]) > 0 {
                scaled_down |= self.scale(i, 0);
            }
        }
        if scaled_down || self.old_pods_running() {
            return self.finish(true);
        }
        if self.new_idx.is_none() && !self.sync_revision(true) {
            return self.finish(false);
        }
        if let Some(i) = self.new_idx {
            self.scale(i, replicas(self.d));
        }
        let stored = self.d.status.clone().unwrap_or_default();
        if progress::is_complete(self.d, &stored) {
            self.cleanup();
        }
        self.finish(true);
    }

    /// `oldPodsRunning`: an old ReplicaSet still reports pods, or one of its
    /// pods has not finished (terminating pods count: Recreate guarantees
    /// old and new never run together).
    fn old_pods_running(&self) -> bool {
        let old = self.old_indices();
        if actual_sum(old.iter().map(|i| &self.rss[*i])) > 0 {
            return true;
        }
        let uids: Vec<&str> = old
            .iter()
            .filter_map(|i| self.rss[*i].metadata.uid.as_deref())
            .collect();
        self.input.pods.iter().any(|p| {
            crate::owner::controller_ref(&p.metadata)
                .is_some_and(|r| uids.contains(&r.uid.as_str()))
                && !matches!(phase(p), "Failed" | "Succeeded")
        })
    }

    /// `cleanupDeployment`: deletes the oldest empty ReplicaSets beyond
    /// `revisionHistoryLimit`.
    fn cleanup(&mut self) {
        let limit = self
            .d
            .spec
            .revision_history_limit
            .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT)
            .max(0) as usize;
        let mut cleanable: Vec<&ReplicaSet> = self
            .old_indices()
            .into_iter()
            .map(|i| &self.rss[i])
            .filter(|rs| {
                rs_replicas(rs) == 0
                    && actual_sum([*rs]) == 0
                    && rs.metadata.deletion_timestamp.is_none()
                    && rs.status.as_ref().and_then(|s| s.observed_generation)
                        >= rs.metadata.generation
            })
            .collect();
        if cleanable.len() <= limit {
            return;
        }
        cleanable.sort_by_key(|rs| (revision(rs), created_ms(&rs.metadata)));
        let n = cleanable.len() - limit;
        let deletes: Vec<Action> = cleanable[..n]
            .iter()
            .map(|rs| Action::Delete {
                name: rs.metadata.name.clone().unwrap_or_default(),
                uid: rs.metadata.uid.clone().unwrap_or_default(),
            })
            .collect();
        self.plan.actions.extend(deletes);
    }

    /// Computes the status (with rollout conditions unless `sync` or
    /// status-only) and keeps it if it differs from the stored one.
    fn finish(&mut self, rollout: bool) {
        let all: Vec<&ReplicaSet> = self.rss.iter().collect();
        let new_rs = self.new_rs();
        let mut status = progress::calculate_status(
            self.d,
            &all,
            new_rs,
            self.conditions.clone(),
            self.collision_count,
            self.now,
        );
        if rollout {
            let mut conds = status.conditions.take().unwrap_or_default();
            progress::rollout_conditions(self.d, &status, new_rs, &mut conds, self.now);
            let complete = progress::is_complete(self.d, &status);
            self.plan.requeue_after_ms =
                progress::until_deadline(self.d, &conds, complete, self.now);
            status.conditions = Some(conds);
        }
        if self.d.status.as_ref() != Some(&status) {
            self.plan.status = Some(status);
        }
    }
}

/// `NewRSNewReplicas`: the new ReplicaSet's next size. Rolling: grow by
/// what `maxSurge` leaves room for, up to `replicas`. Recreate: `replicas`.
pub fn new_rs_new_replicas(
    d: &Deployment,
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
) -> i32 {
    let n = replicas(d);
    let current_new = new_rs.map_or(0, rs_replicas);
    if is_recreate(d) {
        return n;
    }
    let max_total = n + max_surge(d);
    let current = spec_sum(all.iter().copied());
    if current >= max_total {
        return current_new;
    }
    let up = (max_total - current).min(n - current_new).max(0);
    current_new + up
}

/// `GetProportion`: this ReplicaSet's share of `to_add` replicas.
fn proportion(d: &Deployment, rs: &ReplicaSet, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = replica_set_fraction(d, rs);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// `getReplicaSetFraction`: how many replicas this ReplicaSet gains or
/// loses when the Deployment's size changes, scaled from the
/// `max-replicas` it was sized for.
fn replica_set_fraction(d: &Deployment, rs: &ReplicaSet) -> i32 {
    let n = replicas(d);
    if n == 0 {
        return -rs_replicas(rs);
    }
    let deployment_replicas = n + max_surge(d);
    let annotated = int_annotation(rs, MAX_REPLICAS_ANNOTATION)
        .or_else(|| d.status.as_ref().and_then(|s| s.replicas))
        .unwrap_or(0);
    if annotated == 0 {
        return 0;
    }
    let size = f64::from(rs_replicas(rs)) * f64::from(deployment_replicas) / f64::from(annotated);
    size.round() as i32 - rs_replicas(rs)
}
