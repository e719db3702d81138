//! Parsing Kubernetes resource quantities (`100m`, `1.5`, `128Mi`, `1G`,
//! `2e3`) into integers: cpu in millicores, everything else in base units.
//!
//! The grammar is apimachinery's `resource.Quantity`: a signed decimal number
//! followed by a binary suffix (Ki Mi Gi Ti Pi Ei), a decimal suffix
//! (n u m "" k M G T P E) or a decimal exponent (e3, E-2).

/// Why a quantity did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {0:?}")]
pub struct QuantityError(pub String);

/// Parses `q` and returns its value multiplied by `scale` (1000 for cpu in
/// millicores, 1 for bytes), rounded up as Kubernetes does when it converts a
/// quantity to a coarser unit.
pub fn parse_scaled(q: &str, scale: i64) -> Result<i64, QuantityError> {
    let err = || QuantityError(q.to_string());
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    if number.is_empty() {
        return Err(err());
    }
    let value: f64 = number.parse().map_err(|_| err())?;
    let multiplier: f64 = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => {
            let exp: i32 = s[1..].parse().map_err(|_| err())?;
            10f64.powi(exp)
        }
        _ => return Err(err()),
    };
    let scaled = value * multiplier * scale as f64;
    if !scaled.is_finite() || scaled > i64::MAX as f64 || scaled < i64::MIN as f64 {
        return Err(err());
    }
    // Round up: a request of 0.1m cpu still needs 1m.
    Ok(scaled.ceil() as i64)
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
