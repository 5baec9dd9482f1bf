//! Mapping cases (`mappings/*/cases/*.yaml`): behaviour as data, run by `callgate test` and
//! by `cargo test`, and by every snapshot build (a set whose cases fail is never served).
//! Each case sends its input through the pipeline (`translate`) and checks JSONPaths on every
//! output; a case that checks nothing is refused.

use crate::mapping::path::CompiledPath;
use crate::mapping::schema::CaseFile;
use crate::mapping::{MappingSet, Problem, read_yaml};
use crate::translate::{Outcome, Payload, Translator};
use indexmap::IndexMap;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseReport {
    /// The case file.
    pub file: PathBuf,
    /// The case's name.
    pub name: String,
    /// What did not match; empty when the case passed.
    pub failures: Vec<String>,
}

impl CaseReport {
    /// Whether the case passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Runs every case of every vendor, in vendor and file order.
pub fn run_all(mappings: &Arc<MappingSet>) -> Vec<CaseReport> {
    mappings
        .vendors()
        .flat_map(|v| v.cases.iter())
        .map(|file| run_case(mappings, file))
        .collect()
}

/// Runs one case file.
pub fn run_case(mappings: &Arc<MappingSet>, file: &Path) -> CaseReport {
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut problems: Vec<Problem> = Vec::new();
    let Some(case) = read_yaml::<CaseFile>(file, &mut problems) else {
        return CaseReport {
            file: file.into(),
            name,
            failures: problems.iter().map(|p| p.message.clone()).collect(),
        };
    };
    let name = case.name.clone().unwrap_or(name);
    let failures = match evaluate(mappings, file, &case) {
        Ok(failures) => failures,
        Err(message) => vec![message],
    };
    CaseReport {
        file: file.into(),
        name,
        failures,
    }
}

fn evaluate(
    mappings: &Arc<MappingSet>,
    file: &Path,
    case: &CaseFile,
) -> Result<Vec<String>, String> {
    let translator = Translator::new(
        mappings.clone(),
        &case.from,
        &case.to,
        "http://receiver.invalid/events",
    )
    .map_err(|e| e.to_string())?
    .with_directories(crate::mapping::directory::Directories(
        case.directories
            .iter()
            .map(|(name, entries)| (name.clone(), Arc::new(entries.clone())))
            .collect(),
    ));
    let inputs = match &case.input {
        Value::Array(items) => items.clone(),
        single => vec![single.clone()],
    };
    let mut lines = Vec::new();
    for input in inputs {
        for payload in load_input(&translator, file, input)? {
            for outcome in translator.translate(&payload).map_err(|e| e.to_string())? {
                if let Some(line) = outcome.output_line() {
                    lines.push(line);
                } else if let Outcome::Dropped(v) = outcome {
                    tracing::debug!(?v, "case input dropped by lifecycle");
                }
            }
        }
    }
    let mut failures = Vec::new();
    if let Some(expected) = case.outputs
        && lines.len() != expected
    {
        failures.push(format!("expected {expected} outputs, got {}", lines.len()));
    }
    let expectations = case
        .expect
        .as_ref()
        .map(|e| e.0.as_slice())
        .unwrap_or_default();
    if expectations.is_empty() || expectations.iter().any(IndexMap::is_empty) {
        if case.outputs != Some(0) {
            failures.push(
                "`expect` is missing or empty: give the fields each output must have (or \
                 `outputs: 0` when the target skips every event)"
                    .into(),
            );
        }
        return Ok(failures);
    }
    if expectations.len() != lines.len() {
        failures.push(match (expectations.len(), lines.len()) {
            (1, n) => format!(
                "the input made {n} outputs: give `expect` as a list, one map per output in order"
            ),
            (e, n) => format!("`expect` lists {e} outputs, the input made {n}"),
        });
        for line in &lines {
            failures.push(format!("output: {line}"));
        }
        return Ok(failures);
    }
    for (index, (expect, output)) in expectations.iter().zip(&lines).enumerate() {
        let before = failures.len();
        for (path, expected) in expect {
            let compiled = CompiledPath::compile(path).map_err(|e| e.to_string())?;
            let actual = compiled
                .first(output, output)
                .cloned()
                .unwrap_or(Value::Null);
            if &actual != expected {
                let which = if lines.len() > 1 {
                    format!("output {}: ", index + 1)
                } else {
                    String::new()
                };
                failures.push(format!("{which}{path}: expected {expected}, got {actual}"));
            }
        }
        if failures.len() > before {
            failures.push(format!("output: {output}"));
        }
    }
    Ok(failures)
}

fn load_input(translator: &Translator, file: &Path, input: Value) -> Result<Vec<Payload>, String> {
    let text = input_text(file, &input, translator.reads_parameters())?;
    translator.read(&text).map_err(|e| e.to_string())
}

/// The payload text of one case `input` entry, as `callgate translate` reads it: a file
/// path relative to the case file (inside the vendor folder: no `..`) gives that file's text; an inline map for a parameter
/// vendor (`params`) gives its query string; any other inline value gives its JSON.
pub fn input_text(file: &Path, input: &Value, params: bool) -> Result<String, String> {
    match input {
        Value::String(rel) => {
            // A vendor folder stands alone (a ConfigMap mount): inputs live beside the case.
            let inside = Path::new(rel)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
            if !inside {
                return Err(format!(
                    "input {rel}: case inputs must stay inside the vendor folder (write them \
                     under cases/inputs/, or inline)"
                ));
            }
            let path = file.parent().unwrap_or(Path::new(".")).join(rel);
            std::fs::read_to_string(&path).map_err(|e| format!("input {}: {e}", path.display()))
        }
        Value::Object(map) if params => {
            let mut query = form_urlencoded::Serializer::new(String::new());
            for (name, value) in map {
                match value {
                    Value::String(s) => query.append_pair(name, s),
                    other => query.append_pair(name, &other.to_string()),
                };
            }
            Ok(query.finish())
        }
        inline => Ok(serde_json::to_string_pretty(inline).unwrap_or_default()),
    }
}

/// A case as the playground offers it: the input text to paste, and the vendors.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Fixture {
    /// The case file, under the mappings folder.
    pub file: String,
    /// The case's name.
    pub name: String,
    /// Source vendor id (or `auto`).
    pub from: String,
    /// Target vendor id.
    pub to: String,
    /// The input, every entry of a list one after another (one per line for parameters).
    pub payload: String,
}

/// Every case of every vendor as a [`Fixture`]; cases that cannot be read are left out.
pub fn fixtures(mappings: &MappingSet) -> Vec<Fixture> {
    let mut out = Vec::new();
    for vendor in mappings.vendors() {
        for file in &vendor.cases {
            let mut problems = Vec::new();
            let Some(case) = read_yaml::<CaseFile>(file, &mut problems) else {
                continue;
            };
            let params = mappings
                .vendor(&case.from)
                .is_some_and(|v| v.payload == crate::mapping::schema::PayloadKind::Params);
            let entries = match &case.input {
                Value::Array(items) => items.clone(),
                single => vec![single.clone()],
            };
            let Ok(texts) = entries
                .iter()
                .map(|e| input_text(file, e, params).map(|t| t.trim().to_string()))
                .collect::<Result<Vec<_>, _>>()
            else {
                continue;
            };
            let stem = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push(Fixture {
                file: file.display().to_string(),
                name: case.name.unwrap_or(stem),
                from: case.from,
                to: case.to,
                payload: texts.join("\n"),
            });
        }
    }
    out
}
