//! Compiles Skiff's etcd v3 API subset (`proto/etcd/*.proto`) and its raft
//! peer protocol (`proto/skiff/raft.proto`) with tonic-prost-build. Needs
//! `protoc` (Debian's `protobuf-compiler`, installed by `make deps`; or set
//! `PROTOC`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = "../../proto/etcd";
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(
            &[format!("{dir}/rpc.proto"), format!("{dir}/kv.proto")],
            &[dir.to_string()],
        )?;
    let dir = "../../proto/skiff";
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&[format!("{dir}/raft.proto")], &[dir.to_string()])?;
    Ok(())
}
