//! Randomness from the operating system: unguessable ids, keys and epochs.

/// `n` random bytes. The OS generator does not fail on the platforms we run on; if it ever
/// does, running on with predictable ids would be worse than stopping.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut buf).expect("the OS random number generator failed");
    buf
}

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// 26 base32 characters carrying 130 random bits.
pub fn token() -> String {
    let b = bytes::<17>();
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut out = String::with_capacity(27);
    for byte in b {
        acc = (acc << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 && out.len() < 26 {
            bits -= 5;
            out.push(BASE32[((acc >> bits) & 31) as usize] as char);
        }
    }
    out
}

/// A fresh room epoch: a random number in `1..2^53`, so that JavaScript clients hold it exactly.
pub fn epoch() -> u64 {
    let v = u64::from_le_bytes(bytes::<8>()) & ((1 << 53) - 1);
    v.max(1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_26_chars_and_differ() {
        let a = super::token();
        assert_eq!(a.len(), 26);
        assert_ne!(a, super::token());
    }

    #[test]
    fn epochs_fit_in_53_bits() {
        for _ in 0..100 {
            let e = super::epoch();
            assert!((1..(1 << 53)).contains(&e));
        }
    }
}
