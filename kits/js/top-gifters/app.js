// Rule plugin in JavaScript: gift totals and counts per user, the seed
// dashboard's "top 10 gifting users". The same rule as plugins/top-gifters
// (Rust), row for row: each batch folds into one delta row per user, in
// user order, and the store adds them up.
//
// Built by scripts/build-kits (`apiary plugin build`, which runs
// componentize-qjs) into target/plugins-js/top-gifters.wasm; see
// kits/js/README.md.

const OUTPUT = "top_gifters";

const column = (name, merge) => ({ name, type: "int", merge, nullable: false });

export const rule = {
  // Parameters come from [plugins.params.top-gifters]; this rule takes none. A
  // thrown string rejects the plugin with that message.
  init(params) {
    if (params.length) throw `unknown parameter \`${params[0][0]}\`: top-gifters takes none`;
  },

  describe() {
    return {
      name: "top-gifters",
      version: "0.1.0",
      consumes: ["gift"],
      outputs: [
        {
          name: OUTPUT,
          table: null,
          columns: [
            column("user_id", "replace"),
            column("gift_total_amount", "add"),
            column("gifts", "add"),
          ],
          primaryKey: ["user_id"],
        },
      ],
    };
  },

  process(batch) {
    const totals = new Map();
    const rejected = [];
    batch.events.forEach((event, index) => {
      const body = event.body;
      if (body.tag !== "gift") {
        rejected.push({ index, reason: "top-gifters consumes gift events only" });
        return;
      }
      const gift = body.val;
      const entry = totals.get(gift.userId);
      if (entry) {
        entry[0] += gift.amount;
        entry[1] += 1;
      } else {
        totals.set(gift.userId, [gift.amount, 1]);
      }
    });
    const cells = [];
    for (const user of [...totals.keys()].sort((a, b) => a - b)) {
      const [amount, gifts] = totals.get(user);
      cells.push({ tag: "int", val: user }, { tag: "int", val: amount }, { tag: "int", val: gifts });
    }
    return { rows: cells.length ? [{ output: OUTPUT, cells }] : [], rejected };
  },

  // This rule sets no timers.
  onTimers(timers, watermark) {
    return [];
  },
};
