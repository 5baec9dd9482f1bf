//! The SignalR client source (Enreach RTE): negotiates with an RTE hub, subscribes, and hands
//! every event to intake. The wire format is shared with the hub destination
//! (`outbound::signalr::protocol`).

pub mod client;
pub mod endpoint;
