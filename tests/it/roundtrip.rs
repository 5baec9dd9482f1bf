//! Same-vendor round-trip fidelity over every corpus payload: decode → encode to the same
//! vendor reproduces the input exactly (JSON equality; for Oracle ISR, the parameter set).

use crate::support::{fixtures, lines, mappings};
use callgate::model::params::parse_url_params;
use callgate::translate::Translator;
use serde_json::Value;

const JSON_VENDORS: [&str; 4] = ["ringcentral", "vidyo", "enreach", "enablex"];

#[test]
fn every_json_fixture_round_trips_exactly() {
    let mut checked = 0;
    let mut with_extensions = Vec::new();
    for vendor in JSON_VENDORS {
        for file in fixtures(vendor, ".json") {
            // A fresh tracker per file: docs samples share uuids, which one tracker would
            // rightly drop as duplicates.
            let translator =
                Translator::new(mappings(), vendor, vendor, "http://127.0.0.1/").unwrap();
            let to_ce =
                Translator::new(mappings(), vendor, "cloudevents", "http://127.0.0.1/").unwrap();
            let text = std::fs::read_to_string(&file).unwrap();
            let original: Value = serde_json::from_str(&text).unwrap();
            let out = lines(&translator, &text);
            assert_eq!(
                out.len(),
                1,
                "{}: one output expected, got {out:?}",
                file.display()
            );
            assert_eq!(out[0], original, "{} does not round-trip", file.display());
            let event = &lines(&to_ce, &text)[0];
            let ext = &event["data"]["extensions"];
            if ext.get("unmapped").is_some() || ext.get("omitted").is_some() {
                with_extensions.push(
                    file.strip_prefix(crate::support::root())
                        .unwrap()
                        .display()
                        .to_string(),
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 89, "only {checked} fixtures checked");
    println!(
        "fixtures needing data.extensions ({}):",
        with_extensions.len()
    );
    for f in &with_extensions {
        println!("  {f}");
    }
}

#[test]
fn the_monitored_party_is_rebuilt_from_canonical_fields() {
    // The template must do the real work: for the user's own call legs, only fields the
    // canonical model has no place for may travel in extensions, never the whole payload.
    let to_ce = Translator::new(
        mappings(),
        "ringcentral",
        "cloudevents",
        "http://127.0.0.1/",
    )
    .unwrap();
    for file in fixtures("ringcentral/flows", ".json") {
        let event = &lines(&to_ce, &std::fs::read_to_string(&file).unwrap())[0];
        if !event["type"].as_str().unwrap().starts_with("call.") {
            continue;
        }
        let unmapped = event["data"]["extensions"]["unmapped"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for pointer in unmapped.keys() {
            assert!(
                ![
                    "",
                    "/body",
                    "/body/parties",
                    "/body/parties/0",
                    "/body/parties/0/status/code",
                    "/body/telephonySessionId",
                    "/body/sequence",
                    "/uuid"
                ]
                .contains(&pointer.as_str()),
                "{}: {pointer} should come from canonical fields",
                file.display()
            );
        }
    }
}

#[test]
fn every_isr_request_round_trips_to_the_same_parameter_set() {
    let mut checked = 0;
    for file in fixtures("oracle-isr", "") {
        let translator = Translator::new(
            mappings(),
            "oracle-isr",
            "oracle-isr",
            "https://isr.example/events",
        )
        .unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        let expected = if file.extension().is_some_and(|e| e == "json") {
            serde_json::from_str::<Value>(&text).unwrap()["query"].clone()
        } else {
            parse_url_params(text.trim()).unwrap()
        };
        let out = lines(&translator, &text);
        assert_eq!(out.len(), 1, "{}", file.display());
        assert_eq!(out[0]["method"], "GET");
        let url = out[0]["url"].as_str().unwrap();
        assert!(
            url.starts_with("https://isr.example/events?event="),
            "{url}"
        );
        assert_eq!(
            parse_url_params(url).unwrap(),
            expected,
            "{}",
            file.display()
        );
        checked += 1;
    }
    assert_eq!(checked, 14);
}

#[test]
fn cloudevents_carry_the_extensions_back_to_the_source_vendor() {
    // RingCentral → CloudEvents → RingCentral is lossless too.
    let file =
        crate::support::root().join("tests/fixtures/ringcentral/docs/cust-to-oper-event.json");
    let text = std::fs::read_to_string(&file).unwrap();
    let to_ce = Translator::new(mappings(), "ringcentral", "cloudevents", "http://x/").unwrap();
    let ce = lines(&to_ce, &text)[0].to_string();
    let back = Translator::new(mappings(), "cloudevents", "ringcentral", "http://x/").unwrap();
    assert_eq!(
        lines(&back, &ce)[0],
        serde_json::from_str::<Value>(&text).unwrap()
    );
}

/// The round trip without fidelity extensions: decode, drop `data.extensions`, encode to the
/// same vendor with its template alone, decode that again: every canonical field the first
/// decode set must come back unchanged. A template that drops or mangles a field its vendor's
/// decode rules read fails here (the exact round trip above cannot see it: the residual in
/// `data.extensions` repairs whatever the template writes).
#[test]
fn every_fixture_survives_its_own_template_without_extensions() {
    use callgate::mapping::DecodeOptions;
    let set = mappings();
    let mut checked = 0;
    let mut failures = Vec::new();
    for vendor in ["ringcentral", "vidyo", "enreach", "enablex", "oracle-isr"] {
        let ext = if vendor == "oracle-isr" {
            ".txt"
        } else {
            ".json"
        };
        for file in fixtures(vendor, ext) {
            let text = std::fs::read_to_string(&file).unwrap();
            let payload: Value = if vendor == "oracle-isr" {
                parse_url_params(text.trim()).unwrap()
            } else {
                serde_json::from_str(&text).unwrap()
            };
            let events = set
                .decode(vendor, &payload, DecodeOptions::default())
                .unwrap();
            for mut event in events {
                if event.event_type.starts_with("vendor.") {
                    // A vendor event has no canonical fields beyond its name: its payload
                    // travels in the residual by design (docs/canonical-model.md).
                    continue;
                }
                event.data.extensions.clear();
                let Some(rendered) = set.encode(vendor, &event).unwrap() else {
                    continue; // no template for this type: nothing to compare
                };
                let again = set
                    .decode(vendor, &rendered.payload(), DecodeOptions::default())
                    .unwrap_or_else(|e| panic!("{}: re-decode: {e}", file.display()));
                // The template renders one leg: find it among the events decoded again.
                let twin = again
                    .iter()
                    .find(|e| {
                        e.data.call.as_ref().map(|c| &c.leg_id)
                            == event.data.call.as_ref().map(|c| &c.leg_id)
                    })
                    .unwrap_or(&again[0]);
                let mut before = serde_json::to_value(&event).unwrap();
                let mut after = serde_json::to_value(twin).unwrap();
                for v in [&mut before, &mut after] {
                    // Ids hashed from the payload differ by construction when the vendor has
                    // no event id; the notification id of a multi-party payload gets `#leg`.
                    v["id"] = Value::Null;
                    v["data"]["extensions"] = Value::Null;
                    // The vendor's own spellings: encoding writes the first vendor value that
                    // decodes to the same canonical value (the mapping tables), so `UserCallInArrived`
                    // comes back as `UserCallInComing`; the canonical fields must not move.
                    v["data"]["vendor_event"] = Value::Null;
                    if v["data"]["call"].is_object() {
                        v["data"]["call"]["vendor_reason"] = Value::Null;
                    }
                }
                let mut diffs = Vec::new();
                diff_fields("", &before, &after, &mut diffs);
                if !diffs.is_empty() {
                    failures.push(format!(
                        "{} ({}): {}",
                        file.display(),
                        event.event_type,
                        diffs.join("; ")
                    ));
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 60, "only {checked} events checked");
    assert!(
        failures.is_empty(),
        "{} events changed through their own template:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every leaf of `before` whose value differs in `after`, as `path: before → after`.
fn diff_fields(path: &str, before: &Value, after: &Value, out: &mut Vec<String>) {
    match before {
        Value::Object(map) => {
            for (k, v) in map {
                let at = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff_fields(&at, v, after.get(k).unwrap_or(&Value::Null), out);
            }
        }
        Value::Null => {}
        leaf if leaf != after => out.push(format!("{path}: {leaf} → {after}")),
        _ => {}
    }
}
