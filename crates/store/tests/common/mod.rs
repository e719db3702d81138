//! Helpers shared by the store's integration tests.
#![allow(dead_code)]

use skiff_store::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, Kv, PutRequest, RangeRequest, Store,
    StoreConfig,
};

/// Open a store in `dir` with default settings.
pub async fn open(dir: &std::path::Path) -> Store {
    Store::open(StoreConfig::new(dir))
        .await
        .expect("open store")
}

pub fn put_req(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        ..Default::default()
    }
}

pub async fn put(s: &Store, key: &str, value: &str) -> i64 {
    s.put(put_req(key, value)).await.expect("put").revision
}

pub fn get_req(key: &str) -> RangeRequest {
    RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    }
}

pub fn prefix_req(prefix: &str) -> RangeRequest {
    RangeRequest {
        key: prefix.as_bytes().to_vec(),
        range_end: skiff_store::prefix_end(prefix.as_bytes()),
        ..Default::default()
    }
}

pub fn del_req(key: &str) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    }
}

pub fn cmp(key: &str, result: CompareResult, target: CompareTarget) -> Compare {
    Compare {
        key: key.as_bytes().to_vec(),
        result,
        target,
    }
}

pub fn value_of(s: &[u8]) -> String {
    String::from_utf8_lossy(s).into_owned()
}
