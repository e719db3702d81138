//! Go's `time.ParseDuration`, for flags and fields that take Go durations
//! (`--event-ttl 1h`, kubelet's `--eviction-soft-grace-period
//! memory.available=1m30s`).

use std::time::Duration;

/// Parses a duration the way Go's `time.ParseDuration` does (with Go's
/// error text) for the units Skiff's flags need: a sequence of decimal numbers each with a unit
/// (`h`, `m`, `s`, `ms`), e.g. `1h`, `90s`, `1h30m`, `1h0m0s`, `1.5h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("time: invalid duration {text:?} (expected e.g. 1h, 30m, 90s or 1h30m)");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return Err(bad()),
        };
        total += number * seconds;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let ok = |s: &str, secs: f64| {
            assert_eq!(parse_duration(s), Ok(Duration::from_secs_f64(secs)), "{s}")
        };
        ok("1h", 3600.0);
        ok("1h0m0s", 3600.0);
        ok("90s", 90.0);
        ok("1h30m", 5400.0);
        ok("1.5h", 5400.0);
        ok("250ms", 0.25);
        ok("0", 0.0);
        for bad in ["", "1", "h", "1d", "-1h", "1h x", "1..2s"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("invalid duration"), "{bad}: {err}");
        }
    }
}
