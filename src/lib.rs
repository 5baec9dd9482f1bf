//! callgate: a gateway that translates call, presence and video-session status events between
//! vendors. Data flows one way: transport in → decode → lifecycle → route → encode → queue →
//! deliver (DESIGN.md §1). This crate is the library behind the `callgate` binary.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod adapters;
pub mod config;
pub mod delivery;
pub mod event;
pub mod gateway;
pub mod lifecycle;
pub mod mapping;
pub mod route;
pub mod server;
pub mod telemetry;
pub mod translate;

pub use event::CallEvent;
pub use gateway::Gateway;
pub use mapping::MappingSet;
