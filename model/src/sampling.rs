//! Next-token choice: greedy, or seeded temperature + top-k + top-p (nucleus) sampling. Runs on
//! the host over one logits row, so every backend (tch, ONNX Runtime, tract) draws the same
//! tokens from the same logits and seed.

/// How to pick the next token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingConfig {
    /// 0 means greedy.
    pub temperature: f64,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (1 = all).
    pub top_p: f64,
    /// Keep only the `top_k` most likely tokens first (0 = all).
    pub top_k: usize,
    pub seed: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
        }
    }
}

impl SamplingConfig {
    /// Checks the parameters every binary and request takes: `temperature` finite and >= 0,
    /// `top_p` in (0, 1]. NaN fails both (it compares false with everything).
    pub fn validate(&self) -> crate::Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(crate::Error::Sampling {
                field: "temperature",
                reason: format!("must be a finite number >= 0 (0 is greedy), got {}", self.temperature),
            });
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(crate::Error::Sampling {
                field: "top_p",
                reason: format!("must be in (0, 1], got {}", self.top_p),
            });
        }
        Ok(())
    }
}

/// SplitMix64: a small, fast, seedable generator (enough for sampling; not for cryptography).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An index in `0..n` (`n` > 0; the modulo's bias is below 2^-40 for any `n` under 2^24).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Fisher-Yates shuffle in place.
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i + 1);
            xs.swap(i, j);
        }
    }
}

/// Index of the largest value; ties go to the lowest index.
pub fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best
}

/// A sampler with its own generator state.
#[derive(Debug, Clone)]
pub struct Sampler {
    config: SamplingConfig,
    rng: Rng,
}

impl Sampler {
    pub fn new(config: SamplingConfig) -> Self {
        Self {
            config,
            rng: Rng::new(config.seed),
        }
    }

    /// Picks a token id from one row of logits.
    pub fn pick(&mut self, logits: &[f32]) -> usize {
        let c = self.config;
        if c.temperature <= 0.0 || logits.is_empty() {
            return argmax(logits);
        }
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let mut probs: Vec<(usize, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i, ((l as f64 - max) / c.temperature).exp()))
            .collect();
        let total: f64 = probs.iter().map(|p| p.1).sum();
        probs.iter_mut().for_each(|p| p.1 /= total);
        probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if c.top_k > 0 && c.top_k < probs.len() {
            probs.truncate(c.top_k);
        }
        let mut kept = 0;
        let mut mass = 0.0;
        for p in &probs {
            kept += 1;
            mass += p.1;
            if mass >= c.top_p {
                break;
            }
        }
        let r = self.rng.next_f64() * mass;
        let mut acc = 0.0;
        for p in &probs[..kept] {
            acc += p.1;
            if r < acc {
                return p.0;
            }
        }
        probs[kept - 1].0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_parameters_are_checked() {
        let ok = SamplingConfig {
            temperature: 0.7,
            top_p: 0.9,
            ..Default::default()
        };
        assert!(ok.validate().is_ok() && SamplingConfig::default().validate().is_ok());
        for (temperature, top_p, field) in [
            (f64::NAN, 1.0, "temperature"),
            (-0.1, 1.0, "temperature"),
            (f64::INFINITY, 1.0, "temperature"),
            (1.0, 0.0, "top_p"),
            (1.0, 1.5, "top_p"),
            (1.0, f64::NAN, "top_p"),
        ] {
            let err = SamplingConfig {
                temperature,
                top_p,
                ..Default::default()
            }
            .validate()
            .expect_err("refused")
            .to_string();
            assert!(err.contains(field), "{temperature} / {top_p}: {err}");
        }
    }

    #[test]
    fn greedy_takes_lowest_index_on_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(Sampler::new(SamplingConfig::default()).pick(&[0.0, 5.0, 1.0]), 1);
    }

    #[test]
    fn top_p_restricts_to_the_nucleus() {
        // probabilities ~ (0.88, 0.12, ~0): with top_p 0.5 only token 0 is ever drawn
        let logits = [4.0, 2.0, -20.0];
        let mut s = Sampler::new(SamplingConfig {
            temperature: 1.0,
            top_p: 0.5,
            top_k: 0,
            seed: 7,
        });
        assert!((0..200).all(|_| s.pick(&logits) == 0));
        let mut s = Sampler::new(SamplingConfig {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            seed: 7,
        });
        assert!((0..200).any(|_| s.pick(&logits) == 1));
    }

    #[test]
    fn top_k_keeps_the_k_most_likely() {
        let logits = [1.0, 3.0, 2.9, 2.8, -1.0];
        let mut s = Sampler::new(SamplingConfig {
            temperature: 5.0,
            top_p: 1.0,
            top_k: 2,
            seed: 3,
        });
        let drawn: std::collections::BTreeSet<usize> = (0..300).map(|_| s.pick(&logits)).collect();
        assert_eq!(drawn, [1, 2].into_iter().collect());
    }

    #[test]
    fn same_seed_same_draws() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let cfg = SamplingConfig {
            temperature: 0.8,
            top_p: 0.9,
            top_k: 0,
            seed: 42,
        };
        let (mut a, mut b) = (Sampler::new(cfg), Sampler::new(cfg));
        let da: Vec<usize> = (0..20).map(|_| a.pick(&logits)).collect();
        let db: Vec<usize> = (0..20).map(|_| b.pick(&logits)).collect();
        assert_eq!(da, db);
    }
}
