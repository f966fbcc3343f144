//! Mean collapse made visible on the synthetic "culturally sparse" benchmark (`cuma data synth`):
//! two clusters of countries prefer opposite ends of a 4-point scale. The profile is kept out of
//! the prompt for both methods, so only CuMA's router (which sees the MiniLM profile vector) can
//! tell who is answering. A dense LoRA must predict one distribution for everyone: the pooled mix,
//! which looks right on the pooled `emd_prob` and is half a scale off per country (`emd_country`).
//! CuMA, trained the same way, must land well below it per country.

mod common;

use common::{arg as s, cuma, scratch, tiny};

fn metrics(run: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("eval.json")).expect("eval.json")).expect("json")
}

#[test]
fn cuma_keeps_clusters_apart_where_dense_lora_collapses_to_the_mean() {
    let dir = scratch("mean_collapse");
    let data = dir.join("synth");
    cuma(&[
        "data",
        "synth",
        "--out-dir",
        &s(&data),
        "--clusters",
        "2",
        "--countries-per-cluster",
        "2",
        "--questions",
        "1",
        "--options",
        "4",
        "--respondents-per-profile",
        "4",
    ]);
    let items = s(&data.join("items.jsonl"));
    let llama = s(&tiny("llama"));
    let mut emd = Vec::new();
    for method in ["cuma", "lora"] {
        let run = dir.join(method);
        let run_s = s(&run);
        cuma(&[
            "train",
            "--model",
            &llama,
            "--data",
            &items,
            "--out",
            &run_s,
            "--method",
            method,
            "--no-profile-prompt",
            "--experts",
            "4",
            "--top-k",
            "2",
            "--rank",
            "4",
            "--alpha",
            "8",
            "--steps",
            "60",
            "--batch-size",
            "16",
            "--lr",
            "1e-2",
            "--warmup-steps",
            "1",
            "--seed",
            "0",
            "--device",
            "cpu",
        ]);
        cuma(&["eval", "--checkpoint", &run_s, "--data", &items, "--device", "cpu"]);
        let m = metrics(&run);
        emd.push((
            m["emd_country"].as_f64().expect("emd_country"),
            m["emd_prob"].as_f64().expect("emd_prob"),
        ));
    }
    let ((cuma_country, _), (lora_country, lora_pooled)) = (emd[0], emd[1]);
    // The collapsed model: fine on the pooled distribution, far off per country.
    assert!(
        lora_country > 0.25,
        "dense LoRA should be collapsed (emd_country {lora_country:.3})"
    );
    assert!(
        lora_pooled < 0.5 * lora_country,
        "the pooled emd ({lora_pooled:.3}) hides the collapse ({lora_country:.3})"
    );
    // CuMA: per country at most half of LoRA's distance.
    assert!(
        cuma_country < 0.5 * lora_country,
        "CuMA emd_country {cuma_country:.3} vs dense LoRA {lora_country:.3}"
    );
}
