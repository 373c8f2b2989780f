//! Apiary: a stream processor that runs WebAssembly component plugins over
//! Kafka topics and merges the rows they emit into SQL tables.
//!
//! Data flows one way: [`source`] → lane ([`pipeline`]) → parser plugin →
//! rule plugins ([`plugin`]) → checkpoint buffer → [`sink`].

#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod hbase;
pub mod lookup;
pub mod metrics;
pub mod pipeline;
pub mod plugin;
pub mod replay;
pub mod scaffold;
pub mod sink;
pub mod source;
pub mod text;
pub mod time;
