//! The engine's inputs and outputs: what the caller feeds it, what it asks the caller to do,
//! and the caller's mistakes it refuses.

use super::Rejection;
use crate::sign::PeerKey;
use std::sync::Arc;

/// Something that happened to the node.
#[derive(Debug, Clone)]
pub enum Input {
    /// The node starts: what it remembers from earlier lives, and whether to fetch its peers'
    /// models first. Given once, before anything but [`Input::PeerUp`] and [`Input::PeerDown`].
    Start {
        /// The checkpoint round, last signed round and bans of earlier lives.
        resume: Resume,
        /// The node was given peers to join through (bootstrap addresses, or a simulated
        /// late joiner or restart): fetch their models before the first round. A node that
        /// starts a network alone passes false and starts at once.
        join: bool,
    },
    /// A connection to `peer` is up: it may be chosen as a target.
    PeerUp {
        /// The peer.
        peer: PeerKey,
    },
    /// The connection to `peer` is gone.
    PeerDown {
        /// The peer.
        peer: PeerKey,
    },
    /// An update `from` pushed without being asked. Models move by pull: a pushed update is
    /// never mixed, and costs its sender `unsolicited` points (only an attacker pushes).
    UpdateReceived {
        /// The transport-authenticated sender.
        from: PeerKey,
        /// The message bytes, unchecked.
        bytes: Arc<[u8]>,
    },
    /// A gossip message (announcement or evidence) published by `author` and delivered by
    /// `relayer` (the same peer when it did not travel through another). The engine answers at
    /// once with [`Output::GossipChecked`] for `message`; the caller forwards the message only
    /// if it is accepted. A bad message costs its author points, never the relayer: an honest
    /// relayer cannot know what it carries before its own engine has looked.
    GossipReceived {
        /// The peer that published the message (authenticated by the gossip layer).
        author: PeerKey,
        /// The peer that delivered it to this node (for the caller's records; never penalised).
        relayer: PeerKey,
        /// The caller's handle on the message, echoed in the verdict.
        message: u64,
        /// The message bytes, unchecked.
        bytes: Arc<[u8]>,
    },
    /// `from` asks for this node's latest signed update; answer it with [`Output::Serve`]
    /// carrying the same `request`.
    FetchRequested {
        /// The transport-authenticated asker.
        from: PeerKey,
        /// The caller's handle of the request, echoed in the answer.
        request: u64,
        /// The round the asker wants at least: the answer waits (at most half a round
        /// timeout) until this node has signed it. `None`: whatever it has now.
        round: Option<u64>,
        /// With the `top-k` codec, the round of the copy of this node's estimate the asker
        /// holds: it is answered with the increments since (see the module `chain`). `None`
        /// (always with the other codecs): a full model.
        have: Option<u64>,
    },
    /// The answer to an [`Output::Fetch`] of `peer`: its latest signed update, or `None` if it
    /// had none or the request failed.
    Fetched {
        /// The peer that was asked.
        peer: PeerKey,
        /// Its answer, unchecked.
        update: Option<Arc<[u8]>>,
    },
    /// `peer` refused this node's fetch ([`Output::Busy`]): its uplink is full. While this
    /// node collects a round's models with per-round sampling, it draws another peer in its
    /// place (at most `fanout` more a round); when none can be drawn (or on a fixed graph) it
    /// asks the same peer again an eighth of a round timeout later, until the round's deadline.
    Busy {
        /// The peer that was asked.
        peer: PeerKey,
    },
    /// `peer` answered a fetch with bytes the transport could not frame (a length over the
    /// largest valid update when `oversize`, otherwise an unknown frame tag or a length its tag
    /// cannot carry), so they never reached the engine as an update. Costs the peer what an
    /// `oversize` or `malformed` update costs. The fetch itself is answered apart, with
    /// [`Input::Fetched`] and `None`.
    Unframed {
        /// The transport-authenticated peer that sent the frame.
        peer: PeerKey,
        /// The frame was refused on its length alone.
        oversize: bool,
    },
    /// Local training for `round` finished with these parameters.
    Trained {
        /// The round that was asked for in [`Output::Train`].
        round: u64,
        /// The trained flat parameters.
        params: Vec<f32>,
        /// Training samples processed.
        samples: u64,
    },
    /// The time returned by [`Engine::poll_timeout`](super::Engine::poll_timeout) has come.
    Tick,
    /// For an attacker beyond [`Knowledge::Own`](crate::attack::Knowledge::Own): a signed update learned out of band (an
    /// ally's [`Output::Share`], or an honest node's newest update in the simulator's
    /// omniscient mode). Checked like any update (bounded decoding, signature, run, codec,
    /// size) but never penalised: it has no sender on this link. Honest engines ignore it.
    Intel {
        /// The signed update, unchecked.
        update: Arc<[u8]>,
    },
}

/// What a node remembers from its earlier lives (its data directory, or the simulator's record
/// of a node that left).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resume {
    /// The round of the checkpoint the setup's model comes from; `None` when the model is the
    /// run's initial model.
    pub checkpoint: Option<u64>,
    /// The highest round this node ever signed an update for (0 if none).
    pub signed: u64,
    /// Peers it banned, with the reason.
    pub bans: Vec<(PeerKey, Rejection)>,
}

/// How a node started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// From the run's initial model.
    Fresh,
    /// From its own checkpoint.
    Checkpoint,
    /// A late joiner, from the median of its peers' models.
    Joined,
    /// A restart whose checkpoint was more than `max-staleness` rounds behind its peers: from
    /// the median of their models.
    CaughtUp,
}

impl Origin {
    /// A stable name, for events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Fresh => "fresh",
            Origin::Checkpoint => "checkpoint",
            Origin::Joined => "joined",
            Origin::CaughtUp => "caught-up",
        }
    }
}

/// Something the node must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// The node has started; rounds begin with `round`.
    Started {
        /// How.
        origin: Origin,
        /// The first round it trains.
        round: u64,
        /// The model to start from when it is not the setup's (a join or a catch-up): give it
        /// to the trainer.
        model: Option<Vec<f32>>,
        /// Peers whose models the start was made from.
        peers: usize,
    },
    /// Run local training for `round` from the current model; answer with [`Input::Trained`].
    Train {
        /// The round number.
        round: u64,
    },
    /// Round `round` was mixed: the trainer continues from `params`.
    Mixed {
        /// The round that ended.
        round: u64,
        /// A copy of the mixed model (the own model when the mix was skipped); `None` when the
        /// driver reads it from [`Engine::model`](crate::engine::Engine::model) instead (see
        /// [`Engine::hand_over_mixes`](crate::engine::Engine::hand_over_mixes)).
        params: Option<Vec<f32>>,
        /// The peers whose models were mixed, in key order.
        peers: Vec<PeerKey>,
        /// Models mixed, the node's own included.
        inputs: usize,
        /// Inputs the rule clipped or discarded.
        clipped: usize,
        /// True when too few inputs arrived for the rule and the own model was kept.
        skipped: bool,
    },
    /// Save the trainer's state (the model of the last [`Output::Mixed`] and the optimiser) as
    /// the checkpoint of `round`.
    Checkpoint {
        /// The completed round it is the checkpoint of.
        round: u64,
    },
    /// Deliver a signed update to one peer.
    Send {
        /// The receiver.
        to: PeerKey,
        /// The message.
        bytes: Arc<[u8]>,
    },
    /// Publish a small message to every peer of the run (announcements, evidence).
    Broadcast {
        /// The message.
        bytes: Arc<[u8]>,
    },
    /// Ask `peer` for its latest signed update; answer with [`Input::Fetched`].
    Fetch {
        /// The peer.
        peer: PeerKey,
        /// The round wanted at least (see [`Input::FetchRequested`]); `None`: whatever it has.
        round: Option<u64>,
        /// The round of the copy of the peer's estimate this node holds (`top-k` only; see
        /// [`Input::FetchRequested`]).
        have: Option<u64>,
    },
    /// Answer the fetch `request` of `to`.
    Serve {
        /// The asker.
        to: PeerKey,
        /// The request's handle, from [`Input::FetchRequested`].
        request: u64,
        /// This node's latest signed update, or `None` before its first.
        update: Option<Arc<[u8]>>,
    },
    /// Refuse the fetch `request` of `to`: this node's uplink would not carry the answer in time
    /// (see [`Config::uplink_mbps`](super::Config::uplink_mbps)); the asker hears
    /// [`Input::Busy`].
    Busy {
        /// The asker.
        to: PeerKey,
        /// The request's handle, from [`Input::FetchRequested`].
        request: u64,
    },
    /// The fetch `request` of `to` will not be answered: the engine held it for a round not
    /// signed yet, and its asker went down, was banned or equivocated meanwhile. Every
    /// [`Input::FetchRequested`] ends in exactly one of [`Output::Serve`], [`Output::Busy`] or
    /// this: a driver that keeps something for the request (a response channel) drops it now.
    Unanswered {
        /// The asker.
        to: PeerKey,
        /// The request's handle, from [`Input::FetchRequested`].
        request: u64,
    },
    /// A peer's message was rejected; its penalty points are now `points`.
    Penalize {
        /// The peer.
        peer: PeerKey,
        /// Why.
        reason: Rejection,
        /// Its penalty points after this one.
        points: u32,
    },
    /// Disconnect `peer` now and refuse it from then on (also given at start for the bans of
    /// [`Resume::bans`]).
    Ban {
        /// The peer.
        peer: PeerKey,
        /// The rejection that crossed the threshold (or equivocation).
        reason: Rejection,
    },
    /// The ban on `peer` has ended (bans on the outlier screen's evidence alone last a while,
    /// not for good; and the ban table holds `max-peers` bans, so the ban of a peer the caller
    /// keeps out that a full table pushed out ends too): let it connect again.
    Unban {
        /// The peer.
        peer: PeerKey,
    },
    /// The verdict on the gossip message `message` ([`Input::GossipReceived`]): the gossip layer
    /// forwards it only when accepted.
    GossipChecked {
        /// The caller's handle on the message.
        message: u64,
        /// What to do with it.
        verdict: GossipVerdict,
    },
    /// The configured number of rounds is done.
    Finished,
    /// An attacker beyond [`Knowledge::Own`](crate::attack::Knowledge::Own) passes an honest peer's signed update it fetched
    /// to its allies (as [`Input::Intel`], by whatever side channel the red team has).
    Share {
        /// The update, as fetched.
        update: Arc<[u8]>,
    },
}

/// What the gossip layer does with a message the engine has checked (gossipsub's validation
/// result).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GossipVerdict {
    /// Valid and new: deliver and forward it.
    Accept,
    /// Harmless but not worth forwarding (already known, stale, from a banned peer).
    Ignore,
    /// Invalid: drop it; its author has been penalised.
    Reject,
}

/// A mistake of the caller, not of a peer: the engine's state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// [`Input::Start`] was given twice.
    #[error("the engine was already started")]
    AlreadyStarted,
    /// A training result when none was asked for, or for another round.
    #[error("a training result for round {round}, but {expected}")]
    UnexpectedTraining {
        /// The round of the result.
        round: u64,
        /// What the engine waits for.
        expected: String,
    },
    /// A training result of the wrong size.
    #[error("trained parameters have {got} values, the model has {expected}")]
    Dimension {
        /// The model's size.
        expected: usize,
        /// The result's size.
        got: usize,
    },
}
