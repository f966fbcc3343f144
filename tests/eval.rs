//! Option probabilities: padding never changes them, and a fresh CuMA model scores exactly like
//! its backbone.

mod common;

use common::tiny;
use cuma::eval::choice::{letter_ids, option_probs, ChoicePrompt};
use cuma::models::backbone::StepInput;
use cuma::models::inputs::pad_batch;
use cuma::models::Backbone;
use cuma::tch_ops::TchOps;
use cuma::trainables::TchTrainables;
use cuma_model::adapters::DecoderAdapters;
use cuma_model::config::MethodConfig;
use cuma_model::serve::padding::Side;
use tch::{Device, Kind, Tensor};

fn prompts(model: &Backbone) -> Vec<ChoicePrompt> {
    [
        "Is family important? A. Yes B. No",
        "How often do you pray? A. Daily B. Weekly C. Rarely D. Never",
        "Trust? A. Yes B. No C. Depends",
    ]
    .iter()
    .enumerate()
    .map(|(i, q)| {
        let text = format!("<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n");
        ChoicePrompt {
            ids: model.tokenizer.encode(&text, false).expect("ids"),
            options: q.matches(". ").count(),
            profile: i % 2,
        }
    })
    .collect()
}

fn max_diff(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// The same probabilities computed by hand from a right-padded batch (as training pads): the
/// logits at each row's last real token, softmaxed over its letters.
fn right_padded_probs(model: &Backbone, ps: &[ChoicePrompt]) -> Vec<Vec<f64>> {
    let rows: Vec<Vec<u32>> = ps.iter().map(|p| p.ids.clone()).collect();
    let (ids, mask) = pad_batch(&rows, 0, Side::Right, Device::Cpu).expect("pads");
    let out = tch::no_grad(|| {
        model.run(
            &mut TchOps::new(Device::Cpu),
            &StepInput {
                ids: &ids,
                attention_mask: &mask,
                past: None,
                profile: None,
            },
        )
    })
    .expect("forward");
    let letters = letter_ids(&model.tokenizer, 4).expect("letters");
    ps.iter()
        .enumerate()
        .map(|(r, p)| {
            let row = out
                .logits
                .get(r as i64)
                .get(p.ids.len() as i64 - 1)
                .to_kind(Kind::Double);
            let picked: Vec<f64> = letters[..p.options]
                .iter()
                .map(|&l| row.double_value(&[l as i64]))
                .collect();
            cuma_model::serve::softmax(&picked)
        })
        .collect()
}

#[test]
fn left_right_and_unpadded_give_the_same_probabilities() {
    let model = Backbone::load(&tiny("qwen3"), Device::Cpu).expect("loads");
    let ps = prompts(&model);
    assert!(
        ps.iter().map(|p| p.ids.len()).min() != ps.iter().map(|p| p.ids.len()).max(),
        "prompts must differ in length"
    );
    let left = option_probs(&model, &ps, None).expect("left");
    let right = right_padded_probs(&model, &ps);
    let alone: Vec<Vec<f64>> = ps
        .iter()
        .map(|p| {
            option_probs(&model, std::slice::from_ref(p), None)
                .expect("alone")
                .remove(0)
        })
        .collect();
    assert!(
        max_diff(&left, &right) < 1e-5,
        "left vs right: {}",
        max_diff(&left, &right)
    );
    assert!(
        max_diff(&left, &alone) < 1e-5,
        "batched vs alone: {}",
        max_diff(&left, &alone)
    );
    for (p, probs) in ps.iter().zip(&left) {
        assert_eq!(probs.len(), p.options);
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }
}

#[test]
fn fresh_cuma_scores_exactly_like_the_backbone() {
    let mut model = Backbone::load(&tiny("llama"), Device::Cpu).expect("loads");
    let ps = prompts(&model);
    let bare = option_probs(&model, &ps, None).expect("bare");
    tch::manual_seed(9);
    let mut store = TchTrainables::default();
    let adapters = DecoderAdapters::init(
        &mut TchOps::new(Device::Cpu),
        &mut store,
        &model.decoder,
        &MethodConfig::default(),
        16,
    )
    .expect("adapters");
    model.decoder.adapters = Some(adapters);
    let profiles = Tensor::randn([2, 16], (Kind::Float, Device::Cpu));
    let cuma = option_probs(&model, &ps, Some(&profiles)).expect("cuma");
    assert_eq!(max_diff(&bare, &cuma), 0.0);
}

#[test]
fn items_longer_than_the_context_are_skipped_and_counted_or_refused_with_strict() {
    use cuma::data::ChoiceItem;
    use cuma::eval::run::{EvalMethod, EvalOptions, Evaluator};
    let evaluator =
        Evaluator::baseline(&tiny("llama"), &tiny("bert"), EvalMethod::Vanilla, Device::Cpu).expect("baseline");
    let item = |id: &str, question: String| ChoiceItem {
        id: id.into(),
        respondent: id.into(),
        question_id: "Q1".into(),
        profile: [("country".to_string(), "Chile".to_string())].into_iter().collect(),
        question,
        options: vec!["Yes".into(), "No".into()],
        answer: 0,
        scale: None,
        groups: Default::default(),
    };
    // The tiny Llama has 256 positions; the long question alone is far more.
    let items = vec![
        item("short", "Is family important?".into()),
        item("long", "why ".repeat(2000)),
        item("also-short", "Is work important?".into()),
    ];
    let run = evaluator
        .evaluate(&items, EvalOptions::default(), |_| {})
        .expect("one long item does not abort the evaluation");
    assert_eq!(run.scored.len(), 2);
    assert_eq!(run.skipped.len(), 1);
    assert!(
        run.skipped[0].0 == "long" && run.skipped[0].1.contains("context of 256"),
        "{:?}",
        run.skipped
    );
    assert_eq!(run.summary.items, 2);
    let err = evaluator
        .evaluate(
            &items,
            EvalOptions {
                strict: true,
                ..Default::default()
            },
            |_| {},
        )
        .err()
        .expect("strict refuses")
        .to_string();
    assert!(err.contains("item long") && err.contains("context"), "{err}");
}
