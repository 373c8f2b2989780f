#include "json.h"

#include <stdlib.h>
#include <string.h>

// Deeper nesting than any Bilibili message is refused rather than recursed.
#define MAX_DEPTH 32

static const uint8_t *skip_ws(const uint8_t *p, const uint8_t *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

// The end of the string starting at `p` (a '"'), or NULL.
static const uint8_t *skip_string(const uint8_t *p, const uint8_t *end) {
    for (p++; p < end; p++) {
        if (*p == '"') return p + 1;
        if (*p == '\\') p++;
        else if (*p < 0x20) return NULL;
    }
    return NULL;
}

static const uint8_t *skip_value(const uint8_t *p, const uint8_t *end, int depth);

// The end of the object or array starting at `p`, or NULL.
static const uint8_t *skip_container(const uint8_t *p, const uint8_t *end, int depth) {
    uint8_t close = *p == '{' ? '}' : ']';
    bool object = *p == '{';
    if (depth > MAX_DEPTH) return NULL;
    p = skip_ws(p + 1, end);
    if (p < end && *p == close) return p + 1;
    for (;;) {
        if (object) {
            if (p >= end || *p != '"' || !(p = skip_string(p, end))) return NULL;
            p = skip_ws(p, end);
            if (p >= end || *p != ':') return NULL;
            p++;
        }
        if (!(p = skip_value(p, end, depth + 1))) return NULL;
        p = skip_ws(p, end);
        if (p >= end) return NULL;
        if (*p == close) return p + 1;
        if (*p != ',') return NULL;
        p = skip_ws(p + 1, end);
    }
}

static const uint8_t *skip_literal(const uint8_t *p, const uint8_t *end, const char *word) {
    size_t n = strlen(word);
    return (size_t)(end - p) >= n && memcmp(p, word, n) == 0 ? p + n : NULL;
}

static const uint8_t *skip_number(const uint8_t *p, const uint8_t *end) {
    const uint8_t *start = p;
    if (p < end && *p == '-') p++;
    const uint8_t *digits = p;
    while (p < end && ((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E' ||
                       *p == '+' || *p == '-'))
        p++;
    return p > digits && p > start ? p : NULL;
}

// The end of the value starting at or after `p` (leading whitespace
// skipped), or NULL when it is malformed.
static const uint8_t *skip_value(const uint8_t *p, const uint8_t *end, int depth) {
    p = skip_ws(p, end);
    if (p >= end) return NULL;
    switch (*p) {
    case '{':
    case '[': return skip_container(p, end, depth);
    case '"': return skip_string(p, end);
    case 't': return skip_literal(p, end, "true");
    case 'f': return skip_literal(p, end, "false");
    case 'n': return skip_literal(p, end, "null");
    default: return skip_number(p, end);
    }
}

bool json_parse(const uint8_t *text, size_t len, json_t *out) {
    const uint8_t *end = text + len;
    const uint8_t *start = skip_ws(text, end);
    const uint8_t *after = skip_value(start, end, 0);
    if (!after || skip_ws(after, end) != end) return false;
    out->p = start;
    out->end = end;
    return true;
}

// Past the value at `p` and the ',' after it: where the next member or
// element starts, or NULL at the container's end or on malformed input.
static const uint8_t *next_item(const uint8_t *p, const uint8_t *end) {
    if (!(p = skip_value(p, end, 1))) return NULL;
    p = skip_ws(p, end);
    if (p >= end || *p != ',') return NULL;
    return skip_ws(p + 1, end);
}

bool json_member(json_t obj, const char *key, json_t *out) {
    const uint8_t *p = obj.p, *end = obj.end;
    size_t key_len = strlen(key);
    if (p >= end || *p != '{') return false;
    p = skip_ws(p + 1, end);
    while (p < end && *p == '"') {
        const uint8_t *name = p + 1, *after = skip_string(p, end);
        if (!after) return false;
        bool match = (size_t)(after - 1 - name) == key_len && memcmp(name, key, key_len) == 0;
        p = skip_ws(after, end);
        if (p >= end || *p != ':') return false;
        p = skip_ws(p + 1, end);
        if (match) {
            out->p = p;
            out->end = end;
            return true;
        }
        if (!(p = next_item(p, end))) return false;
    }
    return false;
}

bool json_element(json_t arr, size_t index, json_t *out) {
    const uint8_t *p = arr.p, *end = arr.end;
    if (p >= end || *p != '[') return false;
    p = skip_ws(p + 1, end);
    if (p < end && *p == ']') return false;
    for (size_t i = 0;; i++) {
        if (i == index) {
            out->p = p;
            out->end = end;
            return true;
        }
        if (!(p = next_item(p, end))) return false;
    }
}

bool json_int(json_t value, int64_t *out) {
    const uint8_t *p = value.p, *end = value.end;
    bool negative = p < end && *p == '-';
    if (negative) p++;
    if (p >= end || *p < '0' || *p > '9') return false;
    uint64_t n = 0;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        if (n > (UINT64_MAX - 9) / 10) return false;
        n = n * 10 + (uint64_t)(*p - '0');
    }
    if (p < end && (*p == '.' || *p == 'e' || *p == 'E')) return false;
    if (n > (uint64_t)INT64_MAX + negative) return false;
    *out = negative ? (int64_t)(0 - n) : (int64_t)n;
    return true;
}

static int hex4(const uint8_t *p, const uint8_t *end) {
    if (end - p < 4) return -1;
    int v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static size_t put_utf8(uint8_t *o, uint32_t c) {
    if (c < 0x80) {
        o[0] = (uint8_t)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (uint8_t)(0xC0 | c >> 6);
        o[1] = (uint8_t)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (uint8_t)(0xE0 | c >> 12);
        o[1] = (uint8_t)(0x80 | (c >> 6 & 0x3F));
        o[2] = (uint8_t)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | c >> 18);
    o[1] = (uint8_t)(0x80 | (c >> 12 & 0x3F));
    o[2] = (uint8_t)(0x80 | (c >> 6 & 0x3F));
    o[3] = (uint8_t)(0x80 | (c & 0x3F));
    return 4;
}

// Whether `s` is well-formed UTF-8: the host refuses anything else in a
// WIT string, so it is checked here, where the record can be named.
static bool valid_utf8(const uint8_t *s, size_t len) {
    for (size_t i = 0; i < len;) {
        uint8_t c = s[i];
        size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (n == 0 || i + n > len) return false;
        uint32_t cp = n == 1 ? c : n == 2 ? c & 0x1F : n == 3 ? c & 0x0F : c & 0x07;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += n;
    }
    return true;
}

bool json_string(json_t value, uint8_t **out, size_t *len) {
    const uint8_t *p = value.p, *end = value.end;
    if (p >= end || *p != '"') return false;
    const uint8_t *close = skip_string(p, end);
    if (!close) return false;
    // Escapes never decode to more bytes than they take.
    uint8_t *buf = malloc((size_t)(close - p));
    size_t n = 0;
    for (p++; p < close - 1; p++) {
        if (*p != '\\') {
            buf[n++] = *p;
            continue;
        }
        p++;
        switch (*p) {
        case '"': buf[n++] = '"'; break;
        case '\\': buf[n++] = '\\'; break;
        case '/': buf[n++] = '/'; break;
        case 'b': buf[n++] = '\b'; break;
        case 'f': buf[n++] = '\f'; break;
        case 'n': buf[n++] = '\n'; break;
        case 'r': buf[n++] = '\r'; break;
        case 't': buf[n++] = '\t'; break;
        case 'u': {
            int hi = hex4(p + 1, close - 1);
            if (hi < 0) goto bad;
            p += 4;
            uint32_t c = (uint32_t)hi;
            if (hi >= 0xD800 && hi <= 0xDBFF) {
                int lo = p + 2 < close - 1 && p[1] == '\\' && p[2] == 'u' ? hex4(p + 3, close - 1) : -1;
                if (lo < 0xDC00 || lo > 0xDFFF) goto bad;
                c = 0x10000 + (((uint32_t)hi - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
                p += 6;
            } else if (hi >= 0xDC00 && hi <= 0xDFFF) {
                goto bad;
            }
            n += put_utf8(buf + n, c);
            break;
        }
        default: goto bad;
        }
    }
    if (!valid_utf8(buf, n)) goto bad;
    *out = buf;
    *len = n;
    return true;
bad:
    free(buf);
    return false;
}

bool json_command_is(json_t value, const char *text) {
    size_t n = strlen(text);
    const uint8_t *p = value.p;
    if ((size_t)(value.end - p) < n + 2 || *p != '"' || memcmp(p + 1, text, n) != 0) return false;
    return p[n + 1] == '"' || p[n + 1] == ':';
}
