//! How a signed update's payload encodes the model's parameters.
//!
//! The codec is part of a run's configuration and is signed in every update's header; the
//! payload's digest covers the encoded bytes. Decoding is bounded by the model's dimension (the
//! receiver's, never the sender's) and refuses every value that is not finite.
//!
//! | codec | bytes a parameter | what is lost |
//! |---|---|---|
//! | `f32` | 4 | nothing |
//! | `bf16` | 2 | mantissa beyond 8 bits, rounded to nearest even |
//! | `f16` | 2 | mantissa beyond 11 bits; magnitudes beyond 65504 saturate |
//! | `int8` | 1 + 4 / block | a block's values on 255 levels of its largest magnitude |
//! | `int4` | 1/2 + 4 / block | the same on 15 levels |
//!
//! The blockwise codecs (`int8`, `int4`) lay a payload out as every block's scale first
//! (`f32`, little endian, one per `block` parameters, the last block possibly shorter), then the
//! quantized values in the model's flat parameter order: one `i8` each, or two's-complement
//! nibbles packed two to a byte, the lower nibble first (an odd count leaves the last high
//! nibble unused). A value decodes as its level times its block's scale. The encoder picks the
//! scale that maps the block's largest magnitude to the top level, and rounds each value to one
//! of its two neighbouring levels at random, with the probability that makes the decoded value
//! equal to the true one in expectation (stochastic rounding): the error of a mix of many
//! peers' models averages out instead of accumulating in one direction. The random numbers come
//! from a seed the caller passes (the engine derives it from its own seed), so a run repeats
//! exactly.

use crate::wire::Error;
use serde::{Deserialize, Serialize};

/// Block size of `int8` and `int4` when a config names the codec without one.
pub const DEFAULT_BLOCK: u32 = 256;
/// Smallest block a config may choose: smaller blocks spend more bytes on scales than they save.
pub const MIN_BLOCK: u32 = 16;
/// Largest block a config may choose.
pub const MAX_BLOCK: u32 = 1 << 20;
/// Largest top-k fraction, in parts per million (a quarter): beyond it an increment (8 bytes a
/// coordinate) saves little over a full model.
pub const MAX_TOP_K_PPM: u32 = 250_000;

/// A top-k fraction in parts per million, rounded, at least 1.
pub(crate) fn ppm_of(fraction: f64) -> u32 {
    ((fraction * 1e6).round() as u32).max(1)
}

/// The top-k fraction of `ppm` parts per million.
pub(crate) fn fraction_of(ppm: u32) -> f64 {
    f64::from(ppm) / 1e6
}

/// How a payload encodes the model's parameters. Signed in the header (by variant index, with
/// the block size of the blockwise codecs); in configs `codec = "f32"` (the default), `"bf16"`,
/// `"f16"`, `"int8"`, `"int4"`, or a table such as `{ kind = "int8", block = 256 }`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Codec {
    /// `f32` values, little endian, 4 bytes each, in the model's flat parameter order.
    #[default]
    F32Le,
    /// bfloat16 values (the upper 16 bits of an `f32`, rounded to nearest even), little endian,
    /// 2 bytes each: half the bytes, 8 bits of mantissa, the full `f32` range.
    Bf16Le,
    /// IEEE half-precision values, little endian, 2 bytes each: half the bytes, 11 bits of
    /// mantissa, magnitudes up to 65504 (larger ones are sent as ±65504, never as infinity).
    F16Le,
    /// Blockwise 8-bit integers with stochastic rounding: levels -127..=127 of each block's
    /// scale (a received -128 is valid too).
    Int8 {
        /// Parameters per scale.
        block: u32,
    },
    /// Blockwise 4-bit integers with stochastic rounding: levels -7..=7 of each block's scale
    /// (a received -8 is valid too).
    Int4 {
        /// Parameters per scale.
        block: u32,
    },
    /// Top-k increments against a public estimate, with error feedback (module
    /// [`crate::sparse`], the chain of module `engine::chain`): each round a node sends the
    /// `ppm` parts per million of its coordinates where its model differs most from the estimate
    /// its peers hold of it. A full model in this codec (a snapshot of the estimate, sent to a
    /// peer that holds no copy or an outdated one) is laid out as `f32`.
    TopK {
        /// The fraction of coordinates an increment carries, in parts per million.
        ppm: u32,
    },
    /// A whole model (a snapshot of the estimate) in a run of [`Codec::TopK`] with the same
    /// `ppm`, laid out as `f32`. Signed as its own codec so that a snapshot and an increment of
    /// one round, which an honest node both signs, never make evidence of equivocation
    /// ([`crate::evidence::Equivocation::verify`] wants one codec). Never configured: see
    /// [`Codec::whole`].
    TopKWhole {
        /// The fraction of the run's increments, in parts per million.
        ppm: u32,
    },
}

impl Codec {
    /// Payload bytes for `dim` parameters.
    pub fn payload_len(self, dim: usize) -> usize {
        match self {
            Codec::F32Le | Codec::TopK { .. } | Codec::TopKWhole { .. } => dim * 4,
            Codec::Bf16Le | Codec::F16Le => dim * 2,
            Codec::Int8 { block } => scales_len(dim, block) + dim,
            Codec::Int4 { block } => scales_len(dim, block) + dim.div_ceil(2),
        }
    }

    /// The kind's name, as in configs.
    pub fn name(self) -> &'static str {
        match self {
            Codec::F32Le => "f32",
            Codec::Bf16Le => "bf16",
            Codec::F16Le => "f16",
            Codec::Int8 { .. } => "int8",
            Codec::TopK { .. } => "top-k",
            Codec::TopKWhole { .. } => "top-k-whole",
            Codec::Int4 { .. } => "int4",
        }
    }

    /// Whether encoding draws random numbers (stochastic rounding).
    pub fn dithers(self) -> bool {
        matches!(self, Codec::Int8 { .. } | Codec::Int4 { .. })
    }

    /// Checks a configured codec: the block size of a blockwise codec lies in
    /// [`MIN_BLOCK`]..=[`MAX_BLOCK`].
    pub fn validate(self) -> Result<(), String> {
        match self {
            Codec::Int8 { block } | Codec::Int4 { block }
                if !(MIN_BLOCK..=MAX_BLOCK).contains(&block) =>
            {
                Err(format!(
                    "codec {}: block {block} is outside {MIN_BLOCK}..={MAX_BLOCK}",
                    self.name()
                ))
            }
            Codec::TopK { ppm } if !(1..=MAX_TOP_K_PPM).contains(&ppm) => Err(format!(
                "codec top-k: fraction {} is outside 0.000001..=0.25",
                fraction_of(ppm)
            )),
            _ => Ok(()),
        }
    }

    /// The codec a whole model is signed in, in a run of this codec: [`Codec::TopKWhole`] for
    /// [`Codec::TopK`], the codec itself for the others.
    pub fn whole(self) -> Codec {
        match self {
            Codec::TopK { ppm } => Codec::TopKWhole { ppm },
            c => c,
        }
    }

    /// Whether an update signed in `signed` belongs to a run of this codec: this codec, or its
    /// whole-model form.
    pub fn admits(self, signed: Codec) -> bool {
        signed == self || signed == self.whole()
    }

    /// Coordinates a top-k increment of a `dim`-parameter model carries (`None` for the other
    /// codecs).
    pub fn top_k(self, dim: usize) -> Option<usize> {
        match self {
            Codec::TopK { ppm } => Some(crate::sparse::count(dim, ppm)),
            _ => None,
        }
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Codec::Int8 { block } | Codec::Int4 { block } => {
                write!(f, "{} (block {block})", self.name())
            }
            Codec::TopK { ppm } => write!(f, "top-k ({}%)", f64::from(*ppm) / 1e4),
            Codec::TopKWhole { ppm } => {
                write!(f, "top-k ({}%) whole model", f64::from(*ppm) / 1e4)
            }
            _ => f.write_str(self.name()),
        }
    }
}

fn scales_len(dim: usize, block: u32) -> usize {
    dim.div_ceil(block.max(1) as usize) * 4
}

/// (De)serializes a [`Codec`] the way configs write it: a name, or a table with `kind` and
/// `block`. Use with `#[serde(with = "murmur_protocol::codec::spec")]`.
pub mod spec {
    use super::{Codec, DEFAULT_BLOCK};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Spec {
        Name(String),
        Table(Table),
    }

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Table {
        kind: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        block: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fraction: Option<f64>,
    }

    fn from_parts(kind: &str, block: Option<u32>, fraction: Option<f64>) -> Result<Codec, String> {
        if kind == "top-k" {
            if block.is_some() {
                return Err("codec \"top-k\" takes a fraction, not a block size".to_owned());
            }
            let f = fraction.ok_or("codec \"top-k\" needs a fraction, such as 0.01")?;
            if !(f > 0.0 && f <= 0.25) {
                return Err(format!("codec top-k: fraction {f} is outside (0, 0.25]"));
            }
            let codec = Codec::TopK {
                ppm: super::ppm_of(f),
            };
            codec.validate()?;
            return Ok(codec);
        }
        if fraction.is_some() {
            return Err(format!("codec \"{kind}\" takes no fraction"));
        }
        let fixed = |c: Codec| match block {
            None => Ok(c),
            Some(_) => Err(format!("codec \"{kind}\" takes no block size")),
        };
        let block = block.unwrap_or(DEFAULT_BLOCK);
        let codec = match kind {
            "f32" => fixed(Codec::F32Le)?,
            "bf16" => fixed(Codec::Bf16Le)?,
            "f16" => fixed(Codec::F16Le)?,
            "int8" => Codec::Int8 { block },
            "int4" => Codec::Int4 { block },
            other => {
                return Err(format!(
                    "unknown codec \"{other}\": expected f32, bf16, f16, int8, int4 or top-k"
                ));
            }
        };
        codec.validate()?;
        Ok(codec)
    }

    /// Serializes as a name, with a table for the blockwise codecs.
    pub fn serialize<S: Serializer>(codec: &Codec, s: S) -> Result<S::Ok, S::Error> {
        match *codec {
            Codec::Int8 { block } | Codec::Int4 { block } => Spec::Table(Table {
                kind: codec.name().into(),
                block: Some(block),
                fraction: None,
            }),
            Codec::TopK { ppm } => Spec::Table(Table {
                kind: codec.name().into(),
                block: None,
                fraction: Some(super::fraction_of(ppm)),
            }),
            c => Spec::Name(c.name().into()),
        }
        .serialize(s)
    }

    /// Deserializes a name or a table; unknown kinds and bad blocks are errors that say so.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Codec, D::Error> {
        let parsed = match Spec::deserialize(d)? {
            Spec::Name(name) => from_parts(&name, None, None),
            Spec::Table(t) => from_parts(&t.kind, t.block, t.fraction),
        };
        parsed.map_err(serde::de::Error::custom)
    }

    /// Parses a codec as written on a command line: `int8`, or `int8:64` for a block size, or
    /// `top-k:0.01` for a fraction.
    pub fn parse(text: &str) -> Result<Codec, String> {
        match text.split_once(':') {
            None => from_parts(text, None, None),
            Some(("top-k", fraction)) => {
                let f = fraction.parse().map_err(|_| {
                    format!("codec \"{text}\": fraction \"{fraction}\" is not a number")
                })?;
                from_parts("top-k", None, Some(f))
            }
            Some((kind, block)) => {
                let block = block
                    .parse()
                    .map_err(|_| format!("codec \"{text}\": block \"{block}\" is not a number"))?;
                from_parts(kind, Some(block), None)
            }
        }
    }
}

/// `v` as bfloat16 bits, rounded to nearest even. A finite `v` beyond bfloat16's largest value
/// rounds to infinity, which a receiver refuses as non-finite; models are nowhere near it.
pub fn f32_to_bf16(v: f32) -> u16 {
    let bits = v.to_bits();
    if v.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let rounding = 0x7FFF + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding) >> 16) as u16
}

/// `v` as IEEE half-precision bits, rounded to nearest even, saturating at ±65504 so that a
/// large finite value is never sent as an infinity (which receivers refuse as non-finite).
pub fn f32_to_f16(v: f32) -> u16 {
    half::f16::from_f32(v.clamp(-65504.0, 65504.0)).to_bits()
}

/// The `f32` of bfloat16 bits `b`: exact.
pub fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

/// Encodes `params` as a payload in `codec`; the blockwise codecs round with random numbers
/// drawn from `seed`.
pub fn encode(codec: Codec, params: &[f32], seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; codec.payload_len(params.len())];
    encode_into(codec, params, seed, &mut out);
    out
}

/// Whether the `f32` of these bits is a NaN or an infinity: its exponent all ones.
fn not_finite(bits: u32) -> bool {
    bits & 0x7F80_0000 == 0x7F80_0000
}

/// [`encode_into`] in [`Codec::F32Le`], into memory not yet written (every byte of `out` is
/// written). Returns whether every parameter is finite.
///
/// # Panics
/// If `out` is not four bytes a parameter.
pub fn encode_f32le_uninit(params: &[f32], out: &mut [std::mem::MaybeUninit<u8>]) -> bool {
    assert_eq!(out.len(), 4 * params.len(), "payload size");
    let mut bad = false;
    for (o, v) in out.as_chunks_mut::<4>().0.iter_mut().zip(params) {
        let bits = v.to_bits();
        bad |= not_finite(bits);
        o.write_copy_of_slice(&bits.to_le_bytes());
    }
    !bad
}

/// [`encode`] into `out`, of exactly `codec.payload_len(params.len())` bytes (every byte is
/// written). Panics on any other length: the caller sizes `out` from the codec.
///
/// Returns whether the payload is known to pass [`validate`] at `params.len()`: true for a
/// 32-bit codec's payload of finite parameters (checked as they are written); false for
/// non-finite parameters, and for the other codecs, whose payloads this does not check.
pub fn encode_into(codec: Codec, params: &[f32], seed: u64, out: &mut [u8]) -> bool {
    assert_eq!(out.len(), codec.payload_len(params.len()), "payload size");
    // Plain loops over fixed-size chunks, which the compiler vectorises.
    match codec {
        Codec::F32Le | Codec::TopK { .. } | Codec::TopKWhole { .. } => {
            // As in `validate`: a flag over every value, the exponent all ones.
            let mut bad = false;
            for (o, v) in out.chunks_exact_mut(4).zip(params) {
                let bits = v.to_bits();
                bad |= not_finite(bits);
                o.copy_from_slice(&bits.to_le_bytes());
            }
            return !bad;
        }
        Codec::Bf16Le => {
            for (o, &v) in out.chunks_exact_mut(2).zip(params) {
                o.copy_from_slice(&f32_to_bf16(v).to_le_bytes());
            }
        }
        Codec::F16Le => {
            for (o, &v) in out.chunks_exact_mut(2).zip(params) {
                o.copy_from_slice(&f32_to_f16(v).to_le_bytes());
            }
        }
        Codec::Int8 { block } => {
            let (scales, levels) = out.split_at_mut(scales_len(params.len(), block));
            quantize(params, block, 127, seed, scales, levels);
        }
        Codec::Int4 { block } => {
            let (scales, packed) = out.split_at_mut(scales_len(params.len(), block));
            let mut levels = vec![0u8; params.len()];
            quantize(params, block, 7, seed, scales, &mut levels);
            for (o, pair) in packed.iter_mut().zip(levels.chunks(2)) {
                let high = pair.get(1).copied().unwrap_or(0);
                *o = (pair[0] & 0x0F) | (high << 4);
            }
        }
    }
    false
}

/// Checks that `payload` in `codec` decodes to exactly `dim` finite parameters, as [`decode`]
/// would, with the same error; 32-bit payloads are checked in place, without a copy.
pub fn validate(codec: Codec, payload: &[u8], dim: usize) -> Result<(), Error> {
    match codec {
        Codec::F32Le | Codec::TopK { .. } | Codec::TopKWhole { .. } => {
            check_len(codec, payload, dim)?;
            let bad = |c: &[u8]| {
                u32::from_le_bytes([c[0], c[1], c[2], c[3]]) & 0x7F80_0000 == 0x7F80_0000
            };
            // As in `decode`: a flag over every value vectorises; the position only when needed.
            if payload.chunks_exact(4).fold(false, |any, c| any | bad(c)) {
                let index = payload.chunks_exact(4).position(bad).unwrap_or(0);
                return Err(Error::NonFinite { index });
            }
            Ok(())
        }
        _ => decode(codec, payload, dim, &mut Vec::new()),
    }
}

fn check_len(codec: Codec, payload: &[u8], dim: usize) -> Result<(), Error> {
    let expected = codec.payload_len(dim);
    if payload.len() != expected {
        return Err(match codec {
            Codec::F32Le
            | Codec::Bf16Le
            | Codec::F16Le
            | Codec::TopK { .. }
            | Codec::TopKWhole { .. } => Error::Dimension {
                expected: dim,
                got: payload.len() / codec.payload_len(1),
            },
            _ => Error::PayloadSize {
                dim,
                expected,
                got: payload.len(),
            },
        });
    }
    Ok(())
}

/// An `f32` little-endian payload read where it lies, without a copy: `None` unless this
/// machine is little-endian and the payload starts at a multiple of 4 in memory and holds a
/// whole number of values. A signed update puts its payload at a multiple of 4 from the
/// message's start ([`crate::wire`]), so a message held at an aligned address qualifies. The
/// values are not checked.
pub fn f32_view(payload: &[u8]) -> Option<&[f32]> {
    if cfg!(target_endian = "little") {
        bytemuck::try_cast_slice(payload).ok()
    } else {
        None
    }
}

/// Decodes `payload` in `codec` into `out` (cleared first) as exactly `dim` finite parameters.
pub fn decode(codec: Codec, payload: &[u8], dim: usize, out: &mut Vec<f32>) -> Result<(), Error> {
    check_len(codec, payload, dim)?;
    out.clear();
    out.reserve(dim);
    // Exact-size iterators over slices: `extend` writes them without a check per value, and
    // the compiler vectorises the conversions.
    match codec {
        Codec::F32Le | Codec::TopK { .. } | Codec::TopKWhole { .. } => {
            // Block by block, each checked while it is in the first-level cache.
            let mut bad = false;
            for block in payload.chunks(4 * 2048) {
                let start = out.len();
                out.extend(
                    block
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                );
                bad |= out[start..].iter().fold(false, |bad, v| {
                    bad | (v.to_bits() & 0x7FFF_FFFF >= 0x7F80_0000)
                });
            }
            if bad {
                let index = out.iter().position(|v| !v.is_finite()).unwrap_or(0);
                return Err(Error::NonFinite { index });
            }
            return Ok(());
        }
        Codec::Bf16Le => out.extend(
            payload
                .chunks_exact(2)
                .map(|c| bf16_to_f32(u16::from_le_bytes([c[0], c[1]]))),
        ),
        Codec::F16Le => out.extend(
            payload
                .chunks_exact(2)
                .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()),
        ),
        Codec::Int8 { block } | Codec::Int4 { block } => {
            let (scales, levels) = payload.split_at(scales_len(dim, block));
            let block = block as usize;
            for (b, scale) in scales.chunks_exact(4).enumerate() {
                let scale = f32::from_le_bytes([scale[0], scale[1], scale[2], scale[3]]);
                let range = b * block..((b + 1) * block).min(dim);
                if let Codec::Int8 { .. } = codec {
                    out.extend(levels[range].iter().map(|&q| f32::from(q as i8) * scale));
                } else {
                    out.extend(range.map(|i| f32::from(nibble(levels[i / 2], i % 2)) * scale));
                }
                // Levels lie in -128..=127: the block is finite when 128 times its scale is.
                if !(scale * 128.0).is_finite() {
                    let first = b * block;
                    if let Some(i) = out[first..].iter().position(|v| !v.is_finite()) {
                        return Err(Error::NonFinite { index: first + i });
                    }
                }
            }
            return Ok(());
        }
    }
    // Or-ing a flag over every value (rather than stopping at the first) vectorises; the
    // position is looked for only when there is one.
    let any_bad = out.iter().fold(false, |bad, v| {
        bad | (v.to_bits() & 0x7FFF_FFFF >= 0x7F80_0000)
    });
    if any_bad {
        let index = out.iter().position(|v| !v.is_finite()).unwrap_or(0);
        return Err(Error::NonFinite { index });
    }
    Ok(())
}

/// The signed value of the lower (`which` 0) or upper (1) nibble of `byte`.
fn nibble(byte: u8, which: usize) -> i8 {
    ((byte << (4 * (1 - which))) as i8) >> 4
}

/// The `j`-th 64 random bits of the stream `seed` (wyrand: a counter through a multiply-fold
/// mix, so the draws do not wait on each other).
#[inline]
fn random_bits(seed: u64, j: u64) -> u64 {
    let state = seed.wrapping_add(j.wrapping_add(1).wrapping_mul(0xa076_1d64_78bd_642f));
    let t = u128::from(state) * u128::from(state ^ 0xe703_7ed1_a0b4_28db);
    (t >> 64) as u64 ^ t as u64
}

/// Writes each block's scale (`f32` LE) to `scales` and each value's level in `-top..=top`
/// (two's complement, a byte each) to `levels`, rounding at random with 23 random bits a
/// value.
fn quantize(params: &[f32], block: u32, top: i32, seed: u64, scales: &mut [u8], levels: &mut [u8]) {
    /// 1.5 · 2^23: adding it to a float of magnitude below 2^22 leaves the nearest integer in
    /// the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let block = block.max(1) as usize;
    let top_f = top as f32;
    let mut draw = 0u64;
    for ((chunk, scale_out), level_out) in params
        .chunks(block)
        .zip(scales.chunks_exact_mut(4))
        .zip(levels.chunks_mut(block))
    {
        // The bits of non-negative floats order as the floats do, and every infinity or NaN
        // lies above the largest finite value: one integer maximum finds both.
        // (As i32, which the magnitudes' bits fit, in eight running maxima: SSE2 compares
        // signed integers only, and one maximum would wait on the last.)
        let mut maxima = [0i32; 8];
        let mut eights = chunk.chunks_exact(8);
        for eight in &mut eights {
            for (m, v) in maxima.iter_mut().zip(eight) {
                *m = (*m).max((v.to_bits() & 0x7FFF_FFFF) as i32);
            }
        }
        let largest = eights
            .remainder()
            .iter()
            .fold(maxima.into_iter().fold(0, i32::max), |m, v| {
                m.max((v.to_bits() & 0x7FFF_FFFF) as i32)
            }) as u32;
        // A model that is not finite makes a scale that is not: receivers refuse it, as they
        // refuse such a model in f32.
        let scale = if largest >= 0x7F80_0000 {
            f32::NAN
        } else {
            f32::from_bits(largest) / top_f
        };
        scale_out.copy_from_slice(&scale.to_le_bytes());
        let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        // floor(v / scale + u) for u uniform in (0, 1) with mean exactly 1/2: the upper
        // neighbour with probability equal to the fraction, so the level is right in
        // expectation. The floor is taken as the nearest integer of the value less a half
        // (they differ only on exact ties, one draw in 2^23 at most), after a clamp that
        // catches a largest value landing a hair above the top level; the integer is read from
        // the low byte of the float's bits once MAGIC is added.
        let level = |v: f32, random: u32| -> u8 {
            // u - 1/2 = (k + 1/2) / 2^23 - 1/2 for the top 23 random bits k, made a float from
            // its bits (1 + k / 2^23) without an integer conversion.
            let u_less_half =
                f32::from_bits(0x3F80_0000 | (random >> 9)) - (1.5 - 0.5 / 8_388_608.0);
            let x = v * inverse + u_less_half;
            let x = if x < -top_f { -top_f } else { x };
            let x = if x > top_f { top_f } else { x };
            (x + MAGIC).to_bits() as u8
        };
        // Eight xorshift32 generators side by side, seeded per block from the stream: each
        // step of all eight is a few vector instructions.
        let mut lanes = [0u32; 8];
        for (pair, slot) in lanes.chunks_exact_mut(2).enumerate() {
            let bits = random_bits(seed, draw + pair as u64);
            slot.copy_from_slice(&[bits as u32 | 1, (bits >> 32) as u32 | 1]);
        }
        draw += 4;
        let step = |lanes: &mut [u32; 8]| {
            for x in lanes.iter_mut() {
                *x ^= *x << 13;
                *x ^= *x >> 17;
                *x ^= *x << 5;
            }
        };
        // The draws of 64 values are made first, then used by a plain loop over the values,
        // which the compiler vectorises with the conversion to bytes.
        let mut draws = [0u32; 64];
        for (vs, qs) in chunk.chunks(64).zip(level_out.chunks_mut(64)) {
            for d in draws.chunks_exact_mut(8) {
                step(&mut lanes);
                d.copy_from_slice(&lanes);
            }
            for ((q, &v), &r) in qs.iter_mut().zip(vs).zip(&draws) {
                *q = level(v, r);
            }
        }
    }
}

#[cfg(test)]
mod tests;
