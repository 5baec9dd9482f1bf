//! SignalR (ASP.NET Core, JSON hub protocol over WebSockets), the transport Enreach RTE speaks:
//! `protocol.rs` is the wire format (the inbound client source reads it too) and `hub.rs` the
//! hub destination that serves RTE clients.

pub mod hub;
pub mod protocol;
