//! Property tests: decoding never panics on arbitrary JSON, and every encoded JSON body of
//! an arbitrary canonical event parses.

use crate::support::mappings;
use callgate::CallEvent;
use callgate::mapping::DecodeOptions;
use proptest::prelude::*;
use serde_json::{Value, json};

pub fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "Setup",
            "Proceeding",
            "Answered",
            "Inbound",
            "Outbound",
            "COMPLETED",
            "IN PROGRESS",
            "UserCallInComing",
            "roomdrop",
            "RECORDING_ENDED_EVENT",
            "2020-06-23T01:05:52.656Z",
        ])
        .prop_map(|s| Value::String(s.to_string())),
    ];
    let keys = prop::sample::select(vec![
        "body",
        "parties",
        "status",
        "code",
        "direction",
        "telephonySessionId",
        "extensionId",
        "ownerId",
        "uuid",
        "sequence",
        "userStatusNotification",
        "user",
        "conference",
        "callState",
        "callCompletionCode",
        "EventType",
        "eventType",
        "data",
        "subscription",
        "type",
        "app_id",
        "room_id",
        "recording",
        "files",
        "url",
        "event",
        "ISR_UCID",
        "pn_apns",
        "presenceStatus",
        "dndStatus",
        "specversion",
        "id",
        "source",
        "x",
    ]);
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..6).prop_map(|m| Value::Object(
                m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

fn arbitrary_event() -> impl Strategy<Value = CallEvent> {
    let types = prop::sample::select(
        callgate::model::event::CANONICAL_TYPES
            .iter()
            .copied()
            .chain([
                "vendor.enreach.QueueStatus",
                "vendor.ringcentral.TelephonySession",
            ])
            .collect::<Vec<_>>(),
    );
    let reasons = prop::sample::select(vec![
        None,
        Some("completed"),
        Some("missed"),
        Some("rejected"),
        Some("transferred"),
        Some("failed"),
    ]);
    let text = prop::option::of(".{0,8}");
    (types, reasons, text.clone(), text.clone(), text, prop::option::of(any::<u32>()), any::<bool>())
        .prop_map(|(ty, reason, s1, s2, s3, seq, inbound)| {
            let mut v = json!({
                "specversion": "1.0", "id": s1.clone().unwrap_or_default(), "source": "/p", "type": ty,
                "data": { "vendor": "prop", "extensions": {} }
            });
            if let Some(seq) = seq {
                v["sequence"] = json!(seq.to_string());
                v["time"] = json!("2020-06-23T01:05:52.656Z");
            }
            if ty.starts_with("call.") || ty.starts_with("vendor.ringcentral") {
                v["data"]["call"] = json!({ "id": s2, "direction": if inbound { "inbound" } else { "outbound" },
                                           "reason": reason, "from": { "number": s3 } });
            }
            v["data"]["user"] = json!({ "id": s1, "login": "a\"b\\c\u{1}", "presence": if inbound { "dnd" } else { "away" } });
            v["data"]["recording"] = json!({ "id": s2, "urls": ["u1", "ü 2"], "variant": if inbound { "recorded" } else { "transferred" },
                                             "started_at": "2018-08-30T14:58:57.149Z" });
            v["data"]["conference"] = json!({ "id": "c", "room": { "id": s3 } });
            let mut event: CallEvent = serde_json::from_value(v).unwrap();
            event.normalize();
            event
        })
}

const VENDORS: [&str; 5] = ["ringcentral", "vidyo", "enreach", "enablex", "oracle-isr"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn decode_never_panics(payload in arbitrary_json()) {
        for vendor in VENDORS {
            let _ = mappings().decode(vendor, &payload, DecodeOptions { fidelity: true, max_events: 0 });
        }
        let _ = mappings().detect(&payload, false);
    }

    #[test]
    fn every_encoded_json_body_parses(event in arbitrary_event()) {
        for vendor in VENDORS.iter().chain(["cloudevents"].iter()) {
            let set = mappings();
            let encoder = set.vendor(vendor).unwrap().encoder().unwrap();
            match encoder.render(&event) {
                Ok(Some(rendered)) => {
                    let request = encoder.outbound(rendered, "http://127.0.0.1/x");
                    if let Some(body) = request.body {
                        prop_assert!(serde_json::from_str::<Value>(&body).is_ok(), "{vendor}: {body}");
                        // What a receiver reads is the text: serde_json's private number form
                        // (arbitrary_precision) parses back into a number here, nowhere else.
                        prop_assert!(!body.contains("$serde_json"), "{vendor}: {body}");
                    } else {
                        prop_assert!(request.url.starts_with("http://127.0.0.1/x?event="), "{}", request.url);
                    }
                }
                Ok(None) => {}
                // A template may refuse an event that lacks a field it needs (strict mode);
                // it must never produce a body that is not JSON.
                Err(callgate::mapping::encode::EncodeError::Render { .. }) => {}
                Err(e) => prop_assert!(false, "{vendor}: {e}"),
            }
        }
    }
}
