//! A padded batch of token rows as libtorch tensors. The padding itself is the serving core's
//! ([`cuma_model::serve::padding`]); positions and masks are the shared input preparation
//! ([`cuma_model::layers::inputs`]).

use crate::Result;
use cuma_model::serve::padding::{pad, Side};
use tch::{Device, Tensor};

/// Pads `rows` of token ids to one length with `pad_id` on `side`. Returns ids and the 0/1 mask,
/// both `[b, max_len]` int64 on `device`.
pub fn pad_batch(rows: &[Vec<u32>], pad_id: u32, side: Side, device: Device) -> Result<(Tensor, Tensor)> {
    let padded = pad(rows, pad_id, side);
    let ids: Vec<i64> = padded.ids.iter().flatten().map(|&x| i64::from(x)).collect();
    let shape = [rows.len() as i64, padded.width as i64];
    Ok((
        Tensor::f_from_slice(&ids)?.f_view(shape)?.f_to_device(device)?,
        Tensor::f_from_slice(&padded.mask)?.f_view(shape)?.f_to_device(device)?,
    ))
}
