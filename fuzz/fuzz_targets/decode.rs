//! Decode for each vendor: a payload a sender controls, through the shipped mappings'
//! decode rules (with fidelity, as a same-vendor route runs it). Input: one byte picking
//! the vendor, then the payload (JSON, or ISR parameters).
#![no_main]

use callgate::MappingSet;
use callgate::model::params::parse_url_params;
use callgate::mapping::DecodeOptions;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static MAPPINGS: LazyLock<MappingSet> = LazyLock::new(|| {
    MappingSet::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../mappings"))
        .expect("the shipped mappings load")
});

fuzz_target!(|data: &[u8]| {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let vendors: Vec<&str> = MAPPINGS.vendors().map(|v| v.id.as_str()).collect();
    let vendor = vendors[pick as usize % vendors.len()];
    let value = match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(value) => value,
        Err(_) => match std::str::from_utf8(payload) {
            Ok(text) => match parse_url_params(text) {
                Ok(params) => params,
                Err(_) => return,
            },
            Err(_) => return,
        },
    };
    let _ = MAPPINGS.decode(
        vendor,
        &value,
        DecodeOptions {
            fidelity: true,
            max_events: 1000,
        },
    );
});
