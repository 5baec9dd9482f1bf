//! The ground floor: the types every other module shares, importing nothing above them (a test
//! in `tests/it/house.rs` fails on an import that points up). The canonical event and its
//! schema (what mappings are compiled against), the one rule for parameter payloads, what a
//! transport in hands the core (`VerifiedInbound`, made only by a `Verifier`), what the core
//! hands a transport out (`Message`, `Outbound`, `AttemptOutcome`), and `Problem`, the one HTTP
//! error type.

pub mod clock;
pub mod event;
pub mod fields;
pub mod inbound;
pub mod message;
pub mod outbound;
pub mod params;
pub mod problem;
pub mod schema;
pub mod signature;
pub mod standard_webhooks;
