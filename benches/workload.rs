//! The fixed workload behind the instruction counts (`benches/instructions.rs`), the engine
//! bench (`benches/translate.rs`) and the allocation budget (`tests/allocations.rs`): the
//! RingCentral telephony-session fixture translated into a Vidyo `userStatusNotification`,
//! stage by stage, on the same code the gateway runs. Distinct notifications (own uuid,
//! session and party ids) keep the lifecycle tracker from dropping any as a duplicate.
// Included by several benches and a test, each using part of it.
#![allow(dead_code)]

use axum::http::{HeaderMap, Method};
use callgate::mapping::DecodeOptions;
use callgate::model::event::CallEvent;
use callgate::model::inbound::Verifier;
use callgate::model::inbound::read_payload;
use callgate::route::Route;
use callgate::snapshot::Snapshot;
use callgate::{MappingSet, pipeline};
use std::path::Path;
use std::sync::Arc;

/// Relative to the crate root.
pub const FIXTURE: &str = "tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-06.json";
/// The fixture's telephony session id, also inside its party id.
const SESSION: &str = "718107795d564867a6f635fd81e89940";
/// The fixture's `uuid`.
const UUID: &str = "868070650491024076";

/// The mappings, a one-route snapshot `ringcentral` → `vidyo` and the fixture's bytes.
pub struct Workload {
    pub mappings: Arc<MappingSet>,
    snapshot: Snapshot,
    route: Arc<Route>,
    fixture: String,
    headers: HeaderMap,
}

impl Workload {
    /// Loads `mappings/` and the fixture from the crate root.
    pub fn new() -> Workload {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mappings = Arc::new(MappingSet::load(&root.join("mappings")).expect("mappings"));
        let snapshot = Snapshot::for_translation(
            mappings.clone(),
            "ringcentral",
            "vidyo",
            "http://127.0.0.1:9/vidyo",
        )
        .expect("snapshot");
        let route = snapshot.routes()[0].clone();
        let fixture = std::fs::read_to_string(root.join(FIXTURE)).expect("fixture");
        Workload {
            mappings,
            snapshot,
            route,
            fixture,
            headers: HeaderMap::new(),
        }
    }

    /// The fixture's bytes, as recorded.
    pub fn fixture(&self) -> &[u8] {
        self.fixture.as_bytes()
    }

    /// The fixture as the `i`-th distinct notification.
    pub fn notification(&self, i: usize) -> Vec<u8> {
        self.fixture
            .replace(UUID, &format!("{UUID}-{i}"))
            .replace(SESSION, &format!("{SESSION}x{i}"))
            .into_bytes()
    }

    /// Stage 1: bytes → canonical events (JSON parse and the decode rules).
    pub fn decode(&self, body: &[u8]) -> Vec<CallEvent> {
        let payload: serde_json::Value = serde_json::from_slice(body).expect("json");
        self.mappings
            .decode("ringcentral", &payload, DecodeOptions::default())
            .expect("decodes")
    }

    /// Stage 2: one canonical event → the Vidyo request body.
    pub fn encode(&self, event: &CallEvent) -> String {
        let encoder = self
            .mappings
            .vendor("vidyo")
            .and_then(|v| v.encoder())
            .expect("vidyo");
        let rendered = encoder.render(event).expect("renders").expect("a template");
        encoder
            .outbound(rendered, "http://127.0.0.1:9/vidyo")
            .body
            .expect("a body")
    }

    /// The whole in-process pipeline of a webhook: read and verify the body, decode,
    /// lifecycle, route, encode, commit, and the store batches. Returns the messages made.
    pub fn pipeline(&self, body: &[u8]) -> usize {
        let read = || read_payload(&Method::POST, &self.headers, None, body, false, false);
        let presented = callgate::model::signature::Presented {
            method: "POST",
            target: "/hooks/rc",
            headers: &self.headers,
            body,
        };
        let inbound = Verifier::Open.verify(&presented, read).expect("verified");
        let accepted =
            pipeline::accept(&self.snapshot.mappings, &self.route, &inbound).expect("accepted");
        accepted.commit();
        accepted.batches().iter().map(|b| b.messages.len()).sum()
    }
}
