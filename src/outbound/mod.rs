//! Transports out, one module per protocol (README "How it fits together"): `http` (reqwest, the classifier,
//! Standard Webhooks signing) and `signalr` (the hub destination). Each implements
//! [`Outbound`](crate::model::outbound::Outbound) and classifies its own results once; the
//! workers reach them only through that trait.

pub mod http;
pub mod signalr;
