//! Padding a batch of token rows to one width. Serving pads on the left: rows of different
//! lengths then end at the same position, so a step's last-position logits are every row's next
//! token. Training pads on the right (targets keep their indices). The mask marks padding 0;
//! positions are counted over the mask by the model, so left padding shifts nothing.

/// Which end of a row the padding goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Left,
    Right,
}

/// A padded batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Padded {
    /// `[batch][width]` ids.
    pub ids: Vec<Vec<u32>>,
    /// `[batch, width]` row-major 0/1.
    pub mask: Vec<i64>,
    pub width: usize,
}

/// Pads `rows` with `pad` on `side` to the longest one's length.
pub fn pad(rows: &[Vec<u32>], pad: u32, side: Side) -> Padded {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(rows.len());
    let mut mask = Vec::with_capacity(rows.len() * width);
    for row in rows {
        let gap = width - row.len();
        let (pad_ids, real_ids) = (std::iter::repeat_n(pad, gap), row.iter().copied());
        let (pad_mask, real_mask) = (std::iter::repeat_n(0, gap), std::iter::repeat_n(1, row.len()));
        match side {
            Side::Left => {
                ids.push(pad_ids.chain(real_ids).collect());
                mask.extend(pad_mask.chain(real_mask));
            }
            Side::Right => {
                ids.push(real_ids.chain(pad_ids).collect());
                mask.extend(real_mask.chain(pad_mask));
            }
        }
    }
    Padded { ids, mask, width }
}

/// Pads `prompts` on the left with `pad` to the longest one's length (serving).
pub fn left_pad(prompts: &[Vec<u32>], pad_id: u32) -> Padded {
    pad(prompts, pad_id, Side::Left)
}

/// `mask` `[batch, width]` grown by one column: 1 for rows still running, 0 for finished ones.
pub fn grow_mask(mask: &[i64], width: usize, running: impl Iterator<Item = bool>) -> Vec<i64> {
    let mut grown = Vec::with_capacity(mask.len() + mask.len() / width.max(1));
    for (row, live) in mask.chunks(width.max(1)).zip(running) {
        grown.extend_from_slice(row);
        grown.push(i64::from(live));
    }
    grown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_on_the_left_and_masks_the_padding() {
        let p = left_pad(&[vec![5, 6, 7], vec![9]], 0);
        assert_eq!(p.width, 3);
        assert_eq!(p.ids, vec![vec![5, 6, 7], vec![0, 0, 9]]);
        assert_eq!(p.mask, vec![1, 1, 1, 0, 0, 1]);
        assert_eq!(
            grow_mask(&p.mask, 3, [true, false].into_iter()),
            vec![1, 1, 1, 1, 0, 0, 1, 0]
        );
    }

    #[test]
    fn pads_on_the_right_for_training() {
        let p = pad(&[vec![5, 6, 7], vec![9]], 0, Side::Right);
        assert_eq!(p.ids, vec![vec![5, 6, 7], vec![9, 0, 0]]);
        assert_eq!(p.mask, vec![1, 1, 1, 1, 0, 0]);
    }
}
