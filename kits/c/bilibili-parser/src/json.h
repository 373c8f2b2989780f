// A small JSON reader over a byte range: finds members and elements
// without building a tree, and decodes the strings and integers asked for.

#ifndef BILIBILI_JSON_H
#define BILIBILI_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// One JSON value's text: `p` is its first byte, `end` the end of the input.
typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} json_t;

// The whole of `text` as one value: true when it is exactly one well-formed
// JSON value (surrounding whitespace allowed).
bool json_parse(const uint8_t *text, size_t len, json_t *out);

// The value of member `key` of object `obj`.
bool json_member(json_t obj, const char *key, json_t *out);

// Element `index` of array `arr`.
bool json_element(json_t arr, size_t index, json_t *out);

// An integer (no fraction or exponent) that fits in 64 bits.
bool json_int(json_t value, int64_t *out);

// A string, decoded to UTF-8 in a malloc'd buffer the caller frees.
bool json_string(json_t value, uint8_t **out, size_t *len);

// Whether `value` is a string whose raw text is `text` or starts with
// `text` followed by ':' (Bilibili suffixes some commands, "DANMU_MSG:4:0").
bool json_command_is(json_t value, const char *text);

#endif
