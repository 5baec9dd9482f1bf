//! Transports in, one module per protocol (DESIGN.md §1): `webhook` (the axum handler of every
//! route), `signalr` (the Enreach RTE client source) and `ringcentral` (the WebSocket source,
//! the subscription keeper and the platform client). Each turns its input into a
//! [`VerifiedInbound`](crate::model::inbound::VerifiedInbound) and hands it to intake.

pub mod ringcentral;
pub mod signalr;
pub mod webhook;
