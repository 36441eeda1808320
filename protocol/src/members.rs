//! A run's members: the keys allowed to take part in it (an allowlist).
//!
//! Identities are free: anyone can make keys, so without a list an attacker joins a run under as
//! many names as it likes, and each name is drawn as often as an honest node (the threat model's
//! "Multiply"). No rule inside the protocol bounds that. A run that knows its participants (labs
//! pooling machines, a consortium) lists their keys instead, and every node of the run refuses
//! any other: an engine given [`Members`] ([`crate::engine::Setup::members`]) never connects a
//! key outside the list (it answers its connection with a ban), never draws it, never serves it a
//! model, and refuses whatever it sends or publishes (`not_member`). The node also refuses such
//! a peer's connections before they reach the engine. A participant with one key on the list
//! then counts once, however many keys it makes.
//!
//! The list is part of the run: the node's run id hashes [`Members::digest`], so nodes holding
//! different lists are in different runs and say so (`wrong_run`) rather than half-admit each
//! other.
//!
//! The file format ([`Members::parse`]): one key per line, as 64 hexadecimal digits of the
//! ed25519 public key or in a form the caller decodes (the node takes libp2p peer ids, what
//! `murmur-node keygen` prints); `#` starts a comment; blank lines are skipped.

use crate::sign::PeerKey;
use std::collections::BTreeSet;

/// The keys of a run's members. See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    keys: BTreeSet<PeerKey>,
}

/// Why a members list could not be read. Lines are numbered from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A line is not a key.
    #[error(
        "line {line}: {word:?} is neither 64 hexadecimal digits of an ed25519 public key nor {other}"
    )]
    Key {
        /// The line.
        line: usize,
        /// What it holds.
        word: String,
        /// The other forms the caller takes, for the message.
        other: &'static str,
    },
    /// A key that is no ed25519 public key (not on the curve), or a weak one (of small order:
    /// a signature by it proves nothing, and a transport that checks signatures less strictly
    /// than the engine would let anyone speak as it).
    #[error("line {line}: {word} is not a usable ed25519 public key (off the curve, or weak)")]
    Invalid {
        /// The line.
        line: usize,
        /// The digits.
        word: String,
    },
    /// More than one word on a line.
    #[error("line {line}: one key per line (found {found:?} after the key)")]
    Extra {
        /// The line.
        line: usize,
        /// The first word after the key.
        found: String,
    },
    /// No key at all: a run of no members would admit nobody.
    #[error("no keys: a run whose list is empty admits nobody")]
    Empty,
}

impl Members {
    /// The members `keys` (duplicates count once).
    pub fn new(keys: impl IntoIterator<Item = PeerKey>) -> Members {
        Members {
            keys: keys.into_iter().collect(),
        }
    }

    /// Whether `key` is a member.
    pub fn admits(&self, key: &PeerKey) -> bool {
        self.keys.contains(key)
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none (a parsed list never is).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The members in key order.
    pub fn iter(&self) -> impl Iterator<Item = &PeerKey> {
        self.keys.iter()
    }

    /// A hash of the list, the same for the same keys in any order: what a run id takes in.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key("murmur run members v1");
        for k in &self.keys {
            h.update(&k.0);
        }
        *h.finalize().as_bytes()
    }

    /// Reads a list: one key per line, as 64 hexadecimal digits or in a form `decode` takes
    /// (named `other` in errors); `#` starts a comment, blank lines are skipped. A key listed
    /// twice counts once.
    pub fn parse(
        text: &str,
        other: &'static str,
        decode: impl Fn(&str) -> Option<PeerKey>,
    ) -> Result<Members, ParseError> {
        let mut keys = BTreeSet::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let content = raw.split('#').next().unwrap_or_default();
            let mut words = content.split_whitespace();
            let Some(word) = words.next() else { continue };
            if let Some(found) = words.next() {
                return Err(ParseError::Extra {
                    line,
                    found: found.to_owned(),
                });
            }
            let key = match crate::keyfile::hex32(word) {
                Some(bytes) => PeerKey(bytes),
                None => decode(word).ok_or_else(|| ParseError::Key {
                    line,
                    word: word.to_owned(),
                    other,
                })?,
            };
            if !ed25519_dalek::VerifyingKey::from_bytes(&key.0).is_ok_and(|k| !k.is_weak()) {
                return Err(ParseError::Invalid {
                    line,
                    word: word.to_owned(),
                });
            }
            keys.insert(key);
        }
        if keys.is_empty() {
            return Err(ParseError::Empty);
        }
        Ok(Members { keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::Identity;

    fn key(i: u8) -> PeerKey {
        Identity::from_secret([i; 32]).public()
    }

    fn hex(k: &PeerKey) -> String {
        k.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn a_list_reads_hex_keys_and_the_callers_form_skipping_comments_and_blank_lines() {
        let text = format!(
            "# the run's members\n\n{}  # lab A\n  {}\nnode-3\n{}\n",
            hex(&key(1)),
            hex(&key(2)).to_uppercase(),
            hex(&key(1)),
        );
        let m = Members::parse(&text, "a name", |w| (w == "node-3").then(|| key(3))).unwrap();
        assert_eq!(m.len(), 3);
        assert!(m.admits(&key(1)) && m.admits(&key(2)) && m.admits(&key(3)));
        assert!(!m.admits(&key(4)));
    }

    #[test]
    fn a_bad_line_is_refused_with_its_number() {
        let good = hex(&key(1));
        let cases = [
            (format!("{good}\nzz\n"), "line 2: \"zz\" is neither"),
            (format!("{good} {good}\n"), "line 1: one key per line"),
            (format!("\n\n{}\n", &good[..63]), "line 3: "),
            // The y coordinate 2 is on no point of the curve.
            (format!("02{}\n", "0".repeat(62)), "line 1: 02"),
            // The neutral point: of small order, any signature "by" it can be forged.
            (format!("01{}\n", "0".repeat(62)), "line 1: 01"),
            // Weak whichever form it comes in.
            ("weak\n".to_owned(), "line 1: weak is not a usable"),
            // Not hexadecimal digits, though `from_str_radix` takes a sign.
            (format!("+f{}\n", "0".repeat(62)), "line 1: \"+f"),
            ("# nobody\n\n".to_owned(), "no keys"),
        ];
        for (text, want) in cases {
            let weak = |w: &str| (w == "weak").then_some(PeerKey([0; 32]));
            let e = Members::parse(&text, "a peer id", weak)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn the_digest_depends_on_the_keys_not_their_order() {
        let a = Members::new([key(1), key(2)]);
        let b = Members::new([key(2), key(1), key(2)]);
        let c = Members::new([key(1), key(3)]);
        assert_eq!(a.digest(), b.digest());
        assert_ne!(a.digest(), c.digest());
    }
}
