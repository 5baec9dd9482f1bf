//! Real RingCentral call flows (public captures) translated into Vidyo and Enreach: each
//! notification of a flow is sent in capture order through one translator, so lifecycle
//! state carries across them as it does in `serve`.

use crate::support::{
    DATASTREAMS_IN_VIDYO, event_types, fixtures, mappings, outcomes, pairs, vidyo_states,
};
use callgate::lifecycle::Verdict;
use callgate::translate::{Outcome, Translator};
use serde_json::Value;

fn flow_outputs(flow: &str, to: &str, order: Option<&[usize]>) -> (Vec<Value>, Vec<Outcome>) {
    let translator = Translator::new(mappings(), "ringcentral", to, "http://127.0.0.1/").unwrap();
    let files = fixtures(&format!("ringcentral/flows/{flow}"), ".json");
    let order: Vec<usize> = order
        .map(<[usize]>::to_vec)
        .unwrap_or_else(|| (1..=files.len()).collect());
    let mut lines = Vec::new();
    let mut all = Vec::new();
    for n in order {
        for outcome in outcomes(&translator, &files[n - 1]) {
            if let Some(line) = outcome.output_line() {
                lines.push(line);
            }
            all.push(outcome);
        }
    }
    (lines, all)
}

#[test]
fn pstn_to_ringcentral_datastreams_into_vidyo() {
    let (lines, all) = flow_outputs("PSTN-RingCentral-DataStreams", "vidyo", None);
    assert_eq!(vidyo_states(&lines), pairs(DATASTREAMS_IN_VIDYO));
    for line in &lines {
        let n = &line["userStatusNotification"];
        assert_eq!(n["user"]["memberID"], "809646016");
        assert_eq!(
            n["conference"]["uniqueCallID"],
            "s-718107795d564867a6f635fd81e89940"
        );
        assert_eq!(n["conference"]["direction"], "I");
    }
    assert_eq!(
        lines[5]["userStatusNotification"]["conference"]["callCompletionCode"],
        "1"
    );
    assert_eq!(
        lines[0]["sequenceNum"], 6,
        "RingCentral sequence carries over"
    );
    // The PSTN caller's and the IVR's legs have no meaning for the user's Vidyo status.
    let skipped = all
        .iter()
        .filter(|o| matches!(o, Outcome::Skipped { .. }))
        .count();
    assert_eq!(skipped, 5);
}

#[test]
fn pstn_to_ringcentral_datastreams_into_enreach() {
    let (lines, _) = flow_outputs("PSTN-RingCentral-DataStreams", "enreach", None);
    let types = event_types(&lines);
    assert_eq!(
        types,
        [
            "UserCallInComing",
            "UserCallInUserAllocated",
            "UserCallInUserConnected",
            "UserCallInHoldStart",
            "UserCallInHoldEnd",
            "UserCallInDisconnected",
        ]
    );
    assert_eq!(lines[5]["Reason"], "local");
    assert!(
        lines
            .iter()
            .all(|l| l["CallId"] == "s-718107795d564867a6f635fd81e89940")
    );
    assert!(lines.iter().all(|l| l["UserId"] == "809646016"));
}

#[test]
fn ringcentral_to_pstn_is_outbound() {
    let (lines, _) = flow_outputs("RingCentral-PSTN", "vidyo", None);
    assert_eq!(
        vidyo_states(&lines),
        pairs(&[
            ("Ringing", "RINGING"),
            ("Ringing", "RINGING"),
            ("Busy", "IN PROGRESS"),
            ("Busy", "IN PROGRESS"),
            ("Busy", "IN PROGRESS"),
            ("Online", "COMPLETED"),
        ])
    );
    assert!(
        lines
            .iter()
            .all(|l| l["userStatusNotification"]["conference"]["direction"] == "O")
    );
    let (lines, _) = flow_outputs("RingCentral-PSTN", "enreach", None);
    let types = event_types(&lines);
    assert_eq!(
        types,
        [
            "UserCallOutGoing",
            "UserCallOutGoing",
            "UserCallOutConnected",
            "UserCallOutHoldStart",
            "UserCallOutHoldEnd",
            "UserCallOutDisconnected",
        ]
    );
}

#[test]
fn ringcentral_to_ringcentral_follows_the_callee() {
    // The caller's party is Answered before the callee even rings: only the monitored
    // extension's (the callee's) party may drive its status.
    let (lines, _) = flow_outputs("RingCentral-RingCentral", "vidyo", None);
    assert_eq!(
        vidyo_states(&lines),
        pairs(&[
            ("Alerting", "ALERTING"),
            ("Alerting", "ALERTING"),
            ("Busy", "IN PROGRESS"),
            ("Online", "COMPLETED"),
        ])
    );
}

#[test]
fn duplicates_and_stale_notifications_are_dropped_and_resume_is_derived() {
    // 06 twice (a redelivery), and 07 (seq 8) arriving after 08 (seq 9).
    let (lines, all) = flow_outputs(
        "PSTN-RingCentral-DataStreams",
        "enreach",
        Some(&[5, 6, 6, 8, 7, 9, 10]),
    );
    let types = event_types(&lines);
    assert_eq!(
        types,
        [
            "UserCallInComing",
            "UserCallInUserAllocated",
            "UserCallInHoldStart",
            "UserCallInHoldEnd",
            "UserCallInDisconnected",
        ]
    );
    let dropped: Vec<&Verdict> = all
        .iter()
        .filter_map(|o| match o {
            Outcome::Dropped(v) => Some(v),
            _ => None,
        })
        .collect();
    assert!(
        matches!(dropped[0], Verdict::Duplicate { .. }),
        "{dropped:?}"
    );
    assert!(
        matches!(
            dropped[1],
            Verdict::Stale {
                last: 9,
                got: 8,
                ..
            }
        ),
        "{dropped:?}"
    );
}
