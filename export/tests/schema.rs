//! `docs/manifest.schema.json` is the JSON Schema generated from the manifest's types: a test
//! fails when the types change and the committed schema does not (regenerate it with
//! `CUMA_BLESS=1 cargo test -p cuma-export --test schema`).

use std::path::Path;

#[test]
fn the_committed_manifest_schema_matches_the_types() {
    let live = cuma_model::bundle::manifest_schema();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/manifest.schema.json");
    let text = serde_json::to_string_pretty(&live).expect("schema serialises") + "\n";
    if std::env::var_os("CUMA_BLESS").is_some() {
        std::fs::write(&path, &text).expect("write the schema");
    }
    let committed = std::fs::read_to_string(&path).expect("docs/manifest.schema.json is committed");
    assert_eq!(
        committed, text,
        "docs/manifest.schema.json is stale; regenerate it with CUMA_BLESS=1 cargo test -p cuma-export --test schema"
    );
    // The schema pins what a runtime may rely on: the version, closed objects, and the enums.
    let s = &live;
    assert_eq!(s["properties"]["format_version"]["type"], "integer", "{s:#}");
    assert_eq!(s["additionalProperties"], false);
    let methods = serde_json::to_string(&s["$defs"]["Method"]).expect("json");
    assert!(
        methods.contains("\"cuma\"") && methods.contains("\"mixlora\""),
        "{methods}"
    );
}
