//! Intake ack latency with an empty queue and with 100,000 messages waiting for a receiver
//! that is down (README "Running the gateway": the store's cost must not grow with the backlog).
//!
//! Both runs use the SQLite store exactly as `serve` does (WAL, `synchronous=FULL`, one writer
//! thread) with a worker loop leasing every 100 ms and settling each lease as a failed attempt
//! (retry in an hour), while 32 concurrent producers enqueue one event each, 5,000 times in
//! all. Prints p50/p99 of the enqueue (= the ack) for each and their ratio.
//!
//! `cargo bench --bench backlog`

use callgate::config::{DeliveryConfig, StoreConfig};
use callgate::delivery::{
    AttemptLog, EventBatch, HttpRequest, Message, NewMessage, Request, Settlement, Store,
    open_store,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BACKLOG: usize = 100_000;
const CALLS: usize = 1_000;
const ENQUEUES: usize = 5_000;
const CONCURRENCY: usize = 32;

fn message(partition: &str, n: usize) -> NewMessage {
    NewMessage {
        message: Message {
            route: "rc".into(),
            destination: "down".into(),
            partitionkey: partition.into(),
            event_id: format!("e{n}"),
            event_type: "call.connected".into(),
            request: Request::Http(HttpRequest {
                method: "POST".into(),
                url: "http://127.0.0.1:9/down".into(),
                headers: vec![("content-type".into(), "application/json".into())],
                body: Some(format!(r#"{{"n":{n},"padding":"{}"}}"#, "x".repeat(400))),
            }),
        },
        failure: None,
    }
}

fn batch(key: String, messages: Vec<NewMessage>) -> EventBatch {
    EventBatch {
        dedupe_key: key,
        messages,
    }
}

/// Leases every 100 ms and fails every attempt, as the workers do for a receiver that is down.
fn failing_worker(store: Store) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let leased = store.consumer.lease(64).await.unwrap_or_default();
            for l in leased {
                let log = AttemptLog {
                    at: 0,
                    status: None,
                    error: Some("cannot connect".into()),
                    excerpt: None,
                };
                let _ = store
                    .consumer
                    .settle(
                        l.lease,
                        Settlement::Retry {
                            after: Duration::from_secs(3600),
                            log,
                        },
                    )
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

async fn measure(store: &Store, tag: &str) -> Vec<Duration> {
    let store = Arc::new(store.clone());
    let mut tasks = Vec::new();
    for worker in 0..CONCURRENCY {
        let store = store.clone();
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            for i in (worker..ENQUEUES).step_by(CONCURRENCY) {
                let call = format!("{tag}-new-{i}");
                let started = Instant::now();
                store
                    .producer
                    .enqueue(vec![batch(format!("{tag}-{i}"), vec![message(&call, i)])])
                    .await
                    .expect("enqueue");
                times.push(started.elapsed());
            }
            times
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    all
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

async fn run(backlog: bool) -> (Duration, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(
        &StoreConfig::Sqlite {
            path: dir.path().join("q.db"),
        },
        &DeliveryConfig::default(),
        &callgate::config::ArchiveConfig::default(),
        false,
    )
    .await
    .unwrap();
    if backlog {
        for chunk in 0..(BACKLOG / 1000) {
            let batches = (0..1000)
                .map(|j| {
                    let n = chunk * 1000 + j;
                    batch(
                        format!("old-{n}"),
                        vec![message(&format!("call-{}", n % CALLS), n)],
                    )
                })
                .collect();
            store.producer.enqueue(batches).await.unwrap();
        }
    }
    let worker = failing_worker(store.clone());
    // Let the worker fail every head once, so the backlog sits behind retrying heads.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let times = measure(&store, if backlog { "b" } else { "e" }).await;
    worker.abort();
    println!(
        "{:>26}: waiting {:>6}, enqueue p50 {:>8.3?} p99 {:>8.3?}",
        if backlog {
            "100,000 behind a dead receiver"
        } else {
            "empty queue"
        },
        store.producer.total_depth(),
        pct(&times, 0.5),
        pct(&times, 0.99)
    );
    store.close();
    (pct(&times, 0.5), pct(&times, 0.99))
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut ratios = Vec::new();
        for round in 1..=3 {
            println!("round {round}");
            let (_, empty) = run(false).await;
            let (_, full) = run(true).await;
            ratios.push(full.as_secs_f64() / empty.as_secs_f64());
        }
        ratios.sort_by(f64::total_cmp);
        println!(
            "p99 ratio backlog / empty, median of {}: {:.2}",
            ratios.len(),
            ratios[ratios.len() / 2]
        );
    });
}
