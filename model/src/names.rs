//! Every tensor name, as a function. Hugging Face names for the backbones and encoders.

/// Names inside a Llama / Qwen2 / Qwen3 checkpoint.
pub mod decoder {
    pub const EMBED: &str = "model.embed_tokens.weight";
    pub const FINAL_NORM: &str = "model.norm.weight";
    pub const LM_HEAD: &str = "lm_head.weight";

    /// Prefix of layer `i`: `model.layers.{i}`.
    pub fn layer(i: usize) -> String {
        format!("model.layers.{i}")
    }
    /// `{layer}.self_attn.{proj}` for proj in q_proj, k_proj, v_proj, o_proj, q_norm, k_norm.
    pub fn attn(i: usize, part: &str) -> String {
        format!("{}.self_attn.{part}", layer(i))
    }
    /// `{layer}.mlp.{proj}` for proj in gate_proj, up_proj, down_proj.
    pub fn mlp(i: usize, part: &str) -> String {
        format!("{}.mlp.{part}", layer(i))
    }
    /// `{layer}.input_layernorm` / `{layer}.post_attention_layernorm`.
    pub fn norm(i: usize, which: &str) -> String {
        format!("{}.{which}", layer(i))
    }
}

/// Names inside a BERT checkpoint (sentence-transformers saves them without the `bert.` prefix).
pub mod bert {
    pub const WORD_EMBED: &str = "embeddings.word_embeddings.weight";
    pub const POSITION_EMBED: &str = "embeddings.position_embeddings.weight";
    pub const TOKEN_TYPE_EMBED: &str = "embeddings.token_type_embeddings.weight";
    pub const EMBED_NORM: &str = "embeddings.LayerNorm";

    /// Prefix of layer `i`: `encoder.layer.{i}`.
    pub fn layer(i: usize) -> String {
        format!("encoder.layer.{i}")
    }
}
