//! The mapping engine: loads `mappings/<vendor>/` folders, validates them completely and
//! purely (every JSONPath compiles, every template parses in strict mode, every table and
//! var referenced exists, every table value fits its canonical field), compiles them once,
//! then decodes and encodes without re-parsing anything per event.

pub mod decode;
pub mod directory;
pub mod encode;
pub mod fidelity;
pub mod helpers;
pub mod path;
pub mod plan;
pub mod schema;
pub mod table;
pub mod typecheck;
pub mod value;

use crate::model::event::CallEvent;
use crate::model::{self, schema::FieldKind};
use decode::{DecodeError, Decoder, Rule};
use encode::{EncodeError, EncodeTemplate, Encoder, Rendered, TemplateKind};
use schema::{DecodeFile, EncodeFile, KeyMatching, PayloadKind, TablesFile, VendorFile};
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_saphyr::Spanned;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use table::Table;
use value::CompileEnv;

/// The pseudo-vendor of a route or a translation that detects the source vendor from the
/// payload's shape (`detect` paths in each `decode.yaml`).
pub const AUTO: &str = "auto";

/// One problem found while loading mappings, with the file, line and column at fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The file at fault.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// 1-based column, when known (template problems).
    pub column: Option<u64>,
    /// What is wrong, naming the path, template, table or key.
    pub message: String,
}

impl Problem {
    /// A problem of a whole file (no line).
    pub fn file(file: &Path, message: impl Into<String>) -> Problem {
        Problem {
            file: file.to_path_buf(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    /// A problem at a 1-based line of `file` (0: unknown).
    pub fn at(file: &Path, line: u64, message: impl Into<String>) -> Problem {
        Problem {
            line: (line > 0).then_some(line),
            ..Problem::file(file, message)
        }
    }

    /// The same problem at a 1-based column (0: unknown).
    pub fn column(mut self, column: u64) -> Problem {
        self.column = (column > 0).then_some(column);
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => {
                write!(
                    f,
                    "{}:{line}:{column}: {}",
                    self.file.display(),
                    self.message
                )
            }
            (Some(line), None) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            _ => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// A place in a mapping file: what error reports point at.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    /// The file, under the mappings folder.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<u64>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}", self.file.display()),
            None => write!(f, "{}", self.file.display()),
        }
    }
}

/// Every problem found in a mappings folder; loading fails if there is any.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Options for [`MappingSet::decode`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeOptions {
    /// Compute the fidelity extensions (needed when the event may be encoded back to its own
    /// vendor or to CloudEvents): one extra render per notification, kept in its first event.
    pub fidelity: bool,
    /// Events one payload may yield at most (0: no limit); beyond it the payload is refused
    /// before any event is built.
    pub max_events: usize,
}

/// One vendor's compiled mapping.
#[derive(Debug)]
pub struct VendorMapping {
    /// The vendor id (the folder name).
    pub id: String,
    /// A one-line description from `vendor.yaml`.
    pub title: Option<String>,
    /// What the vendor's payload is.
    pub payload: PayloadKind,
    /// Handshake header to echo (RingCentral `Validation-Token`).
    pub handshake_header: Option<String>,
    /// Verification-token header (RingCentral `Verification-Token`).
    pub verification_header: Option<String>,
    /// An empty request is a connection test (Vidyo).
    pub accept_empty: bool,
    /// Event names its SignalR hub offers (`hub_events`, Enreach RTE).
    pub hub_events: Vec<String>,
    /// Whether a stale `sequence` drops an event (`sequence: monotonic_per_leg`).
    pub drops_stale: bool,
    /// How soon the vendor, as a sender, wants its answer (`reply_within`).
    pub reply_within: Option<std::time::Duration>,
    /// How the vendor signs its requests (`signature:`).
    pub signature: Option<Arc<crate::model::signature::SignatureScheme>>,
    /// Its endpoint challenge (`challenge:`).
    pub challenge: Option<Arc<crate::model::signature::Challenge>>,
    /// Its validation query parameter (`validation_query:`).
    pub validation_query: Option<String>,
    /// The directories its tables take their entries from (`{directory: name}`), sorted.
    pub directories: Vec<String>,
    /// The case files of `cases/`.
    pub cases: Vec<PathBuf>,
    decoder: Option<Decoder>,
    encoder: Option<Encoder>,
}

impl VendorMapping {
    /// The vendor's encoder, if it has templates.
    pub fn encoder(&self) -> Option<&Encoder> {
        self.encoder.as_ref()
    }

    /// The vendor's compiled `decode.yaml`, if it has one.
    pub fn decoder(&self) -> Option<&Decoder> {
        self.decoder.as_ref()
    }

    /// The canonical fields this vendor's decode rules set (dotted paths, `type` included).
    pub fn decoded_fields(&self) -> Vec<&str> {
        let mut fields = Vec::new();
        if let Some(decoder) = &self.decoder {
            fields.push("type");
            for rule in &decoder.rules {
                for (field, _, _, _) in &rule.sets {
                    if !fields.contains(&field.as_str()) {
                        fields.push(field);
                    }
                }
            }
        }
        fields
    }

    /// The headers this vendor carries a shared token in (its `verification_header` and
    /// `handshake_header`; RingCentral `Verification-Token`, `Validation-Token`).
    pub fn token_headers(&self) -> Vec<String> {
        [&self.verification_header, &self.handshake_header]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// Whether the vendor can be decoded from.
    pub fn can_decode(&self) -> bool {
        self.decoder.is_some() || self.payload == PayloadKind::Canonical
    }
}

/// A validated, compiled set of vendor mappings.
#[derive(Debug)]
pub struct MappingSet {
    root: PathBuf,
    vendors: BTreeMap<String, VendorMapping>,
}

impl MappingSet {
    /// Loads and validates every vendor folder under `dir`. Returns every problem found.
    pub fn load(dir: &Path) -> Result<MappingSet, Problems> {
        Self::load_edited(dir, &Edits::new())
    }

    /// Loads `dir` as [`MappingSet::load`] does, reading the files named in `edits` from
    /// there instead of from disk: what the playground (`POST /admin/translate`) tries
    /// before anyone saves. Problems name the files as they are on disk, with the lines of
    /// the edited text. Refuses an edit of a file that is not in the folder.
    pub fn load_edited(dir: &Path, edits: &Edits) -> Result<MappingSet, Problems> {
        let files = Files::new(dir, edits)?;
        let mut problems = Vec::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                return Err(Problems(vec![Problem::file(
                    dir,
                    format!("cannot read the mappings folder: {e}"),
                )]));
            }
        };
        let mut folders: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.join("vendor.yaml").is_file())
            .collect();
        folders.sort();
        if folders.is_empty() {
            problems.push(Problem::file(
                dir,
                "no vendor folders (a folder with a vendor.yaml) found",
            ));
        }
        let mut vendors = BTreeMap::new();
        for folder in folders {
            if let Some(vendor) = load_vendor(&files, &folder, &mut problems) {
                vendors.insert(vendor.id.clone(), vendor);
            }
        }
        if problems.is_empty() {
            Ok(MappingSet {
                root: dir.to_path_buf(),
                vendors,
            })
        } else {
            Err(Problems(problems))
        }
    }

    /// The folder the set was loaded from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A vendor by id.
    pub fn vendor(&self, id: &str) -> Option<&VendorMapping> {
        self.vendors.get(id)
    }

    /// Every vendor, by id.
    pub fn vendors(&self) -> impl Iterator<Item = &VendorMapping> {
        self.vendors.values()
    }

    /// Field path → the vendors whose decode rules set it (for `callgate schema`).
    pub fn setters(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for vendor in self.vendors.values() {
            for field in vendor.decoded_fields() {
                out.entry(field.to_string())
                    .or_default()
                    .push(vendor.id.clone());
            }
        }
        out
    }

    /// Detects the vendor of a payload: the one vendor whose `detect` matches, among vendors
    /// of the payload's kind (`params` payloads only match `params` vendors).
    pub fn detect(&self, payload: &Value, params: bool) -> Result<&str, DecodeError> {
        let matches: Vec<&str> = self
            .vendors
            .values()
            .filter(|v| (v.payload == PayloadKind::Params) == params)
            .filter(|v| match (&v.decoder, v.payload) {
                (_, PayloadKind::Canonical) => {
                    payload.get("specversion").is_some() && payload.get("data").is_some()
                }
                (Some(d), _) => d.detects(payload),
                (None, _) => false,
            })
            .map(|v| v.id.as_str())
            .collect();
        match matches.as_slice() {
            [one] => Ok(one),
            [] => Err(DecodeError::Detect(
                "the payload matches no vendor's `detect` paths".into(),
            )),
            many => Err(DecodeError::Detect(format!(
                "the payload matches several vendors: {}",
                many.join(", ")
            ))),
        }
    }

    /// Decodes a payload of `vendor` into canonical events.
    pub fn decode(
        &self,
        vendor: &str,
        payload: &Value,
        options: DecodeOptions,
    ) -> Result<Vec<CallEvent>, DecodeError> {
        let mapping = self.vendors.get(vendor).ok_or_else(|| DecodeError::Shape {
            vendor: vendor.to_string(),
            message: "unknown vendor (no mappings folder)".into(),
        })?;
        if mapping.payload == PayloadKind::Canonical {
            let mut event: CallEvent =
                serde_json::from_value(payload.clone()).map_err(|e| DecodeError::Canonical {
                    vendor: vendor.to_string(),
                    rule: "cloudevents".into(),
                    message: e.to_string(),
                })?;
            event.normalize();
            if let Some(data) = payload.get("data") {
                event.null_members = fidelity::null_members(data, "/data");
                // Taken over as parsed: serde_json's `from_value` turns the number `-0`
                // into `0` (its Number visitor re-parses the text as an integer).
                if let Some(Value::Object(extensions)) = data.get("extensions") {
                    event.data.extensions = extensions.clone();
                }
            }
            return Ok(vec![event]);
        }
        let decoder = mapping.decoder.as_ref().ok_or_else(|| DecodeError::Shape {
            vendor: vendor.to_string(),
            message: "this vendor has no decode.yaml".into(),
        })?;
        let mut events = decoder.decode(payload, options.max_events)?;
        // Fidelity is per notification (README "Round-trip fidelity"): the first event
        // carries the notification back to its own vendor, so only it keeps the residual.
        // Once per notification, so a notification of N parties costs O(N), not O(N²).
        if options.fidelity
            && let Some(first) = events.first_mut()
        {
            let rendered = match &mapping.encoder {
                Some(encoder) => encoder.render(first).ok().flatten(),
                None => None,
            };
            let residual = match rendered {
                Some(r) => fidelity::diff(payload, &r.payload()),
                None => fidelity::diff(payload, &Value::Null),
            };
            residual.store(&mut first.data.extensions);
        }
        Ok(events)
    }

    /// Where a decode error points: the vendor's `decode.yaml` and, for an error of one rule,
    /// the line of that rule's `when`. `None` for errors of no vendor file (`auto`, unknown
    /// vendor, CloudEvents input).
    pub fn locate(&self, error: &DecodeError) -> Option<Location> {
        let vendor = self.vendors.get(error.vendor()?)?;
        let decoder = vendor.decoder.as_ref()?;
        let line = error
            .rule()
            .and_then(|name| decoder.rules.iter().find(|r| r.name == name))
            .and_then(|r| r.line);
        Some(Location {
            file: self.root.join(&vendor.id).join("decode.yaml"),
            line,
        })
    }

    /// Where an encode error points: the template file and, when Handlebars knows it, the
    /// line where rendering stopped.
    pub fn locate_template(&self, error: &EncodeError) -> Option<Location> {
        let (vendor, template, line) = error.template()?;
        Some(Location {
            file: self.root.join(vendor).join(template),
            line: line.map(|l| l as u64),
        })
    }

    /// Renders an event for `vendor`; `Ok(None)` when the vendor has no template for its type.
    pub fn encode(&self, vendor: &str, event: &CallEvent) -> Result<Option<Rendered>, EncodeError> {
        match self.vendors.get(vendor).and_then(|v| v.encoder.as_ref()) {
            Some(encoder) => encoder.render(event),
            None => Ok(None),
        }
    }
}

fn load_vendor(files: &Files, folder: &Path, problems: &mut Vec<Problem>) -> Option<VendorMapping> {
    let folder_name = folder.file_name()?.to_string_lossy().into_owned();
    let vendor_file: VendorFile = files.read_yaml(&folder.join("vendor.yaml"), problems)?;
    let start = problems.len();
    check_vendor_name(
        &folder.join("vendor.yaml"),
        &vendor_file.vendor,
        &folder_name,
        problems,
    );

    let tables_path = folder.join("tables.yaml");
    let mut tables = HashMap::new();
    let mut table_files = TablesFile::default();
    if tables_path.is_file()
        && let Some(file) = files.read_yaml::<TablesFile>(&tables_path, problems)
    {
        table_files = file;
    }
    for (name, file) in &table_files {
        // A directory's entries come from its file: anything written beside it would be
        // ignored without a word.
        if let Some(directory) = &file.directory {
            let own = [
                ("map", !file.map.is_empty()),
                ("default", file.default.is_some()),
            ];
            for (key, written) in own {
                if written {
                    problems.push(at(
                        &tables_path,
                        directory,
                        format!(
                            "table `{name}` takes its entries from the directory `{}`: drop its `{key}` (put entries in the directory's file)",
                            directory.value
                        ),
                    ));
                }
            }
        }
        tables.insert(name.clone(), Arc::new(Table::compile(file)));
    }

    let mut decoder = None;
    let decode_path = folder.join("decode.yaml");
    if vendor_file.payload != PayloadKind::Canonical
        && decode_path.is_file()
        && let Some(file) = files.read_yaml::<DecodeFile>(&decode_path, problems)
    {
        check_vendor_name(&decode_path, &file.vendor, &folder_name, problems);
        let unit = DecodeUnit {
            file: &decode_path,
            tables_file: &tables_path,
            tables: &tables,
            lowercase: vendor_file.keys == KeyMatching::CaseInsensitive,
        };
        decoder = Some(compile_decoder(&unit, &folder_name, file, problems));
    }

    let mut directories: Vec<String> = tables
        .values()
        .filter_map(|t| t.directory().map(str::to_string))
        .collect();
    directories.sort();
    directories.dedup();
    let tables = Arc::new(tables);
    let mut encoder = None;
    let encode_path = folder.join("encode.yaml");
    if vendor_file.payload == PayloadKind::Canonical {
        encoder = Some(Encoder::canonical(&folder_name));
    } else if encode_path.is_file()
        && let Some(file) = files.read_yaml::<EncodeFile>(&encode_path, problems)
    {
        check_vendor_name(&encode_path, &file.vendor, &folder_name, problems);
        encoder = Some(compile_encoder(
            files,
            folder,
            &encode_path,
            file,
            tables,
            problems,
        ));
    }

    let vendor_path = folder.join("vendor.yaml");
    let signature = vendor_file
        .signature
        .as_ref()
        .and_then(|s| compile_signature(&vendor_path, s, problems))
        .map(Arc::new);
    let challenge = vendor_file
        .challenge
        .as_ref()
        .and_then(|c| compile_challenge(&vendor_path, c, problems))
        .map(Arc::new);

    let mut cases: Vec<PathBuf> = std::fs::read_dir(folder.join("cases"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect()
        })
        .unwrap_or_default();
    cases.sort();

    if problems.len() > start {
        return None;
    }
    Some(VendorMapping {
        id: folder_name,
        title: vendor_file.title,
        payload: vendor_file.payload,
        handshake_header: vendor_file.handshake_header,
        verification_header: vendor_file.verification_header,
        accept_empty: vendor_file.accept_empty,
        hub_events: vendor_file.hub_events,
        drops_stale: vendor_file.sequence == schema::SequenceKind::MonotonicPerLeg,
        reply_within: vendor_file.reply_within,
        signature,
        challenge,
        validation_query: vendor_file.validation_query,
        directories,
        cases,
        decoder,
        encoder,
    })
}

fn check_vendor_name(file: &Path, named: &str, folder: &str, problems: &mut Vec<Problem>) {
    if named != folder {
        problems.push(Problem::file(
            file,
            format!("`vendor: {named}` does not match its folder `{folder}`"),
        ));
    }
}

/// Reads a YAML file into `T`, recording a problem (with serde-saphyr's line) on failure.
pub fn read_yaml<T: DeserializeOwned>(path: &Path, problems: &mut Vec<Problem>) -> Option<T> {
    Files::default().read_yaml(path, problems)
}

/// Parses YAML text read from `path` into `T`, recording a problem on failure.
fn parse_yaml<T: DeserializeOwned>(
    path: &Path,
    text: &str,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    match serde_saphyr::from_str(text) {
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(Problem::file(path, e.to_string()));
            None
        }
    }
}

/// Mapping file edits: path relative to the mappings folder (`vidyo/templates/x.hbs`) →
/// the text to use in place of the file's.
pub type Edits = BTreeMap<PathBuf, String>;

/// Where the loader reads files: the folder on disk, with [`Edits`] laid over it (none by
/// default).
#[derive(Default)]
struct Files<'a> {
    edits: BTreeMap<PathBuf, &'a str>,
}

impl<'a> Files<'a> {
    /// Keys `edits` by the paths the loader will ask for; an edit must name a file that
    /// exists under `root` (no `..`, no absolute path, nothing new).
    fn new(root: &Path, edits: &'a Edits) -> Result<Self, Problems> {
        let mut keyed = BTreeMap::new();
        for (rel, text) in edits {
            let plain = rel
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
            let path = root.join(rel);
            if !plain || !path.is_file() {
                return Err(Problems(vec![Problem::file(
                    &path,
                    format!(
                        "edit of `{}`: not a file of the mappings folder (only existing files can be edited)",
                        rel.display()
                    ),
                )]));
            }
            keyed.insert(path, text.as_str());
        }
        Ok(Files { edits: keyed })
    }

    fn read(&self, path: &Path) -> std::io::Result<String> {
        match self.edits.get(path) {
            Some(text) => Ok((*text).to_string()),
            None => std::fs::read_to_string(path),
        }
    }

    fn read_yaml<T: DeserializeOwned>(
        &self,
        path: &Path,
        problems: &mut Vec<Problem>,
    ) -> Option<T> {
        let text = match self.read(path) {
            Ok(t) => t,
            Err(e) => {
                problems.push(Problem::file(path, format!("cannot read: {e}")));
                return None;
            }
        };
        parse_yaml(path, &text, problems)
    }
}

/// `signature:` → a scheme, or a problem at its line naming what cannot be built.
fn compile_signature(
    file: &Path,
    spanned: &Spanned<schema::SignatureFile>,
    problems: &mut Vec<Problem>,
) -> Option<crate::model::signature::SignatureScheme> {
    use crate::model::signature::{Algorithm, Encoding, SignatureScheme, SignedPart};
    let s = &spanned.value;
    let start = problems.len();
    let mut problem = |message: String| problems.push(at(file, spanned, message));
    let algorithm = match s.algorithm.as_str() {
        "hmac-sha1" => Some(Algorithm::HmacSha1),
        "hmac-sha256" => Some(Algorithm::HmacSha256),
        other => {
            problem(format!(
                "signature algorithm `{other}`: use hmac-sha1 or hmac-sha256"
            ));
            None
        }
    };
    let encoding = match s.encoding.as_str() {
        "hex" => Some(Encoding::Hex),
        "base64" => Some(Encoding::Base64),
        other => {
            problem(format!("signature encoding `{other}`: use hex or base64"));
            None
        }
    };
    if axum::http::HeaderName::from_bytes(s.header.as_bytes()).is_err() {
        problem(format!(
            "signature header `{}` is not a valid header name",
            s.header
        ));
    }
    let mut signed = Vec::new();
    for part in &s.signed {
        signed.push(match part {
            schema::SignedPartFile::Named(name) => match name.as_str() {
                "method" => SignedPart::Method,
                "url" => SignedPart::Url,
                "body" => SignedPart::Body,
                "sorted_form_params" => SignedPart::SortedFormParams,
                other => {
                    problem(format!(
                        "signed part `{other}`: use method, url, body, sorted_form_params, {{header: name}} or {{text: \"…\"}}"
                    ));
                    continue;
                }
            },
            schema::SignedPartFile::Header { header } => {
                SignedPart::Header(header.to_ascii_lowercase())
            }
            schema::SignedPartFile::Text { text } => SignedPart::Literal(text.clone()),
        });
    }
    if signed.is_empty() && s.signed.is_empty() {
        problem("signature signs nothing: list its `signed` parts".into());
    }
    let timestamp = match &s.timestamp {
        None => None,
        Some(t) => match humantime::parse_duration(&t.tolerance) {
            Ok(tolerance) if !tolerance.is_zero() => {
                Some((t.header.to_ascii_lowercase(), tolerance))
            }
            _ => {
                problem(format!(
                    "signature timestamp tolerance `{}` is not a duration above 0 like 5m",
                    t.tolerance
                ));
                None
            }
        },
    };
    if problems.len() > start {
        return None;
    }
    Some(SignatureScheme {
        header: s.header.to_ascii_lowercase(),
        algorithm: algorithm?,
        encoding: encoding?,
        prefix: s.prefix.clone(),
        signed,
        timestamp,
        body_digest: s.body_digest.clone(),
    })
}

/// `challenge:` → a challenge, or a problem at its line.
fn compile_challenge(
    file: &Path,
    spanned: &Spanned<schema::ChallengeFile>,
    problems: &mut Vec<Problem>,
) -> Option<crate::model::signature::Challenge> {
    use crate::model::signature::member_path;
    let c = &spanned.value;
    let path = |p: &str, problems: &mut Vec<Problem>| {
        let parsed = member_path(p);
        if parsed.is_none() {
            problems.push(at(
                file,
                spanned,
                format!("challenge path `{p}`: write a member path like $.payload.plainToken"),
            ));
        }
        parsed
    };
    let event = path(&c.event, problems);
    let token = path(&c.token, problems);
    Some(crate::model::signature::Challenge {
        event: event?,
        equals: c.equals.clone(),
        token: token?,
        reply_token: c.reply_token.clone(),
        reply_signed: c.reply_signed.clone(),
    })
}

fn at<T>(file: &Path, spanned: &Spanned<T>, message: String) -> Problem {
    Problem::at(file, spanned.referenced.line(), message)
}

/// Where decode's values are compiled: the vendor's files and tables.
struct DecodeUnit<'a> {
    file: &'a Path,
    tables_file: &'a Path,
    tables: &'a HashMap<String, Arc<Table>>,
    lowercase: bool,
}

fn compile_decoder(
    unit: &DecodeUnit<'_>,
    vendor: &str,
    decode: DecodeFile,
    problems: &mut Vec<Problem>,
) -> Decoder {
    let file = unit.file;
    let env = CompileEnv {
        tables: unit.tables,
        vars: &[],
        lowercase_paths: unit.lowercase,
    };
    let paths = |list: &[Spanned<String>], what: &str, problems: &mut Vec<Problem>| {
        list.iter()
            .filter_map(|p| match env.path(&p.value) {
                Ok(c) => Some(c),
                Err(e) => {
                    problems.push(at(file, p, format!("{what}: {e}")));
                    None
                }
            })
            .collect::<Vec<_>>()
    };
    let detect = paths(&decode.detect, "detect", problems);
    let unwrap = paths(&decode.unwrap, "unwrap", problems);
    if decode.rules.is_empty() {
        problems.push(Problem::file(file, "`rules` is empty"));
    }
    let rules = decode
        .rules
        .iter()
        .map(|rule| compile_rule(unit, rule, problems))
        .collect();
    Decoder {
        vendor: vendor.to_string(),
        lowercase_keys: unit.lowercase,
        detect,
        unwrap,
        rules,
    }
}

fn compile_rule(
    unit: &DecodeUnit<'_>,
    rule: &schema::RuleFile,
    problems: &mut Vec<Problem>,
) -> Rule {
    let file = unit.file;
    let label = |what: &str| format!("rule `{}`: {what}", rule.name);
    let mut var_names: Vec<String> = Vec::new();
    let mut lets = Vec::new();
    for (name, raw) in &rule.let_values {
        let env = CompileEnv {
            tables: unit.tables,
            vars: &var_names,
            lowercase_paths: unit.lowercase,
        };
        match env.compile(&raw.value) {
            Ok(expr) => lets.push(expr),
            Err(e) => {
                problems.push(at(file, raw, label(&format!("let `{name}`: {e}"))));
                lets.push(value::ValueExpr::Literal(Value::Null));
            }
        }
        var_names.push(name.clone());
    }
    let env = CompileEnv {
        tables: unit.tables,
        vars: &var_names,
        lowercase_paths: unit.lowercase,
    };
    let compile = |raw: &Spanned<schema::RawValue>, what: String, problems: &mut Vec<Problem>| {
        env.compile(&raw.value)
            .map_err(|e| problems.push(at(file, raw, label(&format!("{what}: {e}")))))
            .ok()
    };
    let path_at = |p: &Spanned<String>, what: &str, problems: &mut Vec<Problem>| {
        env.path(&p.value)
            .map_err(|e| problems.push(at(file, p, label(&format!("{what}: {e}")))))
            .ok()
    };
    let when: Vec<_> = rule
        .when
        .value
        .0
        .iter()
        .filter_map(|p| {
            env.path(p)
                .map_err(|e| problems.push(at(file, &rule.when, label(&format!("when: {e}")))))
                .ok()
        })
        .collect();
    if rule.when.value.0.is_empty() {
        problems.push(at(
            file,
            &rule.when,
            label("`when` needs at least one path"),
        ));
    }
    let each = rule
        .each
        .as_ref()
        .and_then(|p| path_at(p, "each", problems));
    let event_type = compile(&rule.event_type, "type".into(), problems)
        .unwrap_or(value::ValueExpr::Literal(Value::Null));
    check_constants(
        unit,
        &rule.event_type,
        "type",
        &FieldKind::EventType,
        &event_type,
        &label,
        problems,
    );
    let mut sets = Vec::new();
    for (target, raw) in &rule.set {
        let Some(field) = schema_field(target) else {
            let names: Vec<&str> = model::schema::FIELDS
                .iter()
                .filter(|f| f.settable)
                .map(|f| f.path)
                .collect();
            let hint = model::schema::suggestion(target, names.iter().copied());
            problems.push(at(
                file,
                raw,
                label(&format!(
                    "set: `{target}` is not a canonical field a rule may set{hint} (`callgate schema` lists them)"
                )),
            ));
            continue;
        };
        if let Some(expr) = compile(raw, format!("set `{target}`"), problems) {
            check_constants(
                unit,
                raw,
                &format!("set `{target}`"),
                &field.kind,
                &expr,
                &label,
                problems,
            );
            sets.push((
                target.clone(),
                target.split('.').map(str::to_string).collect(),
                expr,
                model::fields::write(target),
            ));
        }
    }
    let mut keeps = Vec::new();
    for (name, raw) in &rule.keep {
        if name == fidelity::UNMAPPED || name == fidelity::OMITTED {
            problems.push(at(file, raw, label(&format!("keep: `{name}` is reserved"))));
            continue;
        }
        if let Some(expr) = compile(raw, format!("keep `{name}`"), problems) {
            keeps.push((name.clone(), expr));
        }
    }
    let line = rule.when.referenced.line();
    Rule {
        name: rule.name.clone(),
        line: (line > 0).then_some(line),
        when,
        each,
        lets,
        event_type,
        typed: sets.iter().all(|set| set.3.is_some()),
        sets,
        keeps,
        let_names: var_names,
    }
}

/// A canonical field a decode rule may set.
fn schema_field(path: &str) -> Option<&'static model::schema::Field> {
    model::schema::field_at(path).filter(|f| f.settable)
}

/// Every constant a value can yield (a literal, a table value, a default) must fit the
/// canonical field it feeds: a table value is reported at its line in `tables.yaml`.
fn check_constants(
    unit: &DecodeUnit<'_>,
    raw: &Spanned<schema::RawValue>,
    what: &str,
    kind: &FieldKind,
    expr: &value::ValueExpr,
    label: &dyn Fn(&str) -> String,
    problems: &mut Vec<Problem>,
) {
    for (constant, table_line) in expr.constants() {
        if constant.is_null() {
            continue;
        }
        if let Err(e) = kind.admits(&constant) {
            let problem = match table_line {
                Some(line) => Problem::at(
                    unit.tables_file,
                    line,
                    format!(
                        "{e}: this table feeds {what} of rule `{}` in {}:{}",
                        what_rule(label),
                        unit.file.display(),
                        raw.referenced.line()
                    ),
                ),
                None => at(unit.file, raw, label(&format!("{what}: {e}"))),
            };
            if !problems.contains(&problem) {
                problems.push(problem);
            }
        }
    }
}

/// The rule name inside a `label` ("rule `x`: ...").
fn what_rule(label: &dyn Fn(&str) -> String) -> String {
    let text = label("");
    text.trim_start_matches("rule `")
        .split('`')
        .next()
        .unwrap_or_default()
        .to_string()
}

fn compile_encoder(
    files: &Files,
    folder: &Path,
    file: &Path,
    encode: EncodeFile,
    tables: Arc<HashMap<String, Arc<Table>>>,
    problems: &mut Vec<Problem>,
) -> Encoder {
    let (mut json, mut query) = encode::registries(tables.clone());
    let mut templates = Vec::new();
    let content_type = encode
        .content_type
        .unwrap_or_else(|| "application/json".into());
    let form_body = content_type.eq_ignore_ascii_case(encode::FORM_CONTENT_TYPE);
    for t in encode.templates {
        let (rel, kind) = match (&t.body, &t.query) {
            (Some(b), None) => (b, TemplateKind::JsonBody),
            (None, Some(q)) => (q, TemplateKind::Query),
            _ => {
                problems.push(at(
                    file,
                    &t.types,
                    format!(
                        "template for {}: give exactly one of `body` or `query`",
                        t.types.value.join(", ")
                    ),
                ));
                continue;
            }
        };
        if form_body && kind == TemplateKind::JsonBody {
            problems.push(at(
                file,
                rel,
                format!(
                    "content_type {} sends parameters as a form body: templates must be \
                     `query:` (parameter) templates, not `body:` (JSON) ones",
                    encode::FORM_CONTENT_TYPE
                ),
            ));
            continue;
        }
        let types = match typecheck::expand_types(&t.types.value) {
            Ok(types) => types,
            Err(e) => {
                problems.push(at(file, &t.types, e));
                continue;
            }
        };
        // The first template whose types match renders an event: one whose every type an
        // earlier template takes would never render.
        if types.iter().all(|ty| {
            templates.iter().any(|earlier: &EncodeTemplate| {
                earlier.types.iter().any(|p| encode::type_matches(p, ty))
            })
        }) {
            problems.push(at(
                file,
                &t.types,
                format!(
                    "template {}: every type of `types: [{}]` is taken by an earlier template \
                     (the first match renders), so it would never render",
                    rel.value,
                    t.types.value.join(", ")
                ),
            ));
            continue;
        }
        let path = folder.join(&rel.value);
        let source = match files.read(&path) {
            Ok(s) => s,
            Err(e) => {
                problems.push(at(
                    file,
                    rel,
                    format!(
                        "template {}: cannot read {}: {e}",
                        rel.value,
                        path.display()
                    ),
                ));
                continue;
            }
        };
        let registry = if kind == TemplateKind::Query {
            &mut query
        } else {
            &mut json
        };
        if let Err(e) = registry.register_template_string(&rel.value, &source) {
            let problem = match e.pos() {
                Some((line, col)) => {
                    Problem::at(&path, line as u64, e.reason().to_string()).column(col as u64)
                }
                None => Problem::file(&path, e.reason().to_string()),
            };
            problems.push(problem);
            continue;
        }
        let mut reads = Vec::new();
        // A template with problems is refused at load: its plan is never used.
        let mut plan = Err(plan::Unplanned("the template has problems".into()));
        if let Some(parsed) = registry.get_template(&rel.value) {
            let before = problems.len();
            let mut check = typecheck::TemplateCheck {
                file: &path,
                source: &source,
                tables: &tables,
                types: types.clone(),
                problems,
                reads: Default::default(),
            };
            check.run(parsed);
            reads = check.reads.into_inner().into_iter().collect();
            if problems.len() == before {
                plan = planned(parsed, &tables, kind, &rel.value);
            }
        }
        // `path:`: inline, percent-escaped (the query registry), checked like a template;
        // its problems are placed at its line in encode.yaml.
        let url_path = match &t.path {
            None => None,
            Some(spanned) => {
                let name = format!("{}#path", rel.value);
                let text = &spanned.value;
                if !text.starts_with('/') || text.contains(['?', '#']) {
                    problems.push(at(
                        file,
                        spanned,
                        format!(
                            "template {}: path `{text}` must start with / and hold no ? or #",
                            rel.value
                        ),
                    ));
                    None
                } else if let Err(e) = query.register_template_string(&name, text) {
                    problems.push(at(
                        file,
                        spanned,
                        format!("template {}: path: {}", rel.value, e.reason()),
                    ));
                    None
                } else {
                    let start = problems.len();
                    if let Some(parsed) = query.get_template(&name) {
                        let mut found = Vec::new();
                        typecheck::TemplateCheck {
                            file,
                            source: text,
                            tables: &tables,
                            types: types.clone(),
                            problems: &mut found,
                            reads: Default::default(),
                        }
                        .run(parsed);
                        // Inline text: its problems are at the `path:` line of encode.yaml.
                        for p in found {
                            problems.push(at(
                                file,
                                spanned,
                                format!("template {}: path: {}", rel.value, p.message),
                            ));
                        }
                    }
                    (problems.len() == start).then(|| Arc::from(name.as_str()))
                }
            }
        };
        let path_plan = url_path.as_ref().and_then(|name| {
            let parsed = query.get_template(name)?;
            Some(planned(parsed, &tables, TemplateKind::Query, name))
        });
        templates.push(EncodeTemplate {
            types: t.types.value,
            file: rel.value.as_str().into(),
            kind,
            reads: reads.into(),
            path: url_path,
            plan,
            path_plan,
        });
    }

    Encoder {
        vendor: encode.vendor,
        method: encode.method.unwrap_or_else(|| "POST".into()),
        form_body,
        content_type,
        json,
        query,
        templates,
    }
}

/// A checked template's render plan, or `None` (logged) when it uses what plans do not
/// render: `handlebars` renders it then.
fn planned(
    parsed: &handlebars::template::Template,
    tables: &HashMap<String, Arc<Table>>,
    kind: TemplateKind,
    name: &str,
) -> Result<plan::RenderPlan, plan::Unplanned> {
    let escape = match kind {
        TemplateKind::Query => plan::Escape::Percent,
        _ => plan::Escape::Json,
    };
    let planned = plan::RenderPlan::compile(parsed, tables, escape);
    if let Err(plan::Unplanned(why)) = &planned {
        tracing::debug!(
            template = name,
            why,
            "no render plan: handlebars renders it"
        );
    }
    planned
}
