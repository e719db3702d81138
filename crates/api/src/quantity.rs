//! Kubernetes resource quantities (`resource.Quantity`: `100m`, `1Gi`, `2`):
//! parsed, added, compared (QoS classification, `requests <= limits`,
//! quota checks) and written back in Kubernetes' canonical form
//! ([`Quantity::to_canonical`]: `1500m`, `2k`, `1536Mi`), as `status.used`
//! of a ResourceQuota shows them.
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

/// How a quantity is written, taken from the suffix it was parsed with
/// (apimachinery's `Format`); sums keep the left operand's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// Powers of ten with SI suffixes (`500m`, `2k`, `1G`); also no suffix.
    #[default]
    DecimalSI,
    /// Powers of 1024 (`Ki`, `Mi`, `Gi`, …).
    BinarySI,
    /// `e<n>` exponents (`1e3`).
    DecimalExponent,
}

/// A parsed quantity, as a whole number of nano-units (10^-9) and the
/// format it is written in. Equality and order are by value only (`1000m`
/// equals `1`), as `Quantity.Cmp` compares.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Quantity) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Quantity) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Quantity) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

/// Nano-units per unit.
const NANOS_PER_UNIT: i128 = 1_000_000_000;

impl Quantity {
    /// Zero.
    pub const ZERO: Quantity = Quantity {
        nanos: 0,
        format: Format::DecimalSI,
    };

    /// `n` whole units in decimal format (a count such as `pods=3`).
    pub fn from_units(n: i64) -> Quantity {
        Quantity {
            nanos: i128::from(n) * NANOS_PER_UNIT,
            format: Format::DecimalSI,
        }
    }

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
        let format = if binary_shift > 0 {
            Format::BinarySI
        } else if suffix.starts_with(['e', 'E']) {
            Format::DecimalExponent
        } else {
            Format::DecimalSI
        };
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
            format,
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

    /// The value times `per_unit`, rounded up to a whole number, as
    /// Kubernetes' `MilliValue` (`per_unit` 1000) and `Value` (1) round:
    /// `0.1m` of cpu is 1 millicore. `None` if it overflows.
    pub fn scaled_ceil(&self, per_unit: i64) -> Option<i128> {
        let scaled = self.nanos.checked_mul(i128::from(per_unit))?;
        let whole = scaled.div_euclid(NANOS_PER_UNIT);
        Some(if scaled.rem_euclid(NANOS_PER_UNIT) == 0 {
            whole
        } else {
            whole + 1
        })
    }

    /// The format the quantity is written in.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The quantity as Kubernetes writes it (`Quantity.String()`, its
    /// `CanonicalizeBytes`): the shortest form without losing precision in
    /// its format. Decimal: an integer mantissa and an exponent that is a
    /// multiple of three (`1500m`, `2k`, `1G`); binary: the largest power of
    /// 1024 that divides the value (`1536Mi`), falling back to decimal below
    /// 1024 or for fractions; exponent: `1e3`.
    pub fn to_canonical(&self) -> String {
        if self.nanos == 0 {
            return "0".into();
        }
        let sign = if self.nanos < 0 { "-" } else { "" };
        let abs = self.nanos.unsigned_abs();
        let whole = abs.is_multiple_of(NANOS_PER_UNIT as u128);
        if self.format == Format::BinarySI && whole && abs >= 1024 * NANOS_PER_UNIT as u128 {
            let (mut mantissa, mut power) = (abs / NANOS_PER_UNIT as u128, 0);
            while mantissa.is_multiple_of(1024) && power < BINARY_SUFFIXES.len() - 1 {
                mantissa /= 1024;
                power += 1;
            }
            return format!("{sign}{mantissa}{}", BINARY_SUFFIXES[power]);
        }
        // mantissa * 10^exponent with the exponent a multiple of three.
        let (mut mantissa, mut exponent) = (abs, -9i32);
        while mantissa.is_multiple_of(10) {
            mantissa /= 10;
            exponent += 1;
        }
        while exponent.rem_euclid(3) != 0 || exponent > 18 {
            mantissa *= 10;
            exponent -= 1;
        }
        let suffix = match self.format {
            Format::DecimalExponent if exponent == 0 => String::new(),
            Format::DecimalExponent => format!("e{exponent}"),
            _ => DECIMAL_SUFFIXES[((exponent + 9) / 3) as usize].to_string(),
        };
        format!("{sign}{mantissa}{suffix}")
    }
}

/// Binary suffixes by power of 1024.
const BINARY_SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
/// Decimal suffixes by power of 1000, from 10^-9.
const DECIMAL_SUFFIXES: [&str; 10] = ["n", "u", "m", "", "k", "M", "G", "T", "P", "E"];

impl std::fmt::Display for Quantity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_canonical())
    }
}

impl std::ops::Add for Quantity {
    type Output = Quantity;
    /// The sum of two quantities (saturating; sums of real requests never
    /// get near), in the left operand's format unless that one is zero
    /// (a sum started from zero takes the first addend's format).
    fn add(self, other: Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos.saturating_add(other.nanos),
            format: if self.nanos == 0 {
                other.format
            } else {
                self.format
            },
        }
    }
}

impl std::ops::AddAssign for Quantity {
    fn add_assign(&mut self, other: Quantity) {
        *self = *self + other;
    }
}

impl std::ops::Sub for Quantity {
    type Output = Quantity;
    /// The difference (saturating), in the left operand's format.
    fn sub(self, other: Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos.saturating_sub(other.nanos),
            format: self.format,
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
    fn canonical_forms_match_kubernetes() {
        let cases = [
            ("0", "0"),
            ("500m", "500m"),
            ("0.5", "500m"),
            ("1500m", "1500m"),
            ("1000m", "1"),
            ("2000", "2k"),
            ("1G", "1G"),
            ("1Gi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("1024", "1024"),
            ("1024Ki", "1Mi"),
            ("1e3", "1e3"),
            ("100n", "100n"),
            ("-2", "-2"),
            ("12e6", "12e6"),
        ];
        for (input, want) in cases {
            assert_eq!(
                Quantity::parse(input).unwrap().to_canonical(),
                want,
                "{input}"
            );
        }
        let q = |s| Quantity::parse(s).unwrap();
        // Binary below 1024 or fractional falls back to decimal.
        assert_eq!((q("1Ki") - q("1000")).to_canonical(), "24");
        assert_eq!((q("500m") + q("500m")).to_canonical(), "1");
        assert_eq!(
            (Quantity::ZERO + q("1Gi") + q("512Mi")).to_canonical(),
            "1536Mi"
        );
        assert_eq!(Quantity::from_units(3).to_canonical(), "3");
    }

    #[test]
    fn scaled_values_round_up() {
        let q = |s| Quantity::parse(s).unwrap();
        assert_eq!(q("100m").scaled_ceil(1000), Some(100));
        assert_eq!(q("0.1m").scaled_ceil(1000), Some(1));
        assert_eq!(q("1500m").scaled_ceil(1), Some(2));
        assert_eq!(q("128Mi").scaled_ceil(1), Some(128 << 20));
        assert_eq!(q("-1500m").scaled_ceil(1), Some(-1));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "abc", "1x", "1.2.3", ".", "1e", "1Kii", "m"] {
            assert!(Quantity::parse(bad).is_err(), "{bad}");
        }
    }
}
