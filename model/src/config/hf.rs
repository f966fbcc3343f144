//! A tolerant serde mirror of what Hugging Face writes into `config.json`. Every field is
//! optional here; [`super::model`] decides what is required for which architecture.

use serde::{Deserialize, Serialize};

/// `rope_scaling` as written by Llama 3.1+ checkpoints, or `rope_parameters` as written by
/// transformers 5 (which also carries `rope_theta`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct HfRopeScaling {
    pub rope_theta: Option<f64>,
    pub rope_type: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub factor: Option<f64>,
    pub low_freq_factor: Option<f64>,
    pub high_freq_factor: Option<f64>,
    pub original_max_position_embeddings: Option<usize>,
}

/// The subset of `config.json` cuma reads; unknown fields are ignored.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct HfConfig {
    pub model_type: Option<String>,
    #[serde(default)]
    pub architectures: Vec<String>,
    pub vocab_size: Option<usize>,
    pub hidden_size: Option<usize>,
    pub intermediate_size: Option<usize>,
    pub num_hidden_layers: Option<usize>,
    pub num_attention_heads: Option<usize>,
    pub num_key_value_heads: Option<usize>,
    pub head_dim: Option<usize>,
    pub rms_norm_eps: Option<f64>,
    pub layer_norm_eps: Option<f64>,
    pub rope_theta: Option<f64>,
    pub rope_scaling: Option<HfRopeScaling>,
    pub rope_parameters: Option<HfRopeScaling>,
    pub use_sliding_window: Option<bool>,
    pub max_position_embeddings: Option<usize>,
    pub tie_word_embeddings: Option<bool>,
    pub attention_bias: Option<bool>,
    pub hidden_act: Option<String>,
    pub type_vocab_size: Option<usize>,
    pub torch_dtype: Option<String>,
}

impl HfConfig {
    /// Parses `config.json` text.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}
