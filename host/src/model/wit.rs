//! Host-side bindings of the WIT contracts: `wit/plugin.wit`
//! (`apiary:plugin@0.3.0`, module [`v3`]), `wit/v0.2.0/plugin.wit` and, for
//! plugins built before event time, `wit/v0.1.0/plugin.wit` (module
//! [`v1`]). The host's vocabulary is 0.2.0's (raw batches, values, schemas,
//! rows) but for event batches, which it keeps as 0.3.0 lays them out: a
//! 0.3.0 parser's events go to 0.3.0 rules as they came, their text never
//! copied.
//!
//! One `bindgen!` per world; each rule world reuses its parser world's
//! generated import interfaces so both share one set of types.

#![allow(missing_docs)]

/// Bindings of the 0.2.0 `parser-plugin` world, and the shared interfaces.
pub mod parser_world {
    wasmtime::component::bindgen!({
        world: "parser-plugin",
        path: "../wit/v0.2.0",
        anyhow: true,
        additional_derives: [PartialEq],
        // Over a state limit, the plugin traps like over any other limit.
        imports: {
            "apiary:plugin/state.set": trappable,
            "apiary:plugin/state.set-expiring": trappable,
        },
    });
}

/// Bindings of the 0.2.0 `rule-plugin` world.
pub mod rule_world {
    wasmtime::component::bindgen!({
        world: "rule-plugin",
        path: "../wit/v0.2.0",
        anyhow: true,
        with: {
            "apiary:plugin/types": super::parser_world::apiary::plugin::types,
            "apiary:plugin/log": super::parser_world::apiary::plugin::log,
            "apiary:plugin/state": super::parser_world::apiary::plugin::state,
            "apiary:plugin/lookup": super::parser_world::apiary::plugin::lookup,
        },
        // A timer key longer than the host stores traps.
        imports: { "apiary:plugin/timers.set": trappable },
    });
}

/// The 0.3.0 contract, the one plugins are built against: its batches carry
/// text as spans of one string. The host keeps its event batches in these
/// types and converts raw batches at the boundary
/// (`plugin::compat::v3`).
pub mod v3 {
    /// Bindings of the 0.3.0 `parser-plugin` world, and its interfaces.
    pub mod parser_world {
        wasmtime::component::bindgen!({
            world: "parser-plugin",
            path: "../wit",
            anyhow: true,
            additional_derives: [PartialEq],
            imports: {
                "apiary:plugin/state.set": trappable,
                "apiary:plugin/state.set-expiring": trappable,
            },
        });
    }

    /// Bindings of the 0.3.0 `rule-plugin` world.
    pub mod rule_world {
        wasmtime::component::bindgen!({
            world: "rule-plugin",
            path: "../wit",
            anyhow: true,
            with: {
                "apiary:plugin/types": super::parser_world::apiary::plugin::types,
                "apiary:plugin/log": super::parser_world::apiary::plugin::log,
                "apiary:plugin/state": super::parser_world::apiary::plugin::state,
                "apiary:plugin/lookup": super::parser_world::apiary::plugin::lookup,
            },
            imports: { "apiary:plugin/timers.set": trappable },
        });
    }

    pub use parser_world::apiary::plugin::{log, lookup, state, types};
    pub use parser_world::exports::apiary::plugin::parser::{ParseOutput, ParserInfo};
    pub use parser_world::{ParserPlugin, ParserPluginPre};
    pub use rule_world::apiary::plugin::timers;
    pub use rule_world::exports::apiary::plugin::rule::{RuleInfo, RuleOutput};
    pub use rule_world::{RulePlugin, RulePluginPre};
}

/// The 0.1.0 contract, for plugins built before event time: the host turns
/// its types into 0.2.0 ones at the boundary (see `compat`).
pub mod v1 {
    /// Bindings of the 0.1.0 `parser-plugin` world, and its interfaces.
    pub mod parser_world {
        wasmtime::component::bindgen!({
            world: "parser-plugin",
            path: "../wit/v0.1.0",
            anyhow: true,
            imports: { "apiary:plugin/state.set": trappable },
        });
    }

    /// Bindings of the 0.1.0 `rule-plugin` world.
    pub mod rule_world {
        wasmtime::component::bindgen!({
            world: "rule-plugin",
            path: "../wit/v0.1.0",
            anyhow: true,
            with: {
                "apiary:plugin/types": super::parser_world::apiary::plugin::types,
                "apiary:plugin/log": super::parser_world::apiary::plugin::log,
                "apiary:plugin/state": super::parser_world::apiary::plugin::state,
                "apiary:plugin/lookup": super::parser_world::apiary::plugin::lookup,
            },
        });
    }

    pub use parser_world::apiary::plugin::{log, lookup, state, types};
    pub use parser_world::exports::apiary::plugin::parser::{ParseOutput, ParserInfo};
    pub use parser_world::{ParserPlugin, ParserPluginPre};
    pub use rule_world::exports::apiary::plugin::rule::{RuleInfo, RuleOutput};
    pub use rule_world::{RulePlugin, RulePluginPre};
}

pub use parser_world::apiary::plugin::{log, lookup, state, types};
pub use parser_world::exports::apiary::plugin::parser::{ParseOutput, ParserInfo};
pub use parser_world::{ParserPlugin, ParserPluginPre};
pub use rule_world::apiary::plugin::timers;
pub use rule_world::exports::apiary::plugin::rule::{RuleInfo, RuleOutput};
pub use rule_world::{RulePlugin, RulePluginPre};

/// WIT spelling of the contract's enums, for messages and `inspect`.
macro_rules! wit_names {
    ($ty:ty { $($case:ident => $name:literal),* $(,)? }) => {
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self { $(Self::$case => $name),* })
            }
        }
    };
}

wit_names!(types::EventKind {
    Visit => "visit", Gift => "gift", Chat => "chat",
    RoomStatus => "room-status", StreamerStats => "streamer-stats", RoomList => "room-list",
});
wit_names!(types::ColumnType {
    Int => "int", Float => "float", Text => "text", Bytes => "bytes",
    Timestamp => "timestamp", Boolean => "boolean",
});
wit_names!(types::MergeMode { Replace => "replace", Add => "add", Max => "max", Min => "min" });
