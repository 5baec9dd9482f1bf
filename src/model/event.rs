//! The canonical event: a CloudEvents 1.0 structured-JSON event whose `data` is [`CallData`].
//!
//! Every vendor payload is decoded into a [`CallEvent`] and every output is rendered from one.
//! Attribute names follow CloudEvents 1.0 (<https://github.com/cloudevents/spec>, `spec.md`) and
//! its `sequence` and `partitionkey` extensions; `data` holds typed groups, each optional, whose
//! fields document the vendor field they usually come from (docs/canonical-model.md).

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// Every canonical `type` of docs/canonical-model.md (`vendor.<vendor>.<Event>` aside): a bounded set,
/// so each may be a metric label value.
pub const CANONICAL_TYPES: &[&str] = &[
    "call.initiated",
    "call.ringing",
    "call.alerting",
    "call.connected",
    "call.held",
    "call.resumed",
    "call.parked",
    "call.transferring",
    "call.ended",
    "presence.changed",
    "conference.ended",
    "recording.started",
    "recording.paused",
    "recording.resumed",
    "recording.ended",
    "recording.segment_started",
    "recording.segment_ended",
    "recording.failed",
    "recording.available",
];

/// The CloudEvents version callgate emits and accepts.
pub const SPEC_VERSION: &str = "1.0";

/// One canonical event, serialised as CloudEvents 1.0 structured JSON
/// (`Content-Type: application/cloudevents+json`).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallEvent {
    /// CloudEvents `specversion`; always `"1.0"`.
    pub specversion: String,
    /// CloudEvents `id`: the vendor's event id where it has one (RingCentral `uuid`, Enreach
    /// `Id`, Vidyo `sequenceNum`), else a stable hash of the payload's identifying fields, so a
    /// redelivered vendor event keeps its id.
    #[serde(deserialize_with = "text")]
    pub id: String,
    /// CloudEvents `source`: `/vendors/<vendor>/...`, with the tenant when known.
    pub source: String,
    /// CloudEvents `type`: `call.*`, `presence.changed`, `conference.ended`, `recording.*` or
    /// `vendor.<vendor>.<EventName>` (docs/canonical-model.md).
    #[serde(rename = "type")]
    pub event_type: String,
    /// CloudEvents `time`: when the vendor says the event happened, RFC 3339 UTC.
    #[serde(default, deserialize_with = "opt_text")]
    pub time: Option<String>,
    /// CloudEvents `subject`: the call id for call events, the user id for presence.
    #[serde(default, deserialize_with = "opt_text")]
    pub subject: Option<String>,
    /// CloudEvents `sequence` extension: the vendor's own ordering number, as a decimal string
    /// (RingCentral `body.sequence`, Vidyo `sequenceNum`).
    #[serde(default, deserialize_with = "opt_text")]
    pub sequence: Option<String>,
    /// CloudEvents `partitionkey` extension: events with the same key are delivered in order.
    /// The call id for call events, the user id for presence.
    #[serde(default, deserialize_with = "opt_text")]
    pub partitionkey: Option<String>,
    /// CloudEvents `datacontenttype`; `application/json`.
    pub datacontenttype: Option<String>,
    /// The typed payload.
    pub data: CallData,
    /// Any other CloudEvents attribute of an incoming canonical event, kept unchanged.
    #[serde(flatten)]
    pub other: Map<String, Value>,
    /// JSON Pointers of the `null` members of an incoming canonical event's `data`: the
    /// typed model has no place for "present but null", so the CloudEvents encoder writes
    /// them back and `cloudevents` → `cloudevents` stays exact. Empty for vendor events.
    #[serde(skip)]
    pub null_members: Vec<String>,
}

/// The `data` of a [`CallEvent`]: typed groups, each optional.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallData {
    /// The vendor id the event was decoded from (`ringcentral`, `vidyo`, `enablex`,
    /// `oracle-isr`, `enreach`).
    pub vendor: String,
    /// The vendor's own name for the event (RingCentral `event` path, Enreach `EventType`,
    /// Oracle ISR `event`, EnableX `type`).
    #[serde(default, deserialize_with = "opt_text")]
    pub vendor_event: Option<String>,
    /// Account, tenant or organisation id (RingCentral `accountId`, Vidyo `tenantName`,
    /// Enreach `OrganizationId`, EnableX `app_id`).
    #[serde(default, deserialize_with = "opt_text")]
    pub tenant: Option<String>,
    /// The call or call leg, for `call.*` events.
    pub call: Option<Call>,
    /// The monitored user.
    pub user: Option<User>,
    /// A conference or room session (Vidyo `conference`, EnableX room).
    pub conference: Option<Conference>,
    /// The user's endpoint (Vidyo `endpoint` and `endpointDetails`).
    pub endpoint: Option<Endpoint>,
    /// A recording, for `recording.*` events (Oracle ISR, EnableX, Enreach).
    pub recording: Option<Recording>,
    /// A contact-centre queue (Enreach `QueueId`, `QueueName`).
    pub queue: Option<Queue>,
    /// A callback request (Enreach `CallbackChanged`).
    pub callback: Option<Callback>,
    /// Vendor fields the model has no place for. Named entries come from a decode rule's
    /// `keep`; `unmapped` (JSON Pointer → original value) and `omitted` (JSON Pointers) hold
    /// what the vendor's own template cannot rebuild, so that re-encoding to the same vendor
    /// reproduces the original payload exactly.
    #[serde(default)]
    pub extensions: Map<String, Value>,
}

/// A call leg as seen from the monitored user's side.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Call {
    /// The vendor's call or session id (RingCentral `telephonySessionId`, Vidyo
    /// `uniqueCallID`, Enreach `CallId`).
    #[serde(deserialize_with = "opt_text")]
    pub id: Option<String>,
    /// The leg or party id (RingCentral party `id`, Enreach `LegId`, Vidyo `participantId`).
    #[serde(deserialize_with = "opt_text")]
    pub leg_id: Option<String>,
    /// Direction from the monitored user's side.
    pub direction: Option<Direction>,
    /// The state this event moves the call into; derived from `type` when a mapping omits it.
    pub state: Option<CallState>,
    /// Why the call ended (on `call.ended` only).
    pub reason: Option<EndReason>,
    /// The vendor's own reason text (RingCentral `status.reason`, Enreach `Reason`).
    #[serde(deserialize_with = "opt_text")]
    pub vendor_reason: Option<String>,
    /// The calling party.
    pub from: Option<Party>,
    /// The called party.
    pub to: Option<Party>,
}

/// One end of a call.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Party {
    /// Phone number or SIP address (RingCentral `phoneNumber`, Enreach `CallerNumber`).
    #[serde(deserialize_with = "opt_text")]
    pub number: Option<String>,
    /// Display name.
    #[serde(deserialize_with = "opt_text")]
    pub name: Option<String>,
    /// The vendor's user or extension id of this party, when it is a user of the platform.
    #[serde(deserialize_with = "opt_text")]
    pub user_id: Option<String>,
}

/// The monitored user.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct User {
    /// The vendor's user id (RingCentral extension id, Vidyo `memberID`, Enreach `UserId`).
    #[serde(deserialize_with = "opt_text")]
    pub id: Option<String>,
    /// Login name (Vidyo `userName`, Enreach `UserName`).
    #[serde(deserialize_with = "opt_text")]
    pub login: Option<String>,
    /// Display name (Vidyo `displayName`, RingCentral party `name`).
    #[serde(deserialize_with = "opt_text")]
    pub display_name: Option<String>,
    /// Extension number.
    #[serde(deserialize_with = "opt_text")]
    pub extension: Option<String>,
    /// Presence, on `presence.changed`.
    pub presence: Option<Presence>,
    /// The user is on a call (RingCentral `telephonyStatus` ≠ `NoCall`).
    #[serde(deserialize_with = "opt_bool")]
    pub on_call: Option<bool>,
    /// The user is in a meeting (RingCentral `meetingStatus` = `Connected`).
    #[serde(deserialize_with = "opt_bool")]
    pub in_meeting: Option<bool>,
    /// The user is in after-call wrap-up (Enreach `UserWrapUp*`).
    #[serde(deserialize_with = "opt_bool")]
    pub wrap_up: Option<bool>,
}

/// A conference or room session.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Conference {
    /// Conference id (Vidyo `conferenceID`, EnableX `conf_num`).
    #[serde(deserialize_with = "opt_text")]
    pub id: Option<String>,
    /// Conference name (Vidyo `conferenceName`).
    #[serde(deserialize_with = "opt_text")]
    pub name: Option<String>,
    /// Conference kind, vendor-coded (Vidyo `conferenceType`: D, C, ID, IC).
    #[serde(deserialize_with = "opt_text")]
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The room the conference runs in.
    pub room: Option<Room>,
}

/// A meeting room.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Room {
    /// Room id (Vidyo `roomID`, EnableX `room_id`).
    #[serde(deserialize_with = "opt_text")]
    pub id: Option<String>,
    /// Room name (Vidyo `roomName`).
    #[serde(deserialize_with = "opt_text")]
    pub name: Option<String>,
    /// Display name (Vidyo `roomDisplayName`).
    #[serde(deserialize_with = "opt_text")]
    pub display_name: Option<String>,
}

/// The user's endpoint (device or application).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Endpoint {
    /// Endpoint kind, vendor-coded (Vidyo `endpointType`: R, D, G, ...).
    #[serde(deserialize_with = "opt_text")]
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Public IP address (Vidyo `endpointPublicIPAddress`).
    #[serde(deserialize_with = "opt_text")]
    pub ip: Option<String>,
    /// Endpoint GUID (Vidyo `endpointGUID`).
    #[serde(deserialize_with = "opt_text")]
    pub guid: Option<String>,
    /// Application name (Vidyo `applicationName`).
    #[serde(deserialize_with = "opt_text")]
    pub application: Option<String>,
    /// Application version (Vidyo `applicationVersion`).
    #[serde(deserialize_with = "opt_text")]
    pub version: Option<String>,
    /// Operating system (Vidyo `applicationOs`).
    #[serde(deserialize_with = "opt_text")]
    pub os: Option<String>,
    /// Device model (Vidyo `deviceModel`).
    #[serde(deserialize_with = "opt_text")]
    pub device: Option<String>,
}

/// A recording.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Recording {
    /// Recording id (Oracle ISR `RECORDING_ID`, else `TMP_RECORDING_ID`; Enreach `RecordingId`).
    #[serde(deserialize_with = "opt_text")]
    pub id: Option<String>,
    /// Segment id (Oracle ISR `SEGMENT_ID`, else `TMP_SEGMENT_ID`).
    #[serde(deserialize_with = "opt_text")]
    pub segment_id: Option<String>,
    /// File name on the recorder (Oracle ISR `FILENAME`).
    #[serde(deserialize_with = "opt_text")]
    pub file: Option<String>,
    /// URLs where the recording can be fetched (EnableX `recording`, `files[].url`).
    pub urls: Option<Vec<String>>,
    /// Start, RFC 3339 UTC (Oracle ISR `START_TIME`).
    #[serde(deserialize_with = "opt_text")]
    pub started_at: Option<String>,
    /// End, RFC 3339 UTC (Oracle ISR `END_TIME`).
    #[serde(deserialize_with = "opt_text")]
    pub ended_at: Option<String>,
    /// Length in seconds (Oracle ISR `DURATION`).
    #[serde(deserialize_with = "opt_f64")]
    pub duration_s: Option<f64>,
    /// Time spent paused, in seconds (Oracle ISR `PAUSE_LENGTH`).
    #[serde(deserialize_with = "opt_f64")]
    pub paused_s: Option<f64>,
    /// Outcome as the vendor states it (Oracle ISR `RESULT`).
    #[serde(deserialize_with = "opt_text")]
    pub result: Option<String>,
    /// What kind of file became available: `recorded`, `transcoded`, `transferred`.
    #[serde(deserialize_with = "opt_text")]
    pub variant: Option<String>,
}

/// A contact-centre queue.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Queue {
    /// Queue id (Enreach `QueueId`).
    #[serde(deserialize_with = "opt_text")]
    pub id: Option<String>,
    /// Queue name (Enreach `QueueName`).
    #[serde(deserialize_with = "opt_text")]
    pub name: Option<String>,
}

/// A callback request.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Callback {
    /// Callback request id (Enreach `CallbackId`).
    #[serde(deserialize_with = "opt_text")]
    pub id: Option<String>,
}

/// Call direction from the monitored user's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The call came to the user.
    Inbound,
    /// The user placed the call.
    Outbound,
}

impl Direction {
    /// Every variant, in declaration order.
    pub const ALL: &[Direction] = &[Direction::Inbound, Direction::Outbound];
}

/// The state a call is in after an event (docs/canonical-model.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// The call exists or is being set up.
    Initiated,
    /// The far end is being alerted (outbound, ringback).
    Ringing,
    /// The monitored user's device is being alerted (inbound).
    Alerting,
    /// Answered, media up.
    Connected,
    /// On hold.
    Held,
    /// Parked.
    Parked,
    /// Terminal.
    Ended,
}

impl CallState {
    /// Every variant, in declaration order.
    pub const ALL: &[CallState] = &[
        CallState::Initiated,
        CallState::Ringing,
        CallState::Alerting,
        CallState::Connected,
        CallState::Held,
        CallState::Parked,
        CallState::Ended,
    ];

    /// The state a canonical `call.*` type puts a call in, or `None` for other types.
    pub fn for_type(event_type: &str) -> Option<CallState> {
        Some(match event_type {
            "call.initiated" => CallState::Initiated,
            "call.ringing" => CallState::Ringing,
            "call.alerting" => CallState::Alerting,
            "call.connected" | "call.resumed" | "call.transferring" => CallState::Connected,
            "call.held" => CallState::Held,
            "call.parked" => CallState::Parked,
            "call.ended" => CallState::Ended,
            _ => return None,
        })
    }
}

/// Why a call ended (docs/canonical-model.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Finished normally, side unknown.
    Completed,
    /// The monitored user hung up.
    CompletedLocal,
    /// The other side hung up.
    CompletedRemote,
    /// Nobody answered in time.
    NoAnswer,
    /// The callee declined.
    Rejected,
    /// The callee was busy.
    Busy,
    /// The caller gave up.
    Cancelled,
    /// The user missed the call.
    Missed,
    /// Went to voicemail.
    Voicemail,
    /// Forwarded or redirected elsewhere.
    Forwarded,
    /// Transferred away.
    Transferred,
    /// Answered on another device or by another user.
    PickedUpElsewhere,
    /// Ended by a moderator, operator or room owner.
    TerminatedByModerator,
    /// A technical failure.
    Failed,
    /// Not stated.
    Unknown,
}

impl EndReason {
    /// Every variant, in declaration order.
    pub const ALL: &[EndReason] = &[
        EndReason::Completed,
        EndReason::CompletedLocal,
        EndReason::CompletedRemote,
        EndReason::NoAnswer,
        EndReason::Rejected,
        EndReason::Busy,
        EndReason::Cancelled,
        EndReason::Missed,
        EndReason::Voicemail,
        EndReason::Forwarded,
        EndReason::Transferred,
        EndReason::PickedUpElsewhere,
        EndReason::TerminatedByModerator,
        EndReason::Failed,
        EndReason::Unknown,
    ];
}

/// A user's presence (docs/canonical-model.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// Reachable.
    Available,
    /// Busy, on a call or in a conference.
    Busy,
    /// Do not disturb.
    Dnd,
    /// Away or be-right-back.
    Away,
    /// Offline or off work.
    Offline,
}

impl Presence {
    /// Every variant, in declaration order.
    pub const ALL: &[Presence] = &[
        Presence::Available,
        Presence::Busy,
        Presence::Dnd,
        Presence::Away,
        Presence::Offline,
    ];
}

impl CallEvent {
    /// The key that orders this event's delivery — its CloudEvents `partitionkey`, else the
    /// call id, else the user id, else the event id — as messages, the store, spans and the
    /// tail carry it.
    pub fn effective_partitionkey(&self) -> &str {
        self.partitionkey
            .as_deref()
            .or_else(|| self.data.call.as_ref().and_then(|c| c.id.as_deref()))
            .or_else(|| self.data.user.as_ref().and_then(|u| u.id.as_deref()))
            .unwrap_or(&self.id)
    }

    /// Fills what the type implies and the sender left out: `data.call.state` of `call.*`
    /// events, and `subject`/`partitionkey` from the call or user id.
    pub fn normalize(&mut self) {
        if let Some(state) = CallState::for_type(&self.event_type) {
            let call = self.data.call.get_or_insert_with(Call::default);
            call.state.get_or_insert(state);
        }
        let key = self
            .data
            .call
            .as_ref()
            .and_then(|c| c.id.clone())
            .or_else(|| self.data.user.as_ref().and_then(|u| u.id.clone()));
        if let Some(key) = key {
            self.subject.get_or_insert_with(|| key.clone());
            self.partitionkey.get_or_insert(key);
        }
    }
}

/// Accepts a JSON string, number or bool as text: vendors drift between `"7"` and `7`.
pub(super) fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    opt_text(d)?.ok_or_else(|| serde::de::Error::custom("expected a string, found null"))
}

pub(super) fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct TextVisitor;
    impl<'de> serde::de::Visitor<'de> for TextVisitor {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string, number or boolean")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(
                serde_json::Number::from_f64(v).map_or_else(|| v.to_string(), |n| n.to_string()),
            ))
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(TextVisitor)
        }
    }
    d.deserialize_any(TextVisitor)
}

pub(super) fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => Some(
            s.trim()
                .parse()
                .map_err(|_| serde::de::Error::custom(format!("expected a number, found {s:?}")))?,
        ),
        Some(other) => {
            return Err(serde::de::Error::custom(format!(
                "expected a number, found {other}"
            )));
        }
    })
}

pub(super) fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Some(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Some(false),
        Some(other) => {
            return Err(serde::de::Error::custom(format!(
                "expected true or false, found {other}"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn design_example_round_trips_through_serde() {
        let example = json!({
            "specversion": "1.0", "id": "837270960869181944",
            "source": "/vendors/ringcentral/accounts/400144452008", "type": "call.alerting",
            "time": "2018-06-05T00:14:50.147Z", "subject": "Y3Mx", "sequence": "5",
            "partitionkey": "Y3Mx", "datacontenttype": "application/json",
            "data": {
                "vendor": "ringcentral", "tenant": "400144452008",
                "call": { "id": "Y3Mx", "leg_id": "cs1-2", "direction": "inbound", "state": "alerting",
                          "from": { "number": "103", "name": "TheCat Jerry", "user_id": "400144457008" } },
                "user": { "id": "400144455008", "display_name": "Tom Sawyer", "extension": "102" },
                "extensions": { "x": 1 }
            },
            "traceparent": "00-abc"
        });
        let event: CallEvent = serde_json::from_value(example.clone()).unwrap();
        assert_eq!(
            event.data.call.as_ref().unwrap().state,
            Some(CallState::Alerting)
        );
        assert_eq!(event.other["traceparent"], "00-abc");
        assert_eq!(serde_json::to_value(&event).unwrap(), example);
    }

    #[test]
    fn numbers_are_accepted_as_text_and_bad_enums_are_refused() {
        let event: CallEvent = serde_json::from_value(json!({
            "specversion": "1.0", "id": 7, "source": "/x", "type": "call.ended", "sequence": 12,
            "data": { "vendor": "x", "recording": { "duration_s": "255" } }
        }))
        .unwrap();
        assert_eq!(event.id, "7");
        assert_eq!(event.sequence.as_deref(), Some("12"));
        assert_eq!(event.data.recording.unwrap().duration_s, Some(255.0));
        let bad = serde_json::from_value::<CallEvent>(json!({
            "specversion": "1.0", "id": "1", "source": "/x", "type": "call.ended",
            "data": { "vendor": "x", "call": { "reason": "bored" } }
        }));
        assert!(bad.unwrap_err().to_string().contains("bored"));
    }

    #[test]
    fn state_follows_type() {
        assert_eq!(
            CallState::for_type("call.resumed"),
            Some(CallState::Connected)
        );
        assert_eq!(CallState::for_type("presence.changed"), None);
    }
}
