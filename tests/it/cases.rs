//! Runs every `mappings/*/cases/*.yaml`, exactly as `callgate test` does.

use crate::support::mappings;
use callgate::cases::run_all;

#[test]
fn every_mapping_case_passes() {
    let reports = run_all(&mappings());
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| !r.passed())
        .map(|r| {
            format!(
                "{} ({}):\n  {}",
                r.name,
                r.file.display(),
                r.failures.join("\n  ")
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} case(s) failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
    // One case per row of both mapping tables at least; a lost folder shows up here.
    assert!(reports.len() >= 190, "only {} cases found", reports.len());
    for vendor in [
        "ringcentral",
        "vidyo",
        "enreach",
        "enablex",
        "oracle-isr",
        "cloudevents",
    ] {
        let n = mappings().vendor(vendor).expect("vendor").cases.len();
        assert!(n > 0, "{vendor} has no cases");
    }
}

#[test]
fn a_failing_expectation_is_reported_with_the_difference() {
    let dir = tempfile::tempdir().unwrap();
    let case = dir.path().join("wrong.yaml");
    std::fs::write(
        &case,
        "from: enablex\nto: cloudevents\ninput: {type: roomdrop, app_id: a, room_id: r, conf_num: '1', trans_date: 1700000123}\nexpect:\n  \"$.type\": call.ended\n",
    )
    .unwrap();
    let report = callgate::cases::run_case(&mappings(), &case);
    assert!(!report.passed());
    assert!(
        report.failures[0].contains("expected \"call.ended\", got \"conference.ended\""),
        "{:?}",
        report.failures
    );
}

/// A case that checks nothing is refused, and `expect` must name every output: an empty map,
/// a missing `expect`, and one map for a two-output input all fail.
#[test]
fn a_case_that_checks_nothing_or_too_little_fails() {
    let dir = tempfile::tempdir().unwrap();
    let input =
        "input: {type: roomdrop, app_id: a, room_id: r, conf_num: '1', trans_date: 1700000123}\n";
    let run = |name: &str, text: &str| {
        let case = dir.path().join(name);
        std::fs::write(&case, text).unwrap();
        callgate::cases::run_case(&mappings(), &case)
    };
    let empty = run(
        "empty.yaml",
        &format!("from: enablex\nto: cloudevents\n{input}expect: {{}}\n"),
    );
    assert!(!empty.passed());
    assert!(
        empty.failures[0].contains("`expect` is missing or empty"),
        "{:?}",
        empty.failures
    );
    let missing = run(
        "missing.yaml",
        &format!("from: enablex\nto: cloudevents\n{input}"),
    );
    assert!(!missing.passed());
    let flow = "[\"inputs/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-08.json\", \"inputs/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-09.json\"]";
    let two = dir.path().join("inputs/flows/PSTN-RingCentral-DataStreams");
    std::fs::create_dir_all(&two).unwrap();
    for n in ["08", "09"] {
        let name = format!("PSTN-RingCentral-DataStreams-{n}.json");
        std::fs::copy(
            crate::support::root()
                .join("mappings/ringcentral/cases/inputs/flows/PSTN-RingCentral-DataStreams")
                .join(&name),
            two.join(&name),
        )
        .unwrap();
    }
    let one_for_two = run(
        "one-for-two.yaml",
        &format!(
            "from: ringcentral\nto: cloudevents\ninput: {flow}\nexpect:\n  \"$.type\": call.resumed\n"
        ),
    );
    assert!(!one_for_two.passed());
    assert!(
        one_for_two.failures[0].contains("made 2 outputs"),
        "{:?}",
        one_for_two.failures
    );
}
