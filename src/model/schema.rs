//! The canonical schema: every field of a [`CallEvent`](super::event::CallEvent) as data —
//! dotted path, value type, unit, allowed values — so mappings are compiled against it, `callgate
//! schema` prints it and `docs/canonical-model.md` is generated from it (docs/canonical-model.md).
//!
//! The list is checked against the serde shape of `CallEvent` by a unit test: a field added to
//! the struct and not here (or the reverse) fails it.

use super::event::CANONICAL_TYPES;
use serde_json::{Map, Value, json};

/// What a canonical field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Free text (numbers from the vendor are kept as their text).
    Text,
    /// A time: RFC 3339 in UTC (`2026-12-04T16:09:00Z`).
    Time,
    /// A number.
    Number,
    /// `true` or `false`.
    Bool,
    /// A list of texts.
    TextList,
    /// One of a closed set of names.
    Enum(&'static [&'static str]),
    /// A canonical event type: one of [`CANONICAL_TYPES`] or `vendor.<vendor>.<EventName>`.
    EventType,
}

impl FieldKind {
    /// The kind's name as `callgate schema` prints it.
    pub fn name(&self) -> &'static str {
        match self {
            FieldKind::Text => "text",
            FieldKind::Time => "time",
            FieldKind::Number => "number",
            FieldKind::Bool => "bool",
            FieldKind::TextList => "list of text",
            FieldKind::Enum(_) => "enum",
            FieldKind::EventType => "event type",
        }
    }

    /// The closed set of values, for enums and booleans.
    pub fn domain(&self) -> Option<Vec<&'static str>> {
        match self {
            FieldKind::Enum(values) => Some(values.to_vec()),
            FieldKind::Bool => Some(vec!["true", "false"]),
            _ => None,
        }
    }

    /// Whether `value` (as a decode table or literal writes it) fits this kind; the error says
    /// what is allowed.
    pub fn admits(&self, value: &Value) -> Result<(), String> {
        let text = match value {
            Value::String(s) => Some(s.as_str()),
            _ => None,
        };
        match self {
            FieldKind::Enum(values) => match text {
                Some(t) if values.contains(&t) => Ok(()),
                _ => Err(format!(
                    "{value} is not one of {}{}",
                    values.join(", "),
                    suggestion(&value_text(value), values.iter().copied())
                )),
            },
            FieldKind::EventType => match text {
                Some(t) if is_event_type(t) => Ok(()),
                _ => Err(format!(
                    "{value} is not a canonical type (one of {}, or vendor.<vendor>.<EventName>){}",
                    CANONICAL_TYPES.join(", "),
                    suggestion(&value_text(value), CANONICAL_TYPES.iter().copied())
                )),
            },
            FieldKind::Bool => match value {
                Value::Bool(_) => Ok(()),
                Value::String(s) if s == "true" || s == "false" => Ok(()),
                _ => Err(format!("{value} is not true or false")),
            },
            FieldKind::Number => match value {
                Value::Number(_) => Ok(()),
                Value::String(s) if s.trim().parse::<f64>().is_ok() => Ok(()),
                _ => Err(format!("{value} is not a number")),
            },
            FieldKind::Time => match text {
                Some(t) if chrono::DateTime::parse_from_rfc3339(t).is_ok() => Ok(()),
                _ => Err(format!("{value} is not an RFC 3339 time")),
            },
            FieldKind::Text | FieldKind::TextList => Ok(()),
        }
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Whether `name` is a canonical type: one of [`CANONICAL_TYPES`] or `vendor.<vendor>.<Event>`.
pub fn is_event_type(name: &str) -> bool {
    CANONICAL_TYPES.contains(&name)
        || name
            .strip_prefix("vendor.")
            .and_then(|rest| rest.split_once('.'))
            .is_some_and(|(vendor, event)| !vendor.is_empty() && !event.is_empty())
}

/// One canonical field.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Dotted path from the event's root, as mappings write it (`data.call.reason`).
    pub path: &'static str,
    /// What it holds.
    pub kind: FieldKind,
    /// The unit of a number or the form of a text, when it has one.
    pub unit: Option<&'static str>,
    /// What it means, and the vendor fields it usually comes from.
    pub doc: &'static str,
    /// Whether a decode rule may `set` it (the rest are filled by callgate).
    pub settable: bool,
}

const fn field(path: &'static str, kind: FieldKind, doc: &'static str) -> Field {
    Field {
        path,
        kind,
        unit: None,
        doc,
        settable: true,
    }
}

const fn with_unit(mut f: Field, unit: &'static str) -> Field {
    f.unit = Some(unit);
    f
}

const fn filled(mut f: Field) -> Field {
    f.settable = false;
    f
}

use FieldKind::{Bool, EventType, Number, Text, TextList, Time};

/// `data.call.direction`: from the monitored user's side.
pub const DIRECTIONS: &[&str] = &["inbound", "outbound"];
/// `data.call.state` (docs/canonical-model.md).
pub const CALL_STATES: &[&str] = &[
    "initiated",
    "ringing",
    "alerting",
    "connected",
    "held",
    "parked",
    "ended",
];
/// `data.call.reason`, on `call.ended` (docs/canonical-model.md).
pub const END_REASONS: &[&str] = &[
    "completed",
    "completed_local",
    "completed_remote",
    "no_answer",
    "rejected",
    "busy",
    "cancelled",
    "missed",
    "voicemail",
    "forwarded",
    "transferred",
    "picked_up_elsewhere",
    "terminated_by_moderator",
    "failed",
    "unknown",
];
/// `data.user.presence`, on `presence.changed` (docs/canonical-model.md).
pub const PRESENCES: &[&str] = &["available", "busy", "dnd", "away", "offline"];

/// Every canonical field, in the order `callgate schema` prints them. Groups (`data.call`,
/// `data.user`, ...) are the prefixes of these paths; `data.extensions` is an open object.
pub const FIELDS: &[Field] = &[
    filled(field(
        "specversion",
        Text,
        "CloudEvents `specversion`: always `1.0`.",
    )),
    field(
        "id",
        Text,
        "CloudEvents `id`: the vendor's event id (RingCentral `uuid`, Enreach `Id`, Vidyo `sequenceNum`, Twilio `CallSid` + `SequenceNumber`), else a stable hash of the payload; `source` + `id` is unique per event.",
    ),
    field(
        "source",
        Text,
        "CloudEvents `source`: `/vendors/<vendor>/...`, with the tenant when known.",
    ),
    field(
        "type",
        EventType,
        "CloudEvents `type`: `call.*`, `presence.changed`, `conference.ended`, `recording.*` or `vendor.<vendor>.<EventName>`.",
    ),
    with_unit(
        field(
            "time",
            Time,
            "CloudEvents `time`: when the vendor says the event happened.",
        ),
        "RFC 3339, UTC",
    ),
    field(
        "subject",
        Text,
        "CloudEvents `subject`: the call id for call events, the user id for presence; filled from them when not set.",
    ),
    field(
        "sequence",
        Text,
        "CloudEvents `sequence` extension: the vendor's ordering number as decimal text (RingCentral `body.sequence`, Vidyo `sequenceNum`, Twilio `SequenceNumber`).",
    ),
    field(
        "partitionkey",
        Text,
        "CloudEvents `partitionkey` extension, the ordering key: events with the same key reach a destination in order. The call id for call events, the user id for presence; filled from them when not set.",
    ),
    filled(field(
        "datacontenttype",
        Text,
        "CloudEvents `datacontenttype`: `application/json`.",
    )),
    filled(field(
        "data.vendor",
        Text,
        "The vendor id the event was decoded from (the mappings folder name).",
    )),
    field(
        "data.vendor_event",
        Text,
        "The vendor's own name for the event (RingCentral `event` path, Enreach `EventType`, Oracle ISR `event`, EnableX `type`, Twilio `CallStatus`).",
    ),
    field(
        "data.tenant",
        Text,
        "Account, tenant or organisation id (RingCentral `accountId`, Vidyo `tenantName`, Enreach `OrganizationId`, EnableX `app_id`, Twilio `AccountSid`).",
    ),
    field(
        "data.call.id",
        Text,
        "The call or session id (RingCentral `telephonySessionId`, Vidyo `uniqueCallID`, Enreach `CallId`, Twilio `ParentCallSid` or `CallSid`).",
    ),
    field(
        "data.call.leg_id",
        Text,
        "The leg or party id (RingCentral party `id`, Enreach `LegId`, Vidyo `participantId`, Twilio `CallSid`).",
    ),
    field(
        "data.call.direction",
        FieldKind::Enum(DIRECTIONS),
        "Direction from the monitored user's side.",
    ),
    field(
        "data.call.state",
        FieldKind::Enum(CALL_STATES),
        "The state this event moves the call into; filled from `type` when not set.",
    ),
    field(
        "data.call.reason",
        FieldKind::Enum(END_REASONS),
        "Why the call ended (on `call.ended`).",
    ),
    field(
        "data.call.vendor_reason",
        Text,
        "The vendor's own reason text (RingCentral `status.reason`, Enreach `Reason`).",
    ),
    field(
        "data.call.from.number",
        Text,
        "The calling party's number or SIP address.",
    ),
    field(
        "data.call.from.name",
        Text,
        "The calling party's display name.",
    ),
    field(
        "data.call.from.user_id",
        Text,
        "The calling party's user or extension id, when it is a user of the platform.",
    ),
    field(
        "data.call.to.number",
        Text,
        "The called party's number or SIP address.",
    ),
    field(
        "data.call.to.name",
        Text,
        "The called party's display name.",
    ),
    field(
        "data.call.to.user_id",
        Text,
        "The called party's user or extension id, when it is a user of the platform.",
    ),
    field(
        "data.user.id",
        Text,
        "The monitored user's id (RingCentral extension id, Vidyo `memberID`, Enreach `UserId`).",
    ),
    field(
        "data.user.login",
        Text,
        "Login name (Vidyo `userName`, Enreach `UserName`).",
    ),
    field(
        "data.user.display_name",
        Text,
        "Display name (Vidyo `displayName`, RingCentral party `name`).",
    ),
    field("data.user.extension", Text, "Extension number."),
    field(
        "data.user.presence",
        FieldKind::Enum(PRESENCES),
        "Presence, on `presence.changed` (required there).",
    ),
    field(
        "data.user.on_call",
        Bool,
        "The user is on a call (RingCentral `telephonyStatus` ≠ `NoCall`).",
    ),
    field(
        "data.user.in_meeting",
        Bool,
        "The user is in a meeting (RingCentral `meetingStatus` = `Connected`).",
    ),
    field(
        "data.user.wrap_up",
        Bool,
        "The user is in after-call wrap-up (Enreach `UserWrapUp*`).",
    ),
    field(
        "data.conference.id",
        Text,
        "Conference id (Vidyo `conferenceID`, EnableX `conf_num`).",
    ),
    field(
        "data.conference.name",
        Text,
        "Conference name (Vidyo `conferenceName`).",
    ),
    field(
        "data.conference.type",
        Text,
        "Conference kind, vendor-coded (Vidyo `conferenceType`: D, C, ID, IC).",
    ),
    field(
        "data.conference.room.id",
        Text,
        "Room id (Vidyo `roomID`, EnableX `room_id`).",
    ),
    field(
        "data.conference.room.name",
        Text,
        "Room name (Vidyo `roomName`).",
    ),
    field(
        "data.conference.room.display_name",
        Text,
        "Room display name (Vidyo `roomDisplayName`).",
    ),
    field(
        "data.endpoint.type",
        Text,
        "Endpoint kind, vendor-coded (Vidyo `endpointType`: R, D, G, ...).",
    ),
    field(
        "data.endpoint.ip",
        Text,
        "Public IP address (Vidyo `endpointPublicIPAddress`).",
    ),
    field(
        "data.endpoint.guid",
        Text,
        "Endpoint GUID (Vidyo `endpointGUID`).",
    ),
    field(
        "data.endpoint.application",
        Text,
        "Application name (Vidyo `applicationName`).",
    ),
    field(
        "data.endpoint.version",
        Text,
        "Application version (Vidyo `applicationVersion`).",
    ),
    field(
        "data.endpoint.os",
        Text,
        "Operating system (Vidyo `applicationOs`).",
    ),
    field(
        "data.endpoint.device",
        Text,
        "Device model (Vidyo `deviceModel`).",
    ),
    field(
        "data.recording.id",
        Text,
        "Recording id (Oracle ISR `RECORDING_ID`, else `TMP_RECORDING_ID`; Enreach `RecordingId`).",
    ),
    field(
        "data.recording.segment_id",
        Text,
        "Segment id (Oracle ISR `SEGMENT_ID`, else `TMP_SEGMENT_ID`).",
    ),
    field(
        "data.recording.file",
        Text,
        "File name on the recorder (Oracle ISR `FILENAME`).",
    ),
    field(
        "data.recording.urls",
        TextList,
        "URLs where the recording can be fetched (EnableX `recording`, `files[].url`).",
    ),
    with_unit(
        field(
            "data.recording.started_at",
            Time,
            "Recording start (Oracle ISR `START_TIME`).",
        ),
        "RFC 3339, UTC",
    ),
    with_unit(
        field(
            "data.recording.ended_at",
            Time,
            "Recording end (Oracle ISR `END_TIME`).",
        ),
        "RFC 3339, UTC",
    ),
    with_unit(
        field(
            "data.recording.duration_s",
            Number,
            "Recording length (Oracle ISR `DURATION`).",
        ),
        "seconds",
    ),
    with_unit(
        field(
            "data.recording.paused_s",
            Number,
            "Time spent paused (Oracle ISR `PAUSE_LENGTH`).",
        ),
        "seconds",
    ),
    field(
        "data.recording.result",
        Text,
        "Outcome as the vendor states it (Oracle ISR `RESULT`).",
    ),
    field(
        "data.recording.variant",
        Text,
        "What kind of file became available: `recorded`, `transcoded`, `transferred`.",
    ),
    field("data.queue.id", Text, "Queue id (Enreach `QueueId`)."),
    field("data.queue.name", Text, "Queue name (Enreach `QueueName`)."),
    field(
        "data.callback.id",
        Text,
        "Callback request id (Enreach `CallbackId`).",
    ),
];

/// The open object of vendor fields the model has no place for (`keep` entries, and the
/// fidelity residual `unmapped` / `omitted`).
pub const EXTENSIONS: &str = "data.extensions";

/// A field by its dotted path.
pub fn field_at(path: &str) -> Option<&'static Field> {
    FIELDS.iter().find(|f| f.path == path)
}

/// Whether `path` names an object group of the event (`data`, `data.call`, `data.call.from`,
/// ...): the prefix of some field's path.
pub fn is_group(path: &str) -> bool {
    path == "data"
        || path == EXTENSIONS
        || FIELDS.iter().any(|f| {
            f.path
                .strip_prefix(path)
                .is_some_and(|rest| rest.starts_with('.'))
        })
}

/// What a template or decode rule may name: a field, a group, or something under
/// `data.extensions`.
pub fn is_readable(path: &str) -> bool {
    field_at(path).is_some()
        || is_group(path)
        || path
            .strip_prefix(EXTENSIONS)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// " (did you mean `x`?)" for the candidate nearest to `name`, or nothing when none is near.
pub fn suggestion<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    nearest(name, candidates)
        .map(|n| format!(" (did you mean `{n}`?)"))
        .unwrap_or_default()
}

/// The candidate nearest to `name` by edit distance, if it is near enough to be a typo.
pub fn nearest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(2);
    candidates
        .map(|c| (strsim::levenshtein(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Every readable name: fields and groups, for suggestions.
pub fn readable_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = FIELDS.iter().map(|f| f.path).collect();
    for f in FIELDS {
        let mut at = 0;
        while let Some(dot) = f.path[at..].find('.') {
            let group = &f.path[..at + dot];
            if !names.contains(&group) {
                names.push(group);
            }
            at += dot + 1;
        }
    }
    names.push(EXTENSIONS);
    names
}

/// The canonical model as a JSON Schema (draft 2020-12) of the CloudEvents structured form.
pub fn json_schema() -> Value {
    let mut root = object_schema();
    for f in FIELDS {
        let mut node = &mut root;
        let parts: Vec<&str> = f.path.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            let properties = node["properties"]
                .as_object_mut()
                .expect("object_schema has properties");
            node = properties
                .entry(part.to_string())
                .or_insert_with(object_schema);
        }
        let mut leaf = match f.kind {
            Text => json!({ "type": "string" }),
            Time => json!({ "type": "string", "format": "date-time" }),
            Number => json!({ "type": "number" }),
            Bool => json!({ "type": "boolean" }),
            TextList => json!({ "type": "array", "items": { "type": "string" } }),
            FieldKind::Enum(values) => json!({ "type": "string", "enum": values }),
            EventType => json!({
                "type": "string",
                "anyOf": [ { "enum": CANONICAL_TYPES }, { "pattern": "^vendor\\.[^.]+\\..+$" } ]
            }),
        };
        let mut description = f.doc.to_string();
        if let Some(unit) = f.unit {
            description.push_str(&format!(" Unit: {unit}."));
        }
        leaf["description"] = Value::String(description);
        node["properties"][parts[parts.len() - 1]] = leaf;
    }
    root["properties"]["data"]["properties"]["extensions"] = json!({
        "type": "object",
        "description": "Vendor fields the model has no place for: `keep` entries by name; `unmapped` (JSON Pointer → value) and `omitted` (JSON Pointers) let re-encoding to the same vendor reproduce the original."
    });
    root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    root["title"] = json!("callgate canonical event (CloudEvents 1.0, structured JSON)");
    root["required"] = json!(["specversion", "id", "source", "type", "data"]);
    root["properties"]["data"]["required"] = json!(["vendor"]);
    root
}

/// The canonical model as a Markdown reference for editors of mapping files (what `callgate
/// schema` prints and `docs/canonical-model.md` holds). `setters` maps a field path to the
/// vendors whose `decode.yaml` sets it.
pub fn markdown(setters: &std::collections::BTreeMap<String, Vec<String>>) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    out.push_str(
        "# The canonical model\n\n\
         Generated by `callgate schema` from the code (`src/model/schema.rs`); a test keeps this \
         file current. Every vendor payload is decoded into one canonical event, a CloudEvents 1.0 \
         event in structured JSON, and every output is rendered from one. Decode rules `set` these \
         paths; templates read them (`{{data.call.id}}`). A mapping that names anything else is \
         refused by `callgate check` with the nearest valid name. `callgate schema --json-schema` \
         prints the same model as JSON Schema.\n\n\
         Absent values are left out, never written as `null`. Times are RFC 3339 in UTC.\n\n",
    );
    out.push_str("| field | type | unit / values | set by | meaning |\n|---|---|---|---|---|\n");
    for f in FIELDS {
        let values = match f.kind {
            FieldKind::Enum(values) => values.join(", "),
            FieldKind::EventType => "see Types".into(),
            _ => f.unit.unwrap_or("").to_string(),
        };
        let set_by = if f.settable {
            setters
                .get(f.path)
                .map(|v| v.join(", "))
                .unwrap_or_default()
        } else {
            "callgate".into()
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            f.path,
            f.kind.name(),
            values,
            set_by,
            f.doc.replace('|', "\\|")
        );
    }
    let _ = writeln!(
        out,
        "| `{EXTENSIONS}` | object | | callgate, `keep` | Vendor fields the model has no place for: `keep` entries by name; `unmapped` and `omitted` let re-encoding to the same vendor reproduce the original. |"
    );
    out.push_str("\n## Types\n\n`type` is one of these, or `vendor.<vendor>.<EventName>` for a vendor event with no cross-vendor meaning (delivered to its own vendor and to `cloudevents` only). A `call.*` type fills `data.call.state` when a rule does not set it.\n\n| type | `data.call.state` |\n|---|---|\n");
    for t in CANONICAL_TYPES {
        let state = super::event::CallState::for_type(t)
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "—".into());
        let _ = writeln!(out, "| `{t}` | {state} |");
    }
    out.push_str("\n## Where a field is filled when a rule does not set it\n\n\
        - `source`: `/vendors/<vendor>`; `id`: a stable hash of the payload (and of the `each` item);\n\
        - `subject` and `partitionkey`: `data.call.id`, else `data.user.id`;\n\
        - `data.call.state`: from `type` (table above); `datacontenttype`: `application/json`.\n");
    out
}

fn object_schema() -> Value {
    json!({ "type": "object", "properties": Map::new() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::{CallEvent, CallState, Direction, EndReason, Presence};

    /// Every leaf of a JSON value as a dotted path.
    fn leaves(prefix: &str, value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    if path == EXTENSIONS {
                        continue;
                    }
                    leaves(&path, v, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }

    /// A `CallEvent` with every field present, built from the schema itself: if serde refuses
    /// a path or drops one, the schema and the struct disagree.
    #[test]
    fn the_schema_is_exactly_the_serde_shape_of_call_event() {
        let mut event = json!({});
        for f in FIELDS {
            let sample = match f.kind {
                Text => json!("x"),
                Time => json!("2026-12-04T16:09:00Z"),
                Number => json!(1.5),
                Bool => json!(true),
                TextList => json!(["x"]),
                FieldKind::Enum(values) => json!(values[0]),
                EventType => json!("call.ended"),
            };
            let mut node = &mut event;
            for part in f.path.split('.') {
                node = &mut node[part];
            }
            *node = sample;
        }
        let parsed: CallEvent = serde_json::from_value(event.clone()).expect("schema fits");
        let back = serde_json::to_value(&parsed).unwrap();
        let mut theirs = Vec::new();
        leaves("", &back, &mut theirs);
        let mut ours: Vec<String> = FIELDS.iter().map(|f| f.path.to_string()).collect();
        theirs.sort();
        ours.sort();
        assert_eq!(theirs, ours);
    }

    #[test]
    fn enum_domains_are_the_serde_names_of_the_enums() {
        fn names<T: serde::Serialize>(all: &[T]) -> Vec<String> {
            all.iter()
                .map(|v| {
                    serde_json::to_value(v)
                        .unwrap()
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect()
        }
        assert_eq!(names(Direction::ALL), DIRECTIONS);
        assert_eq!(names(CallState::ALL), CALL_STATES);
        assert_eq!(names(EndReason::ALL), END_REASONS);
        assert_eq!(names(Presence::ALL), PRESENCES);
    }

    #[test]
    fn typos_get_the_nearest_name() {
        let names = readable_names();
        assert_eq!(
            nearest("data.user.dispaly_name", names.iter().copied()),
            Some("data.user.display_name")
        );
        assert_eq!(
            nearest("data.conferense.room", names.iter().copied()),
            Some("data.conference.room")
        );
        assert_eq!(nearest("zzzzzz", names.iter().copied()), None);
        assert!(is_readable("data.call"));
        assert!(is_readable("data.extensions.anything"));
        assert!(!is_readable("data.call.directon"));
    }

    #[test]
    fn domains_refuse_near_misses_and_say_what_is_allowed() {
        let reason = field_at("data.call.reason").unwrap().kind;
        let err = reason.admits(&json!("faild")).unwrap_err();
        assert!(err.contains("did you mean `failed`"), "{err}");
        let err = EventType.admits(&json!("call.hungup")).unwrap_err();
        assert!(err.contains("not a canonical type"), "{err}");
        assert!(EventType.admits(&json!("vendor.twilio.queued")).is_ok());
        assert!(EventType.admits(&json!("vendor.")).is_err());
    }
}
