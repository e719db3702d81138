//! Tests of the Deployment decision: single steps on fixed inputs, and
//! whole rollouts simulated step by step against a model of the
//! ReplicaSet controller and the nodes, checking Kubernetes' guarantees at
//! every step.

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, ReplicaSet, ReplicaSetStatus,
    RollingUpdateDeployment,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::core::{new_rs_new_replicas, reconcile, Action, Input, Plan};
use super::progress::{self, AVAILABLE, PROGRESSING};
use super::util::*;
use crate::slim_pod::SlimPod;
use crate::test_fixtures::*;

fn deployment(
    replicas: i32,
    image: &str,
    strategy: Option<(IntOrString, IntOrString)>,
) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("uid-web".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "web")])),
                ..Default::default()
            },
            template: template(image),
            strategy: Some(match strategy {
                Some((surge, unavailable)) => DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(surge),
                        max_unavailable: Some(unavailable),
                    }),
                },
                None => DeploymentStrategy {
                    type_: Some("Recreate".into()),
                    rolling_update: None,
                },
            }),
            ..Default::default()
        },
        status: None,
    }
}

/// A toy cluster: the Deployment, its ReplicaSets, and pods that become
/// available one step after their ReplicaSet asks for them.
struct Sim {
    d: Deployment,
    rss: Vec<ReplicaSet>,
    now: i64,
    created: i64,
}

impl Sim {
    fn new(d: Deployment) -> Sim {
        Sim {
            d,
            rss: Vec::new(),
            now: NOW_MS,
            created: 0,
        }
    }

    fn step(&mut self) -> Plan {
        let refs: Vec<&ReplicaSet> = self.rss.iter().collect();
        let pods: Vec<&SlimPod> = Vec::new();
        let plan = reconcile(&Input {
            deployment: &self.d,
            replicasets: &refs,
            pods: &pods,
            now_ms: self.now,
        });
        for a in &plan.actions {
            match a {
                Action::Create(rs) => {
                    let mut rs = (**rs).clone();
                    self.created += 1;
                    rs.metadata.uid = Some(format!(
                        "uid-{}",
                        rs.metadata.name.clone().unwrap_or_default()
                    ));
                    rs.metadata.creation_timestamp = Some(time(NOW_MS + self.created * 1000));
                    rs.metadata.generation = Some(1);
                    rs.status = Some(ReplicaSetStatus {
                        observed_generation: Some(1),
                        ..Default::default()
                    });
                    self.rss.push(rs);
                }
                Action::Update { rs, .. } => {
                    let cur = self
                        .rss
                        .iter_mut()
                        .find(|r| r.metadata.name == rs.metadata.name)
                        .expect("updated rs exists");
                    cur.spec = rs.spec.clone();
                    cur.metadata.annotations = rs.metadata.annotations.clone();
                }
                Action::Delete { name, .. } => self
                    .rss
                    .retain(|r| r.metadata.name.as_deref() != Some(name)),
                Action::Adopt { .. } | Action::Release { .. } => {}
            }
        }
        if let Some(rev) = &plan.revision {
            self.d
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(REVISION_ANNOTATION.into(), rev.clone());
        }
        if let Some(s) = &plan.status {
            self.d.status = Some(s.clone());
        }
        // The ReplicaSet controller and the nodes: pods asked for in the
        // previous step are available now; surplus pods go at once.
        for rs in &mut self.rss {
            let want = rs_replicas(rs);
            let st = rs.status.get_or_insert_with(Default::default);
            let was = st.replicas;
            let available = want.min(was);
            st.replicas = want;
            st.ready_replicas = Some(available);
            st.available_replicas = Some(available);
        }
        self.now += 1000;
        plan
    }

    fn available(&self) -> i32 {
        available_sum(self.rss.iter())
    }

    fn total_spec(&self) -> i32 {
        spec_sum(self.rss.iter())
    }

    /// Steps until a reconcile changes nothing; checks `check` after each.
    fn settle(&mut self, mut check: impl FnMut(&Sim)) -> usize {
        for i in 0..200 {
            let plan = self.step();
            check(self);
            if plan.actions.is_empty() && plan.status.is_none() && plan.revision.is_none() {
                return i;
            }
        }
        panic!("did not settle: {:#?}", self.rss);
    }

    fn new_template(&mut self, image: &str) {
        self.d.spec.template = template(image);
        self.d.metadata.generation = Some(self.d.metadata.generation.unwrap_or(1) + 1);
    }

    fn cond(&self, type_: &str) -> (String, String) {
        let conds = self
            .d
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let c = progress::get(&conds, type_).cloned().unwrap_or_default();
        (c.status.unwrap_or_default(), c.reason.unwrap_or_default())
    }

    fn image_of(rs: &ReplicaSet) -> String {
        rs.spec
            .template
            .as_ref()
            .and_then(|t| t.spec.as_ref())
            .and_then(|s| s.containers[0].image.clone())
            .unwrap_or_default()
    }
}

fn pct(s: &str) -> IntOrString {
    IntOrString::String(s.into())
}

#[test]
fn first_rollout_creates_one_replicaset_and_completes() {
    let mut sim = Sim::new(deployment(3, "v1", Some((pct("25%"), pct("25%")))));
    let plan = sim.step();
    let Some(Action::Create(rs)) = plan.actions.first() else {
        panic!("{plan:?}")
    };
    let hash = rs.metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_eq!(
        rs.metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );
    assert_eq!(
        rs.spec.selector.match_labels.as_ref().unwrap()["pod-template-hash"],
        hash
    );
    assert_eq!(rs_replicas(rs), 3);
    assert_eq!(revision(rs), 1);
    assert_eq!(
        sim.cond(PROGRESSING),
        ("True".into(), "NewReplicaSetCreated".into())
    );
    sim.settle(|_| {});
    let s = sim.d.status.clone().unwrap();
    assert_eq!(
        (
            s.replicas,
            s.updated_replicas,
            s.ready_replicas,
            s.available_replicas
        ),
        (Some(3), Some(3), Some(3), Some(3))
    );
    assert_eq!(
        sim.cond(AVAILABLE),
        ("True".into(), "MinimumReplicasAvailable".into())
    );
    assert_eq!(
        sim.cond(PROGRESSING),
        ("True".into(), "NewReplicaSetAvailable".into())
    );
    assert_eq!(annotation(&sim.d.metadata, REVISION_ANNOTATION), Some("1"));
}

#[test]
fn rolling_update_respects_surge_and_unavailable_at_every_step() {
    let cases = [
        (10, pct("25%"), pct("25%")),
        (4, IntOrString::Int(1), IntOrString::Int(0)),
        (4, IntOrString::Int(0), IntOrString::Int(1)),
        (5, pct("50%"), pct("0%")),
        (3, IntOrString::Int(0), IntOrString::Int(0)), // becomes unavailable 1
    ];
    for (n, surge, unavailable) in cases {
        let mut sim = Sim::new(deployment(
            n,
            "v1",
            Some((surge.clone(), unavailable.clone())),
        ));
        sim.settle(|_| {});
        let max_total = n + max_surge(&sim.d);
        let min_available = n - max_unavailable(&sim.d);
        sim.new_template("v2");
        sim.settle(|s| {
            assert!(
                s.total_spec() <= max_total,
                "{n} {surge:?}/{unavailable:?}: {} pods > {max_total}",
                s.total_spec()
            );
            assert!(
                s.available() >= min_available,
                "{n} {surge:?}/{unavailable:?}: {} available < {min_available}",
                s.available()
            );
        });
        let v2: Vec<_> = sim
            .rss
            .iter()
            .filter(|r| Sim::image_of(r) == "v2")
            .collect();
        assert_eq!(v2.len(), 1);
        assert_eq!(rs_replicas(v2[0]), n);
        assert_eq!(revision(v2[0]), 2);
        assert!(sim
            .rss
            .iter()
            .filter(|r| Sim::image_of(r) == "v1")
            .all(|r| rs_replicas(r) == 0));
        let s = sim.d.status.clone().unwrap();
        assert_eq!(
            (
                s.updated_replicas,
                s.available_replicas,
                s.observed_generation
            ),
            (Some(n), Some(n), Some(2))
        );
        assert_eq!(sim.cond(PROGRESSING).1, "NewReplicaSetAvailable");
    }
}

#[test]
fn undo_reuses_the_old_replicaset_with_a_new_revision() {
    let mut sim = Sim::new(deployment(2, "v1", Some((pct("25%"), pct("25%")))));
    sim.settle(|_| {});
    sim.new_template("v2");
    sim.settle(|_| {});
    // kubectl rollout undo copies the old ReplicaSet's template back.
    sim.new_template("v1");
    sim.settle(|_| {});
    assert_eq!(sim.rss.len(), 2, "no third ReplicaSet");
    let v1 = sim.rss.iter().find(|r| Sim::image_of(r) == "v1").unwrap();
    assert_eq!(rs_replicas(v1), 2);
    assert_eq!(revision(v1), 3);
    assert_eq!(
        annotation(&v1.metadata, REVISION_HISTORY_ANNOTATION),
        Some("1")
    );
    assert_eq!(annotation(&sim.d.metadata, REVISION_ANNOTATION), Some("3"));
}

#[test]
fn recreate_scales_old_to_zero_before_creating_new() {
    let mut sim = Sim::new(deployment(3, "v1", None));
    sim.settle(|_| {});
    sim.new_template("v2");
    let plan = sim.step();
    assert!(
        matches!(&plan.actions[..], [Action::Update { rs, from: Some(3) }] if rs_replicas(rs) == 0),
        "{plan:?}"
    );
    sim.settle(|s| {
        let v1_running = s.rss.iter().any(|r| {
            Sim::image_of(r) == "v1" && r.status.as_ref().is_some_and(|st| st.replicas > 0)
        });
        let v2_wanted = s
            .rss
            .iter()
            .any(|r| Sim::image_of(r) == "v2" && rs_replicas(r) > 0);
        assert!(!(v1_running && v2_wanted), "old and new pods together");
    });
    assert_eq!(sim.d.status.as_ref().unwrap().updated_replicas, Some(3));
}

#[test]
fn recreate_waits_for_old_pods_to_terminate() {
    let d = deployment(1, "v2", None);
    let mut old = replicaset("web-old", 0);
    old.metadata.owner_references = Some(vec![crate::owner::new_controller_ref(
        "apps/v1",
        "Deployment",
        &d.metadata,
    )
    .unwrap()]);
    old.spec.template = Some(template("v1"));
    let mut terminating = pod("web-old-x", Some("web-old"), RUNNING_READY);
    terminating.metadata.deletion_timestamp = Some(time(NOW_MS));
    let rss = vec![&old];
    let pods = vec![&terminating];
    let plan = reconcile(&Input {
        deployment: &d,
        replicasets: &rss,
        pods: &pods,
        now_ms: NOW_MS,
    });
    assert!(
        !plan.actions.iter().any(|a| matches!(a, Action::Create(_))),
        "{plan:?}"
    );
    let plan = reconcile(&Input {
        deployment: &d,
        replicasets: &rss,
        pods: &[],
        now_ms: NOW_MS,
    });
    assert!(
        plan.actions.iter().any(|a| matches!(a, Action::Create(_))),
        "{plan:?}"
    );
}

#[test]
fn scaling_mid_rollout_is_proportional() {
    let mut sim = Sim::new(deployment(
        10,
        "v1",
        Some((IntOrString::Int(3), IntOrString::Int(2))),
    ));
    sim.settle(|_| {});
    sim.new_template("v2");
    sim.step();
    sim.step();
    let before: Vec<i32> = sim.rss.iter().map(rs_replicas).collect();
    assert!(
        before.iter().all(|n| *n > 0),
        "both ReplicaSets active: {before:?}"
    );
    sim.d.spec.replicas = Some(20);
    let plan = sim.step();
    assert!(plan.actions.len() == 2, "both scaled: {plan:?}");
    assert_eq!(sim.total_spec(), 23, "20 + maxSurge 3");
    sim.settle(|_| {});
    assert_eq!(sim.d.status.as_ref().unwrap().available_replicas, Some(20));
}

#[test]
fn kubectl_scale_of_a_settled_deployment_scales_its_replicaset() {
    let mut sim = Sim::new(deployment(2, "v1", Some((pct("25%"), pct("25%")))));
    sim.settle(|_| {});
    sim.d.spec.replicas = Some(5);
    let plan = sim.step();
    assert!(
        matches!(&plan.actions[..], [Action::Update { rs, from: Some(2) }] if rs_replicas(rs) == 5),
        "{plan:?}"
    );
}

#[test]
fn paused_deployment_does_not_roll_out() {
    let mut sim = Sim::new(deployment(2, "v1", Some((pct("25%"), pct("25%")))));
    sim.settle(|_| {});
    sim.d.spec.paused = Some(true);
    sim.new_template("v2");
    sim.settle(|_| {});
    assert_eq!(sim.rss.len(), 1);
    assert_eq!(
        sim.cond(PROGRESSING),
        ("Unknown".into(), "DeploymentPaused".into())
    );
    sim.d.spec.paused = Some(false);
    sim.settle(|_| {});
    assert_eq!(sim.rss.len(), 2);
    assert_eq!(sim.cond(PROGRESSING).1, "NewReplicaSetAvailable");
}

#[test]
fn history_beyond_the_limit_is_deleted_oldest_first() {
    let mut d = deployment(1, "v1", Some((pct("25%"), pct("25%"))));
    d.spec.revision_history_limit = Some(1);
    let mut sim = Sim::new(d);
    for image in ["v1", "v2", "v3", "v4"] {
        sim.new_template(image);
        sim.settle(|_| {});
    }
    let mut images: Vec<String> = sim.rss.iter().map(Sim::image_of).collect();
    images.sort();
    assert_eq!(images, ["v3", "v4"]);
}

#[test]
fn stuck_rollout_exceeds_its_progress_deadline() {
    let mut d = deployment(1, "v1", Some((IntOrString::Int(1), IntOrString::Int(0))));
    d.spec.progress_deadline_seconds = Some(60);
    let conds = vec![progress::new_condition(
        PROGRESSING,
        "True",
        progress::RS_UPDATED_REASON,
        "x".into(),
        NOW_MS,
    )];
    let mut rs = replicaset("web-a", 1);
    rs.metadata.owner_references = Some(vec![crate::owner::new_controller_ref(
        "apps/v1",
        "Deployment",
        &d.metadata,
    )
    .unwrap()]);
    rs.spec.template = Some(template("v1"));
    rs.status = Some(ReplicaSetStatus {
        replicas: 1,
        ..Default::default()
    });
    let refs = vec![&rs];
    d.status = Some(k8s_openapi::api::apps::v1::DeploymentStatus {
        conditions: Some(conds),
        replicas: Some(1),
        updated_replicas: Some(1),
        observed_generation: Some(1),
        ..Default::default()
    });
    // Before the deadline: a requeue at the deadline, no timeout.
    let plan = reconcile(&Input {
        deployment: &d,
        replicasets: &refs,
        pods: &[],
        now_ms: NOW_MS + 30_000,
    });
    assert!(
        plan.requeue_after_ms
            .is_some_and(|ms| (30_000..=32_000).contains(&ms)),
        "{plan:?}"
    );
    // After: ProgressDeadlineExceeded.
    let plan = reconcile(&Input {
        deployment: &d,
        replicasets: &refs,
        pods: &[],
        now_ms: NOW_MS + 61_000,
    });
    let conds = plan.status.unwrap().conditions.unwrap();
    let c = progress::get(&conds, PROGRESSING).unwrap();
    assert_eq!(
        (c.status.as_deref(), c.reason.as_deref()),
        (Some("False"), Some("ProgressDeadlineExceeded"))
    );
}

#[test]
fn orphan_replicasets_are_adopted_and_foreign_ones_left_alone() {
    let d = deployment(1, "v1", Some((pct("25%"), pct("25%"))));
    let mut orphan = replicaset("web-orphan", 1);
    orphan.spec.template = Some(template("v1"));
    orphan.metadata.labels = Some(labels(&[("app", "web")]));
    let mut foreign = replicaset("other", 1);
    foreign.metadata.labels = Some(labels(&[("app", "web")]));
    foreign.metadata.owner_references = Some(vec![crate::owner::new_controller_ref(
        "apps/v1",
        "Deployment",
        &ObjectMeta {
            name: Some("x".into()),
            uid: Some("uid-x".into()),
            ..Default::default()
        },
    )
    .unwrap()]);
    let refs = vec![&orphan, &foreign];
    let plan = reconcile(&Input {
        deployment: &d,
        replicasets: &refs,
        pods: &[],
        now_ms: NOW_MS,
    });
    assert_eq!(
        plan.actions.first(),
        Some(&Action::Adopt {
            name: "web-orphan".into()
        })
    );
    assert!(
        !plan.actions.iter().any(|a| matches!(a, Action::Create(_))),
        "adopted one is the new ReplicaSet: {plan:?}"
    );
}

#[test]
fn new_replica_count_follows_kubernetes() {
    let d = deployment(10, "v1", Some((pct("25%"), pct("25%"))));
    let mut old = replicaset("old", 10);
    let mut new = replicaset("new", 0);
    // maxSurge 3: the new one may grow to 3 while the old keeps 10.
    assert_eq!(new_rs_new_replicas(&d, &[&old, &new], Some(&new)), 3);
    new.spec.replicas = Some(3);
    assert_eq!(new_rs_new_replicas(&d, &[&old, &new], Some(&new)), 3);
    old.spec.replicas = Some(5);
    assert_eq!(new_rs_new_replicas(&d, &[&old, &new], Some(&new)), 8);
}
