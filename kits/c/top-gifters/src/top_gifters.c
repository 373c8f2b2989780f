// Rule plugin in C: gift totals and counts per user, the seed dashboard's
// "top 10 gifting users". The same rule as plugins/top-gifters (Rust),
// row for row: each batch folds into one delta row per user, in user
// order, and the store adds them up.
//
// Memory follows wit-bindgen's C conventions: the batch argument belongs to
// the export and is freed here; everything returned is malloc'd, and the
// generated post-return code frees it after the host has copied it.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rule_plugin.h"

#define OUTPUT "top_gifters"

typedef struct {
    int64_t user;
    int64_t amount;
} gift_t;

static void column(apiary_plugin_types_column_t *col, const char *name,
                   apiary_plugin_types_merge_mode_t merge) {
    rule_plugin_string_dup(&col->name, name);
    col->type = APIARY_PLUGIN_TYPES_COLUMN_TYPE_INT;
    col->merge = merge;
    col->nullable = false;
}

// Parameters come from [plugins.params.top-gifters]; this rule takes none. An
// error rejects the plugin with its message. The list is freed here.
bool exports_apiary_plugin_rule_init(rule_plugin_list_tuple2_string_string_t *params,
                                     rule_plugin_string_t *err) {
    bool ok = params->len == 0;
    if (!ok) {
        char reason[160];
        rule_plugin_string_t *first = &params->ptr[0].f0;
        snprintf(reason, sizeof reason, "unknown parameter `%.*s`: top-gifters takes none",
                 (int)(first->len < 64 ? first->len : 64), (const char *)first->ptr);
        rule_plugin_string_dup(err, reason);
    }
    rule_plugin_list_tuple2_string_string_free(params);
    return ok;
}

// This rule sets no timers, so none fire.
void exports_apiary_plugin_rule_on_timers(exports_apiary_plugin_rule_list_fired_timer_t *timers,
                                          int64_t watermark,
                                          exports_apiary_plugin_rule_list_output_rows_t *ret) {
    (void)watermark;
    exports_apiary_plugin_rule_list_fired_timer_free(timers);
    ret->len = 0;
    ret->ptr = NULL;
}

void exports_apiary_plugin_rule_describe(exports_apiary_plugin_rule_rule_info_t *ret) {
    rule_plugin_string_dup(&ret->name, "top-gifters");
    rule_plugin_string_dup(&ret->version, "0.1.0");

    ret->consumes.len = 1;
    ret->consumes.ptr = malloc(sizeof(exports_apiary_plugin_rule_event_kind_t));
    ret->consumes.ptr[0] = APIARY_PLUGIN_TYPES_EVENT_KIND_GIFT;

    apiary_plugin_types_output_schema_t *out = calloc(1, sizeof *out);
    rule_plugin_string_dup(&out->name, OUTPUT);
    out->table.is_some = false;
    out->columns.len = 3;
    out->columns.ptr = calloc(3, sizeof(apiary_plugin_types_column_t));
    column(&out->columns.ptr[0], "user_id", APIARY_PLUGIN_TYPES_MERGE_MODE_REPLACE);
    column(&out->columns.ptr[1], "gift_total_amount", APIARY_PLUGIN_TYPES_MERGE_MODE_ADD);
    column(&out->columns.ptr[2], "gifts", APIARY_PLUGIN_TYPES_MERGE_MODE_ADD);
    out->primary_key.len = 1;
    out->primary_key.ptr = calloc(1, sizeof(rule_plugin_string_t));
    rule_plugin_string_dup(&out->primary_key.ptr[0], "user_id");
    ret->outputs.len = 1;
    ret->outputs.ptr = out;
}

static int by_user(const void *a, const void *b) {
    int64_t x = ((const gift_t *)a)->user, y = ((const gift_t *)b)->user;
    return (x > y) - (x < y);
}

static void set_int(apiary_plugin_types_value_t *cell, int64_t value) {
    cell->tag = APIARY_PLUGIN_TYPES_VALUE_INT;
    cell->val.int_ = value;
}

void exports_apiary_plugin_rule_process(exports_apiary_plugin_rule_event_batch_t *batch,
                                        exports_apiary_plugin_rule_rule_output_t *ret) {
    size_t n = batch->events.len;
    gift_t *gifts = malloc((n ? n : 1) * sizeof *gifts);
    apiary_plugin_types_rejection_t *rejected = malloc((n ? n : 1) * sizeof *rejected);
    size_t count = 0, refused = 0;
    for (size_t i = 0; i < n; i++) {
        apiary_plugin_types_event_body_t *body = &batch->events.ptr[i].body;
        if (body->tag != APIARY_PLUGIN_TYPES_EVENT_BODY_GIFT) {
            rejected[refused].index = (uint32_t)i;
            rule_plugin_string_dup(&rejected[refused].reason,
                                   "top-gifters consumes gift events only");
            refused++;
            continue;
        }
        gifts[count].user = body->val.gift.user_id;
        gifts[count].amount = body->val.gift.amount;
        count++;
    }
    exports_apiary_plugin_rule_event_batch_free(batch);

    // Sorting by user folds each user's gifts into one row, in user order.
    qsort(gifts, count, sizeof *gifts, by_user);
    apiary_plugin_types_value_t *cells = malloc((count ? count : 1) * 3 * sizeof *cells);
    size_t rows = 0;
    for (size_t i = 0; i < count;) {
        int64_t user = gifts[i].user, amount = 0, given = 0;
        for (; i < count && gifts[i].user == user; i++) {
            amount += gifts[i].amount;
            given++;
        }
        set_int(&cells[rows * 3], user);
        set_int(&cells[rows * 3 + 1], amount);
        set_int(&cells[rows * 3 + 2], given);
        rows++;
    }
    free(gifts);

    // Post-return frees only non-empty lists, so empty ones hold no memory.
    ret->rows.len = 0;
    ret->rows.ptr = NULL;
    if (rows > 0) {
        ret->rows.len = 1;
        ret->rows.ptr = malloc(sizeof(apiary_plugin_types_output_rows_t));
        rule_plugin_string_dup(&ret->rows.ptr[0].output, OUTPUT);
        ret->rows.ptr[0].cells.ptr = cells;
        ret->rows.ptr[0].cells.len = rows * 3;
    } else {
        free(cells);
    }
    ret->rejected.len = refused;
    ret->rejected.ptr = refused ? rejected : NULL;
    if (!refused) free(rejected);
}
