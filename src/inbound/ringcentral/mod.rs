//! RingCentral's platform around its payloads (ringcentral-platform.md): the OAuth and
//! rate-limit aware client (`platform.rs`) and the webhook subscription keeper
//! (`keeper.rs`). The payloads themselves are data in `mappings/ringcentral/`.

pub mod keeper;
pub mod platform;
pub mod websocket;
