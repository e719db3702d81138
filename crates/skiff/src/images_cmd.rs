//! `skiff images`: importing and building images with no registry.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

/// Flags of `skiff images`.
#[derive(Args)]
pub struct ImagesArgs {
    #[command(subcommand)]
    command: ImagesCommand,
}

#[derive(Subcommand)]
enum ImagesCommand {
    /// Import an OCI or Docker image archive into the node's containerd,
    /// under its fully qualified name.
    Import {
        /// The archive (`docker save`, `ctr export`, or an OCI layout tar).
        file: PathBuf,
        /// containerd socket (default: the one `skiff server` starts).
        #[arg(
            long,
            default_value = "/var/lib/skiff/agent/containerd/containerd.sock"
        )]
        containerd_socket: PathBuf,
    },
    /// Write a small OCI image archive made from the host's busybox-static.
    BuildBusybox {
        /// Where to write the archive.
        out: PathBuf,
        /// Fully qualified image name.
        #[arg(long, default_value = skiff_agent::images::BUSYBOX_IMAGE)]
        name: String,
    },
}

pub async fn run(args: ImagesArgs) -> anyhow::Result<()> {
    match args.command {
        ImagesCommand::Import {
            file,
            containerd_socket,
        } => {
            anyhow::ensure!(
                containerd_socket.exists(),
                "no containerd at {}: start `skiff server` (or pass --containerd-socket)",
                containerd_socket.display()
            );
            let names = skiff_agent::images::import_archive(&containerd_socket, &file)
                .await
                .with_context(|| format!("importing {}", file.display()))?;
            for name in names {
                println!("imported {name}");
            }
        }
        ImagesCommand::BuildBusybox { out, name } => {
            skiff_agent::images::build_busybox_image(&out, &name, &["sh"])
                .with_context(|| format!("building {}", out.display()))?;
            println!("wrote {} ({name})", out.display());
        }
    }
    Ok(())
}
