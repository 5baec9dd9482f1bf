//! Transports in, one module per protocol (README "How it fits together"): `webhook` (the axum handler of every
//! route), `signalr` (the Enreach RTE client source) and `ringcentral` (the WebSocket source,
//! the subscription keeper and the platform client). Each turns its input into a
//! [`VerifiedInbound`](crate::model::inbound::VerifiedInbound) and hands it to intake.

pub mod ringcentral;
pub mod signalr;
pub mod webhook;

use crate::config::valid::{SourceSpec, ValidSource};
use crate::intake::Intake;
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use signalr::client::SourceStates;
use std::sync::Arc;

/// A configured source (`sources:`) as a supervised component: the connection callgate opens
/// itself, by its kind's protocol, registered in [`SourceStates`] while it runs.
pub struct Source {
    /// Its validated configuration.
    pub spec: ValidSource,
    /// The shared HTTP client.
    pub http: reqwest::Client,
    /// The snapshot being served.
    pub snapshots: Arc<ArcSwap<Snapshot>>,
    /// Intake.
    pub intake: Intake,
    /// Where it reports whether it is connected (`/readyz`).
    pub states: Arc<SourceStates>,
}

impl crate::supervisor::Component for Source {
    fn name(&self) -> String {
        format!("source {}", self.spec.name)
    }

    fn spec(&self) -> String {
        format!("{:?}", self.spec)
    }

    fn run(
        self: Box<Self>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> crate::model::outbound::BoxFuture<'static, ()> {
        // Registered before the task runs: `/readyz` lists the source from its start.
        let state = self.states.add(&self.spec.name);
        Box::pin(async move {
            let Source {
                spec,
                http,
                snapshots,
                intake,
                states,
            } = *self;
            let ValidSource { name, route, kind } = spec;
            match kind {
                SourceSpec::Signalr(source) => {
                    let source = signalr::client::Source {
                        name: name.clone(),
                        route,
                        spec: source,
                    };
                    signalr::client::run(source, http, snapshots, intake, state, stop).await
                }
                SourceSpec::RingcentralWebsocket(source) => {
                    ringcentral::websocket::run_source(
                        (&name, &route, &source),
                        &http,
                        snapshots,
                        intake,
                        state,
                        stop,
                    )
                    .await
                }
            }
            states.remove(&name);
        })
    }
}
