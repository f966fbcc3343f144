//! Where every tensor lives: the path segments of the Hugging Face checkpoints, which the loaders
//! compose with [`Weights::pp`](crate::Weights::pp), and the few full paths that code outside a
//! loader needs (adapters named after the projection they adapt, the GGUF name mapping, the LoRA
//! merge). A test loads each architecture through a recording store to check that these paths
//! are the ones its loader asks for.

/// A Llama / Qwen2 / Qwen3 checkpoint: `model.embed_tokens`, `model.layers.{i}.self_attn.q_proj`,
/// `model.layers.{i}.mlp.gate_proj`, `model.norm`, `lm_head`, each holding `weight` (and `bias`).
pub mod decoder {
    use crate::config::Target;
    use crate::TensorPath;

    pub const MODEL: &str = "model";
    pub const EMBED: &str = "embed_tokens";
    pub const LAYERS: &str = "layers";
    pub const FINAL_NORM: &str = "norm";
    pub const LM_HEAD: &str = "lm_head";
    pub const SELF_ATTN: &str = "self_attn";
    pub const MLP: &str = "mlp";
    pub const INPUT_NORM: &str = "input_layernorm";
    pub const POST_ATTENTION_NORM: &str = "post_attention_layernorm";
    pub const Q_NORM: &str = "q_norm";
    pub const K_NORM: &str = "k_norm";

    /// `model.layers.{i}`.
    pub fn layer(i: usize) -> TensorPath {
        TensorPath::root().pp(MODEL).pp(LAYERS).pp(i)
    }

    /// The block a projection sits in: `self_attn` or `mlp`.
    pub fn section(target: Target) -> &'static str {
        match target {
            Target::QProj | Target::KProj | Target::VProj | Target::OProj => SELF_ATTN,
            Target::GateProj | Target::UpProj | Target::DownProj => MLP,
        }
    }

    /// `model.layers.{i}.self_attn.q_proj`, `model.layers.{i}.mlp.down_proj`, ...
    pub fn target(i: usize, target: Target) -> TensorPath {
        layer(i).pp(section(target)).pp(target.module())
    }

    /// `model.embed_tokens.weight`.
    pub fn embed() -> String {
        TensorPath::root().pp(MODEL).pp(EMBED).name("weight")
    }

    /// `model.norm.weight`.
    pub fn final_norm() -> String {
        TensorPath::root().pp(MODEL).pp(FINAL_NORM).name("weight")
    }

    /// `lm_head.weight` (absent when the head is tied to the embeddings).
    pub fn lm_head() -> String {
        TensorPath::root().pp(LM_HEAD).name("weight")
    }
}

/// A BERT checkpoint (sentence-transformers saves it without the `bert.` prefix):
/// `embeddings.*`, `encoder.layer.{i}.attention.self.query`, ...
pub mod bert {
    use crate::TensorPath;

    pub const EMBEDDINGS: &str = "embeddings";
    pub const WORD_EMBED: &str = "word_embeddings";
    pub const POSITION_EMBED: &str = "position_embeddings";
    pub const TOKEN_TYPE_EMBED: &str = "token_type_embeddings";
    pub const NORM: &str = "LayerNorm";
    pub const ENCODER: &str = "encoder";
    pub const LAYER: &str = "layer";

    /// `encoder.layer.{i}`.
    pub fn layer(i: usize) -> TensorPath {
        TensorPath::root().pp(ENCODER).pp(LAYER).pp(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{Bert, Decoder};
    use crate::config::method::ALL_TARGETS;
    use crate::config::{BertConfig, DecoderConfig, DecoderFamily, Target};
    use crate::weights::Recorder;
    use crate::ShapeOps;
    use std::collections::BTreeSet;

    fn asked(r: Recorder) -> BTreeSet<String> {
        r.0.into_iter().collect()
    }

    fn decoder_config(tie_embeddings: bool) -> DecoderConfig {
        DecoderConfig {
            family: DecoderFamily::Qwen3,
            vocab_size: 16,
            hidden_size: 8,
            intermediate_size: 12,
            num_layers: 2,
            num_heads: 2,
            num_kv_heads: 1,
            head_dim: 4,
            rms_norm_eps: 1e-6,
            rope_theta: 1e4,
            rope_scaling: None,
            max_position_embeddings: 64,
            tie_embeddings,
            qkv_bias: true,
            qk_norm: true,
        }
    }

    #[test]
    fn the_decoder_loader_asks_for_the_documented_paths() {
        let mut recorder = Recorder::default();
        Decoder::load(&mut ShapeOps, &mut recorder, &decoder_config(false)).expect("loads");
        let asked = asked(recorder);
        let mut expected: BTreeSet<String> = [decoder::embed(), decoder::final_norm(), decoder::lm_head()].into();
        for i in 0..2 {
            for t in ALL_TARGETS {
                expected.insert(decoder::target(i, t).name("weight"));
            }
            for t in [Target::QProj, Target::KProj, Target::VProj] {
                expected.insert(decoder::target(i, t).name("bias"));
            }
            for norm in [decoder::INPUT_NORM, decoder::POST_ATTENTION_NORM] {
                expected.insert(decoder::layer(i).pp(norm).name("weight"));
            }
            for norm in [decoder::Q_NORM, decoder::K_NORM] {
                expected.insert(decoder::layer(i).pp(decoder::SELF_ATTN).pp(norm).name("weight"));
            }
        }
        assert_eq!(asked, expected);
        assert!(asked.contains("model.layers.1.self_attn.q_proj.weight"));

        let mut tied = Recorder::default();
        Decoder::load(&mut ShapeOps, &mut tied, &decoder_config(true)).expect("loads");
        assert!(!tied.0.contains(&decoder::lm_head()));
    }

    #[test]
    fn the_bert_loader_asks_for_sentence_transformers_names() {
        let config = BertConfig {
            vocab_size: 16,
            hidden_size: 8,
            intermediate_size: 12,
            num_layers: 1,
            num_heads: 2,
            max_position_embeddings: 32,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
        };
        let mut recorder = Recorder::default();
        Bert::load(&mut ShapeOps, &mut recorder, &config).expect("loads");
        let asked = asked(recorder);
        for name in [
            "embeddings.word_embeddings.weight",
            "embeddings.LayerNorm.bias",
            "encoder.layer.0.attention.self.query.weight",
            "encoder.layer.0.attention.output.LayerNorm.weight",
            "encoder.layer.0.intermediate.dense.bias",
            "encoder.layer.0.output.dense.weight",
        ] {
            assert!(asked.contains(name), "{name} not among {asked:?}");
        }
        assert_eq!(asked.len(), 5 + 16);
    }
}
