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
    // One case per row of both DESIGN.md §4 tables at least; a lost folder shows up here.
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
