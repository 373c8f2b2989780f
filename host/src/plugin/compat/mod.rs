//! Plugins of every contract version run side by side: the host speaks
//! `apiary:plugin@0.2.0`, but for event batches, which it keeps in
//! 0.3.0's layout (text as spans of one string per batch), and turns a
//! plugin's inputs into its version's types and its outputs back at the
//! boundary.
//! The types all versions share (values, schemas, outputs) convert here;
//! what differs, in a module per version.

pub mod v1;
pub mod v3;

use crate::model::wit::{ParserInfo, RuleInfo, RuleOutput, types};
// The contracts' bindings, beside this module's own `v1` and `v3`.
use crate::model::wit::{v1 as wit_v1, v3 as wit_v3};

/// `From` between the same enum of two contract versions' types.
macro_rules! same_enum {
    ($name:ident, $($from:ident)::+ => $($to:ident)::+ { $($case:ident $(($x:ident))?),* $(,)? }) => {
        impl From<$($from)::+::$name> for $($to)::+::$name {
            fn from(v: $($from)::+::$name) -> Self {
                use $($from)::+::$name as From;
                match v { $(From::$case $(($x))? => Self::$case $(($x))?),* }
            }
        }
    };
}

/// `From` the types every version shares into the host's, and values back
/// (lookup answers).
macro_rules! shared_types {
    ($v:ident) => {
        same_enum!(Value, $v::types => types { Null, Int(x), Float(x), Text(x), Bytes(x), Timestamp(x), Boolean(x) });
        same_enum!(Value, types => $v::types { Null, Int(x), Float(x), Text(x), Bytes(x), Timestamp(x), Boolean(x) });
        same_enum!(LogLevel, $v::types => types { Trace, Debug, Info, Warn, Error });
        same_enum!(ColumnType, $v::types => types { Int, Float, Text, Bytes, Timestamp, Boolean });
        same_enum!(MergeMode, $v::types => types { Replace, Add, Max, Min });

        impl From<$v::types::Rejection> for types::Rejection {
            fn from(r: $v::types::Rejection) -> Self {
                Self { index: r.index, reason: r.reason }
            }
        }

        impl From<$v::types::OutputRows> for types::OutputRows {
            fn from(r: $v::types::OutputRows) -> Self {
                Self {
                    output: r.output,
                    cells: r.cells.into_iter().map(Into::into).collect(),
                }
            }
        }

        impl From<$v::RuleOutput> for RuleOutput {
            fn from(o: $v::RuleOutput) -> Self {
                Self {
                    rows: o.rows.into_iter().map(Into::into).collect(),
                    rejected: o.rejected.into_iter().map(Into::into).collect(),
                }
            }
        }

        impl From<$v::ParserInfo> for ParserInfo {
            fn from(i: $v::ParserInfo) -> Self {
                Self { name: i.name, version: i.version, topics: i.topics }
            }
        }

        impl From<$v::types::OutputSchema> for types::OutputSchema {
            fn from(o: $v::types::OutputSchema) -> Self {
                Self {
                    name: o.name,
                    table: o.table,
                    columns: o
                        .columns
                        .into_iter()
                        .map(|c| types::Column {
                            name: c.name,
                            type_: c.type_.into(),
                            merge: c.merge.into(),
                            nullable: c.nullable,
                        })
                        .collect(),
                    primary_key: o.primary_key,
                }
            }
        }

        impl From<$v::RuleInfo> for RuleInfo {
            fn from(i: $v::RuleInfo) -> Self {
                Self {
                    name: i.name,
                    version: i.version,
                    consumes: i.consumes.into_iter().map(Into::into).collect(),
                    outputs: i.outputs.into_iter().map(Into::into).collect(),
                }
            }
        }
    };
}

shared_types!(wit_v1);
shared_types!(wit_v3);
// 0.1.0 has no room lists.
same_enum!(EventKind, wit_v1::types => types { Visit, Gift, Chat, RoomStatus, StreamerStats });
same_enum!(EventKind, wit_v3::types => types { Visit, Gift, Chat, RoomStatus, StreamerStats, RoomList });
