//! Decode + encode of a RingCentral telephony-session notification into a Vidyo
//! userStatusNotification: through the mapping engine, and through a hand-written serde
//! translation of the same mapping, from input bytes to output bytes.

use callgate::MappingSet;
use callgate::mapping::DecodeOptions;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

// The same allocator as the `callgate` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::path::Path;

const FIXTURE: &str = "tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-06.json";

fn engine(mappings: &MappingSet, input: &[u8]) -> String {
    let payload: serde_json::Value = serde_json::from_slice(input).expect("json");
    let events = mappings
        .decode("ringcentral", &payload, DecodeOptions::default())
        .expect("decodes");
    let encoder = mappings
        .vendor("vidyo")
        .and_then(|v| v.encoder())
        .expect("vidyo");
    let rendered = encoder
        .render(&events[0])
        .expect("renders")
        .expect("template");
    encoder
        .outbound(rendered, "http://127.0.0.1/")
        .body
        .expect("body")
}

#[path = "hand.rs"]
mod hand;

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mappings = MappingSet::load(&root.join("mappings")).expect("mappings");
    let input = std::fs::read(root.join(FIXTURE)).expect("fixture");

    // Both must say the same thing before their speed is compared.
    let a: serde_json::Value = serde_json::from_str(&engine(&mappings, &input)).unwrap();
    let b: serde_json::Value = serde_json::from_str(&hand::translate(&input).unwrap()).unwrap();
    assert_eq!(a, b, "engine and hand-written translation disagree");

    let mut group = c.benchmark_group("ringcentral_to_vidyo");
    group.throughput(Throughput::Elements(1));
    group.bench_function("engine", |bench| {
        bench.iter(|| engine(&mappings, black_box(&input)))
    });
    group.bench_function("hand_written", |bench| {
        bench.iter(|| hand::translate(black_box(&input)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
