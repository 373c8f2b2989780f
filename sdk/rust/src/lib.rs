//! The Rust guest SDK for Apiary plugins (`apiary:plugin@0.3.0`).
//!
//! A plugin implements [`Rule`] or [`Parser`] and exports it with
//! [`export_rule!`] or [`export_parser!`]; everything it needs from the
//! host (state, timers, lookups, the log) goes through a [`Host`], which is
//! the real host inside Wasm ([`Imports`]) and an in-memory one in native
//! tests ([`testing::MemoryHost`]). On top of that:
//!
//! - [`Output`] declares a table and [`Rows`] fills its flat cell list;
//! - [`Span`] reads an event's text out of its batch (`ip.of(&batch.text)`)
//!   and, in a parser, lays it out there ([`Span::push`]);
//! - [`Params`] reads the plugin's parameters (`[plugins.params.<name>]`);
//! - [`window`] has tumbling, hopping and session windows on state and
//!   timers, with Flink's semantics.
//!
//! ```
//! use apiary_sdk::{ColumnType::Int, EventBatch, EventBody, EventKind, Host, Output, Params};
//! use apiary_sdk::{Rule, RuleInfo, RuleOutput, Rows, Value};
//!
//! /// Gifts per room.
//! pub struct GiftsPerRoom;
//!
//! impl Rule for GiftsPerRoom {
//!     fn init(_: &Params) -> Result<Self, String> { Ok(Self) }
//!     fn describe(&self) -> RuleInfo {
//!         RuleInfo::new("gifts-per-room", "0.1.0", [EventKind::Gift])
//!             .output(Output::new("room_gifts").key("room_id", Int).add("gifts", Int))
//!     }
//!     fn process(&self, batch: EventBatch, _: &mut impl Host) -> RuleOutput {
//!         let mut rows = Rows::new("room_gifts", 2);
//!         for event in batch.events {
//!             if let EventBody::Gift(g) = event.body {
//!                 rows.push_row([Value::Int(g.room_id), Value::Int(1)]);
//!             }
//!         }
//!         RuleOutput::from_rows([rows])
//!     }
//! }
//!
//! apiary_sdk::export_rule!(GiftsPerRoom);
//! ```

#![warn(missing_docs)]

// Lets the generated bindings and the export macros name this crate the
// same way from inside and outside it.
extern crate self as apiary_sdk;

#[cfg(feature = "distinct")]
pub mod distinct;
mod host;
mod params;
mod schema;
pub mod testing;
pub mod window;

pub use host::{Host, Imports};
pub use params::{Params, parse_duration_ms};
pub use schema::{Output, Rows};

/// Bindings of the `rule-plugin` world, which also holds every type and
/// import shared with the parser world.
pub mod rule_world {
    // The generated items carry the WIT's documentation, where it has some.
    #![allow(missing_docs)]
    wit_bindgen::generate!({
        path: "../../wit",
        world: "rule-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_rule_world",
        default_bindings_module: "apiary_sdk::rule_world",
        runtime_path: "apiary_sdk::__wit_bindgen::rt",
        generate_all,
        additional_derives: [PartialEq],
    });
}

/// Bindings of the `parser-plugin` world; its types are the rule world's.
pub mod parser_world {
    #![allow(missing_docs)]
    wit_bindgen::generate!({
        path: "../../wit",
        world: "parser-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_parser_world",
        additional_derives: [PartialEq],
        default_bindings_module: "apiary_sdk::parser_world",
        runtime_path: "apiary_sdk::__wit_bindgen::rt",
        with: {
            "apiary:plugin/types@0.3.0": apiary_sdk::rule_world::apiary::plugin::types,
            "apiary:plugin/log@0.3.0": apiary_sdk::rule_world::apiary::plugin::log,
            "apiary:plugin/state@0.3.0": apiary_sdk::rule_world::apiary::plugin::state,
            "apiary:plugin/lookup@0.3.0": apiary_sdk::rule_world::apiary::plugin::lookup,
        },
    });
}

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

pub use parser_world::exports::apiary::plugin::parser::{ParseOutput, ParserInfo};
pub use rule_world::apiary::plugin::types::{
    ChatMessage, Column, ColumnType, Event, EventBatch, EventBody, EventKind, FiredTimer, Gift,
    Header, LogLevel, MergeMode, OutputRows, OutputSchema, RawBatch, RawRecord, Rejection,
    RoomList, RoomStatus, Span, StreamerStats, Value, ViewerVisit,
};
pub use rule_world::exports::apiary::plugin::rule::{RuleInfo, RuleOutput};

/// The import modules as generated, for what the SDK does not wrap.
pub mod imports {
    pub use crate::rule_world::apiary::plugin::{log, lookup, state, timers};
}

/// A rule: common events in, rows out.
///
/// The value `init` builds holds the rule's configuration only: between
/// batches the host may roll state back (a failed batch is retried in
/// halves) or move the rule to another instance, so everything that must
/// last goes into state through the [`Host`].
pub trait Rule: Sized + 'static {
    /// Builds the rule from its parameters; an error rejects the plugin.
    fn init(params: &Params) -> Result<Self, String>;

    /// Who the rule is, what it consumes and the tables it writes.
    fn describe(&self) -> RuleInfo;

    /// Turns one batch of events into rows and refusals.
    fn process(&self, batch: EventBatch, host: &mut impl Host) -> RuleOutput;

    /// Rows for timers the watermark reached, in time order; `watermark`
    /// is the lane's new watermark. Rules without timers keep the default.
    fn on_timers(
        &self,
        timers: Vec<FiredTimer>,
        watermark: i64,
        host: &mut impl Host,
    ) -> Vec<OutputRows> {
        let _ = (timers, watermark, host);
        Vec::new()
    }
}

/// A parser: raw records in, common events out.
pub trait Parser: Sized + 'static {
    /// Builds the parser from its parameters; an error rejects the plugin.
    fn init(params: &Params) -> Result<Self, String>;

    /// Who the parser is and which topics it reads.
    fn describe(&self) -> ParserInfo;

    /// Parses one batch of raw records.
    fn parse(&self, batch: RawBatch) -> ParseOutput;
}

impl RuleInfo {
    /// A rule named `name` at `version` that consumes `kinds`, with no
    /// outputs yet (add them with [`RuleInfo::output`]).
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        kinds: impl IntoIterator<Item = EventKind>,
    ) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            consumes: kinds.into_iter().collect(),
            outputs: Vec::new(),
        }
    }

    /// Adds an output.
    pub fn output(mut self, output: impl Into<OutputSchema>) -> Self {
        self.outputs.push(output.into());
        self
    }
}

impl ParserInfo {
    /// A parser named `name` at `version` that reads `topics`.
    pub fn new<T: Into<String>>(
        name: impl Into<String>,
        version: impl Into<String>,
        topics: impl IntoIterator<Item = T>,
    ) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            topics: topics.into_iter().map(Into::into).collect(),
        }
    }
}

impl RuleOutput {
    /// The rows of `rows` that are not empty, and no refusals.
    pub fn from_rows(rows: impl IntoIterator<Item = Rows>) -> Self {
        Self {
            rows: Rows::collect(rows),
            rejected: Vec::new(),
        }
    }

    /// Adds refusals.
    pub fn with_rejected(mut self, rejected: Vec<Rejection>) -> Self {
        self.rejected.extend(rejected);
        self
    }
}

impl Rejection {
    /// Refuses the record or event at `index` for `reason`.
    pub fn new(index: u32, reason: impl Into<String>) -> Self {
        Self {
            index,
            reason: reason.into(),
        }
    }
}

impl Event {
    /// An event of the record at `record_index`, at event time `time`.
    pub fn new(record_index: u32, time: Option<i64>, body: EventBody) -> Self {
        Self {
            record_index,
            time,
            body,
        }
    }
}

impl Span {
    /// Appends `s` to `text` and returns the span that reads it back: how a
    /// parser lays out its events' text in its output's `text`.
    pub fn push(text: &mut String, s: &str) -> Span {
        let start = text.len();
        text.push_str(s);
        Span {
            start: start as u32,
            len: s.len() as u32,
        }
    }

    /// The text this span covers in `text`, the `text` of the batch its
    /// event came in.
    ///
    /// # Panics
    ///
    /// When the span is not whole characters of `text`, which the host
    /// never sends: a span of another batch's text, say.
    pub fn of(self, text: &str) -> &str {
        let (start, end) = (self.start as usize, self.start as usize + self.len as usize);
        match text.get(start..end) {
            Some(s) => s,
            None => panic!(
                "span {start}..{end} is not text of this {}-byte batch text",
                text.len()
            ),
        }
    }
}

impl RawBatch {
    /// The bytes of `span` in the batch's buffer, or a reason when the span
    /// lies outside it.
    pub fn bytes(&self, span: Span) -> Result<&[u8], String> {
        let (start, len) = (span.start as usize, span.len as usize);
        self.data
            .get(start..start.saturating_add(len))
            .ok_or_else(|| {
                format!(
                    "record span {start}+{len} lies outside the batch's {} data bytes",
                    self.data.len()
                )
            })
    }

    /// The headers of record `index`, as (name, value) spans of `data`, in
    /// the order they were produced.
    pub fn headers_of(&self, index: u32) -> impl Iterator<Item = &Header> {
        // Headers come in record order.
        let from = self.headers.partition_point(|h| h.record < index);
        self.headers[from..]
            .iter()
            .take_while(move |h| h.record == index)
    }

    /// The value of record `index`, or a reason when it cannot be read.
    pub fn value(&self, index: usize) -> Result<&[u8], String> {
        let record = self
            .records
            .get(index)
            .ok_or_else(|| format!("no record {index} in a batch of {}", self.records.len()))?;
        self.bytes(record.value)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(v.into())
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Boolean(v)
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    /// `None` is `null`.
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

impl Value {
    /// A timestamp cell, or `null` for `None`.
    pub fn timestamp_or_null(time: Option<i64>) -> Self {
        time.map_or(Value::Null, Value::Timestamp)
    }
}

#[doc(hidden)]
pub mod __export {
    //! What the export macros expand to: adapters from the traits to the
    //! generated `Guest` traits, holding the one plugin value.

    use std::any::Any;
    use std::cell::RefCell;
    use std::marker::PhantomData;

    use crate::parser_world::exports::apiary::plugin::parser::Guest as ParserGuest;
    use crate::rule_world::exports::apiary::plugin::rule::Guest as RuleGuest;
    use crate::{
        EventBatch, FiredTimer, Imports, OutputRows, Params, ParseOutput, Parser, ParserInfo,
        RawBatch, Rule, RuleInfo, RuleOutput,
    };

    thread_local! {
        static PLUGIN: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    }

    /// Calls `f` with the plugin value, made from no parameters if `init`
    /// was not called (a host that skips it breaks the contract).
    fn with<T: 'static, R>(make: fn(&Params) -> Result<T, String>, f: impl FnOnce(&T) -> R) -> R {
        PLUGIN.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.as_ref().is_none_or(|p| !p.is::<T>()) {
                match make(&Params::default()) {
                    Ok(plugin) => *slot = Some(Box::new(plugin)),
                    Err(e) => panic!("the plugin cannot start without parameters: {e}"),
                }
            }
            match slot.as_ref().and_then(|p| p.downcast_ref::<T>()) {
                Some(plugin) => f(plugin),
                None => unreachable!("the plugin value was just set"),
            }
        })
    }

    fn set<T: 'static>(plugin: T) {
        PLUGIN.with(|cell| *cell.borrow_mut() = Some(Box::new(plugin)));
    }

    /// The rule world's exports, for a [`Rule`].
    pub struct RuleExport<T>(PhantomData<T>);

    impl<T: Rule> RuleGuest for RuleExport<T> {
        fn init(params: Vec<(String, String)>) -> Result<(), String> {
            set(T::init(&Params::new(params))?);
            Ok(())
        }

        fn describe() -> RuleInfo {
            with(T::init, |r: &T| r.describe())
        }

        fn process(batch: EventBatch) -> RuleOutput {
            with(T::init, |r: &T| r.process(batch, &mut Imports))
        }

        fn on_timers(timers: Vec<FiredTimer>, watermark: i64) -> Vec<OutputRows> {
            with(T::init, |r: &T| {
                r.on_timers(timers, watermark, &mut Imports)
            })
        }
    }

    /// The parser world's exports, for a [`Parser`].
    pub struct ParserExport<T>(PhantomData<T>);

    impl<T: Parser> ParserGuest for ParserExport<T> {
        fn init(params: Vec<(String, String)>) -> Result<(), String> {
            set(T::init(&Params::new(params))?);
            Ok(())
        }

        fn describe() -> ParserInfo {
            with(T::init, |p: &T| p.describe())
        }

        fn parse(batch: RawBatch) -> ParseOutput {
            with(T::init, |p: &T| p.parse(batch))
        }
    }
}

/// Exports a [`Rule`] as the plugin's `rule-plugin` world:
/// `apiary_sdk::export_rule!(MyRule);` once, at the crate's root.
///
/// Only on `wasm32`: natively the export names would break a `cdylib`'s
/// linker script, and native builds are for tests. Make the rule's type
/// `pub`, so that a native build does not take it for dead code.
#[macro_export]
macro_rules! export_rule {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __ApiaryRule = $crate::__export::RuleExport<$ty>;
    $crate::rule_world::__export_rule_world!(__ApiaryRule with_types_in $crate::rule_world);
        };
    };
}

/// Exports a [`Parser`] as the plugin's `parser-plugin` world:
/// `apiary_sdk::export_parser!(MyParser);` once, at the crate's root
/// (see [`export_rule!`]).
#[macro_export]
macro_rules! export_parser {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __ApiaryParser = $crate::__export::ParserExport<$ty>;
            $crate::parser_world::__export_parser_world!(__ApiaryParser with_types_in $crate::parser_world);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_lay_text_out_and_read_it_back() {
        let mut text = String::new();
        let ip = Span::push(&mut text, "1.2.3.4");
        let province = Span::push(&mut text, "浙江");
        let empty = Span::push(&mut text, "");
        assert_eq!(text, "1.2.3.4浙江");
        assert_eq!(
            (ip.of(&text), province.of(&text), empty.of(&text)),
            ("1.2.3.4", "浙江", "")
        );
    }

    #[test]
    #[should_panic(expected = "span 8..10 is not text of this 13-byte batch text")]
    fn a_span_inside_a_character_panics() {
        Span { start: 8, len: 2 }.of("1.2.3.4浙江");
    }

    #[test]
    fn headers_of_a_record() {
        let span = |start| Span { start, len: 1 };
        let header = |record, start| Header {
            record,
            name: span(start),
            value: span(start),
        };
        let batch = RawBatch {
            topic: "t".into(),
            data: b"abcd".to_vec(),
            records: Vec::new(),
            headers: vec![header(0, 0), header(2, 1), header(2, 2), header(3, 3)],
        };
        let starts =
            |index| -> Vec<u32> { batch.headers_of(index).map(|h| h.name.start).collect() };
        assert_eq!(starts(0), [0]);
        assert!(starts(1).is_empty());
        assert_eq!(starts(2), [1, 2]);
        assert_eq!(starts(3), [3]);
        assert!(starts(4).is_empty());
    }
}
