//! Kubernetes resource quantities (`resource.Quantity`: `100m`, `1Gi`, `2`),
//! parsed just far enough to add and compare them, as QoS classification and
//! the `requests <= limits` rule need.
//!
//! Source: k8s.io/apimachinery/pkg/api/resource/quantity.go. A quantity is
//! `<signed number><suffix>` where the suffix is a binary SI one (`Ki`..`Ei`),
//! a decimal SI one (`n`, `u`, `m`, ``, `k`, `M`, `G`, `T`, `P`, `E`) or a
//! decimal exponent (`e3`, `E-2`). Skiff keeps the value as a count of
//! nano-units in an `i128`; like Kubernetes, precision below one nano-unit is
//! rounded up.

use std::cmp::Ordering;

/// Why a string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The text does not match Kubernetes' quantity grammar.
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    Format,
    /// The value does not fit in Skiff's representation (beyond ±10^29 units).
    #[error("quantity is too large")]
    Overflow,
}

/// A parsed quantity, as a whole number of nano-units (10^-9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Quantity {
    nanos: i128,
}

impl Quantity {
    /// Zero.
    pub const ZERO: Quantity = Quantity { nanos: 0 };

    /// Parses a quantity string such as `250m`, `1.5Gi` or `1e3`.
    pub fn parse(text: &str) -> Result<Quantity, QuantityError> {
        let text = text.trim();
        let (negative, rest) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let number_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        let (number, suffix) = rest.split_at(number_len);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(QuantityError::Format);
        }
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        // The mantissa as an integer, with `scale` decimal digits after the point.
        let mut mantissa: i128 = 0;
        for b in whole.bytes().chain(frac.bytes()) {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(i128::from(b - b'0')))
                .ok_or(QuantityError::Overflow)?;
        }
        let scale = i32::try_from(frac.len()).map_err(|_| QuantityError::Overflow)?;
        let (binary_shift, decimal_exp) = parse_suffix(suffix)?;
        // value = mantissa * 10^(decimal_exp - scale) * 2^binary_shift, in units;
        // in nano-units the power of ten grows by 9.
        let exp10 = decimal_exp + 9 - scale;
        let mut nanos = mantissa
            .checked_mul(1i128 << binary_shift)
            .ok_or(QuantityError::Overflow)?;
        if exp10 >= 0 {
            let factor = 10i128
                .checked_pow(exp10 as u32)
                .ok_or(QuantityError::Overflow)?;
            nanos = nanos.checked_mul(factor).ok_or(QuantityError::Overflow)?;
        } else {
            // Below nano precision: round up, as Kubernetes does.
            let divisor = 10i128
                .checked_pow(exp10.unsigned_abs())
                .unwrap_or(i128::MAX);
            let q = nanos / divisor;
            nanos = if nanos % divisor != 0 { q + 1 } else { q };
        }
        Ok(Quantity {
            nanos: if negative { -nanos } else { nanos },
        })
    }

    /// Whether the quantity is below zero.
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// Whether the quantity is zero.
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// Compares two quantities by value (`1000m` equals `1`).
    pub fn cmp_value(&self, other: &Quantity) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl std::ops::Add for Quantity {
    type Output = Quantity;
    /// The sum of two quantities (saturating; sums of real requests never get near).
    fn add(self, other: Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos.saturating_add(other.nanos),
        }
    }
}

/// Splits a suffix into (power of two, power of ten).
fn parse_suffix(suffix: &str) -> Result<(u32, i32), QuantityError> {
    let pair = match suffix {
        "" => (0, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        _ => {
            let exp = suffix
                .strip_prefix(['e', 'E'])
                .ok_or(QuantityError::Format)?;
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(QuantityError::Format);
            }
            let e: i32 = exp.parse().map_err(|_| QuantityError::Overflow)?;
            if !(-40..=40).contains(&e) {
                return Err(QuantityError::Overflow);
            }
            (0, e)
        }
    };
    Ok(pair)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_compares() {
        let q = |s| Quantity::parse(s).unwrap();
        assert_eq!(q("1").cmp_value(&q("1000m")), Ordering::Equal);
        assert_eq!(q("1Ki").cmp_value(&q("1024")), Ordering::Equal);
        assert_eq!(q("1e3").cmp_value(&q("1k")), Ordering::Equal);
        assert_eq!(q("0.5").cmp_value(&q("500m")), Ordering::Equal);
        assert_eq!(q("1.5Gi").cmp_value(&q("1536Mi")), Ordering::Equal);
        assert_eq!(q("2").cmp_value(&q("1")), Ordering::Greater);
        assert!(q("-1").is_negative());
        assert!(q("0").is_zero());
        assert_eq!(q("100m") + q("900m"), q("1"));
        assert_eq!(q("1Ei").cmp_value(&q("1E")), Ordering::Greater);
        // Below a nano-unit rounds up.
        assert_eq!(q("0.0000000001"), q("1n"));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "abc", "1x", "1.2.3", ".", "1e", "1Kii", "m"] {
            assert!(Quantity::parse(bad).is_err(), "{bad}");
        }
    }
}
