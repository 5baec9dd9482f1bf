//! The `callgate` binary as a user runs it: exit codes, stdout lines, stderr messages.

use crate::support::{copy_dir, root};
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn callgate(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_callgate"))
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn callgate");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn translate_prints_one_compact_line_per_output() {
    let out = callgate(
        &[
            "translate",
            "--from",
            "ringcentral",
            "--to",
            "vidyo",
            "tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-06.json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["userStatusNotification"]["user"]["userState"], "Alerting");
}

#[test]
fn translate_auto_detects_and_reads_stdin() {
    let body = std::fs::read(root().join("tests/fixtures/enablex/seed-roomdrop.json")).unwrap();
    let out = callgate(
        &["translate", "--from", "auto", "--to", "cloudevents", "-"],
        Some(&body),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("\"type\":\"conference.ended\""));
}

#[test]
fn oracle_isr_output_is_a_request() {
    let out = callgate(
        &[
            "translate",
            "--from",
            "oracle-isr",
            "--to",
            "oracle-isr",
            "--url",
            "https://isr.example/e",
            "tests/fixtures/oracle-isr/seed-face-audio-recording-started.txt",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(v["method"], "GET");
    assert!(
        v["url"]
            .as_str()
            .unwrap()
            .starts_with("https://isr.example/e?event=AudioRecordingStarted&")
    );
}

#[test]
fn an_event_without_template_is_skipped_with_exit_0() {
    let out = callgate(
        &[
            "translate",
            "--from",
            "enreach",
            "--to",
            "vidyo",
            "tests/fixtures/enreach/QueueStatus.json",
        ],
        None,
    );
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("vidyo has no template for type vendor.enreach.QueueStatus")
    );
}

#[test]
fn bad_input_exits_2_with_one_clear_line() {
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let cases: [(&str, &[u8], &str); 5] = [
        (
            "ringcentral",
            b"not json {",
            "ringcentral: input is not valid JSON",
        ),
        ("vidyo", deep.as_bytes(), "recursion limit exceeded"),
        (
            "ringcentral",
            b"{\"hello\": 1}",
            "ringcentral: no decode rule matched this payload (tried `telephony-session` when $.body.telephonySessionId",
        ),
        ("enablex", b"   \n", "empty input"),
        ("auto", b"{\"x\": 1}", "auto: the payload matches no vendor"),
    ];
    for (from, input, expected) in cases {
        let out = callgate(&["translate", "--from", from, "--to", "vidyo"], Some(input));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{from}: {stderr}");
        assert!(stderr.contains(expected), "{from}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(!stderr.contains("panicked"));
    }
}

#[test]
fn unknown_vendor_is_refused() {
    let out = callgate(
        &["translate", "--from", "skype", "--to", "vidyo"],
        Some(b"{}"),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown vendor `skype`"));
}

#[test]
fn test_command_prints_the_closing_line() {
    let out = callgate(&["test"], None);
    assert!(out.status.success(), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    let last = stdout.lines().last().unwrap();
    assert!(last.ends_with(" passed, 0 failed"), "{last}");
}

#[test]
fn check_names_file_line_and_path_of_a_broken_mapping() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join("mappings"), dir.path());
    let decode = dir.path().join("vidyo/decode.yaml");
    let original = std::fs::read_to_string(&decode).unwrap();
    std::fs::write(
        &decode,
        original.replace(
            "\"$.userStatusNotification.user.userName\"",
            "\"$.userStatusNotification[\"",
        ),
    )
    .unwrap();
    let tables = dir.path().join("enablex/decode.yaml");
    let original = std::fs::read_to_string(&tables).unwrap();
    std::fs::write(
        &tables,
        original.replace("table: variant", "table: no_such_table"),
    )
    .unwrap();
    let template = dir.path().join("enreach/templates/event.json.hbs");
    std::fs::write(&template, "{{#if x}}\n{{json y}}\n").unwrap();

    let out = callgate(&["check", "--mappings", dir.path().to_str().unwrap()], None);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = original_line(
        &root().join("mappings/vidyo/decode.yaml"),
        "data.user.login",
    );
    assert!(stderr.contains(&format!("vidyo/decode.yaml:{line}: rule `call`: set `data.user.login`: invalid JSONPath `$.userStatusNotification[`")), "{stderr}");
    assert!(stderr.contains("enablex/decode.yaml:"), "{stderr}");
    assert!(stderr.contains("unknown table `no_such_table`"), "{stderr}");
    assert!(
        stderr.contains("enreach/templates/event.json.hbs"),
        "{stderr}"
    );
    // The Vidyo path sits in a YAML anchor shared by two rules: both are reported.
    assert!(stderr.contains("4 problem(s)"), "{stderr}");
}

#[test]
fn check_passes_on_the_shipped_mappings() {
    let out = callgate(&["check"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn help_explains_every_command() {
    let out = callgate(&["--help"], None);
    let help = text(&out.stdout);
    for word in ["translate", "check", "test"] {
        assert!(help.contains(word), "{help}");
    }
    let out = callgate(&["translate", "--help"], None);
    assert!(text(&out.stdout).contains("--from <VENDOR>"));
}

fn original_line(file: &std::path::Path, needle: &str) -> usize {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .position(|l| l.contains(needle))
        .unwrap()
        + 1
}

#[test]
fn shipped_and_example_configs_check_clean() {
    let out = callgate(&["check", "--config", "config/callgate.yaml"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("configuration valid"));

    let out = callgate(&["check", "--config", "config/examples/full.yaml"], None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("environment variable(s) not set: CALLGATE_ADMIN_TOKEN, RC_VERIFICATION_TOKEN, RTE_TOKEN, VIDYO_PASSWORD, VIDYO_USER"),
        "{stderr}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_callgate"))
        .args(["check", "--config", "config/examples/full.yaml"])
        .current_dir(root())
        .envs([
            ("CALLGATE_ADMIN_TOKEN", "a"),
            ("RC_VERIFICATION_TOKEN", "secret-value-1"),
            ("RTE_TOKEN", "t"),
            ("VIDYO_PASSWORD", "pw"),
            ("VIDYO_USER", "u"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stdout).contains("secret-value-1")
            && !text(&out.stderr).contains("secret-value-1")
    );
}

#[test]
fn a_config_error_names_the_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yaml");
    std::fs::write(&config, "server:\n  listen: 127.0.0.1:1\nroutes:\n  - name: a\n    path: /a\n    from: vidyo\n    ak: queued\n").unwrap();
    let out = callgate(&["check", "--config", config.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("bad.yaml") && stderr.contains("line 7") && stderr.contains("ak"),
        "{stderr}"
    );
}

/// `check` names the line of a semantic problem as it does a syntax error, and refuses a
/// store that `serve` could not create (issue 11, item 2).
#[test]
fn semantic_config_errors_name_their_line_and_an_unwritable_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a-file"), "not a folder").unwrap();
    let config = dir.path().join("bad.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  listen: 127.0.0.1:0\n  request_timeout: 0s\n\
             store: {{ kind: sqlite, path: {} }}\n\
             routes:\n  - name: a\n    path: /a/{{id}}\n    from: vidyo\n    to:\n\
             \x20     - {{ name: d, vendor: vidyo, url: 'http://x/#frag' }}\n\
             mappings: {}\n\
             archive:\n  max_bytes: 0\n",
            dir.path().join("a-file/sub/callgate.db").display(),
            root().join("mappings").display()
        ),
    )
    .unwrap();
    let out = callgate(&["check", "--config", config.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    for expected in [
        "bad.yaml:3: server.request_timeout must be above 0",
        "bad.yaml:6: route `a`: path `/a/{id}` is not a literal path",
        "bad.yaml:10: route `a`, destination `d`: url `http://x/#frag` has a #fragment",
        "bad.yaml:13: archive.max_bytes must be above 0",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }

    // Valid otherwise, but the store's folder lies under a file.
    let text_ok = std::fs::read_to_string(&config)
        .unwrap()
        .replace("request_timeout: 0s", "request_timeout: 5s")
        .replace("/a/{id}", "/a")
        .replace("#frag", "")
        .replace("max_bytes: 0", "max_bytes: 1000000");
    std::fs::write(&config, text_ok).unwrap();
    let out = callgate(&["check", "--config", config.to_str().unwrap()], None);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("store.path")
            && stderr.contains("a-file")
            && stderr.contains("not a folder"),
        "{stderr}"
    );
}

/// Inputs that must be refused with exit 2 and one line naming what is wrong (issue 7).
#[test]
fn translate_refuses_what_the_vendor_never_sends() {
    let cases: &[(&str, &str, &[u8], &str)] = &[
        (
            "oracle-isr",
            "cloudevents",
            br#"{"event":"RECORDING_STARTED_EVENT","ISR_UCID":"u"}"#,
            "parameters",
        ),
        (
            "vidyo",
            "cloudevents",
            br#"{"userStatusNotification":{"user":"x"}}"#,
            "no decode rule",
        ),
        (
            "vidyo",
            "cloudevents",
            br#"{"userStatusNotification":{"user":{"userName":"a"}}}"#,
            "no decode rule",
        ),
        (
            "ringcentral",
            "cloudevents",
            b"{\"uuid\":\"a\xffb\",\"body\":{}}",
            "UTF-8",
        ),
        (
            "oracle-isr",
            "cloudevents",
            b"event=X&ISR_UCID=\xff",
            "UTF-8",
        ),
    ];
    for (from, to, input, why) in cases {
        let out = callgate(&["translate", "--from", from, "--to", to], Some(input));
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{from} {:?}: {stderr}",
            text(input)
        );
        assert!(stderr.contains(why), "{from}: expected {why:?} in {stderr}");
        assert!(out.stdout.is_empty());
    }
}

/// Numbers keep their text through a same-vendor round trip: beyond u64, long fractions,
/// trailing zeros and negative zero are not rewritten as floats (issue 11, item 7). An
/// exponent keeps its digits and value; serde_json writes its marker as `e+`/`e-`.
#[test]
fn numbers_keep_their_exact_text() {
    let ce = r#"{"specversion":"1.0","id":"e1","source":"/x","type":"call.connected","partitionkey":"c","subject":"c","data":{"vendor":"x","call":{"id":"c","state":"connected"},"extensions":{"big":18446744073709551616,"exp":1E2,"neg":-0,"frac":0.10,"long":3.141592653589793238462643383279}}}"#;
    let fixture = std::fs::read_to_string(
        root().join("tests/fixtures/ringcentral/flows/RingCentral-PSTN/RingCentral-PSTN-01.json"),
    )
    .unwrap();
    let rc = fixture.replacen(
        "\"body\"",
        r#""x_big":18446744073709551616,"x_exp":1E2,"x_neg":-0,"body""#,
        1,
    );
    assert_ne!(rc, fixture);
    for (vendor, input, literals) in [
        (
            "cloudevents",
            ce,
            &[
                "18446744073709551616",
                "1e+2",
                "\"neg\":-0",
                "0.10",
                "3.141592653589793238462643383279",
            ][..],
        ),
        (
            "ringcentral",
            rc.as_str(),
            &["18446744073709551616", "1e+2", "\"x_neg\":-0"][..],
        ),
    ] {
        let out = callgate(
            &["translate", "--from", vendor, "--to", vendor],
            Some(input.as_bytes()),
        );
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{vendor}: {}", text(&out.stderr));
        for literal in literals {
            assert!(
                stdout.contains(literal),
                "{vendor}: {literal} lost in {stdout}"
            );
        }
    }
}

/// CloudEvents in, CloudEvents out: exact, `null` members of `data` included.
#[test]
fn cloudevents_round_trip_keeps_null_members() {
    let input = r#"{"specversion":"1.0","id":"e1","source":"/x","type":"call.connected","partitionkey":"c","subject":"c","data":{"vendor":"x","tenant":null,"call":{"id":"c","state":"connected","from":null,"to":{"name":null,"number":"1"}},"extensions":{}}}"#;
    let out = callgate(
        &["translate", "--from", "cloudevents", "--to", "cloudevents"],
        Some(input.as_bytes()),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected: serde_json::Value = serde_json::from_str(input).unwrap();
    assert_eq!(got, expected);
}

/// The README's first command: the RingCentral flow reaches the Vidyo receiver and, through
/// the RTE hub, the SignalR client app, whose events arrive complete and in call order.
#[test]
fn the_demo_shows_vidyo_and_rte_deliveries() {
    let out = callgate(&["demo"], None);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let vidyo = stdout.lines().filter(|l| l.starts_with("← ")).count();
    assert_eq!(vidyo, 6, "{stdout}");
    let rte: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("⇐ "))
        .map(|l| l.split_whitespace().next().unwrap_or_default())
        .collect();
    assert_eq!(
        rte,
        [
            "UserCallInComing",
            "UserCallInUserAllocated",
            "UserCallInUserConnected",
            "UserCallInHoldStart",
            "UserCallInHoldEnd",
            "UserCallInDisconnected"
        ],
        "{stdout}"
    );
    assert!(
        stdout.contains("6 deliveries to Vidyo, 6 RTE events over SignalR"),
        "{stdout}"
    );
}

#[test]
fn docs_canonical_model_is_the_current_output_of_callgate_schema() {
    let out = callgate(&["schema"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let committed = std::fs::read_to_string(root().join("docs/canonical-model.md")).unwrap();
    assert!(
        text(&out.stdout) == committed,
        "docs/canonical-model.md is stale: run `cargo run -- schema > docs/canonical-model.md`"
    );
    for field in [
        "`data.user.display_name`",
        "`data.call.reason`",
        "no_answer",
    ] {
        assert!(committed.contains(field), "{field}");
    }
}

#[test]
fn callgate_schema_prints_a_json_schema_of_the_canonical_event() {
    let out = callgate(&["schema", "--json-schema"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reason = &schema["properties"]["data"]["properties"]["call"]["properties"]["reason"];
    assert_eq!(reason["enum"][0], "completed");
    assert_eq!(schema["required"][3], "type");
}

/// `--config` is accepted after the subcommand too: `callgate dlq list --config F` reads the
/// store F names (it used to be refused as an unknown argument).
#[test]
fn config_is_accepted_after_a_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let file = one_route_config(dir.path(), crate::harness::free_port());
    let file = file.display().to_string();
    for args in [
        ["dlq", "--config", &file, "list"],
        ["dlq", "list", "--config", &file],
    ] {
        let out = callgate(&args, None);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }
}

/// A listener that cannot bind is said once, naming the address: `serve` on a taken port.
#[test]
fn a_taken_port_is_reported_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let file = one_route_config(dir.path(), port);
    let out = callgate(&["serve", "--config", &file.display().to_string()], None);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert_eq!(
        stderr.matches("Address already in use").count(),
        1,
        "{stderr}"
    );
    drop(taken);
}

/// A config file in `dir` with one Vidyo route, listening on `port`.
fn one_route_config(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    crate::harness::write_serve_config(
        dir,
        (port, crate::harness::free_port()),
        "",
        &root().join("mappings"),
        "timeout: 2s",
        "  - { name: r, path: /r, from: vidyo, to: [ { name: d, vendor: vidyo, url: 'http://127.0.0.1:9/' } ] }\n",
    )
}

/// Relative paths in a config file resolve against the file's folder, not the directory
/// callgate runs in: `check` and `dlq list` run from elsewhere find the mappings next to the
/// file and open the store there (they used to look in, and create `data/` in, the current
/// directory).
#[test]
fn relative_paths_resolve_against_the_config_files_folder() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::os::unix::fs::symlink(root().join("mappings"), etc.join("vendors")).unwrap();
    let file = etc.join("callgate.yaml");
    std::fs::write(
        &file,
        "mappings: vendors\nstore: { kind: sqlite, path: data/store.db }\nroutes:\n  - name: r\n    path: /r\n    from: ringcentral\n    to: [{ name: d, vendor: vidyo, url: 'http://127.0.0.1:9/' }]\n",
    )
    .unwrap();
    let file = file.display().to_string();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_callgate"))
            .args(args)
            .current_dir(elsewhere.path())
            .output()
            .unwrap()
    };
    let check = run(&["check", "--config", &file]);
    assert!(check.status.success(), "{}", text(&check.stderr));
    let said = text(&check.stdout);
    assert!(
        said.contains(&format!(
            "store: sqlite {}",
            etc.join("data/store.db").display()
        )),
        "{said}"
    );
    let list = run(&["dlq", "--config", &file, "list"]);
    assert!(list.status.success(), "{}", text(&list.stderr));
    assert!(etc.join("data/store.db").exists());
    assert!(!elsewhere.path().join("data").exists());
}

/// A proxy route with every timeout left at its default passes `check` (it used to be refused:
/// delivery.timeout 15 s against request_timeout 10 s), and `check` says what it derived.
#[test]
fn a_default_proxy_route_passes_check_and_says_its_forward_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("callgate.yaml");
    std::fs::write(
        &file,
        format!(
            "mappings: {}\nroutes:\n  - {{ name: p, path: /p, from: ringcentral, ack: proxy, to: [{{ name: d, vendor: vidyo, url: 'http://127.0.0.1:9/' }}] }}\n  - {{ name: t, path: /t, from: twilio, ack: proxy, on_timeout: queue, to: [{{ name: d, vendor: vidyo, url: 'http://127.0.0.1:9/' }}] }}\n",
            root().join("mappings").display()
        ),
    )
    .unwrap();
    let out = callgate(&["check", "--config", &file.display().to_string()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("route `p`: proxy forwards time out after 2s 400ms (four fifths of ringcentral's reply budget 3s (reply_within in its vendor.yaml)), then on_timeout: fail (504)"),
        "{said}"
    );
    assert!(
        said.contains("route `t`: proxy forwards time out after 8s (four fifths of server.request_timeout 10s), then on_timeout: queue (202)"),
        "{said}"
    );
    // A forward_timeout the sender would not wait for is refused, naming the budget.
    let text_of = std::fs::read_to_string(&file)
        .unwrap()
        .replace("ack: proxy, to", "ack: proxy, forward_timeout: 3s, to");
    std::fs::write(&file, text_of).unwrap();
    let out = callgate(&["check", "--config", &file.display().to_string()], None);
    assert!(!out.status.success());
    let said = text(&out.stderr);
    assert!(
        said.contains("route `p`: forward_timeout 3s must be above 0 and shorter than ringcentral's reply budget 3s"),
        "{said}"
    );
}

/// `translate` prints a JSON body as `serve` sends it: keys in the template's order (it used to
/// print them sorted, so the two disagreed).
#[test]
fn translate_keeps_the_templates_key_order() {
    let payload = br#"{"uuid":"x","event":"/restapi/v1.0/account/1/extension/2/presence","timestamp":"2026-12-04T10:00:00Z","subscriptionId":"s","body":{"extensionId":2,"telephonyStatus":"Ringing","presenceStatus":"Busy","userStatus":"Available","dndStatus":"TakeAllCalls","sequence":1}}"#;
    let out = callgate(
        &["translate", "--from", "ringcentral", "--to", "vidyo"],
        Some(payload),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line = text(&out.stdout);
    let template =
        std::fs::read_to_string(root().join("mappings/vidyo/templates/user-status.json.hbs"))
            .unwrap();
    let at = |key: &str| line.find(&format!("\"{key}\"")).unwrap_or(usize::MAX);
    assert!(
        at("version") < at("sequenceNum") && at("sequenceNum") < at("creationTimestamp"),
        "keys out of the template's order: {line}\n{template}"
    );
}

/// An unreadable config is said once, naming the file (the I/O error used to be printed
/// twice: once in the message, once as its cause).
#[test]
fn a_missing_config_file_is_reported_once() {
    let out = callgate(
        &["dlq", "--config", "/nonexistent/callgate.yaml", "list"],
        None,
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/callgate.yaml: cannot read"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
}

/// `callgate replay --help` shows every flag of its own in an example.
#[test]
fn replay_help_has_an_example_of_every_flag() {
    let out = callgate(&["replay", "--help"], None);
    assert!(out.status.success());
    let help = text(&out.stdout);
    let (about, options) = help.split_once("Options:").expect("an options section");
    let examples = about.split_once("Examples:").expect("examples").1;
    let flags: Vec<&str> = options
        .split_whitespace()
        .filter(|w| w.starts_with("--"))
        .map(|w| w.trim_end_matches([',', '.', ')']))
        .filter(|f| !["--config", "--token", "--help"].contains(f))
        .collect();
    assert!(flags.len() >= 12, "{flags:?}");
    for flag in flags {
        assert!(
            examples.contains(flag),
            "no example uses {flag}:\n{examples}"
        );
    }
}

/// `check` says which templates run without a render plan (and why) and which are parsed
/// after each render, so ops know what runs the slow way (README "How templates run").
#[test]
fn check_names_templates_without_a_plan_or_a_proof() {
    let dir = tempfile::tempdir().unwrap();
    let mappings = dir.path().join("mappings");
    copy_dir(&root().join("mappings"), &mappings);
    let template = mappings.join("vidyo/templates/user-status.json.hbs");
    let source = std::fs::read_to_string(&template).unwrap();
    // An empty `#with` block: valid, renders nothing, and plans do not know `#with`.
    std::fs::write(
        &template,
        format!("{{{{#with data}}}}{{{{/with}}}}{source}"),
    )
    .unwrap();
    let out = callgate(&["check", "--mappings", mappings.to_str().unwrap()], None);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    for expected in [
        "note: vidyo/templates/user-status.json.hbs is rendered by Handlebars, without a render plan: it uses `#with`",
        "note: enablex/templates/webhook.json.hbs is parsed after each render",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert!(
        !stdout.contains("note: vidyo/templates/user-status.json.hbs is parsed"),
        "one note per template:\n{stdout}"
    );
}
