//! callgate: a gateway that translates call, presence and video-session status events between
//! vendors. Data flows one way: transport in → pipeline (decode → lifecycle → route →
//! encode) → queue → lane → transport out (README "How it fits together"), on a snapshot that reloads whole. This crate is the library behind the `callgate` binary.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cases;
pub mod check;
pub mod config;
pub mod delivery;
pub mod explain;
pub mod gateway;
pub mod inbound;
pub mod intake;
pub mod lifecycle;
pub mod mapping;
pub mod model;
pub mod outbound;
pub mod pipeline;
pub mod reload;
pub mod replay;
pub mod route;
pub mod server;
pub mod snapshot;
pub mod supervisor;
pub mod telemetry;
pub mod timeline;
pub mod translate;

pub use gateway::Gateway;
pub use mapping::MappingSet;
pub use model::event::CallEvent;
