//! Typed reads of a [`CallEvent`] by the dotted names of [`super::schema`]: each name is
//! resolved once, when a mapping is compiled, to a function that borrows the field from the
//! typed event (no JSON tree, no copy). The render plans of encode templates read through them.
//!
//! What a read gives is what the event's CloudEvents JSON holds at that name: a `None` field
//! is absent (the JSON leaves it out), a group is present when its `Option` is `Some`, even
//! with no member set (`{}` in JSON). A unit test checks every read against the JSON.

use super::event::{
    Call, CallData, CallEvent, CallState, Conference, Direction, EndReason, Endpoint, Party,
    Presence, Recording, Room, User,
};
use super::schema;

/// One canonical field or group as read from an event, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue<'a> {
    /// A text, a time (RFC 3339) or an enum's canonical name.
    Text(&'a str),
    /// A number (`data.recording.duration_s`, seconds).
    Number(f64),
    /// `true` or `false`.
    Bool(bool),
    /// A list of texts (`data.recording.urls`).
    TextList(&'a [String]),
    /// A group (`data.call`, `data.call.from`, ...): present; `empty` when no member is set.
    Group {
        /// Whether the group's JSON object has no member.
        empty: bool,
    },
}

/// Reads one field or group; `None` when the event's JSON has nothing there.
pub type Read = for<'a> fn(&'a CallEvent) -> Option<FieldValue<'a>>;

/// The read of a canonical field or group by its dotted name (`data.call.direction`,
/// `data.endpoint`), or `None` for a name the schema does not have. `data.extensions` is
/// open (any member) and read as JSON by the caller, not here.
pub fn read(path: &str) -> Option<Read> {
    READS
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, read)| *read)
}

impl Direction {
    /// The canonical name (`inbound`, `outbound`).
    pub fn name(self) -> &'static str {
        schema::DIRECTIONS[self as usize]
    }
}

impl CallState {
    /// The canonical name (`connected`, ...).
    pub fn name(self) -> &'static str {
        schema::CALL_STATES[self as usize]
    }
}

impl EndReason {
    /// The canonical name (`completed_remote`, ...).
    pub fn name(self) -> &'static str {
        schema::END_REASONS[self as usize]
    }
}

impl Presence {
    /// The canonical name (`available`, ...).
    pub fn name(self) -> &'static str {
        schema::PRESENCES[self as usize]
    }
}

use FieldValue::{Bool, Number, Text, TextList};

fn text(value: &Option<String>) -> Option<FieldValue<'_>> {
    value.as_deref().map(Text)
}

fn group<T>(value: Option<&T>, empty: fn(&T) -> bool) -> Option<FieldValue<'_>> {
    value.map(|v| FieldValue::Group { empty: empty(v) })
}

fn data(e: &CallEvent) -> &CallData {
    &e.data
}
fn call(e: &CallEvent) -> Option<&Call> {
    e.data.call.as_ref()
}
fn from(e: &CallEvent) -> Option<&Party> {
    call(e)?.from.as_ref()
}
fn to(e: &CallEvent) -> Option<&Party> {
    call(e)?.to.as_ref()
}
fn user(e: &CallEvent) -> Option<&User> {
    e.data.user.as_ref()
}
fn conference(e: &CallEvent) -> Option<&Conference> {
    e.data.conference.as_ref()
}
fn room(e: &CallEvent) -> Option<&Room> {
    conference(e)?.room.as_ref()
}
fn endpoint(e: &CallEvent) -> Option<&Endpoint> {
    e.data.endpoint.as_ref()
}
fn recording(e: &CallEvent) -> Option<&Recording> {
    e.data.recording.as_ref()
}

// Whether a group's JSON object is `{}`: every member `None` (the JSON leaves `None` out).
fn call_empty(c: &Call) -> bool {
    c.id.is_none()
        && c.leg_id.is_none()
        && c.direction.is_none()
        && c.state.is_none()
        && c.reason.is_none()
        && c.vendor_reason.is_none()
        && c.from.is_none()
        && c.to.is_none()
}
fn party_empty(p: &Party) -> bool {
    p.number.is_none() && p.name.is_none() && p.user_id.is_none()
}
fn user_empty(u: &User) -> bool {
    u.id.is_none()
        && u.login.is_none()
        && u.display_name.is_none()
        && u.extension.is_none()
        && u.presence.is_none()
        && u.on_call.is_none()
        && u.in_meeting.is_none()
        && u.wrap_up.is_none()
}
fn conference_empty(c: &Conference) -> bool {
    c.id.is_none() && c.name.is_none() && c.kind.is_none() && c.room.is_none()
}
fn room_empty(r: &Room) -> bool {
    r.id.is_none() && r.name.is_none() && r.display_name.is_none()
}
fn endpoint_empty(e: &Endpoint) -> bool {
    e.kind.is_none()
        && e.ip.is_none()
        && e.guid.is_none()
        && e.application.is_none()
        && e.version.is_none()
        && e.os.is_none()
        && e.device.is_none()
}
fn recording_empty(r: &Recording) -> bool {
    r.id.is_none()
        && r.segment_id.is_none()
        && r.file.is_none()
        && r.urls.is_none()
        && r.started_at.is_none()
        && r.ended_at.is_none()
        && r.duration_s.is_none()
        && r.paused_s.is_none()
        && r.result.is_none()
        && r.variant.is_none()
}

/// Every field and group, by dotted name. Non-capturing closures, so each is a plain
/// function pointer.
const READS: &[(&str, Read)] = &[
    ("specversion", |e| Some(Text(&e.specversion))),
    ("id", |e| Some(Text(&e.id))),
    ("source", |e| Some(Text(&e.source))),
    ("type", |e| Some(Text(&e.event_type))),
    ("time", |e| text(&e.time)),
    ("subject", |e| text(&e.subject)),
    ("sequence", |e| text(&e.sequence)),
    ("partitionkey", |e| text(&e.partitionkey)),
    ("datacontenttype", |e| text(&e.datacontenttype)),
    // `vendor` is always written, so `data` always has a member.
    ("data", |_| Some(FieldValue::Group { empty: false })),
    ("data.vendor", |e| Some(Text(&data(e).vendor))),
    ("data.vendor_event", |e| text(&data(e).vendor_event)),
    ("data.tenant", |e| text(&data(e).tenant)),
    ("data.call", |e| group(call(e), call_empty)),
    ("data.call.id", |e| text(&call(e)?.id)),
    ("data.call.leg_id", |e| text(&call(e)?.leg_id)),
    ("data.call.direction", |e| {
        call(e)?.direction.map(|d| Text(d.name()))
    }),
    ("data.call.state", |e| {
        call(e)?.state.map(|s| Text(s.name()))
    }),
    ("data.call.reason", |e| {
        call(e)?.reason.map(|r| Text(r.name()))
    }),
    ("data.call.vendor_reason", |e| text(&call(e)?.vendor_reason)),
    ("data.call.from", |e| group(from(e), party_empty)),
    ("data.call.from.number", |e| text(&from(e)?.number)),
    ("data.call.from.name", |e| text(&from(e)?.name)),
    ("data.call.from.user_id", |e| text(&from(e)?.user_id)),
    ("data.call.to", |e| group(to(e), party_empty)),
    ("data.call.to.number", |e| text(&to(e)?.number)),
    ("data.call.to.name", |e| text(&to(e)?.name)),
    ("data.call.to.user_id", |e| text(&to(e)?.user_id)),
    ("data.user", |e| group(user(e), user_empty)),
    ("data.user.id", |e| text(&user(e)?.id)),
    ("data.user.login", |e| text(&user(e)?.login)),
    ("data.user.display_name", |e| text(&user(e)?.display_name)),
    ("data.user.extension", |e| text(&user(e)?.extension)),
    ("data.user.presence", |e| {
        user(e)?.presence.map(|p| Text(p.name()))
    }),
    ("data.user.on_call", |e| user(e)?.on_call.map(Bool)),
    ("data.user.in_meeting", |e| user(e)?.in_meeting.map(Bool)),
    ("data.user.wrap_up", |e| user(e)?.wrap_up.map(Bool)),
    ("data.conference", |e| {
        group(conference(e), conference_empty)
    }),
    ("data.conference.id", |e| text(&conference(e)?.id)),
    ("data.conference.name", |e| text(&conference(e)?.name)),
    ("data.conference.type", |e| text(&conference(e)?.kind)),
    ("data.conference.room", |e| group(room(e), room_empty)),
    ("data.conference.room.id", |e| text(&room(e)?.id)),
    ("data.conference.room.name", |e| text(&room(e)?.name)),
    ("data.conference.room.display_name", |e| {
        text(&room(e)?.display_name)
    }),
    ("data.endpoint", |e| group(endpoint(e), endpoint_empty)),
    ("data.endpoint.type", |e| text(&endpoint(e)?.kind)),
    ("data.endpoint.ip", |e| text(&endpoint(e)?.ip)),
    ("data.endpoint.guid", |e| text(&endpoint(e)?.guid)),
    ("data.endpoint.application", |e| {
        text(&endpoint(e)?.application)
    }),
    ("data.endpoint.version", |e| text(&endpoint(e)?.version)),
    ("data.endpoint.os", |e| text(&endpoint(e)?.os)),
    ("data.endpoint.device", |e| text(&endpoint(e)?.device)),
    ("data.recording", |e| group(recording(e), recording_empty)),
    ("data.recording.id", |e| text(&recording(e)?.id)),
    ("data.recording.segment_id", |e| {
        text(&recording(e)?.segment_id)
    }),
    ("data.recording.file", |e| text(&recording(e)?.file)),
    ("data.recording.urls", |e| {
        recording(e)?.urls.as_deref().map(TextList)
    }),
    ("data.recording.started_at", |e| {
        text(&recording(e)?.started_at)
    }),
    ("data.recording.ended_at", |e| text(&recording(e)?.ended_at)),
    ("data.recording.duration_s", |e| {
        recording(e)?.duration_s.map(Number)
    }),
    ("data.recording.paused_s", |e| {
        recording(e)?.paused_s.map(Number)
    }),
    ("data.recording.result", |e| text(&recording(e)?.result)),
    ("data.recording.variant", |e| text(&recording(e)?.variant)),
    ("data.queue", |e| {
        group(e.data.queue.as_ref(), |q| {
            q.id.is_none() && q.name.is_none()
        })
    }),
    ("data.queue.id", |e| text(&e.data.queue.as_ref()?.id)),
    ("data.queue.name", |e| text(&e.data.queue.as_ref()?.name)),
    ("data.callback", |e| {
        group(e.data.callback.as_ref(), |c| c.id.is_none())
    }),
    ("data.callback.id", |e| text(&e.data.callback.as_ref()?.id)),
];

/// Writes one field a decode rule sets, from the JSON value the rule computed, exactly as
/// reading the event's JSON would (`"7"` and `7` both as text, enums by canonical name); the
/// group it belongs to is created if absent. Errors are serde's, as a whole-event read gives.
pub type Write = fn(&mut CallEvent, Value) -> Result<(), serde_json::Error>;

/// The write of a field a decode rule may set, or `None` for any other name.
pub fn write(path: &str) -> Option<Write> {
    WRITES.iter().find(|(p, _)| *p == path).map(|(_, w)| *w)
}

use super::event::{opt_bool, opt_f64, opt_text, text as text_or_number};
use serde::Deserialize as _;
use serde_json::Value;

fn call_mut(e: &mut CallEvent) -> &mut Call {
    e.data.call.get_or_insert_with(Default::default)
}
fn from_mut(e: &mut CallEvent) -> &mut Party {
    call_mut(e).from.get_or_insert_with(Default::default)
}
fn to_mut(e: &mut CallEvent) -> &mut Party {
    call_mut(e).to.get_or_insert_with(Default::default)
}
fn user_mut(e: &mut CallEvent) -> &mut User {
    e.data.user.get_or_insert_with(Default::default)
}
fn conference_mut(e: &mut CallEvent) -> &mut Conference {
    e.data.conference.get_or_insert_with(Default::default)
}
fn room_mut(e: &mut CallEvent) -> &mut Room {
    conference_mut(e).room.get_or_insert_with(Default::default)
}
fn endpoint_mut(e: &mut CallEvent) -> &mut Endpoint {
    e.data.endpoint.get_or_insert_with(Default::default)
}
fn recording_mut(e: &mut CallEvent) -> &mut Recording {
    e.data.recording.get_or_insert_with(Default::default)
}

/// `field = reader(value)?` as a [`Write`].
macro_rules! writes {
    ($( $path:literal => |$e:ident| $place:expr, $read:expr; )*) => {
        &[ $( ($path, |$e: &mut CallEvent, value: Value| {
            $place = $read(value)?;
            Ok(())
        }) ),* ]
    };
}

/// Every field a decode rule may set (the schema's settable fields; `fields` tests it).
const WRITES: &[(&str, Write)] = writes! {
    "id" => |e| e.id, text_or_number;
    "source" => |e| e.source, String::deserialize;
    "time" => |e| e.time, opt_text;
    "subject" => |e| e.subject, opt_text;
    "sequence" => |e| e.sequence, opt_text;
    "partitionkey" => |e| e.partitionkey, opt_text;
    "datacontenttype" => |e| e.datacontenttype, Option::<String>::deserialize;
    "data.vendor_event" => |e| e.data.vendor_event, opt_text;
    "data.tenant" => |e| e.data.tenant, opt_text;
    "data.call.id" => |e| call_mut(e).id, opt_text;
    "data.call.leg_id" => |e| call_mut(e).leg_id, opt_text;
    "data.call.direction" => |e| call_mut(e).direction, Option::<Direction>::deserialize;
    "data.call.state" => |e| call_mut(e).state, Option::<CallState>::deserialize;
    "data.call.reason" => |e| call_mut(e).reason, Option::<EndReason>::deserialize;
    "data.call.vendor_reason" => |e| call_mut(e).vendor_reason, opt_text;
    "data.call.from.number" => |e| from_mut(e).number, opt_text;
    "data.call.from.name" => |e| from_mut(e).name, opt_text;
    "data.call.from.user_id" => |e| from_mut(e).user_id, opt_text;
    "data.call.to.number" => |e| to_mut(e).number, opt_text;
    "data.call.to.name" => |e| to_mut(e).name, opt_text;
    "data.call.to.user_id" => |e| to_mut(e).user_id, opt_text;
    "data.user.id" => |e| user_mut(e).id, opt_text;
    "data.user.login" => |e| user_mut(e).login, opt_text;
    "data.user.display_name" => |e| user_mut(e).display_name, opt_text;
    "data.user.extension" => |e| user_mut(e).extension, opt_text;
    "data.user.presence" => |e| user_mut(e).presence, Option::<Presence>::deserialize;
    "data.user.on_call" => |e| user_mut(e).on_call, opt_bool;
    "data.user.in_meeting" => |e| user_mut(e).in_meeting, opt_bool;
    "data.user.wrap_up" => |e| user_mut(e).wrap_up, opt_bool;
    "data.conference.id" => |e| conference_mut(e).id, opt_text;
    "data.conference.name" => |e| conference_mut(e).name, opt_text;
    "data.conference.type" => |e| conference_mut(e).kind, opt_text;
    "data.conference.room.id" => |e| room_mut(e).id, opt_text;
    "data.conference.room.name" => |e| room_mut(e).name, opt_text;
    "data.conference.room.display_name" => |e| room_mut(e).display_name, opt_text;
    "data.endpoint.type" => |e| endpoint_mut(e).kind, opt_text;
    "data.endpoint.ip" => |e| endpoint_mut(e).ip, opt_text;
    "data.endpoint.guid" => |e| endpoint_mut(e).guid, opt_text;
    "data.endpoint.application" => |e| endpoint_mut(e).application, opt_text;
    "data.endpoint.version" => |e| endpoint_mut(e).version, opt_text;
    "data.endpoint.os" => |e| endpoint_mut(e).os, opt_text;
    "data.endpoint.device" => |e| endpoint_mut(e).device, opt_text;
    "data.recording.id" => |e| recording_mut(e).id, opt_text;
    "data.recording.segment_id" => |e| recording_mut(e).segment_id, opt_text;
    "data.recording.file" => |e| recording_mut(e).file, opt_text;
    "data.recording.urls" => |e| recording_mut(e).urls, Option::<Vec<String>>::deserialize;
    "data.recording.started_at" => |e| recording_mut(e).started_at, opt_text;
    "data.recording.ended_at" => |e| recording_mut(e).ended_at, opt_text;
    "data.recording.duration_s" => |e| recording_mut(e).duration_s, opt_f64;
    "data.recording.paused_s" => |e| recording_mut(e).paused_s, opt_f64;
    "data.recording.result" => |e| recording_mut(e).result, opt_text;
    "data.recording.variant" => |e| recording_mut(e).variant, opt_text;
    "data.queue.id" => |e| e.data.queue.get_or_insert_with(Default::default).id, opt_text;
    "data.queue.name" => |e| e.data.queue.get_or_insert_with(Default::default).name, opt_text;
    "data.callback.id" => |e| e.data.callback.get_or_insert_with(Default::default).id, opt_text;
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What the event's JSON holds at a dotted name.
    fn at<'a>(json: &'a Value, path: &str) -> Option<&'a Value> {
        path.split('.').try_fold(json, |v, seg| v.get(seg))
    }

    fn as_json(read: Option<FieldValue<'_>>) -> Option<Value> {
        read.map(|v| match v {
            Text(s) => json!(s),
            Number(n) => json!(n),
            Bool(b) => json!(b),
            TextList(l) => json!(l),
            FieldValue::Group { empty } => json!({ "empty": empty }),
        })
    }

    fn check(event: &CallEvent) {
        let json = serde_json::to_value(event).unwrap();
        for (path, read) in READS {
            let expected = at(&json, path).map(|v| match v {
                Value::Object(m) => json!({ "empty": m.is_empty() }),
                other => other.clone(),
            });
            assert_eq!(as_json(read(event)), expected, "{path} of {json}");
        }
    }

    #[test]
    fn every_settable_field_has_a_write() {
        for field in schema::FIELDS.iter().filter(|f| f.settable) {
            if field.path != "type" {
                assert!(write(field.path).is_some(), "{} has no write", field.path);
            }
        }
        for (path, _) in WRITES {
            assert!(
                schema::field_at(path).is_some(),
                "{path} is not in the schema"
            );
        }
    }

    #[test]
    fn every_schema_name_has_a_read() {
        for field in schema::FIELDS {
            assert!(read(field.path).is_some(), "{} has no read", field.path);
        }
        for (name, _) in READS {
            assert!(
                schema::field_at(name).is_some() || schema::is_group(name),
                "{name} is not in the schema"
            );
        }
    }

    /// Each read agrees with the JSON: for an event with every group absent, every group
    /// present but empty, and each field set alone.
    #[test]
    fn reads_agree_with_the_event_json() {
        let bare: CallEvent = serde_json::from_value(json!({
            "specversion": "1.0", "id": "e", "source": "/s", "type": "call.ended",
            "data": { "vendor": "v" }
        }))
        .unwrap();
        check(&bare);
        let mut groups = bare.clone();
        groups.data.call = Some(Call {
            from: Some(Party::default()),
            to: Some(Party::default()),
            ..Call::default()
        });
        groups.data.user = Some(User::default());
        groups.data.conference = Some(Conference {
            room: Some(Room::default()),
            ..Conference::default()
        });
        groups.data.endpoint = Some(Endpoint::default());
        groups.data.recording = Some(Recording::default());
        groups.data.queue = Some(Default::default());
        groups.data.callback = Some(Default::default());
        check(&groups);
        let mut empty_room = bare.clone();
        empty_room.data.conference = Some(Conference {
            room: Some(Room::default()),
            ..Conference::default()
        });
        check(&empty_room);
        // Each field alone: set through the JSON, so every member is covered.
        for field in schema::FIELDS {
            let mut json = serde_json::to_value(&groups).unwrap();
            let value = match field.kind {
                schema::FieldKind::Enum(values) => json!(values[values.len() - 1]),
                schema::FieldKind::Bool => json!(true),
                schema::FieldKind::Number => json!(12.5),
                schema::FieldKind::TextList => json!(["a", "b"]),
                schema::FieldKind::Time => json!("2026-12-04T16:09:00Z"),
                _ => json!("x\"y"),
            };
            let mut target = &mut json;
            let segments: Vec<&str> = field.path.split('.').collect();
            for seg in &segments[..segments.len() - 1] {
                target = &mut target[*seg];
            }
            target[segments[segments.len() - 1]] = value;
            let event: CallEvent = serde_json::from_value(json).unwrap();
            check(&event);
        }
    }
}
