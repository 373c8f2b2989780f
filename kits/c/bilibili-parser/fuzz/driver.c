// libFuzzer harness: the parser compiled natively, under AddressSanitizer
// and UndefinedBehaviorSanitizer, fed one record (key "123") per input.
// The host imports are stubs: the parser calls none of them.

#include <stdlib.h>
#include <string.h>

#include "parser_plugin.h"

void __wasm_import_apiary_plugin_log_log(int32_t level, uint8_t *ptr, size_t len) {}
void __wasm_import_apiary_plugin_state_get(uint8_t *key, size_t len, uint8_t *ret) {}
void __wasm_import_apiary_plugin_state_set(uint8_t *key, size_t len, uint8_t *value, size_t n) {}
void __wasm_import_apiary_plugin_state_set_expiring(uint8_t *key, size_t len, uint8_t *value,
                                                    size_t n, int64_t expires_at) {}
void __wasm_import_apiary_plugin_state_delete(uint8_t *key, size_t len) {}
void __wasm_import_apiary_plugin_lookup_get_many(uint8_t *a, size_t b, uint8_t *c, size_t d,
                                                 uint8_t *e, size_t f, uint8_t *ret) {}
void __component_type_object_force_link_parser_plugin(void) {}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    exports_apiary_plugin_parser_raw_batch_t batch = {0};
    parser_plugin_string_dup(&batch.topic, "bilibili_danmaku");
    batch.data.len = size + 3;
    batch.data.ptr = malloc(size + 3);
    memcpy(batch.data.ptr, "123", 3);
    memcpy(batch.data.ptr + 3, data, size);
    batch.records.len = 1;
    batch.records.ptr = calloc(1, sizeof *batch.records.ptr);
    batch.records.ptr[0].key.is_some = true;
    batch.records.ptr[0].key.val = (apiary_plugin_types_span_t){0, 3};
    batch.records.ptr[0].value = (apiary_plugin_types_span_t){3, (uint32_t)size};
    exports_apiary_plugin_parser_parse_output_t out = {0};
    exports_apiary_plugin_parser_parse(&batch, &out);
    exports_apiary_plugin_parser_parse_output_free(&out);
    return 0;
}
