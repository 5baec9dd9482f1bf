//! The RingCentral telephony-session → Vidyo `userStatusNotification` mapping written out in
//! Rust with typed serde, borrowing strings from the input: the floor the mapping engine is
//! measured against (`benches/translate.rs`) and the translation of the hand-written
//! forwarder (`benches/baseline.rs`). Mirrors `mappings/ringcentral/decode.yaml` and
//! `mappings/vidyo/templates/user-status.json.hbs` for the fields a telephony session carries.

use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification<'a> {
    #[serde(borrow)]
    owner_id: Option<&'a str>,
    body: Body<'a>,
}
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    sequence: u64,
    telephony_session_id: &'a str,
    event_time: &'a str,
    extension_id: Option<&'a str>,
    account_id: Option<&'a str>,
    #[serde(borrow)]
    parties: Vec<Party<'a>>,
}
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Party<'a> {
    extension_id: Option<&'a str>,
    account_id: Option<&'a str>,
    id: &'a str,
    direction: &'a str,
    #[serde(borrow)]
    to: Option<End<'a>>,
    from: Option<End<'a>>,
    status: Status<'a>,
    #[serde(default)]
    missed_call: bool,
}
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct End<'a> {
    phone_number: Option<&'a str>,
    name: Option<&'a str>,
}
#[derive(Deserialize)]
struct Status<'a> {
    code: &'a str,
    reason: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Vidyo<'a> {
    version: u32,
    sequence_num: u64,
    creation_timestamp: i64,
    queue_timestamp: i64,
    user_status_notification: Usn<'a>,
}
#[derive(Serialize)]
struct Usn<'a> {
    conference: Conference<'a>,
    user: User<'a>,
}
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Conference<'a> {
    #[serde(rename = "uniqueCallID")]
    unique_call_id: &'a str,
    call_state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant_name: Option<&'a str>,
    participant_id: &'a str,
    call_completion_code: &'static str,
    direction: &'static str,
}
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct User<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    user_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<&'a str>,
    #[serde(rename = "memberID")]
    member_id: &'a str,
    user_state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extension: Option<&'a str>,
}

pub fn translate(input: &[u8]) -> Option<String> {
    let n: Notification = serde_json::from_slice(input).ok()?;
    let monitored = n.body.extension_id.or(n.owner_id)?;
    let party = n.body.parties.first()?;
    if party.extension_id != Some(monitored) {
        return None; // vendor.ringcentral.TelephonySession: Vidyo has no template
    }
    let inbound = party.direction == "Inbound";
    let reason = match (party.status.code, party.status.reason, party.missed_call) {
        ("Disconnected", _, true) => "missed",
        ("Disconnected", Some("NoAnswer" | "Timeout"), _) => "no_answer",
        ("Disconnected", Some("Rejected"), _) => "rejected",
        ("Disconnected", Some("Cancelled"), _) => "cancelled",
        _ => "completed",
    };
    let (user_state, call_state) = match party.status.code {
        "Setup" if inbound => ("Alerting", "ALERTING"),
        "Setup" => ("Ringing", "RINGING"),
        "Proceeding" if inbound => ("Alerting", "ALERTING"),
        "Proceeding" => ("Ringing", "RINGING"),
        "Answered" | "Hold" | "Parked" => ("Busy", "IN PROGRESS"),
        _ => match reason {
            "rejected" => ("RingRejected", "RING REJECTED"),
            "no_answer" => ("RingNoAnswer", "RING NO ANSWER"),
            "cancelled" => ("Online", "RING CANCELLED"),
            "missed" => ("AlertCancelled", "ALERT CANCELLED"),
            _ => ("Online", "COMPLETED"),
        },
    };
    let ended = call_state == "COMPLETED";
    let me = if inbound { &party.to } else { &party.from };
    let tenant = n.body.account_id.or(party.account_id);
    let micros = chrono::DateTime::parse_from_rfc3339(n.body.event_time)
        .ok()?
        .timestamp_micros();
    let extension = me.as_ref().and_then(|e| e.phone_number);
    let out = Vidyo {
        version: 1,
        sequence_num: n.body.sequence,
        creation_timestamp: micros,
        queue_timestamp: micros,
        user_status_notification: Usn {
            conference: Conference {
                unique_call_id: n.body.telephony_session_id,
                call_state,
                tenant_name: tenant,
                participant_id: party.id,
                call_completion_code: if ended && reason == "completed" {
                    "1"
                } else {
                    "0"
                },
                direction: if inbound { "I" } else { "O" },
            },
            user: User {
                user_name: extension,
                display_name: me.as_ref().and_then(|e| e.name),
                member_id: monitored,
                user_state,
                tenant_name: tenant,
                extension,
            },
        },
    };
    serde_json::to_string(&out).ok()
}
