//! Identities and signed updates.
//!
//! A node's identity is one ed25519 key: it signs every update and, in the real node, is also the
//! libp2p identity. An update is signed as bytes, never as a struct: the header is encoded once,
//! and the signature covers [`DOMAIN`](crate::wire::DOMAIN) followed by those exact bytes.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The public key of a peer: its ed25519 verifying key, 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PeerKey(pub [u8; 32]);

impl PeerKey {
    /// A short printable form: the first 8 bytes in hex.
    pub fn short(&self) -> String {
        self.0[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerKey({})", self.short())
    }
}

impl fmt::Display for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short())
    }
}

/// Identifies one training run: a hash of the model, data spec, hyperparameters and seed. Updates
/// of another run are rejected.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RunId(pub [u8; 32]);

impl RunId {
    /// Derives a run id from arbitrary bytes that describe the run (BLAKE3, domain-separated).
    pub fn derive(description: &[u8]) -> Self {
        RunId(blake3::derive_key("murmur run id v1", description))
    }
}

impl fmt::Debug for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RunId(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// A node's signing identity.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.public().short())
    }
}

impl PartialEq for Identity {
    fn eq(&self, other: &Self) -> bool {
        self.public() == other.public()
    }
}

impl Eq for Identity {}

impl Identity {
    /// An identity from a 32-byte ed25519 secret seed. The caller supplies the randomness.
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Identity {
            key: SigningKey::from_bytes(&secret),
        }
    }

    /// The secret seed (for key files).
    pub fn secret(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// This identity's public key.
    pub fn public(&self) -> PeerKey {
        PeerKey(self.key.verifying_key().to_bytes())
    }

    /// Signs `DOMAIN || message`.
    pub fn sign(&self, domain: &[u8], message: &[u8]) -> [u8; 64] {
        let mut buf = Vec::with_capacity(domain.len() + message.len());
        buf.extend_from_slice(domain);
        buf.extend_from_slice(message);
        self.key.sign(&buf).to_bytes()
    }
}

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The public key is not a valid curve point, or is a weak (small-order) key.
    #[error("public key {0} is not a valid or is a weak ed25519 key")]
    BadKey(PeerKey),
    /// The signature does not verify for the key and message.
    #[error("signature by {0} does not verify")]
    Invalid(PeerKey),
}

/// Verifies a signature over `domain || message` by `key`, strictly: weak keys and malleable
/// signatures are rejected.
pub fn verify(
    key: &PeerKey,
    domain: &[u8],
    message: &[u8],
    signature: &[u8; 64],
) -> Result<(), SignatureError> {
    let vk = VerifyingKey::from_bytes(&key.0).map_err(|_| SignatureError::BadKey(*key))?;
    if vk.is_weak() {
        return Err(SignatureError::BadKey(*key));
    }
    let sig = ed25519_dalek::Signature::from_bytes(signature);
    let mut buf = Vec::with_capacity(domain.len() + message.len());
    buf.extend_from_slice(domain);
    buf.extend_from_slice(message);
    vk.verify_strict(&buf, &sig)
        .map_err(|_| SignatureError::Invalid(*key))?;
    Ok(())
}
