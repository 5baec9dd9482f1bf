//! Shared test helpers: the shipped mappings, fixture discovery, translation shortcuts.

use callgate::MappingSet;
use callgate::translate::{Outcome, Translator};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The repository root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped mappings, loaded once.
pub fn mappings() -> Arc<MappingSet> {
    static SET: OnceLock<Arc<MappingSet>> = OnceLock::new();
    SET.get_or_init(|| {
        Arc::new(MappingSet::load(&root().join("mappings")).expect("shipped mappings are valid"))
    })
    .clone()
}

/// Every file under `tests/fixtures/<vendor>` with the extension, excluding API objects and
/// nested helper objects that are not events.
pub fn fixtures(vendor: &str, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root().join("tests/fixtures").join(vendor)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("fixture folder") {
            let path = entry.expect("entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != "api" && name != "misc" {
                    stack.push(path);
                }
            } else if name.ends_with(ext) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Translates the text of one input through one translator, returning every printed line.
pub fn lines(translator: &Translator, text: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for payload in translator.read(text).expect("readable input") {
        for outcome in translator.translate(&payload).expect("translates") {
            if let Some(line) = outcome.output_line() {
                out.push(line);
            }
        }
    }
    out
}

/// The outcomes of translating a file.
pub fn outcomes(translator: &Translator, file: &Path) -> Vec<Outcome> {
    let text = std::fs::read_to_string(file).expect("fixture");
    let mut out = Vec::new();
    for payload in translator.read(&text).expect("readable input") {
        out.extend(translator.translate(&payload).expect("translates"));
    }
    out
}

/// `(userState, callState)` of Vidyo notifications (empty text where absent).
pub fn vidyo_states(lines: &[Value]) -> Vec<(String, String)> {
    lines
        .iter()
        .map(|l| {
            let n = &l["userStatusNotification"];
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (
                text(&n["user"]["userState"]),
                text(&n["conference"]["callState"]),
            )
        })
        .collect()
}

/// Owned pairs, for comparing with `vidyo_states`.
pub fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// What a Vidyo receiver gets from the real PSTN-RingCentral-DataStreams flow, in order:
/// (userState, callState) for the monitored user's Setup, Proceeding, Answered, Hold,
/// Answered (resume) and Disconnected.
pub const DATASTREAMS_IN_VIDYO: &[(&str, &str)] = &[
    ("Alerting", "ALERTING"),
    ("Alerting", "ALERTING"),
    ("Busy", "IN PROGRESS"),
    ("Busy", "IN PROGRESS"),
    ("Busy", "IN PROGRESS"),
    ("Online", "COMPLETED"),
];

/// The `EventType` of each Enreach output.
pub fn event_types(lines: &[Value]) -> Vec<&str> {
    lines
        .iter()
        .map(|l| l["EventType"].as_str().unwrap_or_default())
        .collect()
}

/// Copies a folder tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}
