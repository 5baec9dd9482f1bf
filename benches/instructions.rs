//! Instruction counts of the hot path under `valgrind --tool=callgrind`: repeatable whatever
//! else the machine is doing, so a change's effect shows without noise.
//!
//! `cargo bench --bench instructions` runs itself under callgrind once per stage, collecting
//! only inside that stage's measured function (`--toggle-collect`), and prints instructions
//! per event for: `decode` (JSON bytes → canonical events), `encode` (an event → the Vidyo
//! body) and `pipeline` (a webhook body through read, verify, decode, lifecycle, route,
//! encode and the store batches), and `hand_written` (bytes → Vidyo body by typed serde,
//! `benches/hand.rs`: the floor). The workload is `benches/workload.rs`. Needs valgrind.

#[path = "hand.rs"]
mod hand;
#[path = "workload.rs"]
mod workload;

use std::hint::black_box;
use std::process::Command;
use workload::Workload;

// The same allocator as the `callgate` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Events per measured call: enough to amortise the toggles, few enough for valgrind.
const EVENTS: usize = 1000;
const STAGES: [&str; 4] = ["decode", "encode", "pipeline", "hand_written"];

#[inline(never)]
fn measure_decode(w: &Workload, body: &[u8]) {
    for _ in 0..EVENTS {
        black_box(w.decode(black_box(body)));
    }
}

#[inline(never)]
fn measure_encode(w: &Workload, event: &callgate::CallEvent) {
    for _ in 0..EVENTS {
        black_box(w.encode(black_box(event)));
    }
}

#[inline(never)]
fn measure_pipeline(w: &Workload, bodies: &[Vec<u8>]) {
    for body in bodies {
        black_box(w.pipeline(black_box(body)));
    }
}

#[inline(never)]
fn measure_hand_written(body: &[u8]) {
    for _ in 0..EVENTS {
        black_box(hand::translate(black_box(body)));
    }
}

/// Under callgrind: runs one stage (warmed up first, outside the measured function).
fn run_stage(stage: &str) {
    let w = Workload::new();
    let body = w.notification(0);
    match stage {
        "decode" => {
            black_box(w.decode(&body));
            measure_decode(&w, &body);
        }
        "encode" => {
            let event = w.decode(&body).remove(0);
            black_box(w.encode(&event));
            measure_encode(&w, &event);
        }
        "pipeline" => {
            black_box(w.pipeline(&w.notification(EVENTS + 1)));
            let bodies: Vec<Vec<u8>> = (0..EVENTS).map(|i| w.notification(i)).collect();
            measure_pipeline(&w, &bodies);
        }
        "hand_written" => {
            black_box(hand::translate(&body));
            measure_hand_written(&body);
        }
        other => panic!("unknown stage {other}"),
    }
}

fn main() {
    if let Ok(stage) = std::env::var("CALLGATE_INSTRUCTIONS_STAGE") {
        return run_stage(&stage);
    }
    if Command::new("valgrind").arg("--version").output().is_err() {
        eprintln!("valgrind is not installed: apt-get install valgrind");
        std::process::exit(1);
    }
    let me = std::env::current_exe().expect("own path");
    let out = std::env::temp_dir().join(format!("callgate-callgrind-{}", std::process::id()));
    println!("instructions per event (valgrind --tool=callgrind, {EVENTS} events per stage)");
    for stage in STAGES {
        let status = Command::new("valgrind")
            .args(["--tool=callgrind", "--quiet"])
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(format!("--toggle-collect=*measure_{stage}*"))
            .arg(&me)
            .env("CALLGATE_INSTRUCTIONS_STAGE", stage)
            .status()
            .expect("valgrind runs");
        assert!(status.success(), "valgrind failed for {stage}");
        let text = std::fs::read_to_string(&out).expect("callgrind output");
        let total: u64 = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("summary:")
                    .or_else(|| l.strip_prefix("totals:"))
            })
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("a summary line");
        println!("{stage:9} {:>10}", total / EVENTS as u64);
        let _ = std::fs::remove_file(&out);
    }
}
