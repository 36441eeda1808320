//! Checks done once ([`crate::memo`]): what engines that share them skip, what they never
//! skip, and what a signer may vouch for.

use super::exchange::{answer, asking, asking_with, penalised, train_to};
use super::*;

/// Checks done once ([`crate::memo`]): an engine handed an allocation another engine already
/// verified skips only its signature and hash. A copy with one payload byte or one signature
/// byte changed is another allocation and is checked in full and rejected; the genuine bytes
/// from the wrong peer still fail the sender check, and at another model dimension the size
/// check. Announcements likewise.
#[test]
fn shared_checks_skip_only_the_same_bytes_and_tampered_copies_are_rejected() {
    let peers: Vec<Identity> = (1..=3).map(toy::identity).collect();
    let memo = Arc::new(crate::memo::Memo::new());
    let engines: Vec<Engine> = (0..3)
        .map(|_| {
            let mut e = asking(Rule::Mean, &peers);
            e.share_checks(Arc::clone(&memo));
            e
        })
        .collect();
    let [mut first, mut second, mut third] = engines.try_into().expect("three engines");
    let t = Duration::from_millis(10);
    let run = toy::run_id();
    let genuine = update(&peers[0], run, 1, &[1.0; DIM]);
    let other = update(&peers[1], run, 1, &[2.0; DIM]);
    answer(&mut first, t, &peers[0], Arc::clone(&genuine));
    answer(&mut first, t, &peers[1], Arc::clone(&other));
    assert_eq!(first.stats().accepted, 2);
    assert_eq!((memo.len(), memo.hits()), (2, 0), "verified in full once");

    let mut payload = genuine.to_vec();
    *payload.last_mut().expect("a payload") ^= 1;
    let out = answer(&mut second, t, &peers[0], payload.into());
    assert!(
        penalised(&out, peers[0].public(), Rejection::Malformed),
        "{out:?}"
    );
    let mut signature = other.to_vec();
    signature[40] ^= 1;
    let out = answer(&mut second, t, &peers[1], signature.into());
    assert!(
        penalised(&out, peers[1].public(), Rejection::BadSignature),
        "{out:?}"
    );
    let out = answer(&mut second, t, &peers[2], Arc::clone(&genuine));
    assert!(
        penalised(&out, peers[2].public(), Rejection::Impersonation),
        "{out:?}"
    );
    assert_eq!(second.stats().accepted, 0);
    assert_eq!(memo.hits(), 1, "only the genuine allocation is known");

    answer(&mut third, t, &peers[0], Arc::clone(&genuine));
    assert_eq!(third.stats().accepted, 1);
    assert_eq!(memo.hits(), 2);
    // The payload's scan for values that are not finite is shared at the same dimension only.
    let mut wider = asking_with(Rule::Mean, &peers, DIM + 1);
    wider.share_checks(Arc::clone(&memo));
    let out = answer(&mut wider, t, &peers[0], Arc::clone(&genuine));
    assert!(
        penalised(&out, peers[0].public(), Rejection::WrongDimension),
        "{out:?}"
    );
    assert_eq!(memo.hits(), 3);

    // Announcements (a signed header alone) the same way, by their signature.
    let signed = wire::decode_update(&genuine, usize::MAX).unwrap().signed;
    let announcement: Arc<[u8]> = wire::encode_announcement(&signed).into();
    let gossip = |e: &mut Engine, bytes: Arc<[u8]>| published(e, t, &peers[0], bytes);
    gossip(&mut first, Arc::clone(&announcement));
    assert_eq!(memo.hits(), 3, "verified in full once");
    let mut forged = announcement.to_vec();
    forged[40] ^= 1;
    let out = gossip(&mut second, forged.into());
    assert!(
        penalised(&out, peers[0].public(), Rejection::BadSignature),
        "{out:?}"
    );
    gossip(&mut third, announcement);
    assert_eq!(memo.hits(), 4);
}

/// A signer tells the shared checks that its payload decodes at its dimension only when every
/// parameter it encoded is finite: a receiver then skips the scan, and still scans, and rejects,
/// a payload with a value that is not finite.
#[test]
fn a_signer_vouches_for_its_payloads_scan_only_when_its_model_is_finite() {
    let peers: Vec<Identity> = (1..=2).map(toy::identity).collect();
    let memo = Arc::new(crate::memo::Memo::new());
    let signed = |params: Vec<f32>| {
        let mut e = Engine::new(toy::setup(1, &config(Rule::Mean, 100), DIM, 0)).unwrap();
        e.share_checks(Arc::clone(&memo));
        let start = Input::Start {
            resume: Resume::default(),
            join: false,
        };
        e.handle(Duration::ZERO, start).unwrap();
        train_to(&mut e, Duration::ZERO, 1, params);
        e.last_update().expect("signed")
    };
    let t = Duration::from_millis(10);
    let finite = signed(vec![1.5; DIM]);
    let checks = memo.knows(&finite).expect("signed here");
    assert_eq!(checks.decodes_at, Some(DIM));
    let mut e = asking(Rule::Mean, &peers);
    e.share_checks(Arc::clone(&memo));
    answer(&mut e, t, &peers[0], finite);
    assert_eq!(e.stats().accepted, 1);

    let mut params = vec![1.5; DIM];
    params[DIM / 2] = f32::INFINITY;
    let infinite = signed(params);
    let checks = memo.knows(&infinite).expect("signed here");
    assert_eq!(checks.decodes_at, None);
    let mut e = asking(Rule::Mean, &peers);
    e.share_checks(Arc::clone(&memo));
    let out = answer(&mut e, t, &peers[0], infinite);
    assert!(
        penalised(&out, peers[0].public(), Rejection::NonFinite),
        "{out:?}"
    );
}

/// An announcement's header decoded by one engine is handed to the others that receive the same
/// allocation (counted as a hit), and each still checks what it says: from another author it is
/// an impersonation, and a copy with one signature byte
/// changed is decoded and verified in full and rejected.
#[test]
fn a_header_decoded_once_is_still_checked_by_every_engine() {
    let peers: Vec<Identity> = (1..=3).map(toy::identity).collect();
    let memo = Arc::new(crate::memo::Memo::new());
    let engine = || {
        let mut e = asking(Rule::Mean, &peers);
        e.share_checks(Arc::clone(&memo));
        e
    };
    let t = Duration::from_millis(10);
    let gossip =
        |e: &mut Engine, author: &Identity, bytes: Arc<[u8]>| published(e, t, author, bytes);
    let update = update(&peers[0], toy::run_id(), 1, &[1.0; DIM]);
    let signed = wire::decode_update(&update, usize::MAX).unwrap().signed;
    let announcement: Arc<[u8]> = wire::encode_announcement(&signed).into();
    let mut first = engine();
    gossip(&mut first, &peers[0], Arc::clone(&announcement));
    assert!(first.stats().rejected.is_empty());
    assert_eq!((memo.len(), memo.hits()), (1, 0), "decoded in full once");
    assert!(memo.header(&announcement).is_some(), "its header is kept");
    assert_eq!(memo.hits(), 1);

    // The same allocation from another author: the header comes from the memo, the check on
    // its sender is this engine's own.
    let mut second = engine();
    let out = gossip(&mut second, &peers[1], Arc::clone(&announcement));
    assert!(
        penalised(&out, peers[1].public(), Rejection::Impersonation),
        "{out:?}"
    );
    assert_eq!(memo.hits(), 2);
    // A copy with a signature byte changed is another allocation: verified, and rejected.
    let mut forged = announcement.to_vec();
    forged[40] ^= 1;
    let forged: Arc<[u8]> = forged.into();
    let out = gossip(&mut second, &peers[0], Arc::clone(&forged));
    assert!(
        penalised(&out, peers[0].public(), Rejection::BadSignature),
        "{out:?}"
    );
    assert_eq!(memo.hits(), 2, "nothing known of the copy");
    assert!(
        memo.header(&forged).is_none(),
        "a rejected copy keeps no header"
    );
    // The genuine one from its author is accepted by a third engine: the same verdict as the
    // first engine reached decoding it.
    let mut third = engine();
    let out = gossip(&mut third, &peers[0], Arc::clone(&announcement));
    let accepted = Output::GossipChecked {
        message: 1,
        verdict: GossipVerdict::Accept,
    };
    assert!(out.contains(&accepted), "{out:?}");
    assert!(third.stats().rejected.is_empty());
    assert_eq!(memo.hits(), 3);
}

/// `bytes` published by `author` reach `e` at `t` from `author` itself, as gossip message 1;
/// what `e` outputs.
fn published(e: &mut Engine, t: Duration, author: &Identity, bytes: Arc<[u8]>) -> Vec<Output> {
    let input = Input::GossipReceived {
        author: author.public(),
        relayer: author.public(),
        message: 1,
        bytes,
    };
    e.handle(t, input).unwrap();
    drain(e)
}
