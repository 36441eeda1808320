//! How an engine holds its own model.
//!
//! From the moment an honest node signs its trained model as a whole `f32` update until it
//! mixes, the model is the payload of that update bit for bit, and the update is kept anyway (it
//! is what the node serves). The engine then holds the update alone and decodes the model from
//! it when it mixes: a node waiting for its peers' answers holds one copy of its model, not two.
//! Other codecs are lossy or send increments, so there the engine keeps its parameters.

use crate::codec;
use std::borrow::Cow;
use std::sync::Arc;

/// The engine's current model.
#[derive(Debug)]
pub(super) enum Own {
    /// Parameters: the starting model (the initial one, a checkpoint's, a join's), and a
    /// trained model until it is signed (for good with a lossy codec, the `top-k` chain or an
    /// attack).
    Params(Vec<f32>),
    /// The mix, from the mix until the trained model comes back: shared, so that a driver
    /// training on another thread takes a handle rather than a copy ([`ModelView::Shared`]).
    Mixed(Arc<Vec<f32>>),
    /// The node's own signed update, whose `f32` little-endian payload starts at `payload`.
    Signed { bytes: Arc<[u8]>, payload: usize },
}

impl Own {
    /// The model held as the `f32` payload of `bytes`, an update of `dim` parameters.
    pub(super) fn signed(bytes: Arc<[u8]>, dim: usize) -> Own {
        let payload = bytes.len().saturating_sub(4 * dim);
        Own::Signed { bytes, payload }
    }

    /// The parameters: borrowed, or decoded from the update.
    pub(super) fn params(&self) -> Cow<'_, [f32]> {
        self.view().to_cow()
    }

    /// The parameters, leaving an empty model behind (the caller puts one back): read in
    /// place from the update when they can be (see [`Model::in_place`]).
    pub(super) fn take(&mut self) -> Model {
        match std::mem::replace(self, Own::Params(Vec::new())) {
            Own::Params(params) => Model::Owned(params),
            // A driver lets go of its handle once its job has read the model.
            Own::Mixed(params) => {
                Model::Owned(Arc::try_unwrap(params).unwrap_or_else(|p| p.as_ref().clone()))
            }
            Own::Signed { bytes, payload } => Model::in_place(bytes, payload)
                .unwrap_or_else(|bytes| Model::Owned(ModelView::Le(&bytes[payload..]).to_vec())),
        }
    }

    /// The parameters as they are held.
    pub(super) fn view(&self) -> ModelView<'_> {
        match self {
            Own::Params(params) => ModelView::Params(params),
            Own::Mixed(params) => ModelView::Shared(params),
            Own::Signed { bytes, payload } => ModelView::Le(&bytes[*payload..]),
        }
    }
}

/// Parameters the engine owns, or the `f32` payload of a signed update read where it lies (the
/// mix reads its inputs so, rather than decoding a copy of each).
#[derive(Debug, Clone)]
pub(super) enum Model {
    Owned(Vec<f32>),
    /// `bytes[payload..]`, which [`codec::f32_view`] reads in place.
    InPlace {
        bytes: Arc<[u8]>,
        payload: usize,
    },
}

impl Model {
    /// The `f32` payload of `bytes` from `payload` on, read in place; the bytes back when this
    /// machine cannot (big-endian, or the payload is not at a multiple of 4 in memory).
    pub(super) fn in_place(bytes: Arc<[u8]>, payload: usize) -> Result<Model, Arc<[u8]>> {
        match bytes.get(payload..).and_then(codec::f32_view) {
            Some(_) => Ok(Model::InPlace { bytes, payload }),
            None => Err(bytes),
        }
    }

    /// The parameters.
    pub(super) fn as_slice(&self) -> &[f32] {
        match self {
            Model::Owned(params) => params,
            // Checked by `in_place`: the bytes cannot change, nor their address.
            Model::InPlace { bytes, payload } => {
                codec::f32_view(&bytes[*payload..]).unwrap_or_default()
            }
        }
    }

    /// The update the parameters are read in place from, and where their payload starts;
    /// `None` if they are held decoded.
    pub(super) fn shared(&self) -> Option<(Arc<[u8]>, usize)> {
        match self {
            Model::Owned(_) => None,
            Model::InPlace { bytes, payload } => Some((Arc::clone(bytes), *payload)),
        }
    }

    /// The parameters, to change: copied out of the update first if they are read in place.
    pub(super) fn to_mut(&mut self) -> &mut Vec<f32> {
        if let Model::InPlace { .. } = self {
            *self = Model::Owned(self.as_slice().to_vec());
        }
        match self {
            Model::Owned(params) => params,
            Model::InPlace { .. } => unreachable!("copied out above"),
        }
    }

    /// The parameters, owned.
    pub(super) fn into_vec(self) -> Vec<f32> {
        match self {
            Model::Owned(params) => params,
            held => held.as_slice().to_vec(),
        }
    }
}

/// A node's current model as its engine holds it (see [`super::Engine::model`]): parameters
/// (shared after a mix), or the `f32` little-endian payload of the node's own signed update.
/// Each reads as the same values, bit for bit.
#[derive(Debug, Clone, Copy)]
pub enum ModelView<'a> {
    /// Parameters in flat order.
    Params(&'a [f32]),
    /// Little-endian `f32` values, 4 bytes each, in flat order.
    Le(&'a [u8]),
    /// Parameters in flat order that another thread may hold too: a driver that trains the
    /// model on another thread takes a handle ([`Arc::clone`]) rather than a copy.
    Shared(&'a Arc<Vec<f32>>),
}

impl<'a> ModelView<'a> {
    /// Number of parameters.
    pub fn len(&self) -> usize {
        match self {
            ModelView::Params(p) => p.len(),
            ModelView::Shared(p) => p.len(),
            ModelView::Le(b) => b.len() / 4,
        }
    }

    /// Whether the model has no parameters.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with each parameter in flat order (without allocating).
    #[inline]
    pub fn for_each(&self, mut f: impl FnMut(f32)) {
        match self {
            ModelView::Params(p) => p.iter().for_each(|&x| f(x)),
            ModelView::Shared(p) => p.iter().for_each(|&x| f(x)),
            ModelView::Le(b) => b
                .chunks_exact(4)
                .for_each(|c| f(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
        }
    }

    /// The parameters in a new vector.
    pub fn to_vec(&self) -> Vec<f32> {
        match self {
            ModelView::Params(p) => p.to_vec(),
            ModelView::Shared(p) => p.to_vec(),
            // An exact-size iterator: collected in one pass the compiler vectorises.
            ModelView::Le(b) => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        }
    }

    /// The parameters, borrowed when they are held as such or can be read in place.
    pub fn to_cow(&self) -> Cow<'a, [f32]> {
        match *self {
            ModelView::Params(p) => Cow::Borrowed(p),
            ModelView::Shared(p) => Cow::Borrowed(p.as_slice()),
            ModelView::Le(b) => match codec::f32_view(b) {
                Some(p) => Cow::Borrowed(p),
                None => Cow::Owned(self.to_vec()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_held_as_its_update_reads_as_the_same_bits() {
        let params = [1.5f32, -0.0, f32::MIN_POSITIVE / 2.0, 3.25e7, f32::NAN];
        let mut bytes = vec![9u8; 11]; // a prefix and header of any length
        bytes.extend(params.iter().flat_map(|x| x.to_le_bytes()));
        let mut own = Own::signed(bytes.into(), params.len());
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&own.params()), bits(&params));
        assert_eq!(own.view().len(), params.len());
        let mut seen = Vec::new();
        own.view().for_each(|x| seen.push(x.to_bits()));
        assert_eq!(seen, bits(&params));
        assert_eq!(bits(own.take().as_slice()), bits(&params));
        assert!(own.view().is_empty(), "taken: an empty model is left");
    }

    #[test]
    fn a_payload_at_a_multiple_of_four_is_read_in_place_and_copied_out_only_to_change() {
        let params = [1.5f32, -2.0, 0.125];
        let mut bytes = vec![0u8; 8];
        bytes.extend(params.iter().flat_map(|x| x.to_le_bytes()));
        let bytes: Arc<[u8]> = bytes.into();
        let mut model = Model::in_place(Arc::clone(&bytes), 8).expect("aligned");
        assert_eq!(model.as_slice(), &params);
        assert!(
            std::ptr::eq(model.as_slice().as_ptr().cast::<u8>(), bytes[8..].as_ptr()),
            "read where it lies"
        );
        model.to_mut()[0] = 9.0;
        assert_eq!(model.as_slice(), &[9.0, -2.0, 0.125]);
        assert_eq!(
            &bytes[8..12],
            &1.5f32.to_le_bytes(),
            "the update is unchanged"
        );
        // Not at a multiple of 4: the bytes come back, to be decoded.
        assert!(Model::in_place(Arc::clone(&bytes), 7).is_err());
        assert!(Model::in_place(bytes, 99).is_err());
    }
}
