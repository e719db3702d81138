//! placeholder: the store helper fills this in.
#![deny(missing_docs)]
pub mod error;
pub mod kv;
pub use error::StoreError;
pub use kv::*;
