//! The `cuma` binary end to end: `info` on the embedded SmolLM2 prints its real sizes,
//! `generate` and `embed` run, and bad flags give errors instead of panics.

mod common;

use common::tiny;
use std::process::Command;

fn cuma(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cuma"))
        .args(args)
        .output()
        .expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn info_on_embedded_smollm2_reports_its_architecture() {
    let (ok, out, err) = cuma(&["info"]);
    assert!(ok, "{err}");
    for want in [
        "architecture:   llama",
        "layers:         30",
        "hidden:         576",
        "heads:          9 (3 KV heads",
        "vocab:          49152",
        "134.5 M",
        "Q4_1",
        "<|im_end|>",
        "chat template:",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}

#[test]
fn info_on_an_encoder_directory() {
    let (ok, out, err) = cuma(&["info", tiny("bert").to_str().expect("utf8")]);
    assert!(ok, "{err}");
    assert!(out.contains("bert (encoder)") && out.contains("WordPiece"), "{out}");
}

#[test]
fn generate_streams_text_and_stops() {
    let model = tiny("llama");
    let (ok, out, err) = cuma(&[
        "generate",
        "--model",
        model.to_str().expect("utf8"),
        "--prompt",
        "Hello",
        "--max-tokens",
        "5",
        "--device",
        "cpu",
        "--timings",
    ]);
    assert!(ok, "{err}");
    assert!(!out.trim().is_empty(), "no text generated");
    assert!(err.contains("new tokens"), "{err}");
}

#[test]
fn seeded_sampling_is_reproducible() {
    let model = tiny("qwen2");
    let args = [
        "generate",
        "--model",
        model.to_str().expect("utf8"),
        "--prompt",
        "Hi",
        "--max-tokens",
        "12",
        "--temperature",
        "1.0",
        "--top-p",
        "0.9",
        "--seed",
        "7",
        "--device",
        "cpu",
    ];
    let (a, b) = (cuma(&args), cuma(&args));
    assert!(a.0 && b.0, "{} {}", a.2, b.2);
    assert_eq!(a.1, b.1);
}

#[test]
fn embed_prints_json_vectors() {
    let enc = tiny("qwen3");
    let (ok, out, err) = cuma(&[
        "embed",
        "--encoder",
        enc.to_str().expect("utf8"),
        "--text",
        "a profile",
        "--json",
        "--device",
        "cpu",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["dim"], 64);
    assert_eq!(v["items"][0]["embedding"].as_array().expect("vector").len(), 64);
}

#[test]
fn bad_flags_are_errors_not_panics() {
    for args in [
        vec!["generate", "--prompt", "x", "--device", "tpu"],
        vec!["generate", "--prompt", "x", "--top-p", "0"],
        vec!["generate", "--model", "/nonexistent.gguf", "--prompt", "x"],
        vec!["embed", "--encoder", "/nonexistent", "--text", "x"],
        vec!["generate", "--prompt", "x", "--temperature", "nan"],
    ] {
        let (ok, _, err) = cuma(&args);
        assert!(!ok, "{args:?} succeeded");
        assert!(
            err.starts_with("error:") && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
    // Sizes no run can mean are refused before anything is allocated (10^12 rows aborted).
    let dir = common::scratch("cli_bad_sizes");
    let items = common::small_survey(&dir, 1);
    let (llama, bert, data, out) = (
        common::arg(&tiny("llama")),
        common::arg(&tiny("bert")),
        common::arg(&items),
        common::arg(&dir.join("run")),
    );
    for (flag, value) in [("--batch-size", "1000000000000"), ("--steps", "1000000000000")] {
        let (ok, _, err) = cuma(&[
            "train",
            "--model",
            &llama,
            "--encoder",
            &bert,
            "--data",
            &data,
            "--out",
            &out,
            "--device",
            "cpu",
            flag,
            value,
        ]);
        assert!(
            !ok && err.contains("at most") && !err.contains("panicked"),
            "{flag} {value}: {err}"
        );
    }
}

#[test]
fn help_explains_the_commands() {
    let (ok, out, _) = cuma(&["--help"]);
    assert!(ok);
    for cmd in ["info", "generate", "embed", "CUMA_BACKBONE"] {
        assert!(out.contains(cmd), "--help lacks {cmd}:\n{out}");
    }
}

#[test]
fn convert_split_train_eval_pipeline() {
    let dir = common::scratch("cli_pipeline");
    let s = |p: &std::path::Path| p.to_str().expect("utf8").to_string();
    let wvs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/wvs7");
    let all = dir.join("q1.jsonl");
    let (ok, _, err) = cuma(&[
        "data",
        "convert",
        "--wvs",
        &s(&wvs),
        "--questions",
        "Q1,Q46",
        "--out",
        &s(&all),
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("2 questions"), "{err}");
    let (ok, _, err) = cuma(&[
        "data",
        "split",
        "--in",
        &s(&all),
        "--out-dir",
        &s(&dir),
        "--heldout-fraction",
        "0.1",
    ]);
    assert!(ok, "{err}");
    assert!(dir.join("heldout.jsonl").is_file());
    // WVS prompts run to a few hundred tokens in the tiny 320-token vocabulary (few-shot ones to
    // over a thousand), past the tiny Llama's 256 positions, and eval skips what does not fit
    // the context: this copy of it declares 4,096 (RoPE needs no other change).
    let llama = common::copy_tiny("llama", "cli_pipeline_llama");
    let config = llama.join("config.json");
    let text = std::fs::read_to_string(&config).expect("config");
    assert!(
        text.contains("\"max_position_embeddings\": 256"),
        "the tiny Llama's config changed"
    );
    std::fs::write(
        &config,
        text.replace("\"max_position_embeddings\": 256", "\"max_position_embeddings\": 4096"),
    )
    .expect("write config");
    let (bert, run) = (tiny("bert"), dir.join("run"));
    let common_args = [
        "--model",
        &s(&llama),
        "--encoder",
        &s(&bert),
        "--data",
        &s(&dir.join("train.jsonl")),
    ];
    let mut dry: Vec<&str> = vec!["train", "--dry-run"];
    dry.extend(common_args);
    let (ok, out, err) = cuma(&dry);
    assert!(ok && out.contains("trainable:"), "{out}{err}");
    let mut train: Vec<&str> = vec![
        "train",
        "--max-items",
        "40",
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--device",
        "cpu",
    ];
    train.extend(common_args);
    let run_s = s(&run);
    train.extend(["--out", run_s.as_str()]);
    let (ok, _, err) = cuma(&train);
    assert!(ok, "{err}");
    assert!(run.join("checkpoint/adapter.safetensors").is_file() && run.join("metrics.jsonl").is_file());
    let (ok, out, err) = cuma(&[
        "eval",
        "--checkpoint",
        &run_s,
        "--data",
        &s(&dir.join("test.jsonl")),
        "--max-items",
        "16",
        "--device",
        "cpu",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("| cuma | 16 |"), "{out}");
    assert!(run.join("eval.json").is_file() && run.join("eval.md").is_file());
    // predictions.jsonl lists every scored item; its answers and argmaxes give eval.json's accuracy.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("eval.json")).expect("eval.json")).expect("json");
    let predictions: Vec<serde_json::Value> = std::fs::read_to_string(run.join("predictions.jsonl"))
        .expect("predictions.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(Some(predictions.len() as u64), summary["items"].as_u64());
    let right = predictions.iter().filter(|p| p["answer"] == p["predicted"]).count();
    let accuracy = summary["accuracy"].as_f64().expect("accuracy");
    assert!(
        (right as f64 / predictions.len() as f64 - accuracy).abs() < 1e-9,
        "{accuracy}"
    );
    for p in &predictions {
        let total: f64 = p["probs"]
            .as_array()
            .expect("probs")
            .iter()
            .filter_map(|x| x.as_f64())
            .sum();
        assert!((total - 1.0).abs() < 1e-4, "{p}");
        assert!(
            p["id"].as_str().is_some_and(|id| !id.is_empty()) && p["groups"].is_object(),
            "{p}"
        );
        assert!(p["respondent"].is_string() && p["question"].is_string(), "{p}");
    }

    // Routing analysis and the seen vs held-out table, then the topology in both projections.
    let (test_s, held_s) = (s(&dir.join("test.jsonl")), s(&dir.join("heldout.jsonl")));
    let (ok, out, err) = cuma(&[
        "eval",
        "--checkpoint",
        &run_s,
        "--data",
        &test_s,
        "--heldout",
        &held_s,
        "--routing",
        "--max-items",
        "80",
        "--device",
        "cpu",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("routing: ") && out.contains("| **macro** |"), "{out}");
    assert!(run.join("heldout_predictions.jsonl").is_file());
    let routing: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("routing.json")).expect("routing.json")).expect("json");
    let signatures = routing["signatures"].as_object().expect("signatures");
    assert!(
        signatures.len() >= 3,
        "{} countries in the first 80 test items",
        signatures.len()
    );
    let routers = routing["routers"].as_array().expect("routers");
    assert!(
        routers[0]["router"].as_str().is_some_and(|r| r.starts_with("L0.")),
        "{}",
        routers[0]
    );
    let overlap = routing["overlap"].as_f64().expect("overlap");
    assert!((0.0..=1.0).contains(&overlap));
    for extra in [&[][..], &["--pca"][..]] {
        let png = dir.join(format!("topology{}.png", extra.len()));
        let mut args = vec!["topology", run_s.as_str(), "--out"];
        let png_s = s(&png);
        args.push(&png_s);
        args.extend(extra);
        let (ok, _, err) = cuma(&args);
        assert!(ok, "{err}");
        assert!(std::fs::read(&png).expect("png").starts_with(b"\x89PNG"));
    }
    // Few-shot prompting of the bare backbone needs examples, and runs with them.
    let (ok, _, err) = cuma(&[
        "eval",
        "--method",
        "fewshot",
        "--model",
        &s(&llama),
        "--encoder",
        &s(&bert),
        "--data",
        &test_s,
        "--max-items",
        "4",
        "--out",
        &s(&dir),
        "--device",
        "cpu",
    ]);
    assert!(!ok && err.contains("--examples"), "{err}");
    let train_s = s(&dir.join("train.jsonl"));
    let (ok, out, err) = cuma(&[
        "eval",
        "--method",
        "fewshot",
        "--model",
        &s(&llama),
        "--encoder",
        &s(&bert),
        "--data",
        &test_s,
        "--examples",
        &train_s,
        "--max-items",
        "4",
        "--out",
        &s(&dir),
        "--device",
        "cpu",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("| fewshot | 4 |"), "{out}");
}

/// `cuma train` on the tiny Llama and BERT: batch 2, one warm-up step, then `extra`.
fn train_tiny(items: &std::path::Path, out: &std::path::Path, extra: &[&str]) -> (bool, String, String) {
    let (llama, bert) = (common::arg(&tiny("llama")), common::arg(&tiny("bert")));
    let (data, out) = (common::arg(items), common::arg(out));
    let mut args = vec![
        "train",
        "--model",
        &llama,
        "--encoder",
        &bert,
        "--data",
        &data,
        "--out",
        &out,
        "--device",
        "cpu",
        "--batch-size",
        "2",
        "--warmup-steps",
        "1",
    ];
    args.extend_from_slice(extra);
    cuma(&args)
}

#[test]
fn train_into_a_run_with_a_checkpoint_needs_resume_or_force() {
    let dir = common::scratch("cli_train_twice");
    let items = common::small_survey(&dir, 1);
    let run = dir.join("run");
    let train = |extra: &[&str]| train_tiny(&items, &run, extra);
    let (ok, _, err) = train(&["--steps", "2"]);
    assert!(ok, "{err}");
    let (ok, _, err) = train(&["--steps", "3"]);
    assert!(
        !ok && err.contains("at step 2") && err.contains("--resume") && err.contains("--force"),
        "{err}"
    );
    let (ok, _, err) = train(&["--steps", "3", "--resume"]);
    assert!(ok && err.contains("resuming at step 2"), "{err}");
    let (ok, _, err) = train(&["--steps", "1", "--force"]);
    assert!(ok && err.contains("starting at step 0"), "{err}");
    let steps: Vec<u64> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .expect("metrics")
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("JSON")["step"]
                .as_u64()
                .expect("step")
        })
        .collect();
    assert_eq!(steps, [1], "a forced restart keeps only its own steps");
}

/// `--dump-batches` lists exactly the micro-batches training consumes: a resumed run lists the
/// rest of the fresh run's list, and the first step's token count matches its two micro-batches.
#[test]
fn dump_batches_lists_what_training_feeds() {
    let dir = common::scratch("cli_dump_batches");
    let items = common::small_survey(&dir, 1);
    let run = |out: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["--grad-accum", "2"];
        args.extend_from_slice(extra);
        let (ok, _, err) = train_tiny(&items, out, &args);
        assert!(ok, "{err}");
    };
    let read = |path: &std::path::Path| -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(path).expect("dump");
        text.lines().map(|l| serde_json::from_str(l).expect("JSON")).collect()
    };
    let (full, part) = (dir.join("full.jsonl"), dir.join("part.jsonl"));
    run(&dir.join("a"), &["--steps", "3", "--dump-batches", &common::arg(&full)]);
    let full = read(&full);
    assert_eq!(full.len(), 6, "3 steps x 2 micro-batches");
    let steps: Vec<u64> = full.iter().map(|b| b["step"].as_u64().expect("step")).collect();
    assert_eq!(steps, [1, 1, 2, 2, 3, 3]);
    for batch in &full {
        let rows = batch["rows"].as_array().expect("rows");
        assert_eq!(rows.len(), 2);
        for row in rows {
            let len = row["ids"].as_array().expect("ids").len() as u64;
            assert!(row["targets_from"].as_u64().is_some_and(|t| t > 0 && t < len), "{row}");
        }
    }
    assert!(!dir.join("a").join("checkpoint").exists(), "a dump trains nothing");

    let b = dir.join("b");
    run(&b, &["--steps", "1", "--force"]);
    run(&b, &["--steps", "3", "--resume", "--dump-batches", &common::arg(&part)]);
    assert_eq!(read(&part), full[2..], "a resumed run continues the same order");
    let metrics = std::fs::read_to_string(b.join("metrics.jsonl")).expect("metrics");
    let first: serde_json::Value = serde_json::from_str(metrics.lines().next().expect("a step")).expect("JSON");
    let dumped: usize = full[..2]
        .iter()
        .flat_map(|b| b["rows"].as_array().expect("rows"))
        .map(|r| r["ids"].as_array().expect("ids").len())
        .sum();
    assert_eq!(first["tokens"].as_u64(), Some(dumped as u64));
}

/// `--snapshot-every` keeps the adapters along the way, each snapshot evaluates like a
/// checkpoint, and a resumed run adds the rest.
#[test]
fn snapshots_keep_the_run_along_its_way() {
    let dir = common::scratch("cli_snapshots");
    let items = common::small_survey(&dir, 1);
    let run = dir.join("run");
    let (ok, _, err) = train_tiny(&items, &run, &["--steps", "2", "--snapshot-every", "2"]);
    assert!(ok, "{err}");
    let (ok, _, err) = train_tiny(&items, &run, &["--steps", "5", "--snapshot-every", "2", "--resume"]);
    assert!(ok, "{err}");
    let mut snaps: Vec<String> = std::fs::read_dir(run.join("snapshots"))
        .expect("snapshots")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    snaps.sort();
    assert_eq!(
        snaps,
        ["step-000002", "step-000004", "step-000005"],
        "every 2 steps and the last"
    );
    let first = std::fs::read(run.join("snapshots/step-000002/adapter.safetensors")).expect("adapters");
    let last = std::fs::read(run.join("snapshots/step-000005/adapter.safetensors")).expect("adapters");
    assert_ne!(first, last, "the snapshots hold different steps");
    let (ok, out, err) = cuma(&[
        "eval",
        "--checkpoint",
        &common::arg(&run.join("snapshots/step-000002")),
        "--data",
        &common::arg(&items),
        "--max-items",
        "4",
        "--out",
        &common::arg(&run.join("curve/000002")),
        "--device",
        "cpu",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("| cuma | 4 |"), "{out}");
    // The evaluated snapshot is a one-point learning curve.
    let png = dir.join("curve.png");
    let (ok, out, err) = cuma(&[
        "curve",
        &common::arg(&run),
        "--metric",
        "accuracy",
        "--out",
        &common::arg(&png),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("at step 2") && out.contains("(1 snapshots)"), "{out}");
    assert!(std::fs::read(&png).expect("png").starts_with(b"\x89PNG"));
    let (ok, _, err) = cuma(&["curve", &common::arg(&run), "--metric", "no_such_metric"]);
    assert!(!ok && err.contains("no_such_metric"), "{err}");
}

/// The experiment's design tools on the real WVS data, no model involved: the question ranking
/// on the training split, a split restricted to the top questions that keeps every respondent on
/// its side, the count baselines (reproducing the figures quoted in docs/results.md), and the
/// bootstrap comparison between them.
#[test]
fn design_tools_rank_questions_count_baselines_and_compare() {
    let dir = common::scratch("cli_design");
    let s = |p: &std::path::Path| p.to_str().expect("utf8").to_string();
    let wvs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/wvs7");
    let split = |items: &std::path::Path, out: &std::path::Path, extra: &[&str]| {
        let (items, out) = (s(items), s(out));
        let mut args = vec![
            "data",
            "split",
            "--in",
            &items,
            "--out-dir",
            &out,
            "--heldout-fraction",
            "0.05",
        ];
        args.extend_from_slice(extra);
        let (ok, _, err) = cuma(&args);
        assert!(ok, "{err}");
    };
    let all = dir.join("all.jsonl");
    let (ok, _, err) = cuma(&["data", "convert", "--wvs", &s(&wvs), "--out", &s(&all)]);
    assert!(ok && err.contains("80 questions"), "{err}");
    split(&all, &dir.join("all"), &[]);
    let train_all = s(&dir.join("all/train.jsonl"));
    let (ok, table, err) = cuma(&["data", "rank-questions", "--in", &train_all]);
    assert!(ok, "{err}");
    assert_eq!(table.lines().count(), 2 + 80, "a header and every question:\n{table}");
    let (ok, ids, err) = cuma(&["data", "rank-questions", "--in", &train_all, "--ids", "4"]);
    assert!(ok, "{err}");
    // Whether a neighbour would make one uncomfortable (Q22, Q25) and the importance of religion
    // (Q6) and of obedience for children (Q15) divide the 65 countries most.
    assert_eq!(ids.trim(), "Q22,Q6,Q25,Q15");
    let (ok, _, err) = cuma(&["data", "rank-questions", "--in", &train_all, "--min-answers", "1000"]);
    assert!(!ok && err.contains("--min-answers"), "{err}");

    split(&all, &dir.join("top"), &["--questions", ids.trim()]);
    let respondents = |path: std::path::PathBuf| -> std::collections::BTreeSet<String> {
        std::fs::read_to_string(path)
            .expect("split file")
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON")["respondent"].to_string())
            .collect()
    };
    for part in ["train", "test", "heldout"] {
        let (kept, everyone) = (
            respondents(dir.join(format!("top/{part}.jsonl"))),
            respondents(dir.join(format!("all/{part}.jsonl"))),
        );
        assert!(kept.is_subset(&everyone) && kept.len() + 5 >= everyone.len(), "{part}");
    }

    // The count baselines on the pilot's 12 questions reproduce the figures of docs/results.md.
    let pilot = dir.join("pilot.jsonl");
    let questions = "Q6,Q15,Q22,Q27,Q29,Q33,Q45,Q46,Q57,Q64,Q69,Q71";
    let (ok, _, err) = cuma(&[
        "data",
        "convert",
        "--wvs",
        &s(&wvs),
        "--questions",
        questions,
        "--out",
        &s(&pilot),
    ]);
    assert!(ok, "{err}");
    split(&pilot, &dir.join("pilot"), &[]);
    let table = |name: &str, flags: &[&str]| -> serde_json::Value {
        let out = dir.join(name);
        let (train, test, held, out_s) = (
            s(&dir.join("pilot/train.jsonl")),
            s(&dir.join("pilot/test.jsonl")),
            s(&dir.join("pilot/heldout.jsonl")),
            s(&out),
        );
        let mut args = vec![
            "eval",
            "--examples",
            &train,
            "--data",
            &test,
            "--heldout",
            &held,
            "--out",
            &out_s,
        ];
        args.extend_from_slice(flags);
        let (ok, _, err) = cuma(&args);
        assert!(ok, "{err}");
        assert!(out.join("heldout_predictions.jsonl").is_file());
        serde_json::from_str(&std::fs::read_to_string(out.join("eval.json")).expect("eval.json")).expect("JSON")
    };
    let pooled = table("pooled", &["--method", "pooled-table"]);
    let country = table("country", &["--method", "country-table"]);
    let shrunk = table("shrunk", &["--method", "country-table", "--pseudo-counts", "10"]);
    let close = |v: &serde_json::Value, key: &str, want: f64| {
        let got = v[key].as_f64().expect(key);
        assert!((got - want).abs() < 5e-5, "{key}: {got} against {want}");
    };
    close(&pooled, "emd_country", 0.2715);
    close(&country, "emd_country", 0.2112);
    close(&shrunk, "emd_country", 0.2229);
    assert_eq!(pooled["items"], 2035);
    let (p, c) = (
        pooled["emd_cluster"].as_f64().expect("cells"),
        country["emd_cluster"].as_f64().expect("cells"),
    );
    assert!(
        c < 0.6 * p,
        "the per-country table halves the large-cell EMD: {c} against {p}"
    );
    let (ok, _, err) = cuma(&[
        "eval",
        "--method",
        "country-table",
        "--data",
        &s(&dir.join("pilot/test.jsonl")),
    ]);
    assert!(!ok && err.contains("--examples"), "{err}");

    let cmp = dir.join("cmp");
    let (ok, out, err) = cuma(&[
        "compare",
        &s(&dir.join("pooled")),
        &s(&dir.join("country")),
        "--resamples",
        "200",
        "--out",
        &s(&cmp),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("| country |") && out.contains("zero-shot gap"), "{out}");
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cmp.join("compare.json")).expect("compare.json")).expect("JSON");
    assert_eq!(c["common_items"], 2035);
    let versus = &c["runs"][1]["versus_reference"]["emd_cluster"];
    assert!(
        versus["interval"]["high"].as_f64().expect("high") < 0.0 && versus["p_value"].as_f64().expect("p") < 0.05,
        "{versus}"
    );
    let accuracy = &c["runs"][0]["metrics"]["accuracy"];
    let (lo, est, hi) = (
        accuracy["low"].as_f64().expect("low"),
        accuracy["estimate"].as_f64().expect("estimate"),
        accuracy["high"].as_f64().expect("high"),
    );
    assert!(lo < est && est < hi && hi - lo < 0.1, "{accuracy}");
    let (ok, _, err) = cuma(&["compare", &s(&dir.join("pooled")), "--reference", "nobody"]);
    assert!(!ok && err.contains("--reference"), "{err}");
}

/// `cuma bench train` runs real SFT steps at a named shape with random weights: the loss on its
/// fixed batch falls, and the report counts tokens and FLOPs; bad settings are errors.
#[test]
fn bench_train_and_decode_report_on_the_tiny_shape() {
    let dir = common::scratch("bench");
    let json = dir.join("train.json");
    let (ok, out, err) = cuma(&[
        "bench",
        "train",
        "--shape",
        "tiny",
        "--device",
        "cpu",
        "--batch",
        "4",
        "--seq",
        "24",
        "--warmup",
        "2",
        "--steps",
        "6",
        "--method",
        "cuma",
        "--experts",
        "4",
        "--top-k",
        "2",
        "--rank",
        "4",
        "--json",
        json.to_str().expect("utf-8 path"),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("tokens/s"), "{out}");
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("report")).expect("json");
    let losses: Vec<f64> = r["losses"]
        .as_array()
        .expect("losses")
        .iter()
        .filter_map(|v| v.as_f64())
        .collect();
    assert_eq!(losses.len(), 8);
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    assert!(
        losses[7] < losses[0],
        "the loss on a fixed batch should fall: {losses:?}"
    );
    assert!(r["tokens_per_second"].as_f64().expect("tokens/s") > 0.0);
    assert!(r["trainable_values"].as_u64().expect("count") > 0);

    let (ok, out, err) = cuma(&[
        "bench",
        "decode",
        "--shape",
        "tiny",
        "--device",
        "cpu",
        "--batch",
        "2",
        "--prompt-tokens",
        "8",
        "--new-tokens",
        "3",
        "--method",
        "cuma",
        "--experts",
        "4",
        "--top-k",
        "2",
        "--rank",
        "4",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("steps/s"), "{out}");
    let (ok, _, err) = cuma(&[
        "bench",
        "decode",
        "--shape",
        "tiny",
        "--device",
        "cpu",
        "--new-tokens",
        "0",
    ]);
    assert!(!ok && err.contains("at least one new token"), "{err}");
}

/// `scripts/gpu_check.sh --dry-run`: every step of the GPU check on the CPU with the tiny shape
/// (parity needs the packed test binaries, which the suite runs directly instead).
#[test]
fn the_gpu_check_dry_run_writes_its_report() {
    let dir = common::scratch("gpu_check");
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_cuma"))
        .parent()
        .expect("target dir")
        .to_path_buf();
    let out = Command::new("bash")
        .arg(common::repo().join("scripts/gpu_check.sh"))
        .arg("--dry-run")
        .arg(dir.as_os_str())
        .env("CUMA_GPU_BIN", &bin)
        .output()
        .expect("runs");
    let log = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).expect("report.json")).expect("json");
    for run in ["cuma-r8", "cuma-r64", "lora-r8"] {
        let tps = report["train"][run]["tokens_per_second"].as_f64();
        assert!(tps.is_some_and(|t| t > 0.0), "train {run}: {log}");
    }
    for run in ["plain-b1", "cuma-b1", "plain-b2", "cuma-b2"] {
        assert!(
            report["decode"][run]["first_token_ms"].as_f64().is_some(),
            "decode {run}: {log}"
        );
    }
    assert!(report["onnxruntime_cuda"].as_str().is_some());
    assert!(dir.join("report.md").is_file() && dir.join("logs.tar.gz").is_file());
}

#[test]
fn preference_pipeline_pairs_dpo_generation_and_win_rate() {
    let dir = common::scratch("cli_preference");
    let s = |p: &std::path::Path| p.to_str().expect("utf8").to_string();
    let wvs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/wvs7");
    let all = dir.join("items.jsonl");
    let run_ok = |args: &[&str]| {
        let (ok, out, err) = cuma(args);
        assert!(ok, "cuma {args:?} failed:\n{out}\n{err}");
        (out, err)
    };
    run_ok(&[
        "data",
        "convert",
        "--wvs",
        &s(&wvs),
        "--questions",
        "Q46",
        "--out",
        &s(&all),
    ]);
    run_ok(&["data", "split", "--in", &s(&all), "--out-dir", &s(&dir)]);
    let test_pairs = dir.join("test_pairs.jsonl");
    let (_, err) = run_ok(&[
        "data",
        "pairs",
        "--in",
        &s(&dir.join("test.jsonl")),
        "--out",
        &s(&test_pairs),
    ]);
    assert!(err.contains("from choice items"), "{err}");
    // A handful of pairs keeps the tiny model's work small.
    let text = std::fs::read_to_string(&test_pairs).expect("pairs");
    let few: String = text.lines().take(12).map(|l| format!("{l}\n")).collect();
    let few_pairs = dir.join("few_pairs.jsonl");
    std::fs::write(&few_pairs, few).expect("write");
    let first: serde_json::Value = serde_json::from_str(text.lines().next().expect("a pair")).expect("json");
    assert!(first["chosen"].is_string() && first["rejected"].is_string() && first["respondent"].is_string());

    let llama = common::copy_tiny("llama", "cli_preference_llama");
    let config = llama.join("config.json");
    let cfg = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        cfg.replace("\"max_position_embeddings\": 256", "\"max_position_embeddings\": 4096"),
    )
    .expect("write config");
    let (llama_s, bert_s) = (s(&llama), s(&tiny("bert")));
    let (sft, dpo) = (s(&dir.join("sft")), s(&dir.join("dpo")));
    let train = s(&dir.join("train.jsonl"));
    let models = [
        "--model",
        llama_s.as_str(),
        "--encoder",
        bert_s.as_str(),
        "--device",
        "cpu",
    ];
    let mut args = vec![
        "train",
        "--data",
        &train,
        "--out",
        &sft,
        "--max-items",
        "24",
        "--steps",
        "2",
        "--batch-size",
        "4",
    ];
    args.extend(models);
    run_ok(&args);
    // DPO without --init is refused with a message that says what to pass.
    let (ok, _, err) = cuma(&[
        "train", "--stage", "dpo", "--data", &train, "--out", &dpo, "--device", "cpu",
    ]);
    assert!(!ok && err.contains("--init"), "{err}");
    let mut args = vec![
        "train",
        "--stage",
        "dpo",
        "--init",
        &sft,
        "--data",
        &train,
        "--out",
        &dpo,
        "--max-items",
        "16",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--rank",
        "4",
    ];
    args.extend(models);
    let (_, err) = run_ok(&args);
    assert!(
        err.contains("16 pairs (reference: Sft") && err.contains("method flags are ignored"),
        "{err}"
    );
    let metrics = std::fs::read_to_string(dir.join("dpo/metrics.jsonl")).expect("metrics");
    let step: serde_json::Value = serde_json::from_str(metrics.lines().next().expect("a step")).expect("json");
    for key in [
        "loss",
        "chosen_reward",
        "rejected_reward",
        "margin",
        "accuracy",
        "balance",
    ] {
        assert!(step[key].is_number(), "{key} missing from {step}");
    }

    let few_s = s(&few_pairs);
    let (out, _) = run_ok(&[
        "eval",
        "--checkpoint",
        &dpo,
        "--pairs",
        "--data",
        &few_s,
        "--device",
        "cpu",
    ]);
    assert!(out.contains("12 pairs") && out.contains("Sft reference"), "{out}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("dpo/pairs.json")).expect("pairs.json")).expect("json");
    assert_eq!(report["pairs"], 12);

    let (gen_dpo, gen_base) = (s(&dir.join("gen_dpo")), s(&dir.join("gen_base")));
    let (out, _) = run_ok(&[
        "eval",
        "--checkpoint",
        &dpo,
        "--generate",
        "--data",
        &few_s,
        "--max-tokens",
        "4",
        "--device",
        "cpu",
        "--out",
        &gen_dpo,
    ]);
    assert!(out.contains("12 replies") && out.contains("distinct-2"), "{out}");
    let mut args = vec![
        "eval",
        "--method",
        "vanilla",
        "--generate",
        "--data",
        &few_s,
        "--max-tokens",
        "4",
        "--out",
        &gen_base,
    ];
    args.extend(models);
    run_ok(&args);
    let replies = std::fs::read_to_string(dir.join("gen_dpo/replies.jsonl")).expect("replies");
    let reply: serde_json::Value = serde_json::from_str(replies.lines().next().expect("reply")).expect("json");
    assert!(
        reply["reference"].is_string()
            && reply["profile_text"]
                .as_str()
                .is_some_and(|t| t.contains("You are a person"))
    );

    let ours = s(&dir.join("gen_dpo/replies.jsonl"));
    let theirs = s(&dir.join("gen_base/replies.jsonl"));
    let (out, _) = run_ok(&[
        "eval",
        "--win-rate",
        "--data",
        &ours,
        "--against",
        &theirs,
        "--out",
        &gen_dpo,
    ]);
    assert!(out.contains("win rate"), "{out}");
    let w: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("gen_dpo/winrate.json")).expect("winrate"))
            .expect("json");
    let r = &w["result"];
    let total: u64 = ["wins", "ties", "losses", "failed", "not_judgeable"]
        .iter()
        .map(|k| r[k].as_u64().expect("count"))
        .sum();
    assert_eq!(total, 12, "{w}");
    assert_eq!(w["judge"], "rule");
    // An HTTP judge that is not there: every case fails, none is scored.
    let (out, _) = run_ok(&[
        "eval",
        "--win-rate",
        "--data",
        &ours,
        "--against",
        &theirs,
        "--judge-url",
        "http://127.0.0.1:9/v1",
        "--retries",
        "0",
        "--judge-timeout",
        "2",
        "--out",
        &gen_base,
    ]);
    assert!(out.contains("win rate n/a") && out.contains("12 failed"), "{out}");
}
