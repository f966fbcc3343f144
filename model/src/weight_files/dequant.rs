//! Conversion of stored tensor bytes to f32: float formats and llama.cpp's block quantisations
//! (Q8_0, Q4_0, Q4_1, 32 values per block), plus undoing llama.cpp's rotary row permutation.

use super::DType;
use half::{bf16, f16};

/// Values per quantisation block.
pub const BLOCK: usize = 32;

impl DType {
    /// Bytes needed for `numel` values, or `None` when `numel` does not fill whole blocks.
    pub fn byte_len(self, numel: usize) -> Option<usize> {
        let per_block = |bytes: usize| {
            (numel % BLOCK == 0)
                .then(|| (numel / BLOCK).checked_mul(bytes))
                .flatten()
        };
        match self {
            DType::F32 => numel.checked_mul(4),
            DType::F16 | DType::BF16 => numel.checked_mul(2),
            DType::Q8_0 => per_block(2 + BLOCK),
            DType::Q4_0 => per_block(2 + BLOCK / 2),
            DType::Q4_1 => per_block(4 + BLOCK / 2),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::Q8_0 => "Q8_0",
            DType::Q4_0 => "Q4_0",
            DType::Q4_1 => "Q4_1",
        }
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Decodes `numel` values of `dtype` from `raw` (which must be exactly the right length).
pub fn to_f32(dtype: DType, raw: &[u8], numel: usize) -> Result<Vec<f32>, String> {
    let want = dtype
        .byte_len(numel)
        .ok_or_else(|| format!("{numel} values do not fill whole {} blocks of {BLOCK}", dtype.name()))?;
    if raw.len() != want {
        return Err(format!(
            "{} bytes of {} data for {numel} values, expected {want}",
            raw.len(),
            dtype.name()
        ));
    }
    let mut out = Vec::with_capacity(numel);
    match dtype {
        DType::F32 => out.extend(
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        DType::F16 => out.extend(raw.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())),
        DType::BF16 => out.extend(raw.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())),
        DType::Q8_0 => {
            for block in raw.chunks_exact(2 + BLOCK) {
                let d = f16_at(block, 0);
                out.extend(block[2..].iter().map(|&q| d * f32::from(q as i8)));
            }
        }
        DType::Q4_0 => {
            for block in raw.chunks_exact(2 + BLOCK / 2) {
                let d = f16_at(block, 0);
                let qs = &block[2..];
                out.extend(qs.iter().map(|&q| d * (f32::from(q & 0x0F) - 8.0)));
                out.extend(qs.iter().map(|&q| d * (f32::from(q >> 4) - 8.0)));
            }
        }
        DType::Q4_1 => {
            for block in raw.chunks_exact(4 + BLOCK / 2) {
                let (d, m) = (f16_at(block, 0), f16_at(block, 2));
                let qs = &block[4..];
                out.extend(qs.iter().map(|&q| d * f32::from(q & 0x0F) + m));
                out.extend(qs.iter().map(|&q| d * f32::from(q >> 4) + m));
            }
        }
    }
    Ok(out)
}

/// Undoes llama.cpp's conversion permutation of Q / K projection rows.
///
/// The converter reorders each head's rows from "first half, second half" (Hugging Face's
/// rotate-half layout) to interleaved pairs: `w.reshape(heads, 2, rows/2, in).swap(1, 2)`.
/// This applies the inverse, `reshape(heads, rows/2, 2, in).swap(1, 2)`.
pub fn unpermute_rotary(values: &[f32], shape: &[usize], heads: usize) -> Result<Vec<f32>, String> {
    let (out_dim, in_dim) = match shape {
        [o, i] => (*o, *i),
        [o] => (*o, 1),
        _ => {
            return Err(format!(
                "cannot undo the rotary permutation of a rank-{} tensor",
                shape.len()
            ))
        }
    };
    if out_dim.checked_mul(in_dim) != Some(values.len()) {
        return Err(format!(
            "{} values do not fill a {out_dim} x {in_dim} matrix",
            values.len()
        ));
    }
    if heads == 0 || out_dim % (2 * heads) != 0 {
        return Err(format!(
            "{out_dim} rows do not split into {heads} heads of rotary pairs"
        ));
    }
    // Rows of no width hold nothing to move; looping over them could take 2^64 steps.
    if values.is_empty() {
        return Ok(Vec::new());
    }
    let half = out_dim / heads / 2;
    let mut out = vec![0.0; values.len()];
    for h in 0..heads {
        for j in 0..half {
            for pair in 0..2 {
                // stored row: (h, j, pair); Hugging Face row: (h, pair, j)
                let src = (h * half + j) * 2 + pair;
                let dst = (h * 2 + pair) * half + j;
                out[dst * in_dim..(dst + 1) * in_dim].copy_from_slice(&values[src * in_dim..(src + 1) * in_dim]);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16b(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn q8_0_block_by_hand() {
        let mut block = f16b(0.5).to_vec();
        block.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let v = to_f32(DType::Q8_0, &block, 32).expect("valid block");
        assert_eq!(v[0], -8.0);
        assert_eq!(v[16], 0.0);
        assert_eq!(v[31], 7.5);
    }

    #[test]
    fn q4_0_block_by_hand() {
        // low nibbles -> values 0..16, high nibbles -> values 16..32
        let mut block = f16b(2.0).to_vec();
        block.extend((0..16u8).map(|i| i | (15 - i) << 4));
        let v = to_f32(DType::Q4_0, &block, 32).expect("valid block");
        assert_eq!(v[0], (0.0 - 8.0) * 2.0);
        assert_eq!(v[15], (15.0 - 8.0) * 2.0);
        assert_eq!(v[16], (15.0 - 8.0) * 2.0);
        assert_eq!(v[31], (0.0 - 8.0) * 2.0);
    }

    #[test]
    fn q4_1_block_by_hand() {
        let mut block = f16b(0.25).to_vec();
        block.extend(f16b(-1.0));
        block.extend((0..16u8).map(|i| i | 3 << 4));
        let v = to_f32(DType::Q4_1, &block, 32).expect("valid block");
        assert_eq!(v[0], -1.0);
        assert_eq!(v[4], 0.0);
        assert_eq!(v[15], 15.0 * 0.25 - 1.0);
        assert_eq!(v[16], 3.0 * 0.25 - 1.0);
    }

    #[test]
    fn float_formats() {
        let raw: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(to_f32(DType::F32, &raw, 2).expect("f32"), vec![1.5, -2.0]);
        let raw: Vec<u8> = [bf16::from_f32(3.0), bf16::from_f32(-0.5)]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        assert_eq!(to_f32(DType::BF16, &raw, 2).expect("bf16"), vec![3.0, -0.5]);
    }

    #[test]
    fn block_sizes_of_absurd_counts_do_not_overflow() {
        // Found by the gguf fuzz target: a whole number of blocks near usize::MAX overflowed
        // `blocks * 34`.
        let numel = usize::MAX / BLOCK * BLOCK;
        for dtype in [DType::Q8_0, DType::F32, DType::F16, DType::BF16] {
            assert_eq!(dtype.byte_len(numel), None, "{}", dtype.name());
        }
        assert_eq!(DType::Q8_0.byte_len(64), Some(68));
    }

    #[test]
    fn wrong_length_is_an_error_not_a_panic() {
        let err = to_f32(DType::Q4_1, &[0u8; 19], 32).expect_err("short");
        assert!(err.contains("19 bytes"), "{err}");
        let err = to_f32(DType::Q8_0, &[0u8; 34], 31).expect_err("partial block");
        assert!(err.contains("whole"), "{err}");
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permutation() {
        // 2 heads x 4 rows, 1 column: HF rows 0..8; llama.cpp order per head: 0,2,1,3
        let hf: Vec<f32> = (0..8).map(|x| x as f32).collect();
        let stored = vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0];
        assert_eq!(unpermute_rotary(&stored, &[8, 1], 2).expect("valid"), hf);
        assert!(unpermute_rotary(&stored, &[8, 1], 3).is_err());
        assert!(
            unpermute_rotary(&stored, &[4, 1], 2).is_err(),
            "shape must match the values"
        );
        // A hostile file's empty tensor with 2^40 rows returns at once.
        assert_eq!(unpermute_rotary(&[], &[1 << 40, 0], 1), Ok(Vec::new()));
    }
}
