//! Subcommands with more than a few lines of their own: `demo`, `tail`, `ringcentral`.

pub mod demo;
pub mod ringcentral;
pub mod tail;
