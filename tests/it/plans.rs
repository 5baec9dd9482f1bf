//! Compiled mappings against their references (issue 22). Render plans against `handlebars`:
//! every shipped template has a plan, and the plan's output is byte for byte `handlebars'`
//! (after the same compaction) for every event of every mapping case and for generated
//! canonical events of every type with missing and hostile values; where `handlebars` refuses
//! an event, the plan refuses it too (and then `handlebars`' error is what the user sees).
//! Typed decode writes against the JSON-built event serde reads: the same events, or both
//! refusing, for every fixture of every vendor and for generated payloads.

use crate::support::mappings;
use callgate::CallEvent;
use callgate::mapping::DecodeOptions;
use callgate::mapping::decode::Build;
use callgate::mapping::directory::{self, Directories};
use callgate::mapping::encode::{EncodeError, Engine, Rendered};
use callgate::model::event::{
    Call, CallState, Callback, Conference, Direction, EndReason, Endpoint, Party, Presence, Queue,
    Recording, Room, User,
};
use callgate::translate::Translator;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

/// The ops' directories a Teams destination would have: the application id, and Entra ids
/// of some of the user ids the generated events carry (the rest miss).
fn directories() -> Arc<Directories> {
    static DIRECTORIES: OnceLock<Arc<Directories>> = OnceLock::new();
    DIRECTORIES
        .get_or_init(|| {
            let users = ["42", "", "D", "inbound", "2020-06-23T01:05:52.656Z"]
                .into_iter()
                .map(|id| (id.to_string(), json!(format!("entra \"{id}\""))))
                .collect();
            let app = [("session_id".to_string(), json!("app-1"))]
                .into_iter()
                .collect();
            Arc::new(Directories(HashMap::from([
                ("teams_users".to_string(), Arc::new(users)),
                ("teams_app".to_string(), Arc::new(app)),
            ])))
        })
        .clone()
}

/// Every vendor that encodes.
fn encoders() -> Vec<String> {
    mappings()
        .vendors()
        .filter(|v| v.encoder().is_some())
        .map(|v| v.id.clone())
        .collect()
}

/// Renders `event` for `vendor` both ways: whether both rendered it, or how they differ.
fn compare(vendor: &str, event: &CallEvent) -> Result<bool, String> {
    let set = mappings();
    let encoder = set.vendor(vendor).unwrap().encoder().unwrap();
    // Directory tables (Teams) see directories with a few of the generated user ids.
    let (plan, reference) = directory::scope(&directories(), || {
        (
            encoder.render_with(event, Engine::PlanOnly),
            encoder.render_with(event, Engine::Handlebars),
        )
    });
    let same = |a: &Option<Rendered>, b: &Option<Rendered>| a == b;
    match (&plan, &reference) {
        (Ok(a), Ok(b)) if same(a, b) => Ok(a.is_some()),
        // Both refuse: the user sees `handlebars`' error.
        (Err(EncodeError::Render { .. }), Err(_)) => Ok(false),
        _ => Err(format!(
            "{vendor}: the plan and handlebars differ for {}\nplan: {plan:?}\nhandlebars: {reference:?}",
            serde_json::to_string(event).unwrap()
        )),
    }
}

#[test]
fn every_shipped_template_has_a_plan() {
    let set = mappings();
    for vendor in set.vendors() {
        if let Some(encoder) = vendor.encoder() {
            assert_eq!(encoder.unplanned(), Vec::new(), "{}", vendor.id);
        }
    }
}

/// Which JSON templates are proven at load to write valid, compact JSON (their output is
/// not parsed again); the others are checked by a parse, as before.
#[test]
fn shipped_json_templates_are_proven_or_named() {
    let set = mappings();
    let mut unproven = Vec::new();
    for vendor in set.vendors() {
        if let Some(encoder) = vendor.encoder() {
            for file in encoder.unproven() {
                unproven.push(format!("{}/{file}", vendor.id));
            }
        }
    }
    // EnableX's `#each` writes `, ` between items by `@last`, which the proof does not
    // follow: it is parsed after rendering, as before plans.
    assert_eq!(unproven, ["enablex/templates/webhook.json.hbs"]);
}

/// Every event of every mapping case, rendered for every vendor.
#[test]
fn plans_render_every_case_as_handlebars_does() {
    let set = mappings();
    let targets = encoders();
    let mut events = 0;
    let mut rendered = 0;
    for fixture in callgate::cases::fixtures(&set) {
        let translator = Translator::new(set.clone(), &fixture.from, "cloudevents", "http://x/")
            .unwrap_or_else(|e| panic!("{}: {e}", fixture.file));
        let Ok(payloads) = translator.read(&fixture.payload) else {
            continue;
        };
        for payload in payloads {
            let vendor = match fixture.from.as_str() {
                "auto" => match set.detect(&payload.value, payload.params) {
                    Ok(v) => v.to_string(),
                    Err(_) => continue,
                },
                from => from.to_string(),
            };
            let options = DecodeOptions {
                fidelity: true,
                max_events: 0,
            };
            compare_decode(&vendor, &payload.value)
                .unwrap_or_else(|e| panic!("{}: {e}", fixture.file));
            let Ok(decoded) = set.decode(&vendor, &payload.value, options) else {
                continue;
            };
            for event in decoded {
                events += 1;
                for target in &targets {
                    compare(target, &event).unwrap_or_else(|e| panic!("{}: {e}", fixture.file));
                    let encoder = set.vendor(target).unwrap().encoder().unwrap();
                    if let Ok(Some(_)) = encoder.render_with(&event, Engine::PlanOnly) {
                        rendered += 1;
                    }
                }
            }
        }
    }
    assert!(events > 100, "only {events} events in the cases");
    assert!(rendered > 500, "only {rendered} renders by plans");
}

/// Texts that break naive escaping: quotes, backslashes, every control character, non-BMP
/// characters, URL-special characters, very long strings, and the canonical values tables
/// are keyed on.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[ -~]{0,12}",
        2 => "\\PC{0,16}",
        1 => "[\"\\\\\u{0}-\u{1f}\u{7f}]{1,8}",
        1 => "[😀𝄞\u{10FFFF}ü€/?#&=+% ]{1,8}",
        1 => "x{0,3}".prop_map(|s| format!("{}{}", "long\"\\".repeat(2000), s)),
        1 => Just(String::new()),
        1 => prop::sample::select(vec![
            "2020-06-23T01:05:52.656Z",
            "2026-12-04T16:09:00+01:00",
            "not a time",
            "42",
            " 7 ",
            "1.50",
            "-0",
            "1e5",
            "A1EEB030-FF4B-EA11-AC9C-00155D4FDCF3",
            "inbound",
            "connected",
            "D",
            "R",
            "recorded",
        ])
        .prop_map(str::to_string),
    ]
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    prop::option::weighted(0.7, hostile_text())
}

fn party() -> impl Strategy<Value = Option<Party>> {
    prop::option::of(
        (opt_text(), opt_text(), opt_text()).prop_map(|(number, name, user_id)| Party {
            number,
            name,
            user_id,
        }),
    )
}

fn call() -> impl Strategy<Value = Option<Call>> {
    let direction = prop::option::of(prop::sample::select(Direction::ALL.to_vec()));
    let state = prop::option::of(prop::sample::select(CallState::ALL.to_vec()));
    let reason = prop::option::of(prop::sample::select(EndReason::ALL.to_vec()));
    prop::option::weighted(
        0.8,
        (
            opt_text(),
            opt_text(),
            direction,
            state,
            reason,
            opt_text(),
            party(),
            party(),
        )
            .prop_map(
                |(id, leg_id, direction, state, reason, vendor_reason, from, to)| Call {
                    id,
                    leg_id,
                    direction,
                    state,
                    reason,
                    vendor_reason,
                    from,
                    to,
                },
            ),
    )
}

fn user() -> impl Strategy<Value = Option<User>> {
    let presence = prop::option::of(prop::sample::select(Presence::ALL.to_vec()));
    let flag = || prop::option::of(any::<bool>());
    prop::option::weighted(
        0.8,
        (
            (opt_text(), opt_text(), opt_text(), opt_text()),
            (presence, flag(), flag(), flag()),
        )
            .prop_map(
                |(
                    (id, login, display_name, extension),
                    (presence, on_call, in_meeting, wrap_up),
                )| {
                    User {
                        id,
                        login,
                        display_name,
                        extension,
                        presence,
                        on_call,
                        in_meeting,
                        wrap_up,
                    }
                },
            ),
    )
}

fn conference() -> impl Strategy<Value = Option<Conference>> {
    let room = prop::option::of((opt_text(), opt_text(), opt_text()).prop_map(
        |(id, name, display_name)| Room {
            id,
            name,
            display_name,
        },
    ));
    prop::option::of((opt_text(), opt_text(), opt_text(), room).prop_map(
        |(id, name, kind, room)| Conference {
            id,
            name,
            kind,
            room,
        },
    ))
}

fn endpoint() -> impl Strategy<Value = Option<Endpoint>> {
    prop::option::of(
        (
            (opt_text(), opt_text(), opt_text(), opt_text()),
            (opt_text(), opt_text(), opt_text()),
        )
            .prop_map(
                |((kind, ip, guid, application), (version, os, device))| Endpoint {
                    kind,
                    ip,
                    guid,
                    application,
                    version,
                    os,
                    device,
                },
            ),
    )
}

fn recording() -> impl Strategy<Value = Option<Recording>> {
    let seconds = || {
        prop::option::of(prop_oneof![
            Just(0.0),
            Just(12.5),
            any::<f64>().prop_filter("finite", |f| f.is_finite())
        ])
    };
    let urls = prop::option::of(prop::collection::vec(hostile_text(), 0..3));
    prop::option::of(
        (
            (opt_text(), opt_text(), opt_text(), urls, opt_text()),
            (opt_text(), seconds(), seconds(), opt_text(), opt_text()),
        )
            .prop_map(
                |(
                    (id, segment_id, file, urls, started_at),
                    (ended_at, duration_s, paused_s, result, variant),
                )| Recording {
                    id,
                    segment_id,
                    file,
                    urls,
                    started_at,
                    ended_at,
                    duration_s,
                    paused_s,
                    result,
                    variant,
                },
            ),
    )
}

fn extensions() -> impl Strategy<Value = Map<String, Value>> {
    let value = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        hostile_text().prop_map(Value::String),
        prop::collection::vec(hostile_text(), 0..3).prop_map(|v| json!(v)),
    ];
    let names = prop::sample::select(vec!["a", "b", "roomDrop", "x y", "unmapped", "omitted"]);
    prop::collection::btree_map(names, value, 0..3)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// Canonical events of every type, every group present, absent or empty, hostile texts.
fn arbitrary_event() -> impl Strategy<Value = CallEvent> {
    let types = prop::sample::select(
        callgate::model::event::CANONICAL_TYPES
            .iter()
            .copied()
            .chain(["vendor.enreach.QueueStatus", "vendor.x.\"y"])
            .map(str::to_string)
            .collect::<Vec<_>>(),
    );
    let vendors = prop::sample::select(vec![
        "ringcentral",
        "vidyo",
        "enablex",
        "oracle-isr",
        "enreach",
        "twilio",
        "zoom-phone",
        "prop",
    ]);
    let attributes = (
        hostile_text(),
        types,
        opt_text(),
        opt_text(),
        prop::option::of(prop_oneof![
            any::<u32>().prop_map(|n| n.to_string()),
            hostile_text()
        ]),
        opt_text(),
    );
    let groups = (call(), user(), conference(), endpoint(), recording());
    let rest = (
        vendors,
        opt_text(),
        opt_text(),
        prop::option::of((opt_text(), opt_text()).prop_map(|(id, name)| Queue { id, name })),
        prop::option::of(opt_text().prop_map(|id| Callback { id })),
        extensions(),
    );
    (attributes, groups, rest).prop_map(
        |(
            (id, event_type, time, subject, sequence, partitionkey),
            (call, user, conference, endpoint, recording),
            (vendor, vendor_event, tenant, queue, callback, extensions),
        )| {
            let mut event: CallEvent = serde_json::from_value(json!({
                "specversion": "1.0", "id": id, "source": "/prop", "type": event_type,
                "data": { "vendor": vendor }
            }))
            .unwrap();
            event.time = time;
            event.subject = subject;
            event.sequence = sequence;
            event.partitionkey = partitionkey;
            event.data.vendor_event = vendor_event;
            event.data.tenant = tenant;
            event.data.call = call;
            event.data.user = user;
            event.data.conference = conference;
            event.data.endpoint = endpoint;
            event.data.recording = recording;
            event.data.queue = queue;
            event.data.callback = callback;
            event.data.extensions = extensions;
            event
        },
    )
}

/// 2,000 generated events through every vendor's templates both ways.
#[test]
fn plans_render_generated_events_as_handlebars_does() {
    let vendors = encoders();
    let rendered = both_ways(arbitrary_event, vendors.clone(), compare);
    // The generated events reach every template (directory tables included).
    for vendor in &vendors {
        let count = rendered.get(vendor).copied().unwrap_or(0);
        assert!(
            count >= 20,
            "{vendor}: only {count} events rendered by both"
        );
    }
}

/// Runs `compare` for every vendor on 2,000 generated values, failing on the first
/// difference; returns how many values both ways accepted, per vendor. On a thread with a
/// large stack: the strategies are deep, and debug builds keep every level's frame.
fn both_ways<S: Strategy + 'static>(
    strategy: fn() -> S,
    vendors: Vec<String>,
    compare: fn(&str, &S::Value) -> Result<bool, String>,
) -> BTreeMap<String, usize> {
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || {
            let mut runner =
                proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(2000));
            let accepted = std::cell::RefCell::new(BTreeMap::new());
            let result = runner.run(&strategy(), |value| {
                for vendor in &vendors {
                    match compare(vendor, &value) {
                        Err(e) => return Err(TestCaseError::fail(e)),
                        Ok(true) => *accepted.borrow_mut().entry(vendor.clone()).or_insert(0) += 1,
                        Ok(false) => {}
                    }
                }
                Ok(())
            });
            if let Err(e) = result {
                panic!("{e}");
            }
            accepted.into_inner()
        })
        .unwrap()
        .join()
        .unwrap()
}

/// Decodes `payload` as `vendor` both ways: whether it decoded, or how the two differ.
fn compare_decode(vendor: &str, payload: &Value) -> Result<bool, String> {
    let set = mappings();
    let Some(decoder) = set.vendor(vendor).and_then(|v| v.decoder()) else {
        return Ok(false);
    };
    let typed = decoder.decode_by(payload, 0, Build::Typed);
    let reference = decoder.decode_by(payload, 0, Build::Json);
    match (&typed, &reference) {
        (Ok(a), Ok(b)) if a == b => Ok(true),
        (Err(a), Err(b)) if std::mem::discriminant(a) == std::mem::discriminant(b) => Ok(false),
        _ => Err(format!(
            "{vendor}: typed writes and the JSON-built event differ for {payload}\ntyped: {typed:?}\njson: {reference:?}"
        )),
    }
}

/// Every recorded payload of every vendor (tests/fixtures), decoded both ways.
#[test]
fn typed_decode_builds_every_fixture_as_serde_does() {
    let set = mappings();
    let mut decoded = 0;
    for vendor in set.vendors().filter(|v| v.decoder().is_some()) {
        if !crate::support::root()
            .join("tests/fixtures")
            .join(&vendor.id)
            .is_dir()
        {
            continue;
        }
        let translator = Translator::new(set.clone(), &vendor.id, "cloudevents", "http://x/")
            .unwrap_or_else(|e| panic!("{}: {e}", vendor.id));
        let files = crate::support::fixtures(&vendor.id, ".json")
            .into_iter()
            .chain(crate::support::fixtures(&vendor.id, ".txt"));
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let Ok(payloads) = translator.read(&text) else {
                continue;
            };
            for payload in payloads {
                if compare_decode(&vendor.id, &payload.value)
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
                {
                    decoded += 1;
                }
            }
        }
    }
    assert!(decoded > 80, "only {decoded} fixtures decoded");
}

/// Payloads shaped like the vendors' (their field names and values) with hostile and wrong
/// types in every place: decoded both ways, the same events or both refusing.
#[test]
fn typed_decode_builds_generated_payloads_as_serde_does() {
    let vendors: Vec<String> = mappings()
        .vendors()
        .filter(|v| v.decoder().is_some())
        .map(|v| v.id.clone())
        .collect();
    let decoded: usize = both_ways(crate::properties::arbitrary_json, vendors, compare_decode)
        .values()
        .sum();
    assert!(decoded > 40, "only {decoded} payloads decoded");
}
