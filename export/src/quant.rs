//! Block quantization of the backbone's projection weights for `cuma export --quant int4|int8`.
//!
//! A weight `W` `[out, in]` (the Hugging Face layout) is stored transposed, `[K = in, N = out]`,
//! cut into blocks of [`BLOCK`] consecutive rows along K (a block holds 32 inputs of one output,
//! the cut the GGUF formats make). Each block has a float32 scale and a zero point, read back by
//! the standard blocked `DequantizeLinear` (opset 21: `(q - zero_point) * scale`, `axis = 0`,
//! `block_size = 32`) feeding a `MatMul`: the pattern ONNX Runtime fuses into `MatMulNBits`.
//!
//! Three block forms, one per tensor ([`Form`]), chosen so that what a GGUF file holds comes
//! through exactly:
//! - [`Form::Symmetric8`]: int8 `q * d` (zero point 0), ggml's Q8_0.
//! - [`Form::Symmetric4`]: uint4 `(q - 8) * d`, ggml's Q4_0.
//! - [`Form::Affine`]: unsigned `q * d + m` with a float minimum `m` per block, ggml's Q4_1
//!   (4 bits) and its 8-bit analogue. `DequantizeLinear` has no float offset, so the graph adds
//!   it as a second, small product: `x W = x (q d) + (x summed per block) M`, with `M` the
//!   `[K / 32, N]` minima.
//!
//! A tensor takes the first form that reproduces every one of its blocks exactly, whatever
//! width was asked for (SmolLM2's Q4_1 projections are recovered exactly as their `d`, `m` and
//! `q`, and stay 4-bit in an 8-bit export); anything else (float weights) is rounded into the
//! affine form at the requested width. The graph builder keeps float a tensor whose exact form
//! is 8-bit in a 4-bit export (SmolLM2's Q8_0 table and tied lm-head; see
//! `GraphBuilder::stored_width`).

/// Rows of K per block.
pub const BLOCK: usize = 32;

/// The opset a quantized graph needs (blocked `DequantizeLinear`, 4-bit types).
pub use cuma_model::bundle::QUANT_OPSET;

/// Bits per stored weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantBits {
    Int8,
    Int4,
}

impl QuantBits {
    pub fn bits(self) -> u32 {
        match self {
            Self::Int8 => 8,
            Self::Int4 => 4,
        }
    }
}

/// How one tensor's blocks are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// int8 `q * d`.
    Symmetric8,
    /// uint4 `(q - 8) * d`.
    Symmetric4,
    /// unsigned `q * d + m`, `q` below `2^bits`.
    Affine(QuantBits),
}

impl Form {
    pub fn bits(self) -> QuantBits {
        match self {
            Form::Symmetric8 | Form::Affine(QuantBits::Int8) => QuantBits::Int8,
            Form::Symmetric4 | Form::Affine(QuantBits::Int4) => QuantBits::Int4,
        }
    }
}

/// A block-quantized `[k, n]` matrix, ready to become `DequantizeLinear` initializers.
#[derive(Debug, Clone, PartialEq)]
pub struct Blocked {
    pub k: usize,
    pub n: usize,
    pub form: Form,
    /// Row-major `[k, n]`, one value per element (int8, or unsigned below `2^bits`).
    pub values: Vec<i16>,
    /// Row-major `[ceil(k / BLOCK), n]`.
    pub scales: Vec<f32>,
    /// Row-major `[ceil(k / BLOCK), n]` block minima ([`Form::Affine`] only).
    pub minima: Option<Vec<f32>>,
    /// Blocks that reproduce the source exactly, out of `scales.len()`.
    pub exact_blocks: usize,
}

impl Blocked {
    /// The zero point every block shares.
    pub fn zero_point(&self) -> i16 {
        if self.form == Form::Symmetric4 {
            8
        } else {
            0
        }
    }

    /// Whether every block reproduces the source.
    pub fn is_exact(&self) -> bool {
        self.exact_blocks == self.scales.len()
    }

    /// The ONNX element type of the stored values and zero points.
    pub fn storage_type(&self) -> i32 {
        use crate::proto::data_type;
        match self.form {
            Form::Symmetric8 => data_type::INT8,
            Form::Affine(QuantBits::Int8) => data_type::UINT8,
            Form::Symmetric4 | Form::Affine(QuantBits::Int4) => data_type::UINT4,
        }
    }

    /// The weight element `(row, col)` of the `[k, n]` matrix as the graph computes with it.
    pub fn dequantized(&self, row: usize, col: usize) -> f32 {
        let b = (row / BLOCK) * self.n + col;
        let q = f32::from(self.values[row * self.n + col] - self.zero_point());
        let m = self.minima.as_ref().map_or(0.0, |m| m[b]);
        q * self.scales[b] + m
    }
}

/// One block's scale, minimum and values, and whether they reproduce it.
struct BlockQ {
    scale: f32,
    min: f32,
    values: Vec<i16>,
    exact: bool,
}

impl BlockQ {
    fn new(block: &[f32], scale: f32, zero_point: i16, min: f32, values: Vec<i16>) -> Self {
        // Compared as numbers: 0.0 and -0.0 are the same weight.
        let exact = block
            .iter()
            .zip(&values)
            .all(|(&v, &q)| f32::from(q - zero_point) * scale + min == v);
        Self {
            scale,
            min,
            values,
            exact,
        }
    }
}

/// int8, symmetric: `d = amax / 127`, `q = round(v / d)` (the Q8_0 rule, which gives back the
/// `d` and `q` of a Q8_0 block: its largest value is `127 d`).
fn symmetric8(block: &[f32]) -> BlockQ {
    let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let q = block
        .iter()
        .map(|&v| {
            if d == 0.0 {
                0
            } else {
                (v / d).round().clamp(-127.0, 127.0) as i16
            }
        })
        .collect();
    BlockQ::new(block, d, 0, 0.0, q)
}

/// uint4 with zero point 8: `d = x / -8` for the value `x` of largest magnitude (the Q4_0 rule,
/// which gives back a Q4_0 block's `d` and `q`: its largest magnitude is `-8 d`).
fn symmetric4(block: &[f32]) -> BlockQ {
    let x = block.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    let d = x / -8.0;
    let q = block
        .iter()
        .map(|&v| {
            if d == 0.0 {
                8
            } else {
                ((v / d).round() + 8.0).clamp(0.0, 15.0) as i16
            }
        })
        .collect();
    BlockQ::new(block, d, 8, 0.0, q)
}

/// Unsigned `q d + m` below `levels`: `m` the block's minimum, `d` its range over
/// `levels - 1`. A Q4_1 block stores both as float16 and holds its minimum (`q = 0`) and
/// maximum (`q = 15`); when the float16 nearest to the range's `d` reproduces the block, that
/// is the block's own `d`.
fn affine(block: &[f32], levels: u16) -> BlockQ {
    let lo = block.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = block.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let top = f32::from(levels - 1);
    let make = |d: f32| {
        let q = block
            .iter()
            .map(|&v| {
                if d == 0.0 {
                    0
                } else {
                    ((v - lo) / d).round().clamp(0.0, top) as i16
                }
            })
            .collect();
        BlockQ::new(block, d, 0, lo, q)
    };
    let d = (hi - lo) / top;
    let as_f16 = make(half::f16::from_f32(d).to_f32());
    if as_f16.exact {
        as_f16
    } else {
        make(d)
    }
}

/// How one block is quantized in one form.
type BlockRule = dyn Fn(&[f32]) -> BlockQ;

/// Quantizes `weight` (`[n, k]` row-major, the `[out, in]` layout) into `[k, n]` blocks along k
/// in the first [`Form`] that is exact for the whole tensor (8-bit symmetric, 4-bit symmetric,
/// 4-bit affine), else the affine form of `bits`.
pub fn quantize(weight: &[f32], n: usize, k: usize, bits: QuantBits) -> Blocked {
    assert_eq!(
        weight.len(),
        n * k,
        "quantize: {n} x {k} weight with {} values",
        weight.len()
    );
    let blocks_k = k.div_ceil(BLOCK);
    let quantize_all = |rule: &BlockRule| -> Vec<BlockQ> {
        let mut out = Vec::with_capacity(blocks_k * n);
        for kb in 0..blocks_k {
            for col in 0..n {
                let row = &weight[col * k..(col + 1) * k];
                out.push(rule(&row[kb * BLOCK..((kb + 1) * BLOCK).min(k)]));
            }
        }
        out
    };
    let affine4 = |b: &[f32]| affine(b, 16);
    let affine8 = |b: &[f32]| affine(b, 256);
    // Forms that carry a GGUF tensor exactly, tried in order; a 4-bit source stays 4-bit in an
    // 8-bit export too (exact and smaller).
    let exact: [(Form, &BlockRule); 3] = [
        (Form::Symmetric8, &symmetric8),
        (Form::Symmetric4, &symmetric4),
        (Form::Affine(QuantBits::Int4), &affine4),
    ];
    let fallback: (Form, &BlockRule) = match bits {
        QuantBits::Int4 => (Form::Affine(QuantBits::Int4), &affine4),
        QuantBits::Int8 => (Form::Affine(QuantBits::Int8), &affine8),
    };
    let (form, blocks) = exact
        .into_iter()
        .find_map(|(form, rule)| {
            let blocks = quantize_all(rule);
            blocks.iter().all(|b| b.exact).then_some((form, blocks))
        })
        .unwrap_or_else(|| (fallback.0, quantize_all(fallback.1)));
    assemble(k, n, form, blocks)
}

/// The [`Blocked`] `[k, n]` matrix of `blocks` (row-major over `[ceil(k / BLOCK), n]`) in `form`.
fn assemble(k: usize, n: usize, form: Form, blocks: Vec<BlockQ>) -> Blocked {
    let mut values = vec![0i16; k * n];
    for (i, b) in blocks.iter().enumerate() {
        let (kb, col) = (i / n, i % n);
        for (j, &q) in b.values.iter().enumerate() {
            values[(kb * BLOCK + j) * n + col] = q;
        }
    }
    Blocked {
        k,
        n,
        form,
        values,
        scales: blocks.iter().map(|b| b.scale).collect(),
        minima: matches!(form, Form::Affine(_)).then(|| blocks.iter().map(|b| b.min).collect()),
        exact_blocks: blocks.iter().filter(|b| b.exact).count(),
    }
}

/// Packs 4-bit values two per byte, the first of each pair in the low nibble (ONNX's layout).
pub fn pack_u4(values: impl ExactSizeIterator<Item = u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len().div_ceil(2));
    let mut pending: Option<u8> = None;
    for v in values {
        match pending.take() {
            None => pending = Some(v & 0x0f),
            Some(low) => out.push(low | ((v & 0x0f) << 4)),
        }
    }
    out.extend(pending);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    /// A deterministic spread of weights in about [-0.1, 0.1].
    fn weights(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32 - 0.5) * 0.2
            })
            .collect()
    }

    /// ggml's Q8_0 round trip of one block (its published rule: d = amax / 127, kept as
    /// float16; q = round(v / d)), decoded as cuma's GGUF reader does.
    fn ggml_q8_0(block: &[f32]) -> Vec<f32> {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        let d16 = f16::from_f32(d).to_f32();
        block.iter().map(|&v| d16 * (v * id).round()).collect()
    }

    /// Q4_0: d = x / -8 (x the value of largest magnitude, signed), kept as float16;
    /// q = min(15, trunc(v / d + 8.5)); decoded as d (q - 8).
    fn ggml_q4_0(block: &[f32]) -> Vec<f32> {
        let x = block.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        let d = x / -8.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        let d16 = f16::from_f32(d).to_f32();
        block
            .iter()
            .map(|&v| d16 * (((v * id + 8.5) as i32).min(15) as f32 - 8.0))
            .collect()
    }

    /// Q4_1: d = (max - min) / 15 and m = min, both kept as float16; q = min(15, round((v - min)
    /// / d)); decoded as d q + m.
    fn ggml_q4_1(block: &[f32]) -> Vec<f32> {
        let lo = block.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = block.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let d = (hi - lo) / 15.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        let (d16, m16) = (f16::from_f32(d).to_f32(), f16::from_f32(lo).to_f32());
        block
            .iter()
            .map(|&v| d16 * (((v - lo) * id + 0.5) as i32).min(15) as f32 + m16)
            .collect()
    }

    fn ggml_round_trip(weight: &[f32], f: fn(&[f32]) -> Vec<f32>) -> Vec<f32> {
        weight.chunks(BLOCK).flat_map(f).collect()
    }

    fn assert_reproduces(q: &Blocked, weight: &[f32]) {
        assert_eq!(q.exact_blocks, q.scales.len());
        for col in 0..q.n {
            for row in 0..q.k {
                assert_eq!(
                    q.dequantized(row, col),
                    weight[col * q.k + row],
                    "element ({row}, {col})"
                );
            }
        }
    }

    /// `w` quantizes into `form` and reproduces exactly, whichever width is asked for.
    fn assert_carried(w: &[f32], n: usize, k: usize, form: Form) -> Vec<Blocked> {
        [QuantBits::Int8, QuantBits::Int4]
            .into_iter()
            .map(|bits| {
                let q = quantize(w, n, k, bits);
                assert_eq!(q.form, form, "{bits:?}");
                assert_reproduces(&q, w);
                q
            })
            .collect()
    }

    #[test]
    fn q8_0_tensors_come_through_exactly_at_8_bits_even_in_a_4_bit_export() {
        let w = ggml_round_trip(&weights(5 * 96, 1), ggml_q8_0);
        assert_carried(&w, 5, 96, Form::Symmetric8);
    }

    #[test]
    fn q4_0_tensors_come_through_exactly_at_4_bits_even_in_an_8_bit_export() {
        let w = ggml_round_trip(&weights(4 * 64, 2), ggml_q4_0);
        assert_carried(&w, 4, 64, Form::Symmetric4);
    }

    #[test]
    fn q4_1_tensors_come_through_exactly_as_their_own_scales_and_minima() {
        let w = ggml_round_trip(&weights(6 * 64, 5), ggml_q4_1);
        for q in assert_carried(&w, 6, 64, Form::Affine(QuantBits::Int4)) {
            // The scales are the float16 ones the file holds.
            assert!(q.scales.iter().all(|&d| f16::from_f32(d).to_f32() == d));
        }
    }

    #[test]
    fn float_weights_round_to_the_nearest_level() {
        let (n, k) = (3, 80); // a last block of 16 rows
        let w = weights(n * k, 3);
        for (bits, top) in [(QuantBits::Int8, 255), (QuantBits::Int4, 15)] {
            let q = quantize(&w, n, k, bits);
            assert_eq!(q.form, Form::Affine(bits));
            assert_eq!(q.scales.len(), 3 * 3);
            for col in 0..n {
                for row in 0..k {
                    let step = q.scales[(row / BLOCK) * n + col];
                    let err = (q.dequantized(row, col) - w[col * k + row]).abs();
                    assert!(
                        err <= step * 0.5 * (1.0 + 1e-5),
                        "{bits:?} ({row}, {col}): {err} > {step} / 2"
                    );
                }
            }
            assert!(q.values.iter().all(|v| (0..=top).contains(v)));
        }
    }

    #[test]
    fn constant_blocks_are_exact() {
        let mut w = weights(2 * 64, 4);
        w[..32].fill(0.0);
        w[64..96].fill(0.25);
        for bits in [QuantBits::Int8, QuantBits::Int4] {
            let q = quantize(&w, 2, 64, bits);
            for row in 0..32 {
                assert_eq!(q.dequantized(row, 0), 0.0, "{bits:?}");
                assert_eq!(q.dequantized(row, 1), 0.25, "{bits:?}");
            }
        }
    }

    #[test]
    fn packing_puts_the_first_value_low() {
        assert_eq!(pack_u4([1u8, 2, 3, 15, 7].into_iter()), vec![0x21, 0xf3, 0x07]);
    }
}
