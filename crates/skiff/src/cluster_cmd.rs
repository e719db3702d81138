//! The multi-server flags of `skiff server` and its membership subcommands.
//!
//! ```text
//! first server:  skiff server --peer-listen 0.0.0.0:2380 --peer-advertise http://10.0.0.1:2380
//!                (prints the join token, writes it to DATA/join-token)
//! more servers:  skiff server --join http://10.0.0.1:2380 --token TOKEN --peer-advertise http://10.0.0.2:2380
//! restart:       skiff server --data-dir DATA          (peer settings are kept in DATA/peer.json)
//! remove:        skiff server remove-member ID --data-dir DATA
//! list:          skiff server members --data-dir DATA
//! ```
//!
//! Without any of these flags (and without `DATA/peer.json`) the server is a
//! single-node store that opens no peer port, as before. `--join` takes the
//! *peer* URL of any server of the cluster (port 2380 by default), not its
//! Kubernetes API URL: the join handshake is a call of the raft peer
//! protocol, authenticated by the token.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::json;

/// Default peer port, etcd's.
const DEFAULT_PEER_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 2380);
/// Peer settings of a clustered server, kept for restarts.
const PEER_FILE: &str = "peer.json";
/// The join token, written by every clustered server.
const TOKEN_FILE: &str = "join-token";

/// Cluster flags of `skiff server`.
#[derive(Args, Clone, Debug, Default)]
pub struct ClusterArgs {
    /// Serve the raft peer protocol here and run as a server of a
    /// multi-server cluster (default with --join: 0.0.0.0:2380).
    #[arg(long)]
    peer_listen: Option<SocketAddr>,
    /// This server's peer URL as the other servers reach it (default: the
    /// --peer-listen address, or this host's outgoing address if that is
    /// 0.0.0.0).
    #[arg(long)]
    peer_advertise: Option<String>,
    /// Join the cluster of this server (its peer URL, http://HOST:2380).
    #[arg(long)]
    join: Option<String>,
    /// The join token printed by (and in DATA/join-token of) the first
    /// server.
    #[arg(long, env = "SKIFF_JOIN_TOKEN")]
    token: Option<String>,
    /// Build a store snapshot every this many raft entries (testing).
    #[arg(long, hide = true)]
    store_snapshot_entries: Option<u64>,
}

/// Subcommands of `skiff server`.
#[derive(Subcommand, Clone, Debug)]
pub enum ServerAction {
    /// Remove a server from the cluster (by its node id; see `members`).
    RemoveMember {
        /// The node id to remove.
        id: u64,
        /// Data directory of a server of the cluster (for its token and
        /// peer address).
        #[arg(long, default_value = "/var/lib/skiff")]
        data_dir: PathBuf,
    },
    /// List the cluster's servers.
    Members {
        /// Data directory of a server of the cluster.
        #[arg(long, default_value = "/var/lib/skiff")]
        data_dir: PathBuf,
    },
}

fn peer_url(s: &str) -> String {
    if s.contains("://") {
        s.to_string()
    } else {
        format!("http://{s}")
    }
}

/// The local address used to reach `target` (no packet is sent).
fn outgoing_ip(target: &str) -> Option<IpAddr> {
    let sock = UdpSocket::bind("0.0.0.0:0").ok()?;
    sock.connect(target).ok()?;
    sock.local_addr().ok().map(|a| a.ip())
}

fn host_port(url: &str) -> Option<String> {
    let rest = url.split("://").nth(1).unwrap_or(url);
    Some(rest.split('/').next()?.to_string())
}

/// The store's cluster settings from the flags and `DATA/peer.json`, or
/// `None` for a single-node server.
pub fn store_cluster_config(
    args: &ClusterArgs,
    data_dir: &Path,
) -> anyhow::Result<Option<skiff_store::ClusterConfig>> {
    let saved: Option<serde_json::Value> = std::fs::read(data_dir.join(PEER_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let saved_listen = saved
        .as_ref()
        .and_then(|v| v["peer_listen"].as_str()?.parse::<SocketAddr>().ok());
    let saved_advertise = saved
        .as_ref()
        .and_then(|v| v["peer_advertise"].as_str().map(str::to_string));
    if args.peer_listen.is_none() && args.join.is_none() && saved_listen.is_none() {
        if args.token.is_some() || args.peer_advertise.is_some() {
            bail!("--token and --peer-advertise need --join or --peer-listen");
        }
        return Ok(None);
    }
    let listen = args
        .peer_listen
        .or(saved_listen)
        .unwrap_or(DEFAULT_PEER_LISTEN);
    let join = match &args.join {
        Some(peer) => {
            let Some(token) = args.token.clone() else {
                bail!("--join needs --token (the first server's DATA/join-token)");
            };
            Some(skiff_store::JoinConfig {
                peer: peer_url(peer),
                token: token.trim().to_string(),
            })
        }
        None => None,
    };
    let advertise = match args.peer_advertise.clone().or(saved_advertise) {
        Some(a) => peer_url(&a),
        None if !listen.ip().is_unspecified() => format!("http://{listen}"),
        None => {
            let probe = join
                .as_ref()
                .and_then(|j| host_port(&j.peer))
                .unwrap_or_else(|| "192.0.2.1:2380".to_string());
            let ip = outgoing_ip(&probe).with_context(|| {
                format!("finding this host's address for peers (pass --peer-advertise): {probe}")
            })?;
            format!("http://{}", SocketAddr::new(ip, listen.port()))
        }
    };
    let record = json!({"peer_listen": listen.to_string(), "peer_advertise": advertise});
    std::fs::write(
        data_dir.join(PEER_FILE),
        serde_json::to_vec_pretty(&record)?,
    )
    .with_context(|| format!("writing {}", data_dir.join(PEER_FILE).display()))?;
    Ok(Some(skiff_store::ClusterConfig {
        peer_listen: listen,
        advertise,
        join,
    }))
}

/// Apply the hidden testing knobs to the store's config.
pub fn tune_store(args: &ClusterArgs, config: &mut skiff_store::StoreConfig) {
    if let Some(n) = args.store_snapshot_entries {
        config.snapshot_logs_since_last = n.max(10);
    }
}

/// After the store opened in cluster mode: publish the join token, and wait
/// until some server leads (the API server needs a working store).
pub async fn announce(store: &skiff_store::Store, data_dir: &Path) -> anyhow::Result<()> {
    let Some(token) = store.join_token() else {
        return Ok(());
    };
    let path = data_dir.join(TOKEN_FILE);
    write_private(&path, token)?;
    println!(
        "raft peer node {}: join token in {} (skiff server --join <this peer URL> --token {token})",
        store.node_id(),
        path.display()
    );
    loop {
        match store
            .wait_for_leader(std::time::Duration::from_secs(10))
            .await
        {
            Ok(leader) => {
                println!("raft leader: node {leader}");
                return Ok(());
            }
            Err(_) => tracing::warn!("no raft leader yet: waiting for a quorum of servers"),
        }
    }
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

fn saved_peer(data_dir: &Path) -> anyhow::Result<(String, String)> {
    let peer: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data_dir.join(PEER_FILE)).with_context(|| {
            format!(
                "{} is not a clustered server's data directory",
                data_dir.display()
            )
        })?)?;
    let advertise = peer["peer_advertise"]
        .as_str()
        .context("peer.json has no peer_advertise")?
        .to_string();
    let token = std::fs::read_to_string(data_dir.join(TOKEN_FILE))
        .with_context(|| format!("reading {}", data_dir.join(TOKEN_FILE).display()))?;
    Ok((advertise, token.trim().to_string()))
}

/// Run a membership subcommand against the local server.
pub async fn run_action(action: ServerAction) -> anyhow::Result<()> {
    match action {
        ServerAction::RemoveMember { id, data_dir } => {
            let (peer, token) = saved_peer(&data_dir)?;
            skiff_store::remove_member_via(&peer, &token, id)
                .await
                .with_context(|| format!("removing node {id}"))?;
            println!("removed node {id}");
        }
        ServerAction::Members { data_dir } => {
            let (peer, token) = saved_peer(&data_dir)?;
            let members = skiff_store::members_via(&peer, &token).await?;
            println!("{:<6} {:<8} PEER URL", "ID", "ROLE");
            for m in members {
                let role = if m.voter { "voter" } else { "learner" };
                println!("{:<6} {:<8} {}", m.id, role, m.addr);
            }
        }
    }
    Ok(())
}
