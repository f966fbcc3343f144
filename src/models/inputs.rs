//! Positions and additive attention masks for a forward pass, from a 0/1 padding mask.

use crate::Result;
use tch::{Device, Kind, Tensor};

/// A large negative number: masked scores vanish in softmax without producing NaN for rows that
/// are masked entirely (left padding).
pub const MASKED: f64 = -1e9;

/// For a decoder step over `s` new tokens after `past` cached ones: float positions `[b, s]`
/// (counting only real tokens, so left padding does not shift them) and the causal + padding
/// additive mask `[b, 1, s, past + s]`.
///
/// `attention_mask`: `[b, past + s]` of 0 / 1 (int64).
pub fn decoder_inputs(attention_mask: &Tensor, past: i64) -> Result<(Tensor, Tensor)> {
    let size = attention_mask.size();
    let (b, total) = (size[0], size[1]);
    let s = total - past;
    let device = attention_mask.device();
    let positions = (attention_mask.f_cumsum(1, Kind::Int64)? - 1)
        .f_clamp_min(0)?
        .f_slice(1, past, total, 1)?
        .f_to_kind(Kind::Float)?;
    let q_abs = Tensor::f_arange_start(past, total, (Kind::Int64, device))?.f_view([s, 1])?;
    let k_abs = Tensor::f_arange(total, (Kind::Int64, device))?.f_view([1, total])?;
    let causal = k_abs.f_le_tensor(&q_abs)?.f_view([1, 1, s, total])?;
    let keep = attention_mask
        .f_view([b, 1, 1, total])?
        .f_eq(1)?
        .f_logical_and(&causal)?;
    let additive =
        Tensor::f_zeros([b, 1, s, total], (Kind::Float, device))?.f_masked_fill(&keep.f_logical_not()?, MASKED)?;
    Ok((positions, additive))
}

/// For a bidirectional encoder: the padding-only additive mask `[b, 1, 1, t]`.
pub fn encoder_mask(attention_mask: &Tensor) -> Result<Tensor> {
    let size = attention_mask.size();
    let keep = attention_mask.f_eq(1)?.f_view([size[0], 1, 1, size[1]])?;
    Ok(
        Tensor::f_zeros([size[0], 1, 1, size[1]], (Kind::Float, attention_mask.device()))?
            .f_masked_fill(&keep.f_logical_not()?, MASKED)?,
    )
}

/// Pads `rows` of token ids to one length; `left` puts the padding first. Returns ids and the
/// 0/1 mask, both `[b, max_len]` int64 on `device`.
pub fn pad_batch(rows: &[Vec<u32>], pad_id: u32, left: bool, device: Device) -> Result<(Tensor, Tensor)> {
    let max = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(rows.len() * max);
    let mut mask = Vec::with_capacity(rows.len() * max);
    for r in rows {
        let pad = max - r.len();
        let (ids_pad, mask_pad) = (
            std::iter::repeat_n(i64::from(pad_id), pad),
            std::iter::repeat_n(0i64, pad),
        );
        let (ids_real, mask_real) = (r.iter().map(|&x| i64::from(x)), std::iter::repeat_n(1i64, r.len()));
        if left {
            ids.extend(ids_pad.chain(ids_real));
            mask.extend(mask_pad.chain(mask_real));
        } else {
            ids.extend(ids_real.chain(ids_pad));
            mask.extend(mask_real.chain(mask_pad));
        }
    }
    let shape = [rows.len() as i64, max as i64];
    Ok((
        Tensor::f_from_slice(&ids)?.f_view(shape)?.f_to_device(device)?,
        Tensor::f_from_slice(&mask)?.f_view(shape)?.f_to_device(device)?,
    ))
}
