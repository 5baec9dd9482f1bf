//! The one integration test binary: mapping cases, corpus round trips, real call flows across
//! vendors, the CLI as a user runs it, and property tests over the engine.

mod cases;
mod cli;
mod connections;
mod crash;
mod deploy;
mod directories;
mod disk_full;
mod docs;
mod flows;
mod harness;
mod house;
mod hub;
mod integrity;
mod lanes;
mod mapping_check;
mod memory;
mod oauth2;
mod plans;
mod playground;
mod properties;
mod rc_platform;
mod reload;
mod replay;
mod ringcentral;
mod roundtrip;
mod scale;
mod serve;
mod signing;
mod support;
mod tail;
mod teams;
mod vendor_signatures;
