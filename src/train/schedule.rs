//! Learning-rate schedule: linear warmup, then cosine decay to 0 (spec section 6).

/// The learning rate at optimiser step `step` (0-based) of `total`.
pub fn cosine_with_warmup(base: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1);
    let progress = ((step - warmup) as f64 / span as f64).min(1.0);
    base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays_to_zero() {
        assert!((cosine_with_warmup(1.0, 0, 4, 10) - 0.25).abs() < 1e-12);
        assert!((cosine_with_warmup(1.0, 3, 4, 10) - 1.0).abs() < 1e-12);
        assert!((cosine_with_warmup(1.0, 4, 4, 10) - 1.0).abs() < 1e-12);
        assert!((cosine_with_warmup(1.0, 7, 4, 10) - 0.5).abs() < 1e-12);
        assert!(cosine_with_warmup(1.0, 10, 4, 10).abs() < 1e-12);
    }
}
