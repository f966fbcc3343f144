//! Validated model configs. Built once from [`HfConfig`] (or GGUF metadata mapped onto it);
//! the architectures never have to second-guess them.

use super::hf::HfConfig;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// The decoder families sharing `arch::llama`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum DecoderFamily {
    /// Llama 2/3.x, SmolLM2: no biases, no q/k norm.
    Llama,
    /// Qwen2 / Qwen2.5: biases on q, k and v.
    Qwen2,
    /// Qwen3: per-head RMSNorm on q and k, no biases.
    Qwen3,
}

impl DecoderFamily {
    /// The Hugging Face `model_type` string.
    pub fn model_type(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
        }
    }
}

/// Llama 3.1-style frequency-dependent RoPE scaling.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

/// A decoder-only transformer (Llama / Qwen2 / Qwen3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecoderConfig {
    pub family: DecoderFamily,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<RopeScaling>,
    pub max_position_embeddings: usize,
    pub tie_embeddings: bool,
    /// Biases on q, k and v projections (Qwen2, or Llama with `attention_bias`).
    pub qkv_bias: bool,
    /// Per-head RMSNorm on q and k before RoPE (Qwen3).
    pub qk_norm: bool,
}

/// A BERT-family encoder (all-MiniLM-L6-v2 and friends).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
}

/// Any architecture cuma can load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ModelConfig {
    Decoder(DecoderConfig),
    Bert(BertConfig),
}

const SUPPORTED: &str = "llama, qwen2, qwen3, bert";

fn need<T: Copy>(v: Option<T>, field: &'static str) -> Result<T> {
    v.ok_or(Error::Config {
        field,
        reason: "missing".into(),
    })
}

/// The largest value cuma accepts for a size field: far above any real model, and low enough
/// that no product of sizes overflows and a hostile file cannot size an impossible allocation
/// (`num_hidden_layers: 1e9`).
fn size_limit(field: &str) -> usize {
    match field {
        "num_hidden_layers" | "num_attention_heads" | "num_key_value_heads" | "head_dim" | "type_vocab_size" => 1 << 10,
        "hidden_size" | "intermediate_size" => 1 << 18,
        _ => 1 << 24, // vocab_size, max_position_embeddings
    }
}

/// `v`, when it is at least 1 and at most [`size_limit`] of `field`.
fn positive(v: usize, field: &'static str) -> Result<usize> {
    if v == 0 {
        return Err(Error::Config {
            field,
            reason: "must be positive".into(),
        });
    }
    if v > size_limit(field) {
        return Err(Error::Config {
            field,
            reason: format!("{v} is beyond the largest cuma accepts ({})", size_limit(field)),
        });
    }
    Ok(v)
}

/// `v`, when it is finite and positive (RoPE bases, normalisation epsilons, scaling factors).
fn finite_positive(v: f64, field: &'static str) -> Result<f64> {
    if !(v.is_finite() && v > 0.0) {
        return Err(Error::Config {
            field,
            reason: format!("must be a finite number > 0, got {v}"),
        });
    }
    Ok(v)
}

impl TryFrom<&HfConfig> for ModelConfig {
    type Error = Error;

    fn try_from(hf: &HfConfig) -> Result<Self> {
        let model_type = hf.model_type.clone().unwrap_or_default();
        match model_type.as_str() {
            "llama" | "mistral" => Ok(Self::Decoder(decoder(hf, DecoderFamily::Llama)?)),
            "qwen2" => Ok(Self::Decoder(decoder(hf, DecoderFamily::Qwen2)?)),
            "qwen3" => Ok(Self::Decoder(decoder(hf, DecoderFamily::Qwen3)?)),
            "bert" => Ok(Self::Bert(bert(hf)?)),
            _ => Err(Error::UnsupportedFamily {
                model_type,
                supported: SUPPORTED,
            }),
        }
    }
}

fn decoder(hf: &HfConfig, family: DecoderFamily) -> Result<DecoderConfig> {
    let hidden_size = positive(need(hf.hidden_size, "hidden_size")?, "hidden_size")?;
    let num_heads = positive(
        need(hf.num_attention_heads, "num_attention_heads")?,
        "num_attention_heads",
    )?;
    let num_kv_heads = positive(hf.num_key_value_heads.unwrap_or(num_heads), "num_key_value_heads")?;
    if num_heads % num_kv_heads != 0 {
        return Err(Error::Config {
            field: "num_key_value_heads",
            reason: format!("{num_kv_heads} does not divide num_attention_heads {num_heads}"),
        });
    }
    let head_dim = match hf.head_dim {
        Some(d) => positive(d, "head_dim")?,
        None if hidden_size % num_heads == 0 => hidden_size / num_heads,
        None => {
            return Err(Error::Config {
                field: "head_dim",
                reason: format!("missing, and hidden_size {hidden_size} is not a multiple of {num_heads} heads"),
            })
        }
    };
    if head_dim % 2 != 0 {
        return Err(Error::Config {
            field: "head_dim",
            reason: format!("{head_dim} is odd; RoPE needs pairs"),
        });
    }
    if let Some(act) = &hf.hidden_act {
        if act != "silu" {
            return Err(Error::Config {
                field: "hidden_act",
                reason: format!("`{act}` (decoders use silu)"),
            });
        }
    }
    if hf.use_sliding_window == Some(true) {
        return Err(Error::Config {
            field: "use_sliding_window",
            reason: "sliding-window attention is not supported".into(),
        });
    }
    let rope_theta = finite_positive(
        hf.rope_theta
            .or_else(|| hf.rope_parameters.as_ref().and_then(|p| p.rope_theta))
            .unwrap_or(10_000.0),
        "rope_theta",
    )?;
    let rope_scaling = match hf.rope_scaling.as_ref().or(hf.rope_parameters.as_ref()) {
        None => None,
        Some(s) => {
            let kind = s.rope_type.clone().or_else(|| s.kind.clone()).unwrap_or_default();
            match kind.as_str() {
                "llama3" => {
                    let scaling = RopeScaling {
                        factor: finite_positive(need(s.factor, "rope_scaling.factor")?, "rope_scaling.factor")?,
                        low_freq_factor: finite_positive(
                            need(s.low_freq_factor, "rope_scaling.low_freq_factor")?,
                            "rope_scaling.low_freq_factor",
                        )?,
                        high_freq_factor: finite_positive(
                            need(s.high_freq_factor, "rope_scaling.high_freq_factor")?,
                            "rope_scaling.high_freq_factor",
                        )?,
                        original_max_position_embeddings: positive(
                            need(
                                s.original_max_position_embeddings,
                                "rope_scaling.original_max_position_embeddings",
                            )?,
                            "rope_scaling.original_max_position_embeddings",
                        )?,
                    };
                    // The smooth band between the two wavelengths divides by their difference.
                    if scaling.high_freq_factor <= scaling.low_freq_factor {
                        return Err(Error::Config {
                            field: "rope_scaling.high_freq_factor",
                            reason: format!(
                                "must exceed low_freq_factor ({} <= {})",
                                scaling.high_freq_factor, scaling.low_freq_factor
                            ),
                        });
                    }
                    Some(scaling)
                }
                "default" | "" => None,
                other => {
                    return Err(Error::Config {
                        field: "rope_scaling",
                        reason: format!("type `{other}` is not supported"),
                    })
                }
            }
        }
    };
    Ok(DecoderConfig {
        family,
        vocab_size: positive(need(hf.vocab_size, "vocab_size")?, "vocab_size")?,
        hidden_size,
        intermediate_size: positive(need(hf.intermediate_size, "intermediate_size")?, "intermediate_size")?,
        num_layers: positive(need(hf.num_hidden_layers, "num_hidden_layers")?, "num_hidden_layers")?,
        num_heads,
        num_kv_heads,
        head_dim,
        rms_norm_eps: finite_positive(hf.rms_norm_eps.unwrap_or(1e-6), "rms_norm_eps")?,
        rope_theta,
        rope_scaling,
        max_position_embeddings: positive(hf.max_position_embeddings.unwrap_or(4096), "max_position_embeddings")?,
        tie_embeddings: hf.tie_word_embeddings.unwrap_or(false),
        qkv_bias: family == DecoderFamily::Qwen2 || hf.attention_bias.unwrap_or(false),
        qk_norm: family == DecoderFamily::Qwen3,
    })
}

fn bert(hf: &HfConfig) -> Result<BertConfig> {
    let hidden_size = positive(need(hf.hidden_size, "hidden_size")?, "hidden_size")?;
    let num_heads = positive(
        need(hf.num_attention_heads, "num_attention_heads")?,
        "num_attention_heads",
    )?;
    if hidden_size % num_heads != 0 {
        return Err(Error::Config {
            field: "num_attention_heads",
            reason: format!("{num_heads} does not divide hidden_size {hidden_size}"),
        });
    }
    if let Some(act) = &hf.hidden_act {
        if act != "gelu" {
            return Err(Error::Config {
                field: "hidden_act",
                reason: format!("`{act}` (BERT encoders use gelu)"),
            });
        }
    }
    Ok(BertConfig {
        vocab_size: positive(need(hf.vocab_size, "vocab_size")?, "vocab_size")?,
        hidden_size,
        intermediate_size: positive(need(hf.intermediate_size, "intermediate_size")?, "intermediate_size")?,
        num_layers: positive(need(hf.num_hidden_layers, "num_hidden_layers")?, "num_hidden_layers")?,
        num_heads,
        max_position_embeddings: positive(hf.max_position_embeddings.unwrap_or(512), "max_position_embeddings")?,
        type_vocab_size: positive(hf.type_vocab_size.unwrap_or(2), "type_vocab_size")?,
        layer_norm_eps: finite_positive(hf.layer_norm_eps.unwrap_or(1e-12), "layer_norm_eps")?,
    })
}

impl DecoderConfig {
    /// Qwen3-8B's shape: 36 layers, hidden 4096, 32 heads / 8 KV heads of 128, MLP 12288, vocab
    /// 151936, untied head, q/k norms (for benchmarks and accounting at real size).
    pub fn qwen3_8b() -> Self {
        Self {
            family: DecoderFamily::Qwen3,
            vocab_size: 151_936,
            hidden_size: 4096,
            intermediate_size: 12_288,
            num_layers: 36,
            num_heads: 32,
            num_kv_heads: 8,
            head_dim: 128,
            rms_norm_eps: 1e-6,
            rope_theta: 1e6,
            rope_scaling: None,
            max_position_embeddings: 40_960,
            tie_embeddings: false,
            qkv_bias: false,
            qk_norm: true,
        }
    }

    /// SmolLM2-135M's shape (the embedded default backbone): 30 layers, hidden 576, 9 heads / 3
    /// KV heads of 64, MLP 1536, vocab 49152, tied embeddings.
    pub fn smollm2_135m() -> Self {
        Self {
            family: DecoderFamily::Llama,
            vocab_size: 49_152,
            hidden_size: 576,
            intermediate_size: 1536,
            num_layers: 30,
            num_heads: 9,
            num_kv_heads: 3,
            head_dim: 64,
            rms_norm_eps: 1e-5,
            rope_theta: 1e5,
            rope_scaling: None,
            max_position_embeddings: 8192,
            tie_embeddings: true,
            qkv_bias: false,
            qk_norm: false,
        }
    }

    /// Parameters of the backbone (embeddings counted once when tied).
    pub fn parameter_count(&self) -> usize {
        let (h, i, hd) = (self.hidden_size, self.intermediate_size, self.head_dim);
        let q = h * self.num_heads * hd;
        let kv = 2 * h * self.num_kv_heads * hd;
        let o = self.num_heads * hd * h;
        let bias = if self.qkv_bias {
            (self.num_heads + 2 * self.num_kv_heads) * hd
        } else {
            0
        };
        let norms = 2 * h + if self.qk_norm { 2 * hd } else { 0 };
        let layer = q + kv + o + bias + 3 * h * i + norms;
        let embed = self.vocab_size * h;
        let head = if self.tie_embeddings { 0 } else { embed };
        embed + self.num_layers * layer + h + head
    }

    /// RoPE inverse frequencies `theta^(-2i/d)`, adjusted for Llama 3 scaling when configured.
    pub fn rope_inv_freq(&self) -> Vec<f32> {
        let d = self.head_dim;
        (0..d / 2)
            .map(|i| {
                let f = 1.0 / self.rope_theta.powf(2.0 * i as f64 / d as f64);
                match self.rope_scaling {
                    None => f as f32,
                    Some(s) => llama3_scaled_freq(f, &s) as f32,
                }
            })
            .collect()
    }
}

fn llama3_scaled_freq(freq: f64, s: &RopeScaling) -> f64 {
    let old = s.original_max_position_embeddings as f64;
    let low_wavelen = old / s.low_freq_factor;
    let high_wavelen = old / s.high_freq_factor;
    let wavelen = 2.0 * std::f64::consts::PI / freq;
    if wavelen < high_wavelen {
        freq
    } else if wavelen > low_wavelen {
        freq / s.factor
    } else {
        let smooth = (old / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        (1.0 - smooth) * freq / s.factor + smooth * freq
    }
}

impl BertConfig {
    /// Parameters of the encoder (pooler excluded).
    pub fn parameter_count(&self) -> usize {
        let (h, i) = (self.hidden_size, self.intermediate_size);
        let embed = (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) * h + 2 * h;
        let layer = 4 * (h * h + h) + 2 * h * i + i + h + 4 * h;
        embed + self.num_layers * layer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::hf::HfRopeScaling;

    fn smollm2() -> HfConfig {
        HfConfig {
            model_type: Some("llama".into()),
            vocab_size: Some(49152),
            hidden_size: Some(576),
            intermediate_size: Some(1536),
            num_hidden_layers: Some(30),
            num_attention_heads: Some(9),
            num_key_value_heads: Some(3),
            tie_word_embeddings: Some(true),
            ..Default::default()
        }
    }

    #[test]
    fn smollm2_counts_about_135m_parameters() {
        let ModelConfig::Decoder(c) = ModelConfig::try_from(&smollm2()).expect("valid") else {
            panic!("decoder expected")
        };
        assert_eq!(c.head_dim, 64);
        assert_eq!(c.parameter_count(), 134_515_008);
    }

    #[test]
    fn sizes_beyond_any_real_model_are_refused_not_overflowed() {
        let huge = 1usize << 62;
        let cases: [(&str, HfConfig); 6] = [
            (
                "num_hidden_layers",
                HfConfig {
                    num_hidden_layers: Some(1_000_000_000),
                    ..smollm2()
                },
            ),
            (
                "num_hidden_layers",
                HfConfig {
                    num_hidden_layers: Some(usize::MAX),
                    ..smollm2()
                },
            ),
            (
                "hidden_size",
                HfConfig {
                    hidden_size: Some(huge),
                    ..smollm2()
                },
            ),
            (
                "vocab_size",
                HfConfig {
                    vocab_size: Some(huge),
                    ..smollm2()
                },
            ),
            (
                "intermediate_size",
                HfConfig {
                    intermediate_size: Some(huge),
                    ..smollm2()
                },
            ),
            (
                "head_dim",
                HfConfig {
                    head_dim: Some(huge),
                    ..smollm2()
                },
            ),
        ];
        for (field, hf) in cases {
            let err = ModelConfig::try_from(&hf).expect_err("refused").to_string();
            assert!(err.contains(field) && err.contains("largest"), "{field}: {err}");
        }
    }

    #[test]
    fn non_finite_or_non_positive_constants_are_refused() {
        let cases: [(&str, HfConfig); 6] = [
            (
                "rope_theta",
                HfConfig {
                    rope_theta: Some(f64::NAN),
                    ..smollm2()
                },
            ),
            (
                "rope_theta",
                HfConfig {
                    rope_theta: Some(0.0),
                    ..smollm2()
                },
            ),
            (
                "rope_theta",
                HfConfig {
                    rope_theta: Some(-1.0),
                    ..smollm2()
                },
            ),
            (
                "rms_norm_eps",
                HfConfig {
                    rms_norm_eps: Some(f64::NAN),
                    ..smollm2()
                },
            ),
            (
                "rms_norm_eps",
                HfConfig {
                    rms_norm_eps: Some(-1e-6),
                    ..smollm2()
                },
            ),
            (
                "max_position_embeddings",
                HfConfig {
                    max_position_embeddings: Some(0),
                    ..smollm2()
                },
            ),
        ];
        for (field, hf) in cases {
            let err = ModelConfig::try_from(&hf).expect_err("refused").to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn llama3_scaling_with_equal_frequency_factors_is_a_config_error() {
        let scaling = |low: f64, high: f64| HfRopeScaling {
            rope_type: Some("llama3".into()),
            factor: Some(8.0),
            low_freq_factor: Some(low),
            high_freq_factor: Some(high),
            original_max_position_embeddings: Some(8192),
            ..Default::default()
        };
        let err = ModelConfig::try_from(&HfConfig {
            rope_scaling: Some(scaling(4.0, 4.0)),
            ..smollm2()
        })
        .expect_err("equal factors")
        .to_string();
        assert!(err.contains("high_freq_factor"), "{err}");
        let ModelConfig::Decoder(ok) = ModelConfig::try_from(&HfConfig {
            rope_scaling: Some(scaling(1.0, 4.0)),
            ..smollm2()
        })
        .expect("valid") else {
            panic!("decoder")
        };
        assert!(ok.rope_inv_freq().iter().all(|f| f.is_finite() && *f > 0.0));
    }

    #[test]
    fn unknown_model_type_is_named() {
        let hf = HfConfig {
            model_type: Some("gpt_neox".into()),
            ..smollm2()
        };
        let err = ModelConfig::try_from(&hf).expect_err("unsupported");
        assert!(err.to_string().contains("gpt_neox"), "{err}");
    }

    #[test]
    fn transformers5_rope_parameters_are_read() {
        let hf: HfConfig = serde_json::from_str(
            r#"{"model_type":"qwen3","vocab_size":10,"hidden_size":8,"intermediate_size":16,"num_hidden_layers":1,
                "num_attention_heads":2,"rope_parameters":{"rope_theta":50000.0,"rope_type":"default"}}"#,
        )
        .expect("parses");
        let ModelConfig::Decoder(c) = ModelConfig::try_from(&hf).expect("valid") else {
            panic!("decoder")
        };
        assert_eq!(c.rope_theta, 50_000.0);
        assert!(c.rope_scaling.is_none() && c.qk_norm && !c.qkv_bias);
    }

    #[test]
    fn kv_heads_must_divide_heads() {
        let hf = HfConfig {
            num_key_value_heads: Some(4),
            ..smollm2()
        };
        let err = ModelConfig::try_from(&hf).expect_err("invalid");
        assert!(err.to_string().contains("num_key_value_heads"), "{err}");
    }

    #[test]
    fn llama3_scaling_keeps_high_frequencies_and_divides_low_ones() {
        let s = RopeScaling {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        };
        assert_eq!(llama3_scaled_freq(1.0, &s), 1.0);
        let low = 2.0 * std::f64::consts::PI / 100_000.0;
        assert!((llama3_scaled_freq(low, &s) - low / 8.0).abs() < 1e-15);
    }
}
