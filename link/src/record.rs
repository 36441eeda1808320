//! The record layer of a link: AES-256-GCM records of up to [`MAX_PLAINTEXT`] bytes.
//!
//! On the wire a record is a 4-byte big-endian length, then that many bytes of ciphertext
//! followed by the 16-byte tag. The nonce is the record's sequence number in its direction (4
//! zero bytes, then the counter big-endian, as in Noise), so a record that is dropped, repeated,
//! reordered or altered fails to open, and so does every record after it. Each direction has its
//! own key (the two halves of the Noise split), and both sides replace it every [`REKEY_EVERY`]
//! records with Noise's `REKEY` (the first 32 bytes of encrypting 32 zero bytes under the
//! largest nonce), so no key protects more than 16 GiB, well within AES-GCM's limits.
//!
//! Records are sealed and opened in place: the sender writes frames behind a 4-byte placeholder,
//! seals, and appends the tag; the receiver opens the ciphertext where it was read.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

/// Largest plaintext of one record. Large records keep the per-record costs (a syscall, a
/// nonce, a tag) small against the bytes moved, and one record still fits in a core's L2
/// cache between sealing and sending.
pub const MAX_PLAINTEXT: usize = 256 * 1024;
/// Bytes of the length prefix.
pub const HEADER: usize = 4;
/// Bytes of the authentication tag.
pub const TAG: usize = 16;
/// Largest record on the wire, prefix included.
pub const MAX_WIRE: usize = HEADER + MAX_PLAINTEXT + TAG;
/// Records sealed under one key before both sides move to the next.
pub const REKEY_EVERY: u64 = 1 << 16;

/// Why a record could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A length prefix announced a record smaller than a tag or larger than [`MAX_WIRE`].
    #[error("record of {0} bytes (a record holds {TAG} to {max} bytes after its length)", max = MAX_PLAINTEXT + TAG)]
    Length(usize),
    /// The tag did not match: the record was altered, dropped, repeated or reordered.
    #[error("record {0} failed authentication")]
    Forged(u64),
    /// 2^64 records were sent or received on one connection.
    #[error("record counter exhausted")]
    Exhausted,
    /// The cipher refused to seal (a record longer than AES-GCM allows).
    #[error("record could not be sealed")]
    Seal,
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn key(bytes: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("a 32-byte AES-256 key"))
}

/// The next key of a direction (Noise's `REKEY`); record counters never reach the nonce it uses.
fn rekey(old: &LessSafeKey) -> LessSafeKey {
    let mut next = [0u8; 32];
    // The tag is not part of the key.
    let _tag = old
        .seal_in_place_separate_tag(nonce(u64::MAX), Aad::empty(), &mut next)
        .expect("32 bytes seal");
    let k = key(&next);
    zeroize::Zeroize::zeroize(&mut next);
    k
}

/// One direction's key and record counter (its `Debug` shows the algorithm, not the key).
#[derive(Debug)]
struct Keyed {
    key: LessSafeKey,
    counter: u64,
    rekey_every: u64,
}

impl Keyed {
    fn new(key_bytes: &[u8; 32], rekey_every: u64) -> Self {
        Self {
            key: key(key_bytes),
            counter: 0,
            rekey_every,
        }
    }

    /// Runs `f` with the key and the next record's nonce, then moves on (to the next key after
    /// every `rekey_every` records).
    fn next<T>(&mut self, f: impl FnOnce(&LessSafeKey, Nonce) -> T) -> Result<T, Error> {
        let n = self.counter;
        if n == u64::MAX - 1 {
            return Err(Error::Exhausted);
        }
        let out = f(&self.key, nonce(n));
        self.counter = n + 1;
        if self.counter.is_multiple_of(self.rekey_every) {
            self.key = rekey(&self.key);
        }
        Ok(out)
    }
}

/// Seals the records of one direction.
#[derive(Debug)]
pub struct Sealer(Keyed);

impl Sealer {
    /// A sealer with the direction's key, starting at record 0.
    pub fn new(key_bytes: &[u8; 32]) -> Self {
        Self(Keyed::new(key_bytes, REKEY_EVERY))
    }

    /// Seals `record` in place: on entry it holds [`HEADER`] placeholder bytes and at most
    /// [`MAX_PLAINTEXT`] bytes of plaintext; on return the length prefix, the ciphertext and the
    /// tag, ready to send.
    pub fn seal(&mut self, record: &mut Vec<u8>) -> Result<(), Error> {
        assert!(
            record.len() >= HEADER && record.len() - HEADER <= MAX_PLAINTEXT,
            "a record is a length placeholder and at most MAX_PLAINTEXT bytes"
        );
        let len = record.len() - HEADER;
        let tag = self
            .0
            .next(|key, nonce| {
                key.seal_in_place_separate_tag(nonce, Aad::empty(), &mut record[HEADER..])
            })?
            .map_err(|_| Error::Seal)?;
        record.extend_from_slice(tag.as_ref());
        let wire = u32::try_from(len + TAG).expect("records are far below 4 GiB");
        record[..HEADER].copy_from_slice(&wire.to_be_bytes());
        Ok(())
    }
}

/// Opens the records of one direction.
#[derive(Debug)]
pub struct Opener(Keyed);

/// The number of bytes after the length prefix, checked against the bounds of a record.
pub fn body_len(prefix: [u8; HEADER]) -> Result<usize, Error> {
    let len = u32::from_be_bytes(prefix) as usize;
    if (TAG..=MAX_PLAINTEXT + TAG).contains(&len) {
        Ok(len)
    } else {
        Err(Error::Length(len))
    }
}

impl Opener {
    /// An opener with the direction's key, starting at record 0.
    pub fn new(key_bytes: &[u8; 32]) -> Self {
        Self(Keyed::new(key_bytes, REKEY_EVERY))
    }

    /// Opens in place the record whose ciphertext and tag are `body` (the bytes after the
    /// length prefix); returns the plaintext, a prefix of `body`.
    pub fn open<'a>(&mut self, body: &'a mut [u8]) -> Result<&'a mut [u8], Error> {
        let n = self.0.counter;
        self.0
            .next(|key, nonce| key.open_in_place(nonce, Aad::empty(), body))?
            .map_err(|_| Error::Forged(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(s: &mut Sealer, plain: &[u8]) -> Vec<u8> {
        let mut r = vec![0u8; HEADER];
        r.extend_from_slice(plain);
        s.seal(&mut r).unwrap();
        r
    }

    fn open(o: &mut Opener, rec: &mut [u8]) -> Result<Vec<u8>, Error> {
        let len = body_len(rec[..HEADER].try_into().unwrap())?;
        assert_eq!(len, rec.len() - HEADER);
        o.open(&mut rec[HEADER..]).map(|p| p.to_vec())
    }

    #[test]
    fn records_round_trip_in_order() {
        let (mut s, mut o) = (Sealer::new(&[7; 32]), Opener::new(&[7; 32]));
        for plain in [&b""[..], b"one", &vec![9u8; MAX_PLAINTEXT]] {
            let mut r = sealed(&mut s, plain);
            assert_eq!(r.len(), HEADER + plain.len() + TAG);
            if !plain.is_empty() {
                assert_ne!(&r[HEADER..HEADER + plain.len()], plain, "encrypted");
            }
            assert_eq!(open(&mut o, &mut r).unwrap(), plain);
        }
    }

    #[test]
    fn altered_replayed_reordered_or_misrouted_records_fail() {
        let mut s = Sealer::new(&[1; 32]);
        let a = sealed(&mut s, b"first record");
        let b = sealed(&mut s, b"second record");

        let mut flipped = a.clone();
        flipped[HEADER + 3] ^= 1;
        assert_eq!(
            open(&mut Opener::new(&[1; 32]), &mut flipped),
            Err(Error::Forged(0))
        );
        let mut swapped = b.clone();
        assert_eq!(
            open(&mut Opener::new(&[1; 32]), &mut swapped),
            Err(Error::Forged(0)),
            "record 1 presented as record 0"
        );
        let mut other_key = a.clone();
        assert!(open(&mut Opener::new(&[2; 32]), &mut other_key).is_err());

        let mut o = Opener::new(&[1; 32]);
        assert!(open(&mut o, &mut a.clone()).is_ok());
        assert_eq!(
            open(&mut o, &mut a.clone()),
            Err(Error::Forged(1)),
            "replayed"
        );
    }

    #[test]
    fn keys_change_every_few_records_on_both_sides_alike() {
        let (mut s, mut o) = (
            Sealer(Keyed::new(&[3; 32], 3)),
            Opener(Keyed::new(&[3; 32], 3)),
        );
        let mut fixed = Sealer::new(&[3; 32]);
        for i in 0..10u8 {
            let mut r = sealed(&mut s, &[i; 40]);
            let same_key = sealed(&mut fixed, &[i; 40]);
            assert_eq!(r == same_key, i < 3, "record {i}: rekeyed after 3");
            assert_eq!(open(&mut o, &mut r).unwrap(), [i; 40]);
        }
        // A side that did not move to the next key cannot open what follows.
        let (mut s, mut o) = (Sealer(Keyed::new(&[3; 32], 3)), Opener::new(&[3; 32]));
        for i in 0..3u8 {
            assert!(open(&mut o, &mut sealed(&mut s, &[i])).is_ok());
        }
        assert_eq!(
            open(&mut o, &mut sealed(&mut s, &[3])),
            Err(Error::Forged(3))
        );
    }

    #[test]
    fn lengths_outside_a_record_are_refused() {
        assert_eq!(body_len(0u32.to_be_bytes()), Err(Error::Length(0)));
        assert_eq!(body_len(15u32.to_be_bytes()), Err(Error::Length(15)));
        assert_eq!(body_len(16u32.to_be_bytes()), Ok(16));
        let max = (MAX_PLAINTEXT + TAG) as u32;
        assert_eq!(body_len(max.to_be_bytes()), Ok(max as usize));
        assert!(body_len((max + 1).to_be_bytes()).is_err());
        assert!(body_len(u32::MAX.to_be_bytes()).is_err());
    }
}
