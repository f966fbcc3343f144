//! Adapter weights that are the same bits on every CPU: a checkpoint's adapters and routers
//! overwritten with values from a seeded integer generator (splitmix64, `cuma_model::sampling::Rng`), so tests that pin a
//! model's decisions pin inference on fixed weights, not the training noise of the machine
//! that recorded them. Every tensor is non-zero (LoRA B included, unlike a fresh adapter), so
//! experts, routers and gates all shape the output.

use cuma_model::sampling::Rng;
use std::path::Path;
use tch::Tensor;

/// Uniform in [-1, 1) on a grid of 2^-23 (exact in f32), from cuma-model's splitmix64
/// generator: integer arithmetic only, so the same on every CPU.
pub fn symmetric(g: &mut Rng) -> f32 {
    ((g.next_u64() >> 40) as f32) / (1u32 << 23) as f32 - 1.0
}

/// FNV-1a of a tensor name: each tensor's values depend on its name and the seed only.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Deterministic values for the adapter tensor `name` of `shape`, standing in for `current`.
fn values(name: &str, shape: &[i64], current: &Tensor, seed: u64) -> Tensor {
    let mut g = Rng::new(seed ^ name_hash(name));
    let n: i64 = shape.iter().product();
    let u: Vec<f32> = (0..n).map(|_| symmetric(&mut g)).collect();
    let fresh = Tensor::from_slice(&u).view(shape);
    if name.ends_with("dora_magnitude") {
        // DoRA's magnitudes start at the frozen weight's row norms; scale them by 0.75..1.25.
        return current.detach().to_kind(tch::Kind::Float) * (fresh * 0.25 + 1.0);
    }
    // Fan-in scaled like the usual uniform initialisations; biases and other vectors small.
    let bound = match shape {
        [.., fan_in] if shape.len() >= 2 => 1.0 / (*fan_in as f64).sqrt(),
        _ => 0.1,
    };
    fresh * bound
}

/// Replaces every adapter and router tensor in the checkpoint of the run directory `run` with
/// seeded values (same names, shapes and file layout), keeping its config and optimiser state.
pub fn seed_adapters(run: &Path, seed: u64) {
    use cuma::train::checkpoint::{load, save};
    let dir = run.join("checkpoint");
    let ckpt = load(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let adapters: Vec<(String, Tensor)> = ckpt
        .adapters
        .iter()
        .map(|(name, t)| (name.clone(), values(name, &t.size(), t, seed)))
        .collect();
    save(&dir, &ckpt.manifest, &adapters, &ckpt.optimizer).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
}
