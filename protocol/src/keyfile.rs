//! The key file format, as bytes. Reading and writing files, and checking their permissions, is
//! the node's job; this module only parses and formats.
//!
//! A key file is three lines of text:
//!
//! ```text
//! murmur-key v1
//! secret 9f2c…(64 hex digits: the ed25519 secret seed)
//! public 3b6a…(64 hex digits: the matching public key, a check against corruption)
//! ```
//!
//! Weak keys are refused: a secret seed with fewer than 8 distinct byte values (an all-zero or
//! patterned key is not random, and its holder is not the only one who can sign), or a public key
//! of small order.

use crate::sign::{Identity, PeerKey};

const MAGIC: &str = "murmur-key v1";

/// Why key file contents were not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The first line is not `murmur-key v1`.
    #[error("not a murmur key file (first line should be `{MAGIC}`)")]
    NotAKeyFile,
    /// A line is missing or has another label.
    #[error("line {line}: expected `{expected} <64 hex digits>`")]
    MissingField { line: usize, expected: &'static str },
    /// A field is not 64 hex digits.
    #[error("line {line}: `{field}` is not 64 hex digits")]
    BadHex { line: usize, field: &'static str },
    /// The public key does not belong to the secret: the file is corrupt or was edited.
    #[error("public key does not match the secret key (file corrupt or edited)")]
    Mismatch,
    /// The key is weak.
    #[error("weak key refused: {0}")]
    Weak(&'static str),
    /// Text after the three lines.
    #[error("unexpected content after line 3")]
    Trailing,
}

/// 32 bytes from 64 hexadecimal digits (either case; nothing else, not even a sign).
pub(crate) fn hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Refuses a secret seed that is obviously not random.
pub fn check_strength(secret: &[u8; 32]) -> Result<(), Error> {
    let mut seen = [false; 256];
    for &b in secret {
        seen[b as usize] = true;
    }
    if seen.iter().filter(|s| **s).count() < 8 {
        return Err(Error::Weak("secret has fewer than 8 distinct byte values"));
    }
    let public = Identity::from_secret(*secret).public();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&public.0)
        .map_err(|_| Error::Weak("public key is not a curve point"))?;
    if vk.is_weak() {
        return Err(Error::Weak("public key has small order"));
    }
    Ok(())
}

/// Formats an identity as key file contents.
pub fn format(identity: &Identity) -> String {
    format!(
        "{MAGIC}\nsecret {}\npublic {}\n",
        hex(&identity.secret()),
        hex(&identity.public().0)
    )
}

/// Parses key file contents, checking consistency and strength.
pub fn parse(text: &str) -> Result<Identity, Error> {
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some(MAGIC) {
        return Err(Error::NotAKeyFile);
    }
    let mut field = |line: usize, name: &'static str| -> Result<[u8; 32], Error> {
        let l = lines.next().ok_or(Error::MissingField {
            line,
            expected: name,
        })?;
        let value = l
            .trim()
            .strip_prefix(name)
            .and_then(|v| v.strip_prefix(' '))
            .ok_or(Error::MissingField {
                line,
                expected: name,
            })?;
        hex32(value.trim()).ok_or(Error::BadHex { line, field: name })
    };
    let secret = field(2, "secret")?;
    let public = field(3, "public")?;
    if lines.any(|l| !l.trim().is_empty()) {
        return Err(Error::Trailing);
    }
    check_strength(&secret)?;
    let identity = Identity::from_secret(secret);
    if identity.public() != PeerKey(public) {
        return Err(Error::Mismatch);
    }
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Identity {
        let mut s = [0u8; 32];
        for (i, b) in s.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        Identity::from_secret(s)
    }

    #[test]
    fn round_trip() {
        let id = good();
        let text = format(&id);
        assert_eq!(parse(&text).unwrap().public(), id.public());
    }

    #[test]
    fn corrupt_files_are_refused_with_reasons() {
        let text = format(&good());
        assert_eq!(parse(""), Err(Error::NotAKeyFile));
        assert_eq!(parse("hello\n"), Err(Error::NotAKeyFile));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            parse(&lines[..2].join("\n")),
            Err(Error::MissingField {
                line: 3,
                expected: "public"
            })
        );
        let bad_hex = text.replacen("secret ", "secret zz", 1);
        assert_eq!(
            parse(&bad_hex),
            Err(Error::BadHex {
                line: 2,
                field: "secret"
            })
        );
        // Change one digit of the public key.
        let mut l3 = lines[2].to_string();
        let last = l3.pop().unwrap();
        l3.push(if last == '0' { '1' } else { '0' });
        let edited = format!("{}\n{}\n{}\n", lines[0], lines[1], l3);
        assert_eq!(parse(&edited), Err(Error::Mismatch));
        assert_eq!(parse(&format!("{text}extra\n")), Err(Error::Trailing));
    }

    #[test]
    fn weak_keys_are_refused() {
        let zero = Identity::from_secret([0; 32]);
        assert!(matches!(parse(&format(&zero)), Err(Error::Weak(_))));
        let mut patterned = [0u8; 32];
        for (i, b) in patterned.iter_mut().enumerate() {
            *b = (i % 4) as u8;
        }
        assert!(matches!(check_strength(&patterned), Err(Error::Weak(_))));
    }
}
