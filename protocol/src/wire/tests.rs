//! The wire format's tests: round trips, and every way a message can be refused.

use super::*;

fn identity(n: u8) -> Identity {
    Identity::from_secret([n; 32])
}

fn run() -> RunId {
    RunId::derive(b"test run")
}

#[test]
fn round_trip() {
    let id = identity(7);
    let params = vec![1.0f32, -2.5, 3.25];
    let (bytes, signed) = encode_update(&id, run(), 4, 100, Codec::F32Le, &encode_params(&params));
    let update = decode_update(&bytes, 1 << 20).unwrap();
    assert_eq!(update.signed, signed);
    assert_eq!(update.header().round, 4);
    assert_eq!(update.header().samples, 100);
    assert_eq!(update.params(3).unwrap(), params);
    assert_eq!(
        update.params(4),
        Err(Error::Dimension {
            expected: 4,
            got: 3
        })
    );
    let ann = encode_announcement(&signed);
    assert_eq!(decode_announcement(&ann).unwrap(), signed);
    assert!(signed.verify().is_ok());
}

#[test]
fn an_update_written_once_is_the_bytes_of_one_written_over_zeros() {
    let id = identity(3);
    // Header lengths (and so the padding before the payload) vary with round and samples.
    for (round, samples) in [(1, 1), (300, 70_000), (u64::MAX, u64::MAX)] {
        for params in [
            vec![],
            vec![1.0f32, -2.5, 3.25],
            (0..1_001).map(|i| i as f32 * -0.37).collect(),
            vec![0.5, f32::NAN, 2.0],
            vec![f32::NEG_INFINITY],
        ] {
            let (once, signed, finite) =
                encode_f32_update_shared(&id, run(), round, samples, &params, None);
            let mut valid = false;
            let (zeroed, signed_zeroed) = encode_update_shared_with(
                &id,
                run(),
                round,
                samples,
                Codec::F32Le,
                Codec::F32Le.payload_len(params.len()),
                |out| valid = crate::codec::encode_into(Codec::F32Le, &params, 0, out),
                None,
            );
            let what = format!("round {round}, {} params", params.len());
            assert_eq!(once, zeroed, "{what}");
            assert_eq!(signed, signed_zeroed, "{what}");
            assert_eq!(finite, valid, "{what}");
            assert_eq!(finite, params.iter().all(|p| p.is_finite()), "{what}");
        }
    }
}

#[test]
fn the_payload_starts_at_a_multiple_of_four_and_reads_in_place() {
    let params = [0.5f32, -0.25, 3.0];
    let mut pads = std::collections::BTreeSet::new();
    // Header lengths vary with the varint round and sample count, and so the padding.
    for (round, samples) in [
        (1, 1),
        (300, 1),
        (70_000, 5),
        (1 << 40, 300),
        (u64::MAX, 1 << 20),
    ] {
        let (bytes, signed) = encode_update(
            &identity(1),
            run(),
            round,
            samples,
            Codec::F32Le,
            &encode_params(&params),
        );
        let start = PREFIX + signed.bytes.len();
        let payload = bytes.len() - 12;
        assert_eq!(payload % 4, 0, "round {round}: payload at {payload}");
        assert!(bytes[start..payload].iter().all(|&b| b == 0));
        pads.insert(payload - start);
        let shared: std::sync::Arc<[u8]> = bytes.clone().into();
        let update = decode_update_ref(&shared, 1 << 20).unwrap();
        assert!(update.verify_payload().is_ok());
        assert_eq!(crate::codec::f32_view(update.payload()), Some(&params[..]));
        if payload > start {
            let mut b = bytes.clone();
            b[start] = 7;
            assert_eq!(decode_update(&b, 1 << 20).unwrap_err(), Error::Padding);
            let mut b = bytes.clone();
            b.remove(start); // the padding left out
            assert!(decode_update(&b, 1 << 20).is_err());
        }
    }
    assert!(pads.len() >= 2, "paddings seen: {pads:?}");
    assert!(crate::codec::f32_view(&[0u8; 7]).is_none());
}

#[test]
fn every_single_bit_flip_is_rejected() {
    let (bytes, _) = encode_update(
        &identity(1),
        run(),
        1,
        1,
        Codec::F32Le,
        &encode_params(&[0.5, 0.25]),
    );
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            assert!(
                decode_update(&b, 1 << 20).is_err(),
                "flip at byte {i} bit {bit} accepted"
            );
        }
    }
}

#[test]
fn typed_errors() {
    let id = identity(2);
    let (bytes, _) = encode_update(
        &id,
        run(),
        1,
        1,
        Codec::F32Le,
        &encode_params(&[1.0, f32::NAN]),
    );
    assert!(matches!(
        decode_update(&bytes, 10),
        Err(Error::Oversize { .. })
    ));
    assert!(matches!(
        decode_update(&bytes[..50], 1 << 20),
        Err(Error::Truncated { .. })
    ));
    let update = decode_update(&bytes, 1 << 20).unwrap();
    assert_eq!(update.params(2), Err(Error::NonFinite { index: 1 }));
    let mut b = bytes.clone();
    *b.last_mut().unwrap() ^= 1;
    assert_eq!(decode_update(&b, 1 << 20), Err(Error::Digest));
    // The header is judged before the payload is hashed: the reference decodes, and the
    // digest fails only when asked.
    let r = decode_update_ref(&b, 1 << 20).unwrap();
    assert_eq!(r.header().round, update.header().round);
    assert_eq!(r.verify_payload(), Err(Error::Digest));
    let mut b = bytes.clone();
    b.push(0);
    assert!(matches!(
        decode_update(&b, 1 << 20),
        Err(Error::PayloadLength { .. })
    ));
    let mut b = bytes.clone();
    b[5] ^= 1; // sender key
    assert!(matches!(
        decode_update(&b, 1 << 20),
        Err(Error::Signature(_))
    ));
    let mut b = bytes.clone();
    b[0] = 9;
    assert_eq!(decode_update(&b, 1 << 20), Err(Error::UnknownKind(9)));
    b[0] = 2;
    assert!(matches!(
        decode_update(&b, 1 << 20),
        Err(Error::WrongKind { .. })
    ));
}

#[test]
fn signature_from_another_key_is_rejected() {
    let (mut bytes, _) = encode_update(&identity(3), run(), 1, 1, Codec::F32Le, &[]);
    let other = identity(4).public();
    bytes[1..33].copy_from_slice(&other.0);
    assert!(matches!(
        decode_update(&bytes, 1 << 20),
        Err(Error::Signature(_))
    ));
}
