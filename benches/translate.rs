//! Decode + encode of a RingCentral telephony-session notification into a Vidyo
//! userStatusNotification: through the mapping engine, and through a hand-written serde
//! translation of the same mapping, from input bytes to output bytes.

use callgate::MappingSet;
use callgate::mapping::DecodeOptions;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};
use std::hint::black_box;

// The same allocator as the `callgate` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::path::Path;

const FIXTURE: &str = "tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-06.json";

fn engine(mappings: &MappingSet, input: &[u8]) -> String {
    let payload: serde_json::Value = serde_json::from_slice(input).expect("json");
    let events = mappings
        .decode("ringcentral", &payload, DecodeOptions::default())
        .expect("decodes");
    let encoder = mappings
        .vendor("vidyo")
        .and_then(|v| v.encoder())
        .expect("vidyo");
    let rendered = encoder
        .render(&events[0])
        .expect("renders")
        .expect("template");
    encoder
        .outbound(&rendered, "http://127.0.0.1/")
        .body
        .expect("body")
}

mod hand {
    //! The RingCentral → Vidyo mapping written out in Rust.
    use super::*;

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
}

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mappings = MappingSet::load(&root.join("mappings")).expect("mappings");
    let input = std::fs::read(root.join(FIXTURE)).expect("fixture");

    // Both must say the same thing before their speed is compared.
    let a: serde_json::Value = serde_json::from_str(&engine(&mappings, &input)).unwrap();
    let b: serde_json::Value = serde_json::from_str(&hand::translate(&input).unwrap()).unwrap();
    assert_eq!(a, b, "engine and hand-written translation disagree");

    let mut group = c.benchmark_group("ringcentral_to_vidyo");
    group.throughput(Throughput::Elements(1));
    group.bench_function("engine", |bench| {
        bench.iter(|| engine(&mappings, black_box(&input)))
    });
    group.bench_function("hand_written", |bench| {
        bench.iter(|| hand::translate(black_box(&input)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
