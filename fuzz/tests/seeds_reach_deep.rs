//! The seeds `make_seeds.py` writes must get past the loaders' first checks, or the fuzzer would
//! only ever exercise parse errors: the bundle seed opens on the scratch folder, the GGUF seed
//! decodes every tensor, the config seeds validate.

use std::path::{Path, PathBuf};

fn seeds() -> PathBuf {
    let out = std::env::temp_dir().join(format!("cuma-fuzz-seeds-{}", std::process::id()));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("make_seeds.py");
    let status = std::process::Command::new("python3")
        .arg(&script)
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("python3 runs make_seeds.py");
    assert!(status.success(), "make_seeds.py failed");
    out
}

#[test]
fn the_seeds_reach_past_the_first_checks() {
    let out = seeds();
    let manifest = std::fs::read(out.join("bundle_manifest/manifest.json")).expect("bundle seed");
    let dir = cuma_fuzz::scratch();
    std::fs::write(dir.join("manifest.json"), manifest).expect("write");
    cuma_runtime::Bundle::open(dir).expect("the seed manifest opens");

    let gguf = std::fs::read(out.join("gguf/llama-all-dtypes.gguf")).expect("gguf seed");
    let (file, weights) = cuma_model::weight_files::gguf::from_bytes(
        Path::new("seed.gguf"),
        cuma_model::weight_files::Bytes::Owned(gguf),
    )
    .expect("the GGUF seed parses");
    let names: Vec<String> = weights.names().map(str::to_string).collect();
    assert_eq!(names.len(), 6, "{names:?}");
    for name in &names {
        weights.read_f32(name).expect("every seed tensor decodes");
    }
    cuma_model::weight_files::gguf::hf_config(&file, &weights).expect("GGUF metadata maps onto a config");

    for family in ["llama", "qwen2", "qwen3", "bert", "llama3-rope"] {
        let text = std::fs::read_to_string(out.join(format!("config_json/{family}.json"))).expect("config seed");
        let hf = cuma_model::config::HfConfig::from_json(&text).expect("parses");
        cuma_model::config::ModelConfig::try_from(&hf).unwrap_or_else(|e| panic!("{family}: {e}"));
    }
    std::fs::remove_dir_all(&out).ok();
}
