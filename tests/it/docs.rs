//! The documentation against the code: `config/examples/full.yaml` shows every config key the
//! types accept, and README and `docs/` point at no file outside the repository.

use crate::support::root;
use std::collections::BTreeSet;

/// Every key a config struct accepts, read from `src/config/mod.rs`: each `pub <name>:` field
/// (those marked `#[serde(skip)]` are not keys), as `name:`; and each enum variant named by
/// `#[serde(rename = "…")]`, as its bare name (a value such as a source's kind).
fn config_keys() -> BTreeSet<String> {
    let source = std::fs::read_to_string(root().join("src/config/mod.rs")).unwrap();
    let mut keys = BTreeSet::new();
    let mut skipped = false;
    let mut in_origin = false;
    for line in source.lines().map(str::trim) {
        if line.starts_with("pub struct ") {
            // `Origin` is where a config came from, set by the loader: not a key.
            in_origin = line.starts_with("pub struct Origin");
        }
        if line.starts_with("#[serde(skip)]") {
            skipped = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("pub ")
            && let Some((name, _)) = rest.split_once(':')
            && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            && !skipped
            && !in_origin
        {
            keys.insert(format!("{name}:"));
        }
        if let Some(rest) = line.strip_prefix("#[serde(rename = \"") {
            keys.insert(rest.split('"').next().unwrap().to_string());
        }
        if !line.starts_with("#[") && !line.starts_with("///") {
            skipped = false;
        }
    }
    keys
}

/// `full.yaml` says it lists every key: every key of the config types appears in it (set or
/// commented out), as `key:` or, for a kind, as its value.
#[test]
fn the_full_example_lists_every_config_key() {
    let example = std::fs::read_to_string(root().join("config/examples/full.yaml")).unwrap();
    let keys = config_keys();
    assert!(keys.len() > 60, "the key reader found {keys:?}");
    let words: BTreeSet<&str> = example
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '-'))
        .collect();
    let missing: Vec<&String> = keys
        .iter()
        .filter(|key| !words.contains(key.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "config/examples/full.yaml misses {missing:?}"
    );
}

/// What a reader is pointed to is in the repository: no file names the design document or
/// the protocol notes the project started from (`DESIGN.md`, a bare `protocols.md`), whose
/// content lives in README, `docs/canonical-model.md` and `docs/protocols.md`.
#[test]
fn docs_and_comments_point_only_inside_the_repository() {
    let mut files = vec![root().join("README.md")];
    let mut stack = [
        "docs", "src", "mappings", "config", "deploy", "tests/it", "benches",
    ]
    .map(|d| root().join(d))
    .to_vec();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 100, "the walk found {} files", files.len());
    let outside = ["DESIGN.md", "DESIGN §", "../shared"];
    let mut found = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            let bare_protocols = line
                .match_indices("protocols.md")
                .any(|(at, _)| !line[..at].ends_with("docs/"));
            // This test names what it looks for.
            let names_them = file.ends_with("tests/it/docs.rs");
            if !names_them && (bare_protocols || outside.iter().any(|o| line.contains(o))) {
                found.push(format!("{}:{}: {line}", file.display(), n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "references outside the repository:\n{}",
        found.join("\n")
    );
    assert!(root().join("docs/protocols.md").exists());
}
