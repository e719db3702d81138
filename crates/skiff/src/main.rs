//! `skiff`: one binary for the whole cluster. This file only parses the
//! command line and hands over to the library crates (see ARCHITECTURE.md).

mod agent_cmd;
mod bench_cmd;
mod bench_controllers;
mod bench_startup;
mod bench_store;
mod cluster_cmd;

mod images_cmd;
mod memory;
mod server_cmd;

use clap::{Parser, Subcommand};

/// Skiff: a small orchestrator that speaks the Kubernetes API.
#[derive(Parser)]
#[command(name = "skiff", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a control-plane server (store, API server, scheduler) and, unless
    /// --no-agent, a node agent in the same process.
    Server(Box<server_cmd::ServerArgs>),
    /// Run a node agent that joins a server and runs its pods on containerd.
    Agent(Box<agent_cmd::AgentArgs>),
    /// Manage container images without a registry.
    Images(images_cmd::ImagesArgs),
    /// Measure parts of Skiff and print tables.
    Bench(bench_cmd::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Server(_)) {
        // The agent keeps glibc's small cache: its memory counts more than
        // its CPU, and cached blocks are out of `malloc_trim`'s reach.
        memory::enlarge_thread_cache();
    }
    memory::pin_mmap_threshold();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(
                    "info,kube=warn,tower=warn,hyper=warn,openraft=warn,sled=warn",
                )
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => server_cmd::run(*args).await,
            Command::Agent(args) => agent_cmd::run(*args).await,
            Command::Images(args) => images_cmd::run(args).await,
            Command::Bench(args) => bench_cmd::run(args).await,
        }
    })
}

/// Resolves when the process gets SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops skiff");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
