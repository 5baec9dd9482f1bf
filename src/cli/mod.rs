//! Subcommands with more than a few lines of their own: `demo` and `tail`.

pub mod demo;
pub mod tail;
