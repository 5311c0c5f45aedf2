//! The way out of an agent's own network namespace: mitzod's allow-listing
//! HTTP CONNECT proxy ([`proxy`]), reached through the sandbox's forwarder.

pub mod proxy;
