//! Transports, one module per protocol: inbound webhooks (HTTP) and outbound HTTP. Vendors
//! are data (`mappings/`); nothing here knows a vendor's fields.

pub mod http_out;
pub mod webhook;
