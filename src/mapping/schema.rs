//! The on-disk shapes of a vendor's mapping folder: `vendor.yaml`, `decode.yaml`,
//! `encode.yaml`, `tables.yaml` and `cases/*.yaml`, as serde structs.
//!
//! Everything here is plain data with line numbers (`Spanned`) where a later check may need to
//! point at the file; compiling it into something that runs lives in the sibling modules.

use indexmap::IndexMap;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use serde_saphyr::Spanned;
use std::fmt;

/// `vendor.yaml`: the vendor's id and its transport quirks, as data.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendorFile {
    /// The vendor id; must equal the folder name.
    pub vendor: String,
    /// A one-line human description.
    #[serde(default)]
    pub title: Option<String>,
    /// What the payload is: `json` (default), `params` (query or form parameters, as Oracle
    /// ISR sends) or `canonical` (the CloudEvents event itself).
    #[serde(default)]
    pub payload: PayloadKind,
    /// `exact` (default) or `case_insensitive`: when case-insensitive, every key of the
    /// payload is lower-cased before decoding, so decode paths are written in lower case.
    #[serde(default)]
    pub keys: KeyMatching,
    /// A request carrying this header is a subscription handshake: answered 200 with the
    /// header echoed and no event (RingCentral `Validation-Token`).
    #[serde(default)]
    pub handshake_header: Option<String>,
    /// The header in which the vendor sends the shared verification token
    /// (RingCentral `Verification-Token`).
    #[serde(default)]
    pub verification_header: Option<String>,
    /// An empty request (no body or parameters, or `{}`) is the vendor's connection test:
    /// answered 200 with no event (Vidyo's "Connection test" button). Default false.
    #[serde(default)]
    pub accept_empty: bool,
    /// The event names a SignalR hub of this vendor offers (`AvailableSubscriptions`; Enreach
    /// RTE's event reference). Default: none (the vendor has no hub).
    #[serde(default)]
    pub hub_events: Vec<String>,
    /// What the vendor's `sequence` promises: `monotonic_per_leg` (it rises per call leg, so
    /// an event at or below the last applied one is stale and dropped: RingCentral
    /// `body.sequence`) or `order_only` (default: it orders, never drops — Vidyo's
    /// `sequenceNum`, docs/protocols.md §4.3).
    #[serde(default)]
    pub sequence: SequenceKind,
    /// How soon the sender wants its answer before it gives up on the request (and, for
    /// some, on the address): RingCentral 3 s (a slower webhook address is blacklisted),
    /// Twilio 15 s. A proxy route from this vendor forwards within less. Default: none (the
    /// route's `server.request_timeout` is the budget).
    #[serde(default, deserialize_with = "reply_within")]
    pub reply_within: Option<std::time::Duration>,
    /// How the vendor signs its requests; a route from it verifies with
    /// `auth: { signature: { secret } }`. Default: none.
    #[serde(default)]
    pub signature: Option<Spanned<SignatureFile>>,
    /// A challenge the vendor sends to validate an endpoint, answered without producing an
    /// event (Zoom's `endpoint.url_validation`). Default: none.
    #[serde(default)]
    pub challenge: Option<Spanned<ChallengeFile>>,
    /// A query parameter whose presence makes a request a validation, answered 200
    /// `text/plain` with its value and no event (Microsoft Graph's `validationToken`).
    #[serde(default)]
    pub validation_query: Option<String>,
}

/// `signature:` in `vendor.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureFile {
    /// The header carrying the signature.
    pub header: String,
    /// `hmac-sha1` or `hmac-sha256`.
    pub algorithm: String,
    /// `hex` or `base64`.
    pub encoding: String,
    /// Text before the encoded MAC (`v0=`). Default: none.
    #[serde(default)]
    pub prefix: String,
    /// The signed string's parts in order: `method`, `url`, `body`, `sorted_form_params`,
    /// `{header: name}` or `{text: "v0:"}`.
    pub signed: Vec<SignedPartFile>,
    /// The header with the signing time (Unix seconds) and how far from now it may be.
    #[serde(default)]
    pub timestamp: Option<TimestampFile>,
    /// A query parameter carrying the hex SHA-256 of the body when the sender signs a body
    /// that has no form parameters (Twilio's `bodySHA256`).
    #[serde(default)]
    pub body_digest: Option<String>,
}

/// One part of a signed string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SignedPartFile {
    /// `method`, `url`, `body` or `sorted_form_params`.
    Named(String),
    /// `{header: name}`.
    Header {
        /// The header.
        header: String,
    },
    /// `{text: "v0:"}`.
    Text {
        /// The text.
        text: String,
    },
}

/// `signature.timestamp`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampFile {
    /// The header.
    pub header: String,
    /// How far from now, either way (`5m`).
    pub tolerance: String,
}

/// `challenge:` in `vendor.yaml`: a request whose `event` path holds `equals` is a challenge;
/// the reply is `{<reply_token>: token, <reply_signed>: hex HMAC-SHA256(route secret, token)}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeFile {
    /// Where the event name is (`$.event`).
    pub event: String,
    /// The event name that makes a challenge.
    pub equals: String,
    /// Where the token is (`$.payload.plainToken`).
    pub token: String,
    /// The reply's member holding the token.
    pub reply_token: String,
    /// The reply's member holding the signed token.
    pub reply_signed: String,
}

/// `reply_within`: a humantime duration above zero (`3s`, `1500ms`).
fn reply_within<'de, D: Deserializer<'de>>(d: D) -> Result<Option<std::time::Duration>, D::Error> {
    let text = String::deserialize(d)?;
    match humantime::parse_duration(text.trim()) {
        Ok(d) if !d.is_zero() => Ok(Some(d)),
        Ok(_) => Err(de::Error::custom("reply_within must be above 0")),
        Err(e) => Err(de::Error::custom(format!(
            "`{text}` is not a duration like 3s or 1500ms: {e}"
        ))),
    }
}

/// What a vendor's `sequence` field promises.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SequenceKind {
    /// It orders events; it never makes one stale.
    #[default]
    OrderOnly,
    /// It rises per call leg: an event at or below the last applied one is stale.
    MonotonicPerLeg,
}

/// The shape of a vendor's payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadKind {
    /// A JSON document.
    #[default]
    Json,
    /// URL query or form parameters, decoded as a JSON object of strings.
    Params,
    /// A CloudEvents 1.0 structured event: decoded and encoded by serde, no templates.
    Canonical,
}

/// How payload keys are matched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyMatching {
    /// Keys must match exactly.
    #[default]
    Exact,
    /// Keys match whatever their case (Enreach sends PascalCase and camelCase).
    CaseInsensitive,
}

/// `decode.yaml`: how a vendor payload becomes canonical events.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecodeFile {
    /// The vendor id; must equal the folder name.
    pub vendor: String,
    /// Shape tests used by `--from auto`: the payload is this vendor's when any path matches.
    #[serde(default)]
    pub detect: Vec<Spanned<String>>,
    /// Wrappers to look through: when a path matches an object, rules read that object as
    /// the root (RingCentral `pn_apns`, the Enreach `MessageReceived` envelope's `data`).
    #[serde(default)]
    pub unwrap: Vec<Spanned<String>>,
    /// Rules tried in order; the first whose `when` paths all match decodes the payload.
    pub rules: Vec<RuleFile>,
}

/// One decode rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// Names the rule in errors and logs.
    pub name: String,
    /// JSONPaths that must all match for the rule to apply (one path or a list).
    pub when: Spanned<OneOrMany<String>>,
    /// One event per node this path selects; `@` paths then read that node.
    #[serde(default)]
    pub each: Option<Spanned<String>>,
    /// Named values computed first, in order, readable later as `{ var: name }`.
    #[serde(default, rename = "let")]
    pub let_values: IndexMap<String, Spanned<RawValue>>,
    /// The canonical `type`: a literal or a value (usually a table lookup).
    #[serde(rename = "type")]
    pub event_type: Spanned<RawValue>,
    /// Canonical field (dotted path, a settable field of `model::schema::FIELDS`, as
    /// docs/canonical-model.md lists them) → value.
    #[serde(default)]
    pub set: IndexMap<String, Spanned<RawValue>>,
    /// Name → value copied into `data.extensions.<name>`.
    #[serde(default)]
    pub keep: IndexMap<String, Spanned<RawValue>>,
}

/// How a value is computed during decode. Written as a plain string (a JSONPath when it
/// starts with `$` or `@`, else a literal), a YAML number or bool (a literal), or a map.
#[derive(Debug, Clone)]
pub enum RawValue {
    /// A JSONPath.
    Path(String),
    /// A literal.
    Literal(Value),
    /// A computed value.
    Spec(Box<ValueSpec>),
}

/// The map form of a value: exactly one source (`path`, `all`, `key`, `value`, `concat`,
/// `coalesce`, `eq`, `if`, `hash`, `var`), then optionally `table`, `convert` and `default`, in that order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueSpec {
    /// One JSONPath, or several whose values are joined with `/` into one table key.
    #[serde(default)]
    pub path: Option<OneOrMany<String>>,
    /// Every node a JSONPath selects, as an array (absent when it selects nothing).
    #[serde(default)]
    pub all: Option<String>,
    /// Several values as text joined with `/` into one table key (a missing part is empty).
    #[serde(default)]
    pub key: Option<Vec<RawValue>>,
    /// A literal.
    #[serde(default)]
    pub value: Option<Value>,
    /// These values as text, joined; absent when any of them is absent.
    #[serde(default)]
    pub concat: Option<Vec<RawValue>>,
    /// The first of these values that is present and not null.
    #[serde(default)]
    pub coalesce: Option<Vec<RawValue>>,
    /// `true` when both values are equal as text (both absent counts as equal).
    #[serde(default)]
    pub eq: Option<Vec<RawValue>>,
    /// A condition: `then` when it is true (or non-empty text other than `false`), else `else`.
    #[serde(default, rename = "if")]
    pub if_value: Option<Box<RawValue>>,
    /// The value when `if` holds.
    #[serde(default)]
    pub then: Option<Box<RawValue>>,
    /// The value when `if` does not hold (absent when not given).
    #[serde(default, rename = "else")]
    pub else_value: Option<Box<RawValue>>,
    /// A stable id: hex SHA-256 of these paths' values.
    #[serde(default)]
    pub hash: Option<Vec<String>>,
    /// A value computed in the rule's `let`.
    #[serde(default)]
    pub var: Option<String>,
    /// Look the value (or the `/`-joined values) up in this table of `tables.yaml`.
    #[serde(default)]
    pub table: Option<String>,
    /// Convert the value: `time`, `string`, `number`, `lower`, `upper`, `list`.
    #[serde(default)]
    pub convert: Option<Convert>,
    /// The format(s) of a `convert: time` value, tried in order: `rfc3339` (the default),
    /// `rfc2822` (`Fri, 04 Dec 2026 16:09:00 +0000`), `epoch_s`, `epoch_ms`, `epoch_us`, or a
    /// chrono strftime pattern (`"%Y-%m-%d %H:%M:%S%.f"`; without an offset it is read as UTC).
    #[serde(default)]
    pub format: Option<OneOrMany<String>>,
    /// Used when the value is absent or null.
    #[serde(default)]
    pub default: Option<Value>,
}

/// A conversion applied to a decoded value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Convert {
    /// To RFC 3339 UTC, from the declared `format` (default `rfc3339`); a value that does not
    /// parse is a decode error naming the field, the value and the format.
    Time,
    /// To a JSON string.
    String,
    /// To a JSON number.
    Number,
    /// To lower case.
    Lower,
    /// To upper case.
    Upper,
    /// To an array: a scalar becomes a one-element array, an array stays as it is.
    List,
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RawVisitor;
        impl<'de> Visitor<'de> for RawVisitor {
            type Value = RawValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSONPath, a literal, or a map such as { path: ..., table: ... }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawValue, E> {
                Ok(if v.starts_with('$') || v.starts_with('@') {
                    RawValue::Path(v.to_string())
                } else {
                    RawValue::Literal(Value::String(v.to_string()))
                })
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawValue, E> {
                Ok(RawValue::Literal(Value::Bool(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawValue, E> {
                Ok(RawValue::Literal(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawValue, E> {
                Ok(RawValue::Literal(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawValue, E> {
                Ok(RawValue::Literal(v.into()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<RawValue, E> {
                Ok(RawValue::Literal(Value::Null))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawValue, A::Error> {
                ValueSpec::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|spec| RawValue::Spec(Box::new(spec)))
            }
        }
        d.deserialize_any(RawVisitor)
    }
}

/// One item or a list of them.
#[derive(Debug, Clone)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        OneOrMany(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ManyVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ManyVisitor<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("one value or a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(OneOrMany(items))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::deserialize(de::value::StrDeserializer::new(v)).map(|t| OneOrMany(vec![t]))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|t| OneOrMany(vec![t]))
            }
        }
        d.deserialize_any(ManyVisitor(std::marker::PhantomData))
    }
}

/// `encode.yaml`: how canonical events become this vendor's requests.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodeFile {
    /// The vendor id; must equal the folder name.
    pub vendor: String,
    /// The request's `Content-Type` for `body` templates; default `application/json`.
    #[serde(default)]
    pub content_type: Option<String>,
    /// The HTTP method; default `POST`.
    #[serde(default)]
    pub method: Option<String>,
    /// Templates tried in order; the first whose `types` match the event's type renders it.
    pub templates: Vec<TemplateFile>,
}

/// One template of `encode.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateFile {
    /// Canonical types this template renders: exact names or prefixes ending in `*`; each
    /// must match at least one canonical type (or be a `vendor.<vendor>.` pattern).
    pub types: Spanned<Vec<String>>,
    /// A JSON body template, relative to the vendor folder; `{{x}}` is JSON-string-escaped.
    #[serde(default)]
    pub body: Option<Spanned<String>>,
    /// A parameters template, relative to the vendor folder: one `name=value` per line,
    /// `{{x}}` percent-encoded (UTF-8); blank lines are dropped. Sent in the URL query, or as
    /// the request body when the encoder's `content_type` is
    /// `application/x-www-form-urlencoded`.
    #[serde(default)]
    pub query: Option<Spanned<String>>,
    /// A path template appended to the destination's URL, inline (`"/users/{{table
    /// \"teams_users\" data.user.id}}/presence/setPresence"`): `{{x}}` percent-encoded, so a
    /// value never adds a `/`, `?` or `#`. Checked against the canonical model like templates.
    #[serde(default)]
    pub path: Option<Spanned<String>>,
}

/// `tables.yaml`: named lookup tables.
pub type TablesFile = IndexMap<String, TableFile>;

/// One lookup table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableFile {
    /// Key → value, tried in file order for keys containing `*` (matches any text within
    /// one `/`-separated part); exact keys win. Values keep their line for error reports.
    #[serde(default)]
    pub map: IndexMap<ScalarKey, Spanned<Value>>,
    /// The entries come from the directory of this name, a file the configuration names
    /// (`directories:`); a key it lacks skips the destination (mapping/directory.rs).
    #[serde(default)]
    pub directory: Option<Spanned<String>>,
    /// The value when no key matches; without it the lookup yields nothing.
    #[serde(default)]
    pub default: Option<Spanned<Value>>,
    /// Compare keys ignoring ASCII case.
    #[serde(default)]
    pub ignore_case: bool,
}

/// A map key written as any YAML scalar (`0:`, `true:`, `Setup:`), kept as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScalarKey(pub String);

impl<'de> Deserialize<'de> for ScalarKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(ScalarKey(s)),
            Value::Number(n) => Ok(ScalarKey(n.to_string())),
            Value::Bool(b) => Ok(ScalarKey(b.to_string())),
            Value::Null => Ok(ScalarKey(String::new())),
            other => Err(de::Error::custom(format!(
                "a table key must be a scalar, found {other}"
            ))),
        }
    }
}

/// `cases/*.yaml`: one mapping test.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// What the case shows; defaults to the file name.
    #[serde(default)]
    pub name: Option<String>,
    /// Source vendor id (or `auto`).
    pub from: String,
    /// Target vendor id.
    pub to: String,
    /// A file path relative to the case file, an inline payload, or a list of either (sent in
    /// order through one lifecycle tracker).
    pub input: Value,
    /// What the outputs must be: a map (JSONPath → expected value; `null`: absent or null) when
    /// the input makes exactly one output, or a list of such maps, one per output in order.
    /// Required unless `outputs: 0`; an empty map is refused (it would check nothing).
    #[serde(default)]
    pub expect: Option<OneOrMany<IndexMap<String, Value>>>,
    /// How many outputs the whole input must produce (0: the target skips every event).
    #[serde(default)]
    pub outputs: Option<usize>,
    /// Entries of the target's directory tables for this case: `{name: {key: value}}`.
    #[serde(default)]
    pub directories: std::collections::HashMap<String, std::collections::HashMap<String, Value>>,
}
