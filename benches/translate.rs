//! Decode + encode of a RingCentral telephony-session notification into a Vidyo
//! userStatusNotification: through the mapping engine, and through a hand-written serde
//! translation of the same mapping, from input bytes to output bytes.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use workload::Workload;

// The same allocator as the `callgate` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "workload.rs"]
mod workload;

/// Bytes in, Vidyo body out, through the mapping engine (`benches/workload.rs`).
fn engine(w: &Workload, input: &[u8]) -> String {
    w.encode(&w.decode(input).remove(0))
}

#[path = "hand.rs"]
mod hand;

fn bench(c: &mut Criterion) {
    let w = Workload::new();
    let input = w.fixture().to_vec();

    // Both must say the same thing before their speed is compared.
    let a: serde_json::Value = serde_json::from_str(&engine(&w, &input)).unwrap();
    let b: serde_json::Value = serde_json::from_str(&hand::translate(&input).unwrap()).unwrap();
    assert_eq!(a, b, "engine and hand-written translation disagree");

    let mut group = c.benchmark_group("ringcentral_to_vidyo");
    group.throughput(Throughput::Elements(1));
    group.bench_function("engine", |bench| {
        bench.iter(|| engine(&w, black_box(&input)))
    });
    group.bench_function("hand_written", |bench| {
        bench.iter(|| hand::translate(black_box(&input)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
