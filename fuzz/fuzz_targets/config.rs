//! Config loading: YAML text an operator (or a careless edit) writes, through parsing,
//! `${NAME}` resolution and validation against the shipped mappings.
#![no_main]

use callgate::MappingSet;
use callgate::config::load::parse;
use callgate::config::validate;
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::LazyLock;

static MAPPINGS: LazyLock<MappingSet> = LazyLock::new(|| {
    MappingSet::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../mappings"))
        .expect("the shipped mappings load")
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lookup = |name: &str| (name.len() % 2 == 0).then(|| format!("value-of-{name}"));
    if let Ok(config) = parse(Path::new("fuzz.yaml"), text, &lookup) {
        let _ = validate(&std::sync::Arc::new(config), &MAPPINGS);
    }
});
