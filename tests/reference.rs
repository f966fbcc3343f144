//! The embedded real models against independent references from Hugging Face transformers and
//! sentence-transformers (`fixtures/reference/make_reference.py`, run once; JSON committed).

mod common;

use common::last_logits;
use cuma::models::{Backbone, ProfileEncoder};
use cuma::sampling::argmax;
use cuma::tokenizer::chat::{render, Message};
use serde_json::Value;
use tch::{Device, Kind, Tensor};

fn reference(name: &str) -> Value {
    let path = format!("{}/fixtures/reference/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("reference JSON parses")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn smollm2() -> Backbone {
    let path = cuma::defaults::backbone(None).expect("embedded SmolLM2 (run make setup)");
    Backbone::load(&path, Device::Cpu).expect("SmolLM2 loads")
}

#[test]
fn smollm2_chat_prompts_render_and_tokenize_like_transformers() {
    let model = smollm2();
    for chat in reference("smollm2.json")["chats"].as_array().expect("chats") {
        let messages: Vec<Message> = serde_json::from_value(chat["messages"].clone()).expect("messages");
        let prompt = render(&model.tokenizer, &messages).expect("template renders");
        assert_eq!(prompt, chat["prompt"].as_str().expect("prompt"));
        assert_eq!(
            model.tokenizer.encode(&prompt, false).expect("encodes"),
            ids(&chat["prompt_ids"])
        );
    }
}

#[test]
fn smollm2_greedy_tokens_and_logits_match_transformers() {
    let model = smollm2();
    let _guard = tch::no_grad_guard();
    let mut worst = 0.0f32;
    for (c, chat) in reference("smollm2.json")["chats"]
        .as_array()
        .expect("chats")
        .iter()
        .enumerate()
    {
        let prompt: Vec<i64> = ids(&chat["prompt_ids"]).iter().map(|&x| i64::from(x)).collect();
        let expected = ids(&chat["greedy_ids"]);
        let tops = chat["top"].as_array().expect("top");
        let input = Tensor::from_slice(&prompt).view([1, -1]);
        let mut len = prompt.len() as i64;
        let (logits, mut cache) = model
            .step(&input, &Tensor::ones([1, len], (Kind::Int64, Device::Cpu)), None)
            .expect("prefill");
        let mut row = last_logits(&logits).expect("logits");
        let mut got = Vec::new();
        for step in 0..expected.len() {
            if let Some(top) = tops.get(step) {
                let top_ids = ids(&top["ids"]);
                for (&id, want) in top_ids.iter().zip(top["logits"].as_array().expect("logits")) {
                    let diff = (row[id as usize] - want.as_f64().expect("f64") as f32).abs();
                    worst = worst.max(diff);
                    assert!(diff <= 1e-3, "chat {c} step {step} token {id}: logit differs by {diff}");
                }
                let mut ours: Vec<usize> = (0..row.len()).collect();
                ours.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
                let ours: Vec<u32> = ours[..top_ids.len()].iter().map(|&i| i as u32).collect();
                assert_eq!(ours, top_ids, "chat {c} step {step}: top-5 ids");
            }
            let next = argmax(&row) as u32;
            got.push(next);
            len += 1;
            let input = Tensor::from_slice(&[i64::from(next)]).view([1, 1]);
            let (logits, new_cache) = model
                .step(
                    &input,
                    &Tensor::ones([1, len], (Kind::Int64, Device::Cpu)),
                    Some(&cache),
                )
                .expect("decode");
            cache = new_cache;
            row = last_logits(&logits).expect("logits");
        }
        assert_eq!(got, expected, "chat {c}: greedy ids");
    }
    eprintln!("worst top-5 logit difference: {worst:e}");
}

#[test]
fn gguf_tokenizer_matches_transformers_on_varied_strings() {
    let model = smollm2();
    let cases = reference("smollm2.json")["tokenizer"]
        .as_array()
        .expect("tokenizer")
        .clone();
    assert_eq!(cases.len(), 20);
    for case in cases {
        let text = case["text"].as_str().expect("text");
        assert_eq!(
            model.tokenizer.encode(text, false).expect("encodes"),
            ids(&case["ids"]),
            "{text:?}"
        );
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[test]
fn minilm_embeddings_match_sentence_transformers() {
    let path = cuma::defaults::encoder(None).expect("embedded MiniLM (run make setup)");
    let enc = ProfileEncoder::load(&path, Device::Cpu).expect("MiniLM loads");
    let items = reference("minilm.json")["items"].as_array().expect("items").clone();
    let texts: Vec<&str> = items.iter().map(|i| i["text"].as_str().expect("text")).collect();
    // One padded batch, then each text alone: both must match.
    let batch: Vec<Vec<f32>> = Vec::try_from(&enc.embed(&texts).expect("embeds")).expect("rows");
    let mut lowest = 1.0f32;
    for (i, item) in items.iter().enumerate() {
        let want: Vec<f32> = item["embedding"]
            .as_array()
            .expect("embedding")
            .iter()
            .map(|x| x.as_f64().expect("f64") as f32)
            .collect();
        let alone: Vec<Vec<f32>> = Vec::try_from(&enc.embed(&texts[i..=i]).expect("embeds")).expect("rows");
        for (what, got) in [("batched", &batch[i]), ("alone", &alone[0])] {
            let cos = cosine(got, &want);
            lowest = lowest.min(cos);
            assert!(cos >= 0.9999, "{what} {:?}: cosine {cos}", texts[i]);
        }
        let norm: f32 = batch[i].iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(
            (norm - 1.0).abs() < 1e-5,
            "MiniLM vectors are L2-normalised, got norm {norm}"
        );
    }
    eprintln!("lowest cosine to sentence-transformers: {lowest}");
}

#[test]
fn generation_stops_at_end_of_turn_like_the_reference() {
    use cuma::serve::{generate, FinishReason, GenerateOptions};
    let model = smollm2();
    let chat = &reference("smollm2.json")["chats"][0];
    let expected = ids(&chat["greedy_ids"]);
    let end = expected
        .iter()
        .position(|id| model.tokenizer.end_of_turn.contains(id))
        .expect("reference reply ends its turn");
    let mut streamed = String::new();
    let opts = GenerateOptions {
        max_new_tokens: 48,
        ..Default::default()
    };
    let g = generate(&model, &[ids(&chat["prompt_ids"])], None, &opts, |t| {
        streamed.push_str(t.text)
    })
    .expect("generates")
    .remove(0);
    assert_eq!(g.finish_reason, FinishReason::EndOfTurn, "did not stop at <|im_end|>");
    assert_eq!(g.token_ids, expected[..end].to_vec());
    assert_eq!(streamed, g.text);
    assert_eq!(g.text, "The capital of France is Paris.");
}
