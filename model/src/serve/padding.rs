//! Left padding: a batch of prompts of different lengths becomes rows of one width whose last
//! real tokens share the last position, so a step's last-position logits are every row's next
//! token. The mask marks padding 0; positions are counted over the mask by the model, so padding
//! shifts nothing.

/// A left-padded batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Padded {
    /// `[batch][width]` ids, padding first.
    pub ids: Vec<Vec<u32>>,
    /// `[batch, width]` row-major 0/1.
    pub mask: Vec<i64>,
    pub width: usize,
}

/// Pads `prompts` on the left with `pad` to the longest one's length.
pub fn left_pad(prompts: &[Vec<u32>], pad: u32) -> Padded {
    let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(prompts.len());
    let mut mask = Vec::with_capacity(prompts.len() * width);
    for p in prompts {
        let gap = width - p.len();
        ids.push(std::iter::repeat_n(pad, gap).chain(p.iter().copied()).collect());
        mask.extend(std::iter::repeat_n(0, gap).chain(std::iter::repeat_n(1, p.len())));
    }
    Padded { ids, mask, width }
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
}
