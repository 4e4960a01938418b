//! Test data: bodies that are reproducible from a seed and look random (incompressible, no
//! repeating blocks), so that a truncated, shifted or mixed-up transfer never compares equal.

/// `len` bytes for `seed` (xorshift64; the same seed always gives the same bytes).
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproducible_and_different_per_seed() {
        assert_eq!(pseudo_random(1, 1000), pseudo_random(1, 1000));
        assert_ne!(pseudo_random(1, 1000), pseudo_random(2, 1000));
        assert_eq!(pseudo_random(3, 100), pseudo_random(3, 1000)[..100]);
        let distinct = pseudo_random(4, 4096)
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len();
        assert!(distinct > 200, "{distinct} distinct byte values");
    }
}
