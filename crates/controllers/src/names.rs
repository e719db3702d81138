//! Generated object names, as apiserver's `generateName` makes them
//! (`k8s.io/apiserver/pkg/storage/names`): the base cut to leave room, then
//! five characters from apimachinery's `util/rand` alphabet, which has no
//! vowels (no accidental words) and no look-alike characters.

use rand::Rng;

/// The alphabet of generated suffixes (`util/rand.alphanums`).
pub const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// Length of a generated suffix.
pub const RANDOM_LENGTH: usize = 5;
/// Longest base kept (63, a DNS label, minus the suffix).
pub const MAX_GENERATED_NAME_LENGTH: usize = 63 - RANDOM_LENGTH;

/// `<base><5 random chars>`; `base` usually ends in `-`.
pub fn generate_name(base: &str) -> String {
    let mut rng = rand::rng();
    let suffix: String = (0..RANDOM_LENGTH)
        .map(|_| ALPHANUMS[rng.random_range(0..ALPHANUMS.len())] as char)
        .collect();
    let cut = base
        .char_indices()
        .nth(MAX_GENERATED_NAME_LENGTH)
        .map(|(i, _)| i)
        .unwrap_or(base.len());
    format!("{}{suffix}", &base[..cut])
}

/// A 32-bit hash rendered with [`ALPHANUMS`] (apimachinery's
/// `SafeEncodeString` of the decimal hash: each ASCII byte `b` becomes
/// `ALPHANUMS[b % 27]`, so the result is a valid label value without
/// vowels, like the `pod-template-hash` values Kubernetes shows).
pub fn safe_encode(hash: u32) -> String {
    hash.to_string()
        .bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_fit_a_label() {
        let n = generate_name("web-5d4f8-");
        assert_eq!(n.len(), "web-5d4f8-".len() + RANDOM_LENGTH);
        assert!(n.starts_with("web-5d4f8-"));
        let long = "x".repeat(100);
        assert_eq!(generate_name(&long).len(), 63);
    }

    #[test]
    fn safe_encoding_uses_the_alphabet() {
        assert_eq!(safe_encode(0), "4");
        assert_eq!(safe_encode(1234567890), "56789bcdf4");
    }
}
