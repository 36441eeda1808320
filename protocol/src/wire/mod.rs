//! The bytes that travel between nodes, and their checked decoding.
//!
//! Every message starts with a one-byte kind. A signed update is laid out at fixed offsets so the
//! signature can be verified before anything else is decoded:
//!
//! ```text
//! offset  size  field
//! 0       1     kind (1 = update, 2 = announcement: the same without a payload)
//! 1       32    sender: ed25519 public key
//! 33      64    signature over DOMAIN || header bytes
//! 97      2     header length h (u16, little endian, at most MAX_HEADER)
//! 99      h     header: bincode 2 (standard config) of `Header`
//! 99+h    p     updates only: zero bytes up to the next multiple of 4 (p = 0 to 3)
//! 99+h+p  rest  payload (updates only): `header.payload_len` bytes in `header.codec`
//! ```
//!
//! The padding puts the payload at a multiple of 4 from the message's start, so a receiver that
//! holds the message at an aligned address (any allocator does) reads an `f32` payload where it
//! lies, without a decoded copy ([`crate::codec::f32_view`]). It is not signed, so it must be
//! zeros: any other byte is refused, and no two encodings of one update exist.
//!
//! Decoding order: lengths, then the signature (with the sender key read from its fixed offset),
//! then the header (bincode with a byte limit), then the header's own checks (version, sender
//! matches, payload length), then the payload against the header's BLAKE3 digest. Nothing is
//! allocated from a length the sender chose without first checking it against a limit.

pub use crate::codec::{Codec, bf16_to_f32, f32_to_bf16, f32_to_f16};
use crate::sign::{self, Identity, PeerKey, RunId, SignatureError};
use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks (2: the payload is padded to a multiple of 4).
pub const VERSION: u16 = 2;
/// Domain tag of update signatures: a signature made for another purpose never verifies here.
pub const DOMAIN: &[u8] = b"murmur/update/v1";
/// Largest encoded header accepted.
pub const MAX_HEADER: usize = 256;
/// Bytes before the header: kind, sender, signature, header length.
pub const PREFIX: usize = 1 + 32 + 64 + 2;
/// Most zero bytes between an update's header and its payload.
pub const MAX_PAD: usize = 3;

/// The zero bytes after a header of `header_len` bytes, so that the payload starts at a
/// multiple of 4.
fn pad(header_len: usize) -> usize {
    (4 - (PREFIX + header_len) % 4) % 4
}

const KIND_UPDATE: u8 = 1;
const KIND_ANNOUNCE: u8 = 2;
pub(crate) const KIND_EVIDENCE: u8 = 3;

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_HEADER>()
}

/// The largest signed update of a model of `dim` parameters: the prefix, the largest header, the
/// padding and the payload. Receivers refuse anything larger before looking further, and
/// transports bound their frames by it.
pub fn max_update_len(dim: usize) -> usize {
    update_len_bound(Codec::F32Le.payload_len(dim))
}

/// The largest signed update whose payload is `payload_len` bytes.
pub fn update_len_bound(payload_len: usize) -> usize {
    PREFIX + MAX_HEADER + MAX_PAD + payload_len
}

/// What a signature vouches for: everything about an update except the payload bytes themselves,
/// which are bound through their digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Protocol version; must equal [`VERSION`].
    pub version: u16,
    /// The run this update belongs to.
    pub run: RunId,
    /// The signer; must equal the key at the fixed sender offset.
    pub sender: PeerKey,
    /// The sender's round counter; strictly increasing per sender.
    pub round: u64,
    /// Training samples behind this model (sender-reported, used for weighting and metrics only).
    pub samples: u64,
    /// Encoding of the payload.
    pub codec: Codec,
    /// Payload length in bytes.
    pub payload_len: u32,
    /// BLAKE3 digest of the payload.
    pub digest: [u8; 32],
}

/// Why bytes from the network were not accepted. Each variant names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Fewer bytes than the fixed prefix or than the header length says.
    #[error("message truncated: {got} bytes, need at least {need}")]
    Truncated { need: usize, got: usize },
    /// The message is larger than this receiver accepts.
    #[error("message of {got} bytes exceeds the limit of {limit}")]
    Oversize { got: usize, limit: usize },
    /// An unknown first byte.
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    /// A message of the wrong kind where another was expected.
    #[error("expected message kind {expected}, got {got}")]
    WrongKind { expected: u8, got: u8 },
    /// Header length above [`MAX_HEADER`].
    #[error("header of {0} bytes exceeds {MAX_HEADER}")]
    HeaderTooLong(usize),
    /// The signature did not verify.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// The header bytes are not a valid bincode `Header`, or have trailing bytes.
    #[error("malformed header: {0}")]
    Header(String),
    /// A header from another protocol version.
    #[error("protocol version {got}, this node speaks {VERSION}")]
    Version { got: u16 },
    /// The header's sender differs from the key that signed.
    #[error("header names sender {header} but was signed by {signer}")]
    SenderMismatch { signer: PeerKey, header: PeerKey },
    /// The payload length differs from the header's.
    #[error("payload is {got} bytes, header says {expected}")]
    PayloadLength { expected: usize, got: usize },
    /// The padding before the payload holds a byte other than zero.
    #[error("the padding before the payload is not zeros")]
    Padding,
    /// The payload does not hash to the header's digest.
    #[error("payload does not match its signed digest")]
    Digest,
    /// The payload holds a different number of parameters than the model.
    #[error("payload has {got} parameters, the model has {expected}")]
    Dimension { expected: usize, got: usize },
    /// A blockwise payload whose size does not fit a model of the receiver's dimension.
    #[error(
        "a model of {dim} parameters takes {expected} bytes in this codec, the payload has {got}"
    )]
    PayloadSize {
        dim: usize,
        expected: usize,
        got: usize,
    },
    /// The payload holds NaN or infinity at `index`.
    #[error("payload has a non-finite value at index {index}")]
    NonFinite { index: usize },
    /// An increment index out of range, or not above the one before it.
    #[error("increment index {index} at position {position} is out of range or not increasing")]
    SparseIndex { position: usize, index: u32 },
    /// A bundle of signed messages whose lengths do not add up.
    #[error("malformed bundle: {0}")]
    Bundle(&'static str),
    /// Evidence whose two headers do not prove equivocation.
    #[error("not evidence of equivocation: {0}")]
    NotEvidence(&'static str),
}

/// A header together with its signature and its exact signed bytes: verifiable by anyone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedHeader {
    /// The decoded header.
    pub header: Header,
    /// The exact bytes that were signed (after [`DOMAIN`]).
    pub bytes: Vec<u8>,
    /// The ed25519 signature.
    pub signature: [u8; 64],
}

impl SignedHeader {
    /// Verifies the signature and that `bytes` decode to `header`. Used for evidence, where the
    /// header arrives from a third party.
    pub fn verify(&self) -> Result<(), Error> {
        sign::verify(&self.header.sender, DOMAIN, &self.bytes, &self.signature)?;
        let decoded = decode_header(&self.bytes)?;
        if decoded != self.header {
            return Err(Error::Header("signed bytes differ from the header".into()));
        }
        Ok(())
    }
}

/// A verified update: signature, header and digest all checked. The payload is still bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    /// The signed header.
    pub signed: SignedHeader,
    /// The payload, matching the header's digest and length.
    pub payload: Vec<u8>,
}

impl Update {
    /// The header.
    pub fn header(&self) -> &Header {
        &self.signed.header
    }

    /// Decodes the payload as exactly `dim` finite parameters.
    pub fn params(&self, dim: usize) -> Result<Vec<f32>, Error> {
        let mut out = Vec::new();
        self.params_into(dim, &mut out)?;
        Ok(out)
    }

    /// Decodes the payload into `out` (cleared first), as exactly `dim` finite parameters.
    pub fn params_into(&self, dim: usize, out: &mut Vec<f32>) -> Result<(), Error> {
        crate::codec::decode(self.header().codec, &self.payload, dim, out)
    }
}

/// An update whose header is decoded and its signature verified, with the payload still in the
/// received bytes and its digest not yet checked: the cheap checks (run, sender, round, replay)
/// come first, and only an update that passes them costs a hash of its payload.
#[derive(Debug)]
pub struct UpdateRef<'a> {
    /// The verified signed header.
    pub signed: SignedHeader,
    payload: &'a [u8],
}

impl UpdateRef<'_> {
    /// The header.
    pub fn header(&self) -> &Header {
        &self.signed.header
    }

    /// Checks the payload against the signed digest.
    pub fn verify_payload(&self) -> Result<(), Error> {
        if blake3::hash(self.payload).as_bytes() != &self.signed.header.digest {
            return Err(Error::Digest);
        }
        Ok(())
    }

    /// The payload bytes (check them with [`UpdateRef::verify_payload`] first).
    pub fn payload(&self) -> &[u8] {
        self.payload
    }

    /// Decodes the payload into `out` (cleared first), as exactly `dim` finite parameters.
    /// Call [`UpdateRef::verify_payload`] first.
    pub fn params_into(&self, dim: usize, out: &mut Vec<f32>) -> Result<(), Error> {
        crate::codec::decode(self.header().codec, self.payload, dim, out)
    }
}

fn decode_header(bytes: &[u8]) -> Result<Header, Error> {
    let (header, used): (Header, usize) =
        bincode::serde::decode_from_slice(bytes, bincode_config())
            .map_err(|e| Error::Header(e.to_string()))?;
    if used != bytes.len() {
        return Err(Error::Header(format!(
            "{} trailing bytes",
            bytes.len() - used
        )));
    }
    Ok(header)
}

/// Encodes `params` as a payload in `codec` (the blockwise codecs round with random numbers
/// from a fixed seed; see [`crate::codec::encode`] to choose it).
pub fn encode_params_as(codec: Codec, params: &[f32]) -> Vec<u8> {
    crate::codec::encode(codec, params, 0)
}

/// Encodes `params` as an F32Le payload.
pub fn encode_params(params: &[f32]) -> Vec<u8> {
    crate::codec::encode(Codec::F32Le, params, 0)
}

/// Signs and encodes an update of `payload` (already encoded in `codec`). Returns the message
/// bytes and the signed header (for announcements and equivocation evidence).
pub fn encode_update(
    identity: &Identity,
    run: RunId,
    round: u64,
    samples: u64,
    codec: Codec,
    payload: &[u8],
) -> (Vec<u8>, SignedHeader) {
    let (bytes, signed) = encode_update_shared(identity, run, round, samples, codec, payload);
    (bytes.to_vec(), signed)
}

/// [`encode_update`] into a shared allocation of its own, written once (what a node serves).
/// The padding is left as the allocation's zeros.
pub fn encode_update_shared(
    identity: &Identity,
    run: RunId,
    round: u64,
    samples: u64,
    codec: Codec,
    payload: &[u8],
) -> (std::sync::Arc<[u8]>, SignedHeader) {
    encode_update_shared_with(
        identity,
        run,
        round,
        samples,
        codec,
        payload.len(),
        |out| out.copy_from_slice(payload),
        None,
    )
}

/// [`encode_update_shared`] of a payload of `payload_len` bytes that `write` encodes in place,
/// into the message's own allocation: a model is written once, not encoded into a buffer of its
/// own and then copied. With `assist`, another thread may hash part of the payload
/// ([`crate::assist::digest`]; the same digest).
#[allow(clippy::too_many_arguments)]
pub fn encode_update_shared_with(
    identity: &Identity,
    run: RunId,
    round: u64,
    samples: u64,
    codec: Codec,
    payload_len: usize,
    write: impl FnOnce(&mut [u8]),
    assist: Option<&dyn crate::assist::Assist>,
) -> (std::sync::Arc<[u8]>, SignedHeader) {
    let message = |start: usize| {
        // One allocation of the exact size (an exact-size iterator), then written in place.
        let mut out: std::sync::Arc<[u8]> = std::iter::repeat_n(0, start + payload_len).collect();
        write(&mut std::sync::Arc::get_mut(&mut out).expect("not shared yet")[start..]);
        out
    };
    sign_message(
        (identity, run),
        (round, samples),
        (codec, payload_len),
        message,
        assist,
    )
}

/// [`encode_update_shared_with`] of `params` in [`Codec::F32Le`], with whether they are all
/// finite ([`crate::codec::encode_into`]'s answer). The same bytes, but each byte of the message
/// is written once: its memory is not zeroed first. For a model of 400 KB, the zeroing cost
/// about as much as the encoding, its memory being mostly out of the caches when allocated.
pub fn encode_f32_update_shared(
    identity: &Identity,
    run: RunId,
    round: u64,
    samples: u64,
    params: &[f32],
    assist: Option<&dyn crate::assist::Assist>,
) -> (std::sync::Arc<[u8]>, SignedHeader, bool) {
    let codec = Codec::F32Le;
    let mut finite = false;
    let message = |start: usize| {
        let mut out = std::sync::Arc::<[u8]>::new_uninit_slice(start + 4 * params.len());
        let buf = std::sync::Arc::get_mut(&mut out).expect("not shared yet");
        let (head, payload) = buf.split_at_mut(start);
        for b in head {
            b.write(0);
        }
        finite = crate::codec::encode_f32le_uninit(params, payload);
        #[allow(unsafe_code)]
        // SAFETY: every byte is written above: the `start` bytes before the payload, and the
        // payload's `4 * params.len()`, which `encode_f32le_uninit` writes whole (it asserts
        // the length).
        unsafe {
            out.assume_init()
        }
    };
    let len = codec.payload_len(params.len());
    let (bytes, signed) = sign_message(
        (identity, run),
        (round, samples),
        (codec, len),
        message,
        assist,
    );
    (bytes, signed, finite)
}

/// Signs the message `message(start)` builds: an allocation of `start + payload_len` bytes, the
/// payload written from `start`, the bytes before it zeros.
fn sign_message(
    (identity, run): (&Identity, RunId),
    (round, samples): (u64, u64),
    (codec, payload_len): (Codec, usize),
    message: impl FnOnce(usize) -> std::sync::Arc<[u8]>,
    assist: Option<&dyn crate::assist::Assist>,
) -> (std::sync::Arc<[u8]>, SignedHeader) {
    let header = |digest: [u8; 32]| Header {
        version: VERSION,
        run,
        sender: identity.public(),
        round,
        samples,
        codec,
        payload_len: u32::try_from(payload_len).expect("payload under 4 GiB"),
        digest,
    };
    let encode = |header: &Header| {
        bincode::serde::encode_to_vec(header, bincode_config())
            .expect("a header always encodes within MAX_HEADER")
    };
    // The header's size does not depend on its digest (32 bytes, whatever they are), so the
    // payload's place is known before the payload is.
    let header_len = encode(&header([0; 32])).len();
    let start = PREFIX + header_len + pad(header_len);
    let mut out = message(start);
    assert_eq!(out.len(), start + payload_len, "the message's size");
    let header = header(*crate::assist::digest(&out, start, assist).as_bytes());
    if std::sync::Arc::get_mut(&mut out).is_none() {
        // An assist that kept its share of the payload (it should not): a copy of our own.
        out = out.iter().copied().collect();
    }
    let buf = std::sync::Arc::get_mut(&mut out).expect("not shared");
    let header_bytes = encode(&header);
    assert_eq!(
        header_bytes.len(),
        header_len,
        "a header's size is its digest's too"
    );
    let signature = identity.sign(DOMAIN, &header_bytes);
    let signed = SignedHeader {
        header,
        bytes: header_bytes,
        signature,
    };
    let mut prefix = Vec::with_capacity(PREFIX + signed.bytes.len());
    write_prefix(&mut prefix, KIND_UPDATE, &signed);
    buf[..prefix.len()].copy_from_slice(&prefix);
    (out, signed)
}

/// Encodes an announcement: a signed header without its payload, small enough for gossip.
pub fn encode_announcement(signed: &SignedHeader) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREFIX + signed.bytes.len());
    write_prefix(&mut out, KIND_ANNOUNCE, signed);
    out
}

fn write_prefix(out: &mut Vec<u8>, kind: u8, signed: &SignedHeader) {
    out.push(kind);
    out.extend_from_slice(&signed.header.sender.0);
    out.extend_from_slice(&signed.signature);
    out.extend_from_slice(&(signed.bytes.len() as u16).to_le_bytes());
    out.extend_from_slice(&signed.bytes);
}

/// Whether [`decode_signed_as`] verifies the signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signature {
    Verify,
    /// These very bytes passed the verification before (see [`crate::memo`]).
    Verified,
    /// Not checked yet: the caller checks the signature before it acts on the header
    /// ([`crate::evidence::Equivocation::decode_unverified`]).
    Unchecked,
}

impl Signature {
    /// [`Signature::Verified`] when the bytes are `known` to have passed, else verify.
    pub(crate) fn unless_known(known: bool) -> Signature {
        if known {
            Signature::Verified
        } else {
            Signature::Verify
        }
    }
}

/// Parses the prefix and header of an update or announcement, verifying the signature (when
/// asked) before decoding the header. Returns the signed header and the remaining bytes (the
/// payload).
fn decode_signed_as(
    bytes: &[u8],
    kind: u8,
    signature_check: Signature,
) -> Result<(SignedHeader, &[u8]), Error> {
    if bytes.len() < PREFIX {
        return Err(Error::Truncated {
            need: PREFIX,
            got: bytes.len(),
        });
    }
    match bytes[0] {
        k if k == kind => {}
        k @ (KIND_UPDATE | KIND_ANNOUNCE | KIND_EVIDENCE) => {
            return Err(Error::WrongKind {
                expected: kind,
                got: k,
            });
        }
        k => return Err(Error::UnknownKind(k)),
    }
    let sender = PeerKey(bytes[1..33].try_into().expect("32 bytes"));
    let signature: [u8; 64] = bytes[33..97].try_into().expect("64 bytes");
    let header_len = u16::from_le_bytes([bytes[97], bytes[98]]) as usize;
    if header_len > MAX_HEADER {
        return Err(Error::HeaderTooLong(header_len));
    }
    let need = PREFIX + header_len;
    if bytes.len() < need {
        return Err(Error::Truncated {
            need,
            got: bytes.len(),
        });
    }
    let header_bytes = &bytes[PREFIX..need];
    if signature_check == Signature::Verify {
        sign::verify(&sender, DOMAIN, header_bytes, &signature)?;
    }
    let header = decode_header(header_bytes)?;
    if header.version != VERSION {
        return Err(Error::Version {
            got: header.version,
        });
    }
    if header.sender != sender {
        return Err(Error::SenderMismatch {
            signer: sender,
            header: header.sender,
        });
    }
    let signed = SignedHeader {
        header,
        bytes: header_bytes.to_vec(),
        signature,
    };
    Ok((signed, &bytes[need..]))
}

/// Decodes and verifies an update. `limit` bounds the whole message; it is checked first.
pub fn decode_update(bytes: &[u8], limit: usize) -> Result<Update, Error> {
    let update = decode_update_ref(bytes, limit)?;
    update.verify_payload()?;
    Ok(Update {
        signed: update.signed,
        payload: update.payload.to_vec(),
    })
}

/// Decodes an update's header and verifies its signature and payload length, leaving the
/// payload's digest to [`UpdateRef::verify_payload`] (see [`UpdateRef`]).
pub fn decode_update_ref(bytes: &[u8], limit: usize) -> Result<UpdateRef<'_>, Error> {
    decode_update_ref_as(bytes, limit, Signature::Verify)
}

/// [`decode_update_ref`], verifying the signature only when asked.
pub(crate) fn decode_update_ref_as(
    bytes: &[u8],
    limit: usize,
    signature_check: Signature,
) -> Result<UpdateRef<'_>, Error> {
    if bytes.len() > limit {
        return Err(Error::Oversize {
            got: bytes.len(),
            limit,
        });
    }
    let (signed, rest) = decode_signed_as(bytes, KIND_UPDATE, signature_check)?;
    let pad = pad(signed.bytes.len());
    let (padding, payload) = rest.split_at_checked(pad).ok_or(Error::Truncated {
        need: bytes.len() - rest.len() + pad,
        got: bytes.len(),
    })?;
    if padding.iter().any(|&b| b != 0) {
        return Err(Error::Padding);
    }
    let expected = signed.header.payload_len as usize;
    if payload.len() != expected {
        return Err(Error::PayloadLength {
            expected,
            got: payload.len(),
        });
    }
    Ok(UpdateRef { signed, payload })
}

/// Decodes and verifies an announcement (a signed header with no payload).
pub fn decode_announcement(bytes: &[u8]) -> Result<SignedHeader, Error> {
    decode_announcement_as(bytes, Signature::Verify)
}

/// [`decode_announcement`], verifying the signature only when asked.
pub(crate) fn decode_announcement_as(
    bytes: &[u8],
    signature_check: Signature,
) -> Result<SignedHeader, Error> {
    if bytes.len() > PREFIX + MAX_HEADER {
        return Err(Error::Oversize {
            got: bytes.len(),
            limit: PREFIX + MAX_HEADER,
        });
    }
    let (signed, rest) = decode_signed_as(bytes, KIND_ANNOUNCE, signature_check)?;
    if !rest.is_empty() {
        return Err(Error::PayloadLength {
            expected: 0,
            got: rest.len(),
        });
    }
    Ok(signed)
}

/// The kind byte of evidence messages, for drivers that route by kind.
pub fn is_evidence(bytes: &[u8]) -> bool {
    bytes.first() == Some(&KIND_EVIDENCE)
}

/// The kind byte of announcements.
pub fn is_announcement(bytes: &[u8]) -> bool {
    bytes.first() == Some(&KIND_ANNOUNCE)
}

#[cfg(test)]
mod tests;
