//! Apiary: a stream processor that runs WebAssembly component plugins over
//! Kafka topics and merges the rows they emit into SQL tables.
//!
//! Data flows one way: [`source`] → lane ([`pipeline`]) → parser plugin →
//! rule plugins ([`plugin`]) → checkpoint buffer → side [`output`]s, then
//! the transactional checkpoint [`store`]. Every module speaks the
//! vocabulary of [`model`], which imports none of them.

#![warn(missing_docs)]

pub mod assembly;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod dialect;
pub mod error;
pub mod hbase;
pub mod lookup;
pub mod metrics;
pub mod model;
pub mod output;
pub mod pipeline;
pub mod plugin;
pub mod replay;
pub mod scaffold;
pub mod source;
pub mod store;
pub mod text;
pub mod time;
