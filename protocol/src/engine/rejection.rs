//! Why an incoming message was dropped, and what it costs the sender.

use crate::wire;

/// Why an incoming message was dropped. Every rejection costs the sender penalty points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rejection {
    /// The signature does not verify, or the key is invalid or weak.
    BadSignature,
    /// Another run's update.
    WrongRun,
    /// Another protocol version.
    WrongVersion,
    /// A payload in another codec than the run's (`codec`): a misconfigured peer.
    WrongCodec,
    /// Not as many parameters as the model.
    WrongDimension,
    /// NaN or infinity in the parameters.
    NonFinite,
    /// At or below a round already accepted from the sender: a replay.
    Stale,
    /// More than `max-staleness` rounds behind this node. Counted, but costs no points: an
    /// honest peer can be slow.
    Lagging,
    /// The same update again.
    Duplicate,
    /// Two different updates for one round.
    Equivocation,
    /// From a sender the replay window forgot, at or below the floor forgotten senders left in
    /// its bucket: possibly a replay, but possibly an honest sender whose bucket's floor Sybils
    /// evicted with high rounds raised. Refused; no penalty (no proof against the sender).
    Forgotten,
    /// Larger than any valid update of this model.
    Oversize,
    /// Bytes that do not parse (truncated, bad header, digest mismatch, unknown kind).
    Malformed,
    /// Signed by someone other than the peer that sent it.
    Impersonation,
    /// An update pushed without being asked for: models move by pull, only an attacker pushes.
    /// Costs a twentieth of the threshold, without checking the update.
    Unsolicited,
    /// More than `max-ahead` rounds ahead of this node. Counted, but costs no points: this node
    /// may be the slow one.
    Ahead,
    /// A valid model far out of line with the others of the round (see `outlier-factor`).
    /// Costs a quarter of the threshold: a peer that is an outlier round after round is banned,
    /// one that is far now and then earns the points back.
    Outlier,
    /// A `top-k` increment whose base is not the round of the copy this node holds of its
    /// sender's estimate (the copy was replaced or evicted while the fetch was out): unusable,
    /// and no fault of an honest sender, which answers from the round it was told. No penalty.
    Unchained,
    /// From a key outside the run's members (see [`crate::members`]): refused whatever it
    /// sends, and banned when it connects. No points: a key outside the list is refused
    /// everything already, and keeping a score for each of the keys anyone can make would be
    /// memory without a bound.
    NotMember,
}

impl Rejection {
    /// Every reason, for metrics.
    pub const ALL: [Rejection; 19] = [
        Rejection::BadSignature,
        Rejection::Lagging,
        Rejection::WrongRun,
        Rejection::WrongVersion,
        Rejection::WrongDimension,
        Rejection::NonFinite,
        Rejection::Stale,
        Rejection::Duplicate,
        Rejection::Equivocation,
        Rejection::Oversize,
        Rejection::Malformed,
        Rejection::Impersonation,
        Rejection::Outlier,
        Rejection::Unsolicited,
        Rejection::Ahead,
        Rejection::WrongCodec,
        Rejection::Unchained,
        Rejection::Forgotten,
        Rejection::NotMember,
    ];

    /// A stable snake_case name, for metrics labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::BadSignature => "bad_signature",
            Rejection::WrongRun => "wrong_run",
            Rejection::WrongVersion => "wrong_version",
            Rejection::WrongCodec => "wrong_codec",
            Rejection::WrongDimension => "wrong_dimension",
            Rejection::NonFinite => "non_finite",
            Rejection::Stale => "stale",
            Rejection::Lagging => "lagging",
            Rejection::Duplicate => "duplicate",
            Rejection::Equivocation => "equivocation",
            Rejection::Oversize => "oversize",
            Rejection::Malformed => "malformed",
            Rejection::Impersonation => "impersonation",
            Rejection::Outlier => "outlier",
            Rejection::Unsolicited => "unsolicited",
            Rejection::Ahead => "ahead",
            Rejection::Unchained => "unchained",
            Rejection::Forgotten => "forgotten",
            Rejection::NotMember => "not_member",
        }
    }

    /// Penalty points for this reason, given the ban threshold. Forgery and poison cost half the
    /// threshold (two strikes); what an honest but slow, misconfigured or duplicated peer can
    /// cause costs little; equivocation bans outright.
    pub fn penalty(self, threshold: u32) -> u32 {
        match self {
            Rejection::Equivocation => threshold,
            Rejection::BadSignature
            | Rejection::NonFinite
            | Rejection::Oversize
            | Rejection::Malformed
            | Rejection::Impersonation => threshold.div_ceil(2),
            Rejection::WrongDimension => threshold.div_ceil(5),
            Rejection::Outlier => threshold.div_ceil(4),
            // Honest nodes never push: a pusher wastes the receiver's bandwidth on purpose.
            Rejection::Unsolicited => threshold.div_ceil(10),
            Rejection::WrongRun | Rejection::WrongVersion | Rejection::WrongCodec => {
                threshold.div_ceil(20)
            }
            Rejection::Stale | Rejection::Duplicate => 1,
            Rejection::Lagging
            | Rejection::Ahead
            | Rejection::Unchained
            | Rejection::Forgotten
            | Rejection::NotMember => 0,
        }
    }

    /// The reason whose [`Rejection::as_str`] is `name`.
    pub fn from_name(name: &str) -> Option<Rejection> {
        Rejection::ALL.into_iter().find(|r| r.as_str() == name)
    }

    pub(crate) fn of(e: &wire::Error) -> Rejection {
        use wire::Error as E;
        match e {
            E::Oversize { .. } => Rejection::Oversize,
            E::Signature(_) => Rejection::BadSignature,
            E::Version { .. } => Rejection::WrongVersion,
            E::SenderMismatch { .. } => Rejection::BadSignature,
            E::Dimension { .. } | E::PayloadLength { .. } | E::PayloadSize { .. } => {
                Rejection::WrongDimension
            }
            E::NonFinite { .. } => Rejection::NonFinite,
            E::SparseIndex { .. } | E::Bundle(_) => Rejection::Malformed,
            E::Truncated { .. }
            | E::UnknownKind(_)
            | E::WrongKind { .. }
            | E::HeaderTooLong(_)
            | E::Header(_)
            | E::Padding
            | E::Digest
            | E::NotEvidence(_) => Rejection::Malformed,
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
