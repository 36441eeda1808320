//! The link handshake: Noise XX with X25519, AES-256-GCM and SHA-256
//! (`Noise_XX_25519_AESGCM_SHA256`, through `snow`), authenticated by the nodes' ed25519 keys.
//!
//! Messages are a 2-byte big-endian length and at most [`MAX_MESSAGE`] bytes. The second and third
//! messages carry the sender's identity: its 32-byte ed25519 public key and its 64-byte signature
//! over [`STATIC_KEY_DOMAIN`] followed by its static X25519 key, so a peer proves that the key
//! the Noise session is bound to is its own (as in libp2p's noise, with murmur's own domain tag and
//! a fixed layout). The prologue names the protocol, so a handshake cannot be lifted into another.
//! Each side gets the peer's [`PeerId`] and one AES-256 key per direction (the Noise split), from
//! which [`super::record`] seals records larger than Noise's 64 KiB messages.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{PeerId, identity};
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, RingResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use zeroize::Zeroize;

/// The Noise protocol of the handshake.
pub const PARAMS: &str = "Noise_XX_25519_AESGCM_SHA256";
/// Mixed into the handshake: both sides must speak this protocol.
pub const PROLOGUE: &[u8] = b"/murmur/link/1";
/// Signed with the static X25519 key to bind it to a node's identity.
pub const STATIC_KEY_DOMAIN: &[u8] = b"murmur-link-static-key:";
/// Largest handshake message: the three messages are at most 192 bytes.
pub const MAX_MESSAGE: usize = 1024;
/// An identity payload: ed25519 public key, then signature.
const IDENTITY_LEN: usize = 32 + 64;

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection failed or closed during the handshake.
    #[error("handshake i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A Noise message did not decrypt or was out of place.
    #[error("noise: {0}")]
    Noise(#[from] snow::Error),
    /// The peer sent a message longer than any message of this handshake.
    #[error("handshake message of {0} bytes (at most {MAX_MESSAGE})")]
    TooLong(usize),
    /// The peer's identity payload is malformed or its signature does not verify.
    #[error("peer identity: {0}")]
    Identity(&'static str),
    /// The local identity is not an ed25519 key.
    #[error("the local identity is not an ed25519 key")]
    LocalKey,
}

/// The outcome of a handshake: who the peer is and the keys of the two directions.
pub struct Keys {
    /// The authenticated peer.
    pub peer: PeerId,
    /// The key of records this side sends.
    pub send: [u8; 32],
    /// The key of records this side receives.
    pub recv: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        self.send.zeroize();
        self.recv.zeroize();
    }
}

/// Runs the handshake as the side that opened the connection.
pub async fn initiator<S>(io: &mut S, key: &identity::Keypair) -> Result<Keys, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut hs, payload) = start(key, true)?;
    let mut buf = [0u8; MAX_MESSAGE];
    let mut msg = [0u8; MAX_MESSAGE];
    // -> e
    let n = hs.write_message(&[], &mut msg)?;
    send(io, &msg[..n]).await?;
    // <- e, ee, s, es (+ identity)
    let m = recv(io, &mut msg).await?;
    let n = hs.read_message(&msg[..m], &mut buf)?;
    let peer = verify(&buf[..n], hs.get_remote_static())?;
    // -> s, se (+ identity)
    let n = hs.write_message(&payload, &mut msg)?;
    send(io, &msg[..n]).await?;
    // The initiator sends with the first half of the split.
    let (send_key, recv_key) = hs.dangerously_get_raw_split();
    Ok(Keys {
        peer,
        send: send_key,
        recv: recv_key,
    })
}

/// Runs the handshake as the side that accepted the connection.
pub async fn responder<S>(io: &mut S, key: &identity::Keypair) -> Result<Keys, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut hs, payload) = start(key, false)?;
    let mut buf = [0u8; MAX_MESSAGE];
    let mut msg = [0u8; MAX_MESSAGE];
    // <- e (an initiator sends no payload here: one is refused, not ignored)
    let m = recv(io, &mut msg).await?;
    if hs.read_message(&msg[..m], &mut buf)? != 0 {
        return Err(Error::Identity("a payload in the first handshake message"));
    }
    // -> e, ee, s, es (+ identity)
    let n = hs.write_message(&payload, &mut msg)?;
    send(io, &msg[..n]).await?;
    // <- s, se (+ identity)
    let m = recv(io, &mut msg).await?;
    let n = hs.read_message(&msg[..m], &mut buf)?;
    let peer = verify(&buf[..n], hs.get_remote_static())?;
    // The initiator's sending key is the first half of the split.
    let (i2r, r2i) = hs.dangerously_get_raw_split();
    Ok(Keys {
        peer,
        send: r2i,
        recv: i2r,
    })
}

/// A fresh handshake state with a new static X25519 key, and the identity payload that binds
/// that key to `key`.
fn start(
    key: &identity::Keypair,
    initiator: bool,
) -> Result<(snow::HandshakeState, Vec<u8>), Error> {
    let public = key
        .public()
        .try_into_ed25519()
        .map_err(|_| Error::LocalKey)?
        .to_bytes();
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|_| snow::Error::Rng)?;
    let static_public = x25519_dalek::x25519(secret, x25519_dalek::X25519_BASEPOINT_BYTES);
    let signature = key
        .sign(&[STATIC_KEY_DOMAIN, &static_public].concat())
        .map_err(|_| Error::LocalKey)?;
    let builder = snow::Builder::with_resolver(
        PARAMS.parse().expect("a valid Noise protocol name"),
        Box::new(Resolver),
    )
    .prologue(PROLOGUE)?
    .local_private_key(&secret)?;
    let hs = if initiator {
        builder.build_initiator()
    } else {
        builder.build_responder()
    };
    secret.zeroize();
    let mut payload = Vec::with_capacity(IDENTITY_LEN);
    payload.extend_from_slice(&public);
    payload.extend_from_slice(&signature);
    Ok((hs?, payload))
}

/// Checks an identity payload against the static key the Noise session authenticated.
fn verify(payload: &[u8], remote_static: Option<&[u8]>) -> Result<PeerId, Error> {
    if payload.len() != IDENTITY_LEN {
        return Err(Error::Identity("payload is not 96 bytes"));
    }
    let remote_static = remote_static.ok_or(Error::Identity("no static key"))?;
    let (public, signature) = payload.split_at(32);
    let key: [u8; 32] = public.try_into().expect("split at 32");
    let signature: [u8; 64] = signature.try_into().expect("96 - 32 bytes");
    // verify_strict, as for updates: no small-order keys, no malleable signatures.
    let strict = ed25519_dalek::VerifyingKey::from_bytes(&key)
        .map_err(|_| Error::Identity("not an ed25519 public key"))?;
    strict
        .verify_strict(
            &[STATIC_KEY_DOMAIN, remote_static].concat(),
            &ed25519_dalek::Signature::from_bytes(&signature),
        )
        .map_err(|_| Error::Identity("signature over the static key does not verify"))?;
    let public = identity::ed25519::PublicKey::try_from_bytes(public)
        .map_err(|_| Error::Identity("not an ed25519 public key"))?;
    Ok(identity::PublicKey::from(public).to_peer_id())
}

async fn send<S: AsyncWrite + Unpin>(io: &mut S, msg: &[u8]) -> Result<(), Error> {
    let len = u16::try_from(msg.len()).map_err(|_| Error::TooLong(msg.len()))?;
    let mut frame = Vec::with_capacity(2 + msg.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(msg);
    io.write_all(&frame).await?;
    io.flush().await?;
    Ok(())
}

async fn recv<S: AsyncRead + Unpin>(
    io: &mut S,
    msg: &mut [u8; MAX_MESSAGE],
) -> Result<usize, Error> {
    let mut len = [0u8; 2];
    io.read_exact(&mut len).await?;
    let len = u16::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(Error::TooLong(len));
    }
    io.read_exact(&mut msg[..len]).await?;
    Ok(len)
}

/// Noise primitives: X25519 from `x25519-dalek`, the rest from `ring` (as libp2p's noise).
struct Resolver;

impl CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(OsRandom))
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        matches!(choice, DHChoice::Curve25519).then(|| Box::new(X25519::default()) as Box<dyn Dh>)
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        RingResolver.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        RingResolver.resolve_cipher(choice)
    }
}

struct OsRandom;

impl Random for OsRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        getrandom::fill(dest).map_err(|_| snow::Error::Rng)
    }
}

#[derive(Default)]
struct X25519 {
    secret: [u8; 32],
    public: [u8; 32],
}

impl Drop for X25519 {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl Dh for X25519 {
    fn name(&self) -> &'static str {
        "25519"
    }
    fn pub_len(&self) -> usize {
        32
    }
    fn priv_len(&self) -> usize {
        32
    }
    fn set(&mut self, secret: &[u8]) {
        self.secret.copy_from_slice(&secret[..32]);
        self.public = x25519_dalek::x25519(self.secret, x25519_dalek::X25519_BASEPOINT_BYTES);
    }
    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
        let mut secret = [0u8; 32];
        rng.try_fill_bytes(&mut secret)?;
        self.set(&secret);
        secret.zeroize();
        Ok(())
    }
    fn pubkey(&self) -> &[u8] {
        &self.public
    }
    fn privkey(&self) -> &[u8] {
        &self.secret
    }
    fn dh(&self, public: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        let public: [u8; 32] = public
            .get(..32)
            .and_then(|p| p.try_into().ok())
            .ok_or(snow::Error::Dh)?;
        let shared = x25519_dalek::x25519(self.secret, public);
        // A low-order point gives the all-zero secret: refuse it. Compared without an early
        // exit, so the time taken says nothing about the secret.
        let any = std::hint::black_box(shared.iter().fold(0u8, |acc, b| acc | b));
        if any == 0 {
            return Err(snow::Error::Dh);
        }
        out[..32].copy_from_slice(&shared);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::future::join;

    use crate::testing::pipe;

    fn keypair(seed: u8) -> identity::Keypair {
        identity::Keypair::ed25519_from_bytes([seed; 32]).unwrap()
    }

    #[test]
    fn both_sides_learn_each_other_and_agree_on_keys() {
        let (mut a, mut b) = pipe(1 << 16);
        let (ka, kb) = (keypair(1), keypair(2));
        let (i, r) = block_on(join(initiator(&mut a, &ka), responder(&mut b, &kb)));
        let (i, r) = (i.unwrap(), r.unwrap());
        assert_eq!(i.peer, kb.public().to_peer_id());
        assert_eq!(r.peer, ka.public().to_peer_id());
        assert_eq!(i.send, r.recv);
        assert_eq!(i.recv, r.send);
        assert_ne!(i.send, i.recv, "one key per direction");
    }

    #[test]
    fn a_forged_identity_payload_is_refused() {
        let key = keypair(3);
        let (_, payload) = start(&key, true).unwrap();
        let other_static = [5u8; 32];
        let err = verify(&payload, Some(&other_static)).unwrap_err();
        assert!(matches!(err, Error::Identity(_)), "{err}");
        assert!(matches!(
            verify(&payload[..95], Some(&other_static)),
            Err(Error::Identity(_))
        ));
    }

    #[test]
    fn an_oversized_message_is_refused_before_reading_it() {
        let (mut a, mut b) = pipe(1 << 16);
        let key = keypair(4);
        let (sent, got) = block_on(join(
            async {
                a.write_all(&[0xff, 0xff]).await.unwrap();
                a.flush().await.unwrap();
            },
            responder(&mut b, &key),
        ));
        let () = sent;
        assert!(matches!(got, Err(Error::TooLong(65535))), "{got:?}");
    }

    /// The initiator's first message carries only its ephemeral key: a payload there (which
    /// nothing would read) is refused.
    #[test]
    fn a_payload_in_the_first_message_is_refused() {
        let (mut a, mut b) = pipe(1 << 16);
        let key = keypair(6);
        let (sent, got) = block_on(join(
            async {
                let (mut hs, _) = start(&keypair(7), true).unwrap();
                let mut msg = [0u8; MAX_MESSAGE];
                let n = hs.write_message(b"smuggled", &mut msg).unwrap();
                send(&mut a, &msg[..n]).await.unwrap();
            },
            responder(&mut b, &key),
        ));
        let () = sent;
        assert!(matches!(got, Err(Error::Identity(_))), "{got:?}");
    }
}
