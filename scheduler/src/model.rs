//! The pure core's vocabulary: nodes, pods and the scheduling constraints
//! they carry, in kube-scheduler's terms but without `k8s-openapi`'s
//! `Option`s, so filters and scores read plainly. [`crate::snapshot`] builds
//! these from API objects.

use std::collections::BTreeMap;

/// Amounts of the first-class resources the scheduler accounts for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    /// cpu in millicores.
    pub cpu_millis: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Local ephemeral storage in bytes.
    pub ephemeral_storage: i64,
    /// Number of pods.
    pub pods: i64,
}

impl Resources {
    /// The component-wise sum.
    pub fn plus(self, o: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis + o.cpu_millis,
            memory: self.memory + o.memory,
            ephemeral_storage: self.ephemeral_storage + o.ephemeral_storage,
            pods: self.pods + o.pods,
        }
    }

    /// The component-wise difference.
    pub fn minus(self, o: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis - o.cpu_millis,
            memory: self.memory - o.memory,
            ephemeral_storage: self.ephemeral_storage - o.ephemeral_storage,
            pods: self.pods - o.pods,
        }
    }
}

/// Extended resources (`nvidia.com/gpu`, `example.com/foo`): name → count.
pub type Extended = BTreeMap<String, i64>;

/// A taint on a node (`node.spec.taints`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Taint {
    /// The taint's key.
    pub key: String,
    /// The taint's value, possibly empty.
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

/// A pod's toleration (`pod.spec.tolerations`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Toleration {
    /// Key to match; empty with operator `Exists` matches every key.
    pub key: String,
    /// `Equal` (default) or `Exists`.
    pub operator: String,
    /// Value to match with `Equal`.
    pub value: String,
    /// Effect to match; empty matches every effect.
    pub effect: String,
}

impl Toleration {
    /// Whether this toleration tolerates `taint` (Kubernetes'
    /// `Toleration.ToleratesTaint`).
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if !self.effect.is_empty() && self.effect != taint.effect {
            return false;
        }
        if !self.key.is_empty() && self.key != taint.key {
            return false;
        }
        match self.operator.as_str() {
            "Exists" => true,
            "" | "Equal" => self.value == taint.value,
            _ => false,
        }
    }
}

/// One requirement of a label or node selector: `key operator values`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Requirement {
    /// The label key (or, in a node selector's `matchFields`, `metadata.name`).
    pub key: String,
    /// `In`, `NotIn`, `Exists`, `DoesNotExist`, and for nodes `Gt`, `Lt`.
    pub operator: String,
    /// The values the operator compares with.
    pub values: Vec<String>,
}

/// A `NodeSelectorTerm`: all its expressions must hold (AND).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct NodeSelectorTerm {
    /// `matchExpressions`, on node labels.
    pub match_expressions: Vec<Requirement>,
    /// `matchFields`, on node fields (only `metadata.name` exists).
    pub match_fields: Vec<Requirement>,
}

/// A `LabelSelector` on pods (`matchLabels` and `matchExpressions`, ANDed;
/// an empty selector matches every pod).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LabelSelector {
    /// `matchLabels`.
    pub match_labels: BTreeMap<String, String>,
    /// `matchExpressions`.
    pub match_expressions: Vec<Requirement>,
}

/// A `PodAffinityTerm`: pods matching `selector` in `namespaces`, counted
/// per value of the node label `topology_key`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PodAffinityTerm {
    /// `labelSelector`; `None` matches no pod (Kubernetes: a nil selector
    /// selects nothing).
    pub selector: Option<LabelSelector>,
    /// `namespaces`; empty means the pod's own namespace.
    pub namespaces: Vec<String>,
    /// `namespaceSelector: {}` was given: every namespace.
    pub all_namespaces: bool,
    /// `topologyKey`, e.g. `kubernetes.io/hostname` or
    /// `topology.kubernetes.io/zone`.
    pub topology_key: String,
}

/// A `topologySpreadConstraint`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SpreadConstraint {
    /// `maxSkew` (at least 1).
    pub max_skew: i32,
    /// `topologyKey`.
    pub topology_key: String,
    /// `whenUnsatisfiable: DoNotSchedule` (a filter) rather than
    /// `ScheduleAnyway` (a score).
    pub do_not_schedule: bool,
    /// `labelSelector`; `None` matches no pod.
    pub selector: Option<LabelSelector>,
    /// `minDomains` (only with DoNotSchedule), default 1.
    pub min_domains: i32,
}

/// A host port a pod asks for (`containers[].ports[].hostPort`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// `hostIP`; empty or `0.0.0.0` means every address.
    pub host_ip: String,
    /// The port number.
    pub port: i32,
}

impl HostPort {
    /// Whether two host ports collide (NodePorts plugin): same protocol and
    /// port, and the same IP or either one a wildcard.
    pub fn conflicts(&self, o: &HostPort) -> bool {
        let wild = |ip: &str| ip.is_empty() || ip == "0.0.0.0";
        self.port == o.port
            && self.protocol == o.protocol
            && (self.host_ip == o.host_ip || wild(&self.host_ip) || wild(&o.host_ip))
    }
}

/// What the scheduler knows of one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's name.
    pub name: String,
    /// `status.allocatable`.
    pub allocatable: Resources,
    /// Sum of the requests of the pods bound (or assumed) on it.
    pub requested: Resources,
    /// Extended resources in `status.allocatable`.
    pub extended_allocatable: Extended,
    /// Extended resources requested by its pods.
    pub extended_requested: Extended,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `spec.taints`, plus the condition taints (`node.kubernetes.io/not-ready`…)
    /// that Kubernetes' node lifecycle controller would add (see
    /// [`crate::snapshot`]).
    pub taints: Vec<Taint>,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// Host ports in use by its pods.
    pub used_ports: Vec<HostPort>,
}

/// A pod already on a node (or assumed there): what filters, scores and
/// preemption need of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BoundPod {
    /// `namespace/name`.
    pub key: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// The node it is on.
    pub node: String,
    /// Its requests (`pods` is 1).
    pub requests: Resources,
    /// Its extended resource requests.
    pub extended: Extended,
    /// Its host ports.
    pub host_ports: Vec<HostPort>,
    /// `spec.priority`.
    pub priority: i32,
    /// Its required anti-affinity terms, which also bind incoming pods
    /// (kube-scheduler checks existing pods' anti-affinity symmetrically).
    pub anti_affinity: Vec<PodAffinityTerm>,
    /// Being deleted already (`deletionTimestamp` set): preemption counts its
    /// room as coming free rather than evicting it again.
    pub terminating: bool,
}

/// What the scheduler needs of one pending pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PendingPod {
    /// `namespace/name`.
    pub key: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// Effective requests (`pods` is 1).
    pub requests: Resources,
    /// Extended resource requests (`nvidia.com/gpu: 1`).
    pub extended: Extended,
    /// `spec.priority` (resolved from `priorityClassName`).
    pub priority: i32,
    /// `spec.preemptionPolicy: Never`.
    pub never_preempt: bool,
    /// `spec.nodeName` asked for by the user (NodeName plugin).
    pub node_name: Option<String>,
    /// `spec.nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
    /// Required node affinity terms (ORed); `None` when absent.
    pub required_node_affinity: Option<Vec<NodeSelectorTerm>>,
    /// Preferred node affinity: (weight 1–100, term).
    pub preferred_node_affinity: Vec<(i32, NodeSelectorTerm)>,
    /// `spec.tolerations`.
    pub tolerations: Vec<Toleration>,
    /// Required pod affinity terms.
    pub pod_affinity: Vec<PodAffinityTerm>,
    /// Required pod anti-affinity terms.
    pub pod_anti_affinity: Vec<PodAffinityTerm>,
    /// Preferred pod affinity: (weight, term).
    pub preferred_pod_affinity: Vec<(i32, PodAffinityTerm)>,
    /// Preferred pod anti-affinity: (weight, term).
    pub preferred_pod_anti_affinity: Vec<(i32, PodAffinityTerm)>,
    /// `spec.topologySpreadConstraints`.
    pub spread: Vec<SpreadConstraint>,
    /// Host ports of its containers.
    pub host_ports: Vec<HostPort>,
    /// Node affinity of the PersistentVolumes it uses (each must match).
    pub volume_node_affinity: Vec<Vec<NodeSelectorTerm>>,
}

impl PendingPod {
    /// The pod as it will look once bound to `node`.
    pub fn bound_to(&self, node: &str) -> BoundPod {
        BoundPod {
            key: self.key.clone(),
            namespace: self.namespace.clone(),
            labels: self.labels.clone(),
            node: node.to_string(),
            requests: self.requests,
            extended: self.extended.clone(),
            host_ports: self.host_ports.clone(),
            priority: self.priority,
            anti_affinity: self.pod_anti_affinity.clone(),
            terminating: false,
        }
    }

    /// Whether only resources (and nothing that depends on other pods)
    /// decide where it fits: the fast path of [`crate::core`].
    pub fn is_simple(&self) -> bool {
        self.pod_affinity.is_empty()
            && self.pod_anti_affinity.is_empty()
            && self.preferred_pod_affinity.is_empty()
            && self.preferred_pod_anti_affinity.is_empty()
            && self.spread.is_empty()
            && self.host_ports.is_empty()
            && self.extended.is_empty()
    }
}

/// A PodDisruptionBudget as preemption sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DisruptionBudget {
    /// Its namespace.
    pub namespace: String,
    /// `spec.selector`.
    pub selector: LabelSelector,
    /// `status.disruptionsAllowed`.
    pub disruptions_allowed: i32,
}

/// The decision for one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Bind the pod to the node.
    Bind {
        /// `namespace/name` of the pod.
        pod: String,
        /// The chosen node.
        node: String,
    },
    /// The pod fits on `node` once `victims` are gone: evict them and set
    /// the pod's `status.nominatedNodeName`.
    Preempt {
        /// `namespace/name` of the pod.
        pod: String,
        /// The nominated node.
        node: String,
        /// `namespace/name` of each lower-priority pod to evict (empty when
        /// pods already terminating there make the room).
        victims: Vec<String>,
        /// The FailedScheduling message for this attempt.
        message: String,
    },
    /// No node fits; `message` says why in kube-scheduler's words.
    Unschedulable {
        /// `namespace/name` of the pod.
        pod: String,
        /// e.g. `0/3 nodes are available: 2 Insufficient cpu, 1 node(s) were
        /// unschedulable. preemption: 0/3 nodes are available: 1 Preemption
        /// is not helpful for scheduling, 2 No preemption victims found for
        /// incoming pod.`
        message: String,
    },
}

impl Placement {
    /// The pod this placement is for.
    pub fn pod(&self) -> &str {
        match self {
            Placement::Bind { pod, .. }
            | Placement::Preempt { pod, .. }
            | Placement::Unschedulable { pod, .. } => pod,
        }
    }
}
