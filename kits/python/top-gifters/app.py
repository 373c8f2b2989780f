"""Rule plugin in Python: gift totals and counts per user, the seed
dashboard's "top 10 gifting users". The same rule as plugins/top-gifters
(Rust), row for row: each batch folds into one delta row per user, in user
order, and the store adds them up.

Built by scripts/build-kits (`apiary plugin build`, which runs
componentize-py) into target/plugins-python/top-gifters.wasm; see
kits/python/README.md.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import rule
from wit_world.imports import types
from wit_world.imports.types import (
    Column,
    ColumnType,
    EventBody_Gift,
    FiredTimer,
    EventKind,
    MergeMode,
    OutputRows,
    OutputSchema,
    Rejection,
    Value_Int,
)

OUTPUT = "top_gifters"


class Rule(exports.Rule):
    def init(self, params: list[tuple[str, str]]) -> None:
        # Parameters come from [plugins.params.top-gifters]; this rule takes none.
        if params:
            raise Err(f"unknown parameter `{params[0][0]}`: top-gifters takes none")

    def describe(self) -> rule.RuleInfo:
        def column(name: str, merge: MergeMode) -> Column:
            return Column(name, ColumnType.INT, merge, False)

        return rule.RuleInfo(
            name="top-gifters",
            version="0.1.0",
            consumes=[EventKind.GIFT],
            outputs=[
                OutputSchema(
                    OUTPUT,
                    None,
                    [
                        column("user_id", MergeMode.REPLACE),
                        column("gift_total_amount", MergeMode.ADD),
                        column("gifts", MergeMode.ADD),
                    ],
                    ["user_id"],
                )
            ],
        )

    def process(self, batch: types.EventBatch) -> rule.RuleOutput:
        totals: dict[int, list[int]] = {}
        rejected = []
        for index, event in enumerate(batch.events):
            body = event.body
            if isinstance(body, EventBody_Gift):
                gift = body.value
                entry = totals.setdefault(gift.user_id, [0, 0])
                entry[0] += gift.amount
                entry[1] += 1
            else:
                rejected.append(Rejection(index, "top-gifters consumes gift events only"))
        cells = []
        for user in sorted(totals):
            amount, gifts = totals[user]
            cells += [Value_Int(user), Value_Int(amount), Value_Int(gifts)]
        rows = [OutputRows(OUTPUT, cells)] if cells else []
        return rule.RuleOutput(rows, rejected)

    def on_timers(self, timers: list[FiredTimer], watermark: int) -> list[OutputRows]:
        # This rule sets no timers.
        return []
