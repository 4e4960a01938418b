//! HMAC-SHA256 (RFC 2104) over SHA-256's compression function, with the key schedule kept.
//!
//! A key's two padded blocks are compressed once, when the key is made; a MAC then costs the
//! message's blocks and one outer block, and nothing else: no hasher state to clone, no block
//! buffer to fill and copy out. Verifying a typical key is three compressions, and this is the
//! store's hot path. The `hmac` crate computes the same function; the tests compare the two.

use std::fmt;

use sha2::compress256;
use sha2::digest::consts::U64;
use sha2::digest::generic_array::GenericArray;
use subtle::ConstantTimeEq;

/// SHA-256's block size in bytes.
const BLOCK: usize = 64;

/// SHA-256's initial hash value (FIPS 180-4, §5.3.3).
const INITIAL: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// An HMAC-SHA256 key of 32 bytes, its inner and outer padded blocks already compressed.
#[derive(Clone)]
pub(crate) struct MacKey {
    inner: [u32; 8],
    outer: [u32; 8],
}

impl MacKey {
    /// The key schedule: SHA-256's state after `key ⊕ ipad` and after `key ⊕ opad`.
    pub(crate) fn new(key: &[u8; 32]) -> MacKey {
        let padded = |pad: u8| {
            // Written, not updated in place: a read-modify-write of the block just stored
            // stalls the CPU on store forwarding, and this runs for every caveat verified.
            let mut block = [pad; BLOCK];
            for (b, k) in block.iter_mut().zip(key) {
                *b = k ^ pad;
            }
            let mut state = INITIAL;
            compress(&mut state, &block);
            state
        };
        MacKey {
            inner: padded(0x36),
            outer: padded(0x5c),
        }
    }

    /// `HMAC(key, message)`: `H(key ⊕ opad ‖ H(key ⊕ ipad ‖ message))`.
    pub(crate) fn mac(&self, message: &[u8]) -> [u8; 32] {
        let inner = finish(self.inner, message);
        finish(self.outer, &inner)
    }
}

/// The SHA-256 digest of one already compressed block followed by `message`, from `state`,
/// the hash state after that block.
fn finish(mut state: [u32; 8], message: &[u8]) -> [u8; 32] {
    let whole = message.len() - message.len() % BLOCK;
    let (blocks, rest) = message.split_at(whole);
    for block in blocks.chunks_exact(BLOCK) {
        compress(&mut state, block);
    }
    // The padding: a 1 bit, zeros, and the length in bits of everything hashed, which takes a
    // second block when fewer than 9 bytes are left in the first.
    let mut tail = [0u8; 2 * BLOCK];
    tail[..rest.len()].copy_from_slice(rest);
    tail[rest.len()] = 0x80;
    let tail_len = if rest.len() < BLOCK - 8 {
        BLOCK
    } else {
        2 * BLOCK
    };
    let bits = ((BLOCK + message.len()) as u64) * 8;
    tail[tail_len - 8..tail_len].copy_from_slice(&bits.to_be_bytes());
    for block in tail[..tail_len].chunks_exact(BLOCK) {
        compress(&mut state, block);
    }
    let mut digest = [0u8; 32];
    for (out, word) in digest.chunks_exact_mut(4).zip(state) {
        out.copy_from_slice(&word.to_be_bytes());
    }
    digest
}

/// One compression of a 64-byte block (SHA-NI where the CPU has it, as `sha2` chooses).
fn compress(state: &mut [u32; 8], block: &[u8]) {
    compress256(
        state,
        std::slice::from_ref(GenericArray::<u8, U64>::from_slice(block)),
    );
}

/// An HMAC-SHA256 tag. Its only equality is constant-time. Here, with the MAC that makes it,
/// so that a token (which carries one) and a keyring (which makes the first) both depend on
/// this module rather than on each other.
#[derive(Clone, Copy)]
pub struct Tag(pub(crate) [u8; 32]);

impl Tag {
    /// The next tag of the chain: `HMAC(self, caveat)`.
    pub(crate) fn chain(&self, caveat: &[u8]) -> Tag {
        Tag(MacKey::new(&self.0).mac(caveat))
    }
}

impl PartialEq for Tag {
    /// Constant time, word by word: four `subtle` comparisons of `u64`s rather than 32 of
    /// bytes, each of which pays for an optimisation barrier.
    fn eq(&self, other: &Tag) -> bool {
        let words = |tag: &Tag| -> [u64; 4] {
            std::array::from_fn(|i| {
                u64::from_ne_bytes(tag.0[8 * i..8 * i + 8].try_into().expect("8 bytes"))
            })
        };
        words(self).ct_eq(&words(other)).into()
    }
}

impl Eq for Tag {}

impl fmt::Debug for Tag {
    /// Never prints the tag: whoever holds it can append caveats.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tag(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};

    fn reference(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
        mac.update(message);
        mac.finalize().into_bytes().into()
    }

    #[test]
    fn agrees_with_the_hmac_crate_at_every_padding_boundary() {
        let key: [u8; 32] = std::array::from_fn(|i| (i * 7 + 3) as u8);
        let message: Vec<u8> = (0..300u32).map(|i| (i * 13 % 251) as u8).collect();
        let mac = MacKey::new(&key);
        for len in 0..message.len() {
            assert_eq!(
                mac.mac(&message[..len]),
                reference(&key, &message[..len]),
                "{len}"
            );
        }
    }

    #[test]
    fn rfc_4231_test_case_2_with_the_key_zero_padded() {
        // RFC 4231 §4.3 uses the 4-byte key "Jefe"; HMAC pads short keys with zeros, so the
        // same key zero-padded to 32 bytes gives the same MAC.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let mac = MacKey::new(&key).mac(b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
    }
}
