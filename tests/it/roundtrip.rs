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
