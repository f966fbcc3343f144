//! Every supported family on tiny random checkpoints, against transformers' outputs
//! (`fixtures/tiny/make_tiny.py`): logits, greedy decoding with the KV cache, padding invariance,
//! and pooled encoder vectors.

mod common;

use common::{device, f32s, last_logits, reference, tiny, u32s};
use cuma::models::{Backbone, ProfileEncoder};
use cuma::sampling::argmax;
use tch::{Device, Kind, Tensor};

const TOLERANCE: f32 = 1e-4;

fn check_decoder(name: &str) {
    let r = &reference()["decoders"][name];
    let model = Backbone::load(&tiny(name), device()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let ids = model
        .tokenizer
        .encode(r["text"].as_str().expect("text"), false)
        .expect("encodes");
    assert_eq!(ids, u32s(&r["ids"]), "{name}: token ids");
    let _guard = tch::no_grad_guard();
    let input = Tensor::from_slice(&ids.iter().map(|&x| i64::from(x)).collect::<Vec<_>>())
        .view([1, -1])
        .to(model.device);
    let n = ids.len() as i64;
    let (logits, mut cache) = model
        .step(&input, &Tensor::ones([1, n], (Kind::Int64, model.device)), None)
        .expect("forward");
    let want_rows = r["logits_last_positions"].as_array().expect("logits");
    let first = n - want_rows.len() as i64;
    let mut worst = 0.0f32;
    for (k, want) in want_rows.iter().enumerate() {
        let got = Vec::<f32>::try_from(&logits.get(0).get(first + k as i64).to(Device::Cpu)).expect("row");
        for (g, w) in got.iter().zip(f32s(want)) {
            worst = worst.max((g - w).abs());
        }
    }
    assert!(worst <= TOLERANCE, "{name}: logits differ by up to {worst}");
    let mut row = last_logits(&logits).expect("last");
    let mut greedy = Vec::new();
    let mut len = n;
    for _ in 0..u32s(&r["greedy_ids"]).len() {
        let next = argmax(&row) as u32;
        greedy.push(next);
        len += 1;
        let (l, c) = model
            .step(
                &Tensor::from_slice(&[i64::from(next)]).view([1, 1]).to(model.device),
                &Tensor::ones([1, len], (Kind::Int64, model.device)),
                Some(&cache),
            )
            .expect("decode");
        cache = c;
        row = last_logits(&l).expect("last");
    }
    assert_eq!(greedy, u32s(&r["greedy_ids"]), "{name}: greedy ids with the KV cache");
}

#[test]
fn llama_f16_safetensors_matches_transformers() {
    check_decoder("llama");
}

#[test]
fn qwen2_biases_match_transformers() {
    check_decoder("qwen2");
}

#[test]
fn qwen3_qk_norm_bf16_matches_transformers() {
    check_decoder("qwen3");
}

#[test]
fn quantised_gguf_matches_transformers_reading_the_same_file() {
    check_decoder("llama-q.gguf");
}

#[test]
fn left_padding_does_not_change_logits() {
    let model = Backbone::load(&tiny("qwen2"), device()).expect("loads");
    let _guard = tch::no_grad_guard();
    let long: Vec<i64> = (5..17).collect();
    let short: Vec<i64> = (40..45).collect();
    let alone = |ids: &[i64]| {
        let n = ids.len() as i64;
        model
            .step(
                &Tensor::from_slice(ids).view([1, -1]).to(model.device),
                &Tensor::ones([1, n], (Kind::Int64, model.device)),
                None,
            )
            .expect("forward")
            .0
    };
    let pad = long.len() - short.len();
    let mut batch_ids = long.clone();
    batch_ids.extend(std::iter::repeat_n(0, pad).chain(short.iter().copied()));
    let mut mask = vec![1i64; long.len()];
    mask.extend(std::iter::repeat_n(0, pad).chain(std::iter::repeat_n(1, short.len())));
    let n = long.len() as i64;
    let (batch, _) = model
        .step(
            &Tensor::from_slice(&batch_ids).view([2, n]).to(model.device),
            &Tensor::from_slice(&mask).view([2, n]).to(model.device),
            None,
        )
        .expect("batched forward");
    let diff_long = (batch.get(0) - alone(&long).get(0))
        .abs()
        .max()
        .to(Device::Cpu)
        .double_value(&[]);
    let diff_short = (batch.get(1).narrow(0, pad as i64, short.len() as i64) - alone(&short).get(0))
        .abs()
        .max()
        .to(Device::Cpu)
        .double_value(&[]);
    assert!(
        diff_long < 1e-4 && diff_short < 1e-4,
        "padding changed logits: {diff_long}, {diff_short}"
    );
}

fn check_encoder(name: &str, normalized: bool) {
    let r = &reference()["encoders"][name];
    let enc = ProfileEncoder::load(&tiny(name), device()).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(enc.normalize, normalized);
    let texts: Vec<&str> = r["texts"]
        .as_array()
        .expect("texts")
        .iter()
        .map(|t| t.as_str().expect("str"))
        .collect();
    for (t, want) in texts.iter().zip(r["ids"].as_array().expect("ids")) {
        assert_eq!(
            enc.tokenizer.encode(t, true).expect("encodes"),
            u32s(want),
            "{name}: ids of {t:?}"
        );
    }
    // Texts of different lengths in one padded batch, each compared with its unpadded reference.
    let got: Vec<Vec<f32>> = Vec::try_from(&enc.embed(&texts).expect("embeds").to(Device::Cpu)).expect("rows");
    for (g, want) in got.iter().zip(r["vectors"].as_array().expect("vectors")) {
        let worst = g
            .iter()
            .zip(f32s(want))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= TOLERANCE, "{name}: pooled vector differs by {worst}");
    }
}

#[test]
fn bert_mean_pooling_matches_transformers() {
    check_encoder("bert", false);
}

#[test]
fn qwen3_as_last_token_encoder_matches_transformers() {
    check_encoder("qwen3", true);
}

#[test]
fn sharded_safetensors_load_like_the_single_file() {
    use safetensors::tensor::{Dtype, TensorView};
    let scratch = common::scratch("sharded");
    let dir = scratch.join("llama");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(tiny("llama").join(f), dir.join(f)).expect("copy");
    }
    let bytes = std::fs::read(tiny("llama").join("model.safetensors")).expect("read");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("parses");
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    let mut weight_map = serde_json::Map::new();
    for (shard, chunk) in names.chunks(names.len().div_ceil(2)).enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", shard + 1);
        let views: Vec<(String, TensorView)> = chunk
            .iter()
            .map(|n| {
                let t = st.tensor(n).expect("tensor");
                assert_eq!(t.dtype(), Dtype::F16);
                (
                    n.clone(),
                    TensorView::new(t.dtype(), t.shape().to_vec(), t.data()).expect("view"),
                )
            })
            .collect();
        safetensors::serialize_to_file(views, None, &dir.join(&file)).expect("write shard");
        for n in chunk {
            weight_map.insert(n.clone(), file.clone().into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).expect("index");

    let _guard = tch::no_grad_guard();
    let run = |path: &std::path::Path| {
        let m = Backbone::load(path, Device::Cpu).expect("loads");
        let ids = Tensor::from_slice(&[3i64, 17, 42, 99, 7]).view([1, 5]);
        m.step(&ids, &Tensor::ones([1, 5], (Kind::Int64, Device::Cpu)), None)
            .expect("forward")
            .0
    };
    let diff = (run(&dir) - run(&tiny("llama"))).abs().max().double_value(&[]);
    assert_eq!(diff, 0.0, "sharded and single-file weights differ");
}

#[test]
fn encoder_truncates_profiles_to_128_tokens() {
    let enc = ProfileEncoder::load(&tiny("bert"), Device::Cpu).expect("loads");
    let long = "religion family work politics ".repeat(100);
    assert_eq!(
        enc.tokenizer.encode(&long, true).expect("encodes").len(),
        cuma::models::encoder::MAX_TOKENS
    );
    let v = enc.embed(&[long.as_str(), "short"]).expect("long text embeds");
    assert_eq!(v.size(), vec![2, 64]);
}

#[test]
fn bf16_matrix_products_stay_close_to_f32() {
    use cuma::models::backbone::StepInput;
    use cuma::tch_ops::TchOps;
    let model = Backbone::load(&tiny("llama"), Device::Cpu).expect("loads");
    let _guard = tch::no_grad_guard();
    let ids = Tensor::from_slice(&[3i64, 17, 42, 99, 7]).view([1, 5]);
    let mask = Tensor::ones([1, 5], (Kind::Int64, Device::Cpu));
    let input = StepInput {
        ids: &ids,
        attention_mask: &mask,
        past: None,
        profile: None,
    };
    let full = model.run(&mut TchOps::new(Device::Cpu), &input).expect("f32").logits;
    let mut mixed_ops = TchOps::new(Device::Cpu);
    mixed_ops.bf16_matmul = true;
    let mixed = model.run(&mut mixed_ops, &input).expect("bf16").logits;
    assert_eq!(mixed.kind(), Kind::Float, "results come back as f32");
    let diff = (&mixed - &full).abs().max().double_value(&[]);
    let scale = full.abs().max().double_value(&[]);
    assert!(diff > 0.0, "bf16 path not taken");
    assert!(diff < 0.05 * scale, "bf16 logits drift {diff} on a scale of {scale}");
}
