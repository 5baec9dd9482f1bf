//! SignalR (ASP.NET Core, JSON hub protocol over WebSockets): the transport Enreach RTE
//! speaks. `protocol.rs` is the wire format; the client source and the hub destination
//! build on it.

pub mod client;
pub mod endpoint;
pub mod hub;
pub mod protocol;
