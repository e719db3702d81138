//! Generated protobuf and gRPC code for the etcd v3 API subset in
//! `proto/etcd/` (built by `build.rs` with tonic-prost-build). Public so
//! that tests and load drivers can use the generated clients.
#![allow(missing_docs)]
#![allow(clippy::all)]

/// etcd's `mvccpb` package: `KeyValue` and `Event`.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// etcd's `etcdserverpb` package: the KV, Watch, Lease and Maintenance
/// services.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}
