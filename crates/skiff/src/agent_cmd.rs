//! `skiff agent`: a node agent joining a server.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

/// Node-agent flags shared by `skiff agent` and the agent embedded in `skiff server`.
#[derive(Args)]
pub struct AgentOptions {
    /// This node's name (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    /// This node's IP as other hosts reach it (default: the address of the
    /// default-route interface).
    #[arg(long)]
    node_ip: Option<IpAddr>,
    /// Use this containerd socket instead of starting a private containerd.
    #[arg(long)]
    containerd_socket: Option<PathBuf>,
    /// Pod address range of this node, until the server assigns node.spec.podCIDR.
    #[arg(long, default_value = "10.42.0.0/24")]
    pod_cidr: String,
    /// Name of the CNI bridge on this host.
    #[arg(long, default_value = "skiff0")]
    cni_bridge: String,
    /// Port of the agent's HTTPS endpoint (logs, exec); 0 picks a free one.
    #[arg(long, default_value_t = 10250)]
    agent_port: u16,
    /// The cluster's DNS domain.
    #[arg(long, default_value = skiff_agent::config::DEFAULT_CLUSTER_DOMAIN)]
    cluster_domain: String,
    /// Do not run the node-local cluster DNS (pods get the host's resolv.conf).
    #[arg(long)]
    no_cluster_dns: bool,
    /// Pods in their first start at once (sandbox and containers); later
    /// ones queue in arrival order.
    #[arg(long, default_value_t = skiff_agent::config::DEFAULT_MAX_PARALLEL_POD_STARTS as u16,
          value_parser = clap::value_parser!(u16).range(1..))]
    max_parallel_pod_starts: u16,
    /// Hard eviction thresholds, kubelet's syntax: the agent evicts pods
    /// while `memory.available` (MemAvailable) or `nodefs.available` (free
    /// space of the data dir's file system) is below them; "" never evicts.
    #[arg(long, default_value = skiff_agent::node::eviction::DEFAULT_EVICTION_HARD,
          value_parser = skiff_agent::node::eviction::parse_thresholds)]
    eviction_hard: EvictionThresholds,
    /// Soft eviction thresholds, the syntax of --eviction-hard: pods are
    /// evicted once one has been met for its grace period.
    #[arg(long, default_value = "")]
    eviction_soft: String,
    /// Grace periods of the soft thresholds, e.g. "memory.available=1m30s".
    #[arg(long, default_value = "")]
    eviction_soft_grace_period: String,
    /// Longest grace period (seconds) a pod evicted for a soft threshold
    /// gets: the smaller of this and its terminationGracePeriodSeconds.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    eviction_max_pod_grace_period: i64,
    /// How long MemoryPressure/DiskPressure stay true after their threshold
    /// was last met, in seconds.
    #[arg(long, default_value_t = 300)]
    eviction_pressure_transition_secs: u64,
    /// Remove unused images when the data dir's file system is at least
    /// this full (percent; 100 never).
    #[arg(long, default_value_t = skiff_agent::node::image_gc::DEFAULT_HIGH_THRESHOLD_PERCENT)]
    image_gc_high_threshold: u8,
    /// ... down to this (percent).
    #[arg(long, default_value_t = skiff_agent::node::image_gc::DEFAULT_LOW_THRESHOLD_PERCENT)]
    image_gc_low_threshold: u8,
    /// Images first seen less than this long ago (seconds) are kept.
    #[arg(long, default_value_t = 120)]
    image_minimum_gc_age_secs: u64,
    /// Seconds between image garbage collection passes.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    image_gc_period_secs: u64,
}

/// `--eviction-hard`, parsed (clap needs one type per argument).
type EvictionThresholds = Vec<skiff_agent::node::eviction::Threshold>;

impl AgentOptions {
    pub fn into_config(
        self,
        server_url: String,
        token: String,
        ca_pem: Option<String>,
        data_dir: PathBuf,
    ) -> anyhow::Result<skiff_agent::AgentConfig> {
        let image_gc = skiff_agent::node::image_gc::ImageGcPolicy {
            high_percent: self.image_gc_high_threshold,
            low_percent: self.image_gc_low_threshold,
            min_age: std::time::Duration::from_secs(self.image_minimum_gc_age_secs),
            period: std::time::Duration::from_secs(self.image_gc_period_secs),
        };
        image_gc.validate().map_err(anyhow::Error::msg)?;
        let eviction_soft = skiff_agent::node::eviction::parse_soft_thresholds(
            &self.eviction_soft,
            &self.eviction_soft_grace_period,
        )
        .map_err(|e| anyhow::anyhow!("--eviction-soft: {e}"))?;
        let node_name = match self.node_name {
            Some(n) => n,
            None => hostname_lowercase()?,
        };
        Ok(skiff_agent::AgentConfig {
            server_url,
            token,
            ca_pem,
            data_dir,
            node_name,
            node_ip: self.node_ip,
            listen_port: self.agent_port,
            containerd_socket: self.containerd_socket,
            pod_cidr: self.pod_cidr,
            cni_bridge: self.cni_bridge,
            cluster_domain: self.cluster_domain,
            cluster_dns: !self.no_cluster_dns,
            pod_cidr_wait: skiff_agent::config::DEFAULT_POD_CIDR_WAIT,
            max_parallel_pod_starts: usize::from(self.max_parallel_pod_starts),
            eviction_hard: self.eviction_hard,
            eviction_soft,
            eviction_max_pod_grace_period_seconds: self.eviction_max_pod_grace_period,
            eviction_pressure_transition_period: std::time::Duration::from_secs(
                self.eviction_pressure_transition_secs,
            ),
            image_gc,
        })
    }
}

fn hostname_lowercase() -> anyhow::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("reading the host name; pass --node-name")?;
    Ok(name.trim().to_lowercase())
}

/// Flags of `skiff agent`.
#[derive(Args)]
pub struct AgentArgs {
    /// The API server to join, e.g. https://10.0.0.1:6443.
    #[arg(long)]
    server: String,
    /// File holding the node token printed by the server (DATA_DIR/node-token).
    #[arg(long)]
    token_file: PathBuf,
    /// Where the agent keeps its state.
    #[arg(long, default_value = "/var/lib/skiff/agent")]
    data_dir: PathBuf,
    #[command(flatten)]
    agent: AgentOptions,
    /// Hollow mode for scale tests: register this many simulated nodes
    /// (named `<node-name>-00000`, …) that report their pods Running without
    /// running containers, like kubemark. No containerd is started.
    #[arg(long, default_value_t = 0)]
    simulate: usize,
    /// How often to return freed heap memory to the OS (`malloc_trim`), in
    /// milliseconds; 0 never.
    #[arg(long, default_value_t = crate::memory::DEFAULT_TRIM_INTERVAL.as_millis() as u64)]
    malloc_trim_interval_ms: u64,
    /// Seconds after start at which the agent gives back the pages of the
    /// `skiff` binary it has mapped (startup code); code still in use comes
    /// back as it runs. 0 never.
    #[arg(long, default_value_t = crate::memory::DEFAULT_SHED_TEXT_AFTER.as_secs())]
    shed_text_after_secs: u64,
    /// Seconds between later sheds, which give back the code of bursts
    /// (pod starts, deletions) once they are over; 0 sheds only once.
    #[arg(long, default_value_t = crate::memory::DEFAULT_SHED_TEXT_EVERY.as_secs())]
    shed_text_every_secs: u64,
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    if args.simulate > 0 {
        let token = std::fs::read_to_string(&args.token_file).with_context(|| {
            format!("reading the node token from {}", args.token_file.display())
        })?;
        let client = skiff_agent::bootstrap::connect(&args.server, token.trim(), None)
            .await
            .context("joining the server")?;
        let prefix = format!(
            "{}-",
            args.agent
                .node_name
                .clone()
                .unwrap_or_else(|| "hollow".into())
        );
        skiff_agent::hollow::run_hollow_nodes(
            client,
            args.simulate,
            &prefix,
            crate::shutdown_signal(),
        )
        .await
        .context("hollow nodes")?;
        return Ok(());
    }
    let token = std::fs::read_to_string(&args.token_file)
        .with_context(|| format!("reading the node token from {}", args.token_file.display()))?
        .trim()
        .to_string();
    let trimmer = (args.malloc_trim_interval_ms > 0).then(|| {
        tokio::spawn(crate::memory::trim_periodically(
            std::time::Duration::from_millis(args.malloc_trim_interval_ms),
            std::future::pending(),
        ))
    });
    let shedder = (args.shed_text_after_secs > 0).then(|| {
        let after = std::time::Duration::from_secs(args.shed_text_after_secs);
        let every = std::time::Duration::from_secs(args.shed_text_every_secs);
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            loop {
                match tokio::task::spawn_blocking(crate::memory::shed_binary_text).await {
                    Ok(Ok(bytes)) => tracing::debug!(bytes, "shed the binary's mapped pages"),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cannot shed the binary's pages");
                        return;
                    }
                    Err(_) => return,
                }
                if every.is_zero() {
                    return;
                }
                tokio::time::sleep(every).await;
            }
        })
    });
    let config = args
        .agent
        .into_config(args.server, token, None, args.data_dir)?;
    let result = skiff_agent::run(config, crate::shutdown_signal()).await;
    for task in [trimmer, shedder].into_iter().flatten() {
        task.abort();
    }
    result.context("agent")?;
    Ok(())
}
