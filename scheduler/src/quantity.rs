//! Parsing Kubernetes resource quantities (`100m`, `1.5`, `128Mi`, `1G`,
//! `2e3`) into integers: cpu in millicores, everything else in base units.
//!
//! The grammar is apimachinery's `resource.Quantity`: a signed decimal number
//! followed by a binary suffix (Ki Mi Gi Ti Pi Ei), a decimal suffix
//! (n u m "" k M G T P E) or a decimal exponent (e3, E-2). The parsing is
//! `skiff_api::quantity`, shared with the API server, the agent and the
//! quota code; this module only converts to the scheduler's integers.

use skiff_api::quantity::Quantity;

/// Why a quantity did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {0:?}")]
pub struct QuantityError(pub String);

/// Parses `q` and returns its value multiplied by `scale` (1000 for cpu in
/// millicores, 1 for bytes), rounded up as Kubernetes does when it converts a
/// quantity to a coarser unit. The parser is the API server's
/// (`skiff_api::quantity`), in exact integer arithmetic.
pub fn parse_scaled(q: &str, scale: i64) -> Result<i64, QuantityError> {
    Quantity::parse(q)
        .ok()
        .and_then(|v| v.scaled_ceil(scale))
        .and_then(|v| i64::try_from(v).ok())
        .ok_or_else(|| QuantityError(q.to_string()))
}

/// cpu quantity in millicores.
pub fn millicores(q: &str) -> Result<i64, QuantityError> {
    parse_scaled(q, 1000)
}

/// A quantity in its base unit (bytes for memory and storage, a count for
/// pods and extended resources).
pub fn base_units(q: &str) -> Result<i64, QuantityError> {
    parse_scaled(q, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_common_forms() {
        let cases: &[(&str, i64, i64)] = &[
            ("100m", 1000, 100),
            ("1", 1000, 1000),
            ("0.5", 1000, 500),
            ("2", 1, 2),
            ("128Mi", 1, 128 * 1024 * 1024),
            ("1Gi", 1, 1 << 30),
            ("1G", 1, 1_000_000_000),
            ("64Ki", 1, 65536),
            ("2e3", 1, 2000),
            ("1k", 1, 1000),
            ("1500m", 1, 2), // rounded up
        ];
        for (q, scale, want) in cases {
            assert_eq!(parse_scaled(q, *scale), Ok(*want), "{q}");
        }
    }

    #[test]
    fn refuses_garbage() {
        for q in ["", "abc", "1Zi", "--1", "1e"] {
            assert!(parse_scaled(q, 1).is_err(), "{q}");
        }
    }
}
