//! The house (README "How it fits together"): every `crate::` import in `src/` points down. The layers
//! are listed once, here, lowest first; a module may use its own files and any module of a
//! lower layer, never one of its own layer (rooms beside each other do not talk) or above.

use crate::support::root;
use std::collections::BTreeSet;
use std::path::Path;

/// The layers, lowest first: the data flows up through them (transport in → intake → pipeline
/// → delivery → transport out), the wiring sits on top.
const LAYERS: &[&[&str]] = &[
    // The ground floor: the canonical event and schema, inbound and outbound contracts,
    // Problem, the clock.
    &["model"],
    &["mapping", "lifecycle"],
    &["config"],
    &["telemetry"],
    // The supervisor of long-lived parts (generic: components are built by the gateway).
    &["supervisor"],
    // The queue and the transports out, beside each other: delivery reaches a transport only
    // through `model::outbound::Outbound`.
    &["delivery", "outbound"],
    &["route"],
    &["pipeline"],
    &["snapshot"],
    &["intake"],
    // Replay queues through intake's store and turns; a timeline reads the archive.
    &["replay", "timeline"],
    &["translate"],
    &["cases", "explain"],
    // Prepare: config + mappings → checked → Snapshot (runs the cases); reload swaps it.
    &["check"],
    &["reload"],
    // Transports in: webhook handler, SignalR client, RingCentral WebSocket and keeper.
    &["inbound"],
    &["server"],
    &["gateway"],
    &["cli", "main", "lib"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The top-level module a file under `src/` belongs to (`src/delivery/lane.rs` → `delivery`).
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(root().join("src")).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Every top-level module a file names through `crate::` (in `use` lines and paths alike,
/// `use crate::{a::x, b}` included). Comments are skipped.
fn imports(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                for item in group.split(['}', ',']) {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        found.insert(name);
                    }
                }
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_import_points_down() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    files.sort();
    assert!(files.len() > 40, "only {} files", files.len());
    let mut up = Vec::new();
    let mut unplaced = BTreeSet::new();
    for file in &files {
        let module = module_of(file);
        let Some(own) = layer_of(&module) else {
            unplaced.insert(module);
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for used in imports(&text) {
            if used == module {
                continue;
            }
            match layer_of(&used) {
                Some(layer) if layer < own => {}
                Some(layer) => up.push(format!(
                    "{} ({module}, layer {own}) uses {used} (layer {layer})",
                    file.strip_prefix(root()).unwrap().display()
                )),
                None => {
                    unplaced.insert(used);
                }
            }
        }
    }
    assert!(
        unplaced.is_empty(),
        "modules missing from LAYERS: {unplaced:?}"
    );
    assert!(
        up.is_empty(),
        "{} imports point up or sideways:\n{}",
        up.len(),
        up.join("\n")
    );
}

#[test]
fn the_import_reader_sees_groups_and_paths() {
    let text = "use crate::{model::event::CallEvent, mapping};\nlet x = crate::route::f(); // crate::gateway\n";
    let found: Vec<String> = imports(text).into_iter().collect();
    assert_eq!(found, ["mapping", "model", "route"]);
}
