//! `check` as an ops person's safety net: each mistake an editor of mapping files makes is
//! made on a copy of the shipped `mappings/`, one at a time, and must be refused at load with
//! the file and line (and, in templates, the column) at fault. The copy also proves a vendor
//! folder stands alone: nothing under `mappings/` points outside it.

use crate::support::{copy_dir, root};
use callgate::mapping::MappingSet;
use std::path::Path;
use std::process::Command;

/// A copy of the shipped mappings in a fresh temporary folder, with nothing else beside it.
fn copy_of_mappings() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join("mappings"), &dir.path().join("mappings"));
    dir
}

/// Replaces `old` (which must occur) by `new` in `file` under the copied `mappings/`.
fn edit(dir: &Path, file: &str, old: &str, new: &str) {
    let path = dir.join("mappings").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(old), "{file} does not contain {old:?}");
    std::fs::write(&path, text.replacen(old, new, 1)).unwrap();
}

/// The problems of loading the copied mappings, one per line (`file:line[:col]: message`).
fn problems(dir: &Path) -> String {
    match MappingSet::load(&dir.join("mappings")) {
        Ok(_) => String::new(),
        Err(problems) => problems.to_string(),
    }
}

/// The 1-based line of the first occurrence of `needle` in `file` under the copy.
fn line_of(dir: &Path, file: &str, needle: &str) -> usize {
    let text = std::fs::read_to_string(dir.join("mappings").join(file)).unwrap();
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in {file}"))
        + 1
}

/// Makes one mistake and asserts it is refused at `file:line` with a message containing each
/// of `says`.
fn refused(file: &str, old: &str, new: &str, line_needle: &str, says: &[&str]) {
    refused_in(file, old, new, (file, line_needle), says);
}

/// As [`refused`], for a mistake in `file` reported in another file (`at`: file, line needle).
fn refused_in(file: &str, old: &str, new: &str, at: (&str, &str), says: &[&str]) {
    let dir = copy_of_mappings();
    edit(dir.path(), file, old, new);
    let line = line_of(dir.path(), at.0, at.1);
    let found = problems(dir.path());
    let at = format!("{}:{line}:", at.0);
    let hit = found
        .lines()
        .find(|l| l.contains(&at))
        .unwrap_or_else(|| panic!("no problem at {at} for {new:?}; got:\n{found}"));
    for word in says {
        assert!(hit.contains(word), "{hit:?} does not say {word:?}");
    }
}

#[test]
fn the_shipped_mappings_copied_alone_pass_check_with_their_cases() {
    let dir = copy_of_mappings();
    assert_eq!(problems(dir.path()), "");
    let out = Command::new(env!("CARGO_BIN_EXE_callgate"))
        .args(["check", "--mappings", "mappings"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("mappings and cases valid"), "{stdout}");
}

#[test]
fn a_case_input_outside_its_vendor_folder_is_refused() {
    let dir = copy_of_mappings();
    std::fs::write(
        dir.path().join("mappings/vidyo/cases/escape.yaml"),
        "from: vidyo\nto: cloudevents\ninput: ../../../secret.json\nexpect:\n  \"$.type\": call.ended\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("secret.json"), "{}").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_callgate"))
        .args(["test", "--mappings", "mappings"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("inside the vendor folder"), "{stdout}");
}

#[test]
fn a_typo_in_an_obj_hash_argument_names_the_nearest_field() {
    refused(
        "vidyo/templates/user-status.json.hbs",
        "displayName=data.user.display_name",
        "displayName=data.user.dispaly_name",
        "displayName=data.user.dispaly_name",
        &[
            "data.user.dispaly_name",
            "did you mean `data.user.display_name`",
        ],
    );
}

#[test]
fn a_typo_in_a_default_subexpression_is_refused() {
    refused(
        "vidyo/templates/user-status.json.hbs",
        "userName=(default data.user.login data.user.extension)",
        "userName=(default data.user.logn data.user.extension)",
        "(default data.user.logn",
        &["data.user.logn", "did you mean `data.user.login`"],
    );
}

#[test]
fn a_typo_in_a_table_argument_is_refused() {
    refused(
        "vidyo/templates/user-status.json.hbs",
        "(table \"direction_out\" data.call.direction)",
        "(table \"direction_out\" data.call.directon)",
        "data.call.directon",
        &["data.call.directon", "did you mean `data.call.direction`"],
    );
}

#[test]
fn a_typo_in_a_block_condition_is_refused() {
    refused(
        "vidyo/templates/user-status.json.hbs",
        "{{#if data.conference.room}}",
        "{{#if data.conferense.room}}",
        "{{#if data.conferense.room}}",
        &[
            "data.conferense.room",
            "did you mean `data.conference.room`",
        ],
    );
}

#[test]
fn a_table_value_that_is_not_a_canonical_type_points_at_its_line() {
    refused(
        "vidyo/tables.yaml",
        "COMPLETED: call.ended",
        "COMPLETED: call.hungup",
        "COMPLETED: call.hungup",
        &["call.hungup", "not a canonical type"],
    );
}

#[test]
fn a_table_value_that_is_not_an_end_reason_points_at_its_line() {
    refused(
        "vidyo/tables.yaml",
        "\"COMPLETED/3\": failed",
        "\"COMPLETED/3\": faild",
        "\"COMPLETED/3\": faild",
        &["faild", "did you mean `failed`"],
    );
}

#[test]
fn a_presence_table_value_out_of_its_domain_is_refused() {
    refused(
        "ringcentral/tables.yaml",
        "\"*/Available\": available",
        "\"*/Available\": availible",
        "\"*/Available\": availible",
        &["availible", "available, busy, dnd, away, offline"],
    );
}

#[test]
fn an_unknown_table_in_a_template_is_refused_with_its_line() {
    refused(
        "vidyo/templates/user-status.json.hbs",
        "(table \"call_state\"",
        "(table \"call_stat\"",
        "(table \"call_stat\"",
        &["unknown table `call_stat`", "did you mean `call_state`"],
    );
}

#[test]
fn a_missing_template_file_is_refused_at_its_line_in_encode_yaml() {
    refused(
        "vidyo/encode.yaml",
        "body: templates/user-status.json.hbs",
        "body: templates/user-status.jsn.hbs",
        "body: templates/user-status.jsn.hbs",
        &["cannot read"],
    );
}

#[test]
fn a_types_pattern_that_matches_nothing_is_refused() {
    refused(
        "enablex/encode.yaml",
        "types: [\"conference.ended\", \"recording.available\"]",
        "types: [\"conference.ended\", \"recording.availble\"]",
        "recording.availble",
        &["recording.availble", "did you mean `recording.available`"],
    );
}

#[test]
fn a_lookup_that_misses_canonical_values_is_refused_naming_table_and_key() {
    refused_in(
        "vidyo/tables.yaml",
        "    \"call.ended/*/*\": Online\n",
        "",
        (
            "vidyo/templates/user-status.json.hbs",
            "userState=(table \"user_state\"",
        ),
        &["table `user_state` has no entry for", "`call.ended/"],
    );
}

#[test]
fn a_helper_called_with_the_wrong_arity_is_refused() {
    refused(
        "vidyo/templates/user-status.json.hbs",
        "userName=(default data.user.login data.user.extension)",
        "userName=(default data.user.login)",
        "userName=(default data.user.login)",
        &["`default` takes 2 arguments, given 1"],
    );
}

#[test]
fn an_unknown_helper_is_refused() {
    refused(
        "enablex/templates/webhook.json.hbs",
        "{{epoch_s time}}",
        "{{epoch_sec time}}",
        "{{epoch_sec time}}",
        &["unknown helper `epoch_sec`", "did you mean `epoch_s`"],
    );
}

#[test]
fn an_unknown_time_format_is_refused() {
    refused(
        "vidyo/decode.yaml",
        "format: epoch_us",
        "format: epoch_usec",
        "format: epoch_usec",
        &[
            "unknown time format `epoch_usec`",
            "did you mean `epoch_us`",
        ],
    );
}

#[test]
fn a_set_target_that_is_not_a_canonical_field_is_refused() {
    refused(
        "vidyo/decode.yaml",
        "data.user.display_name: ",
        "data.user.dispaly_name: ",
        "data.user.dispaly_name: ",
        &[
            "data.user.dispaly_name",
            "did you mean `data.user.display_name`",
        ],
    );
}

#[test]
fn a_template_every_type_of_which_an_earlier_one_takes_is_refused() {
    refused(
        "enreach/encode.yaml",
        "  - types: [\"vendor.enreach.*\"]",
        "  - types: [\"call.ended\", \"presence.changed\"]",
        "  - types: [\"call.ended\", \"presence.changed\"]",
        &["taken by an earlier template", "never render"],
    );
}

#[test]
fn a_form_content_type_with_a_json_body_template_is_refused() {
    refused(
        "vidyo/encode.yaml",
        "content_type: application/json",
        "content_type: application/x-www-form-urlencoded",
        "body: templates/user-status.json.hbs",
        &["form", "`query:`"],
    );
}

#[test]
fn a_bad_strftime_pattern_in_time_format_is_refused() {
    refused(
        "oracle-isr/templates/notification.query.hbs",
        "{{time_format data.recording.started_at \"%Y-%m-%d %H:%M:%S%.3f\"}}",
        "{{time_format data.recording.started_at \"%Y-%m-%d %H:%M:%Q\"}}",
        "%H:%M:%Q",
        &["not a valid strftime pattern"],
    );
}

/// A signature or handshake declaration that cannot be built is refused at load, naming the
/// file, the line and what is wrong (issue: "check refuses a `verify:` or handshake declaration
/// it cannot build").
#[test]
fn a_signature_scheme_or_challenge_that_cannot_be_built_is_refused() {
    refused(
        "twilio/vendor.yaml",
        "algorithm: hmac-sha1",
        "algorithm: hmac-md5",
        "header: X-Twilio-Signature",
        &["hmac-md5", "hmac-sha1 or hmac-sha256"],
    );
    refused(
        "twilio/vendor.yaml",
        "signed: [url, sorted_form_params]",
        "signed: [url, sorted_params]",
        "header: X-Twilio-Signature",
        &["sorted_params", "sorted_form_params"],
    );
    refused(
        "zoom-phone/vendor.yaml",
        "tolerance: 5m",
        "tolerance: soon",
        "header: x-zm-signature",
        &["soon", "duration"],
    );
    refused(
        "zoom-phone/vendor.yaml",
        "token: \"$.payload.plainToken\"",
        "token: \"payload[plainToken]\"",
        "event: \"$.event\"",
        &["payload[plainToken]", "member path"],
    );
}

/// An encode `path:` template is checked like a template, its problems at its line in
/// encode.yaml: a misspelt field, and a path that could add a query.
#[test]
fn a_url_path_template_is_checked_at_its_line() {
    refused(
        "msteams-presence/encode.yaml",
        "data.user.id}}/presence",
        "data.user.idd}}/presence",
        "path: ",
        &["data.user.idd", "data.user.id"],
    );
    refused(
        "msteams-presence/encode.yaml",
        "/presence/setPresence\"",
        "/presence/setPresence?x=1\"",
        "path: ",
        &["must start with / and hold no ? or #"],
    );
}

/// A directory table takes its entries from the directory file only: entries or a default
/// written beside `directory:` would be ignored without a word, so they are refused at its
/// line.
#[test]
fn a_directory_table_with_its_own_entries_is_refused() {
    refused(
        "msteams-presence/tables.yaml",
        "teams_users: { directory: teams_users }",
        "teams_users: { directory: teams_users, default: nobody }",
        "teams_users: { directory",
        &["teams_users", "directory", "default"],
    );
    refused(
        "msteams-presence/tables.yaml",
        "teams_app: { directory: teams_app }",
        "teams_app: { directory: teams_app, map: { session_id: x } }",
        "teams_app: { directory",
        &["teams_app", "directory", "map"],
    );
}
