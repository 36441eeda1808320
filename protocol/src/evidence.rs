//! Transferable proof that a peer equivocated: two valid signatures by one sender, for one run and
//! one round, over different payload digests. Anyone can check it with [`Equivocation::verify`];
//! no trust in the node that reports it is needed.

use crate::sign::PeerKey;
use crate::wire::{self, Error, SignedHeader};

/// Two conflicting signed headers by one sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Equivocation {
    /// The first header seen.
    pub a: SignedHeader,
    /// The conflicting one.
    pub b: SignedHeader,
}

/// Largest encoded evidence: kind, then two length-prefixed announcements.
pub const MAX_EVIDENCE: usize = 1 + 2 * (2 + wire::PREFIX + wire::MAX_HEADER);

impl Equivocation {
    /// Builds evidence from two headers, checking that they prove equivocation.
    pub fn new(a: SignedHeader, b: SignedHeader) -> Result<Self, Error> {
        let e = Equivocation { a, b };
        e.verify()?;
        Ok(e)
    }

    /// The peer that signed both headers.
    pub fn offender(&self) -> PeerKey {
        self.a.header.sender
    }

    /// The round in which it equivocated.
    pub fn round(&self) -> u64 {
        self.a.header.round
    }

    /// Checks both signatures and that the headers conflict: same sender, run, round and codec,
    /// different digests.
    pub fn verify(&self) -> Result<(), Error> {
        self.verify_unless(|_| false)
    }

    /// [`Equivocation::verify`], the conflict first (it costs nothing), then the signature of
    /// each half that is not `checked` already (a header the caller holds, whose signature it
    /// checked when it took it in, byte for byte): a proof made of a genuine header and a forged
    /// one costs one signature check, not two.
    pub(crate) fn verify_unless(
        &self,
        checked: impl Fn(&SignedHeader) -> bool,
    ) -> Result<(), Error> {
        self.conflict()?;
        for h in [&self.a, &self.b] {
            if !checked(h) {
                h.verify()?;
            }
        }
        Ok(())
    }

    /// Whether the two headers, as they read, conflict.
    fn conflict(&self) -> Result<(), Error> {
        let (a, b) = (&self.a.header, &self.b.header);
        if a.sender != b.sender {
            return Err(Error::NotEvidence("different senders"));
        }
        if a.run != b.run {
            return Err(Error::NotEvidence("different runs"));
        }
        if a.round != b.round {
            return Err(Error::NotEvidence("different rounds"));
        }
        // Two encodings of one round (a `top-k` increment and the whole-model snapshot an
        // honest node also signs) are not a conflict.
        if a.codec != b.codec {
            return Err(Error::NotEvidence("different codecs"));
        }
        if a.digest == b.digest {
            return Err(Error::NotEvidence("same digest"));
        }
        Ok(())
    }

    /// Encodes the evidence for gossip.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![wire::KIND_EVIDENCE];
        for h in [&self.a, &self.b] {
            let ann = wire::encode_announcement(h);
            out.extend_from_slice(&(ann.len() as u16).to_le_bytes());
            out.extend_from_slice(&ann);
        }
        out
    }

    /// Decodes and verifies evidence received from anyone.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let e = Equivocation::decode_unverified(bytes)?;
        e.verify()?;
        Ok(e)
    }

    /// Decodes evidence without checking it: what it claims, for the caller to decide whether it
    /// is worth the two signature checks of [`Equivocation::verify`] before acting on it.
    pub(crate) fn decode_unverified(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_EVIDENCE {
            return Err(Error::Oversize {
                got: bytes.len(),
                limit: MAX_EVIDENCE,
            });
        }
        match bytes.first() {
            None => return Err(Error::Truncated { need: 1, got: 0 }),
            Some(&k) if k != wire::KIND_EVIDENCE => {
                return Err(Error::WrongKind {
                    expected: wire::KIND_EVIDENCE,
                    got: k,
                });
            }
            Some(_) => {}
        }
        let mut rest = &bytes[1..];
        let mut take = || -> Result<SignedHeader, Error> {
            if rest.len() < 2 {
                return Err(Error::Truncated {
                    need: 2,
                    got: rest.len(),
                });
            }
            let len = u16::from_le_bytes([rest[0], rest[1]]) as usize;
            if rest.len() < 2 + len {
                return Err(Error::Truncated {
                    need: 2 + len,
                    got: rest.len(),
                });
            }
            let h = wire::decode_announcement_as(&rest[2..2 + len], wire::Signature::Unchecked)?;
            rest = &rest[2 + len..];
            Ok(h)
        };
        let a = take()?;
        let b = take()?;
        if !rest.is_empty() {
            return Err(Error::PayloadLength {
                expected: 0,
                got: rest.len(),
            });
        }
        Ok(Equivocation { a, b })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::{Identity, RunId};
    use crate::wire::{Codec, encode_params, encode_update};

    fn signed(id: &Identity, round: u64, v: f32) -> SignedHeader {
        encode_update(
            id,
            RunId::derive(b"r"),
            round,
            1,
            Codec::F32Le,
            &encode_params(&[v]),
        )
        .1
    }

    #[test]
    fn proves_equivocation_and_round_trips() {
        let id = Identity::from_secret([9; 32]);
        let e = Equivocation::new(signed(&id, 3, 1.0), signed(&id, 3, 2.0)).unwrap();
        assert_eq!(e.offender(), id.public());
        assert_eq!(e.round(), 3);
        let bytes = e.encode();
        assert!(bytes.len() <= MAX_EVIDENCE);
        assert_eq!(Equivocation::decode(&bytes).unwrap(), e);
    }

    #[test]
    fn rejects_what_is_not_equivocation() {
        let id = Identity::from_secret([9; 32]);
        let other = Identity::from_secret([8; 32]);
        let h = signed(&id, 3, 1.0);
        assert_eq!(
            Equivocation::new(h.clone(), h.clone()),
            Err(Error::NotEvidence("same digest"))
        );
        assert_eq!(
            Equivocation::new(h.clone(), signed(&id, 4, 2.0)),
            Err(Error::NotEvidence("different rounds"))
        );
        assert_eq!(
            Equivocation::new(h.clone(), signed(&other, 3, 2.0)),
            Err(Error::NotEvidence("different senders"))
        );
        let mut forged = signed(&id, 3, 2.0);
        forged.header.digest[0] ^= 1; // header no longer matches its signed bytes
        assert!(Equivocation::new(h, forged).is_err());
    }

    /// Whether the halves conflict is read before any signature is checked, and a half the
    /// caller checked before is not checked again: a proof of a genuine header and a forged
    /// half that does not conflict with it costs no check, and one that does costs one.
    #[test]
    fn the_conflict_is_read_first_and_a_half_checked_before_is_not_checked_again() {
        let id = Identity::from_secret([9; 32]);
        let other = Identity::from_secret([8; 32]);
        let genuine = signed(&id, 3, 1.0);
        let mut bad = signed(&other, 3, 2.0);
        bad.signature[0] ^= 1;
        let e = Equivocation {
            a: genuine.clone(),
            b: bad,
        };
        assert_eq!(e.verify(), Err(Error::NotEvidence("different senders")));
        // A half the caller holds is taken as checked: a copy of the genuine header with a
        // broken signature passes only if its check is skipped.
        let mut broken = genuine.clone();
        broken.signature[0] ^= 1;
        let half = signed(&id, 3, 2.0);
        let e = Equivocation {
            a: broken.clone(),
            b: half.clone(),
        };
        assert!(matches!(e.verify(), Err(Error::Signature(_))));
        assert_eq!(e.verify_unless(|h| *h == broken), Ok(()));
        // The half not held is checked.
        let mut forged = half;
        forged.signature[0] ^= 1;
        let e = Equivocation {
            a: genuine.clone(),
            b: forged,
        };
        assert!(matches!(
            e.verify_unless(|h| *h == genuine),
            Err(Error::Signature(_))
        ));
    }

    #[test]
    fn truncated_evidence_is_an_error() {
        let id = Identity::from_secret([9; 32]);
        let bytes = Equivocation::new(signed(&id, 3, 1.0), signed(&id, 3, 2.0))
            .unwrap()
            .encode();
        for cut in 0..bytes.len() {
            assert!(Equivocation::decode(&bytes[..cut]).is_err());
        }
    }
}
