//! The ground floor: types every other module shares and that import nothing above them — the
//! canonical event and its schema (what mappings are compiled against), and the one rule for
//! parameter payloads.

pub mod event;
pub mod params;
pub mod schema;
