//! Serde for values (`Vec<u8>`) as byte strings rather than sequences of
//! `u8`: `#[serde(with = "crate::byte_string")]`.
//!
//! bincode writes both the same way (a u64 length, then the bytes), so the
//! raft log, the snapshot and the sled records keep their format; but a
//! sequence goes through serde one byte at a time. For a 1.5 MiB value that
//! cost tens of milliseconds per encode or decode in a debug build, and a
//! value is encoded several times on its way (forwarded write, log record,
//! AppendEntries), which together outlasted openraft 0.9's AppendEntries
//! deadline (one heartbeat interval): the entry never replicated.
//! JSON still sees an array of numbers, as before.

use std::fmt;

use serde::{de, Deserializer, Serializer};

/// Serialize `v` as a byte string.
pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(v)
}

/// Deserialize a byte string (or, from formats without one, a sequence).
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    d.deserialize_byte_buf(ByteString)
}

struct ByteString;

impl<'de> de::Visitor<'de> for ByteString {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        // The hint comes from the input: cap what it may reserve.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(b) = seq.next_element()? {
            out.push(b);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Plain(Vec<u8>);

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Fast(#[serde(with = "super")] Vec<u8>);

    #[test]
    fn bincode_and_json_formats_are_unchanged() {
        let v = vec![0u8, 1, 2, 255];
        let plain = bincode::serialize(&Plain(v.clone())).unwrap();
        let fast = bincode::serialize(&Fast(v.clone())).unwrap();
        assert_eq!(plain, fast);
        assert_eq!(
            bincode::deserialize::<Fast>(&plain).unwrap(),
            Fast(v.clone())
        );
        let json = serde_json::to_string(&Plain(v.clone())).unwrap();
        assert_eq!(serde_json::to_string(&Fast(v.clone())).unwrap(), json);
        assert_eq!(serde_json::from_str::<Fast>(&json).unwrap(), Fast(v));
    }
}
