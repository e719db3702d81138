//! Clear errors when containerd or ctr is not installed. Runs in its own test binary
//! because it empties `PATH` for the whole process.

use std::path::PathBuf;

use skiff_agent::containerd::{ContainerdError, ContainerdOptions, ManagedContainerd};
use skiff_agent::images::{self, ImageError};

#[tokio::test]
async fn missing_containerd_and_ctr_are_named_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let empty_bin = dir.path().join("bin");
    std::fs::create_dir_all(&empty_bin).unwrap();
    // Build the archive before hiding the tools (the build itself needs none).
    let archive = dir.path().join("pause.tar");
    images::build_busybox_image(
        &archive,
        images::PAUSE_IMAGE,
        &["/bin/busybox", "sleep", "infinity"],
    )
    .unwrap();
    // Only test in this binary, so changing the environment races with nothing.
    std::env::set_var("PATH", &empty_bin);

    let err = ManagedContainerd::start(ContainerdOptions {
        state_dir: dir.path().join("containerd"),
        sandbox_image: images::PAUSE_IMAGE.into(),
        cni_bin_dir: PathBuf::from("/usr/lib/cni"),
        cni_conf_dir: dir.path().join("net.d"),
        log_level: "info".into(),
    })
    .await
    .unwrap_err();
    assert!(matches!(err, ContainerdError::NotInstalled), "{err:?}");
    assert!(
        err.to_string().contains("apt-get install containerd"),
        "{err}"
    );

    let socket = dir.path().join("containerd").join("containerd.sock");
    let err = images::import_archive(&socket, &archive).await.unwrap_err();
    assert!(matches!(err, ImageError::CtrMissing), "{err:?}");
    let err = images::image_present(&socket, images::PAUSE_IMAGE)
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::CtrMissing), "{err:?}");

    // A state dir too deep for a unix socket is refused before anything runs.
    let deep = dir.path().join("x".repeat(120));
    let err = ManagedContainerd::start(ContainerdOptions {
        state_dir: deep,
        sandbox_image: images::PAUSE_IMAGE.into(),
        cni_bin_dir: PathBuf::from("/usr/lib/cni"),
        cni_conf_dir: dir.path().join("net.d"),
        log_level: "info".into(),
    })
    .await
    .unwrap_err();
    assert!(
        matches!(err, ContainerdError::SocketPathTooLong(_)),
        "{err:?}"
    );
}
