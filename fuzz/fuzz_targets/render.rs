//! The template renderer with fuzzed events: a canonical event (CloudEvents JSON, any
//! values) rendered by every vendor's encode templates into the request it would send.
#![no_main]

use callgate::{CallEvent, MappingSet};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static MAPPINGS: LazyLock<MappingSet> = LazyLock::new(|| {
    MappingSet::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../mappings"))
        .expect("the shipped mappings load")
});

fuzz_target!(|data: &[u8]| {
    let Ok(mut event) = serde_json::from_slice::<CallEvent>(data) else {
        return;
    };
    event.normalize();
    for vendor in MAPPINGS.vendors() {
        let Some(encoder) = vendor.encoder() else {
            continue;
        };
        if let Ok(Some(rendered)) = encoder.render(&event) {
            let _ = encoder.outbound(rendered, "http://127.0.0.1:1/x?y=1");
        }
    }
});
