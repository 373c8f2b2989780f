#include "inflate.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MAXBITS 15
#define MAXLCODES 286
#define MAXDCODES 30
#define FIXLCODES 288

typedef struct {
    const uint8_t *in;
    size_t in_len, in_pos;
    uint32_t bit_buf;
    int bit_count;
    bool short_input;
    uint8_t *out;
    size_t out_len, out_cap, out_max;
    const char *error;
} state_t;

// Canonical Huffman code: the number of codes of each length, and the
// symbols ordered by code.
typedef struct {
    short count[MAXBITS + 1];
    short *symbol;
} huffman_t;

static int bits(state_t *s, int need) {
    uint32_t val = s->bit_buf;
    while (s->bit_count < need) {
        if (s->in_pos == s->in_len) {
            s->short_input = true;
            return 0;
        }
        val |= (uint32_t)s->in[s->in_pos++] << s->bit_count;
        s->bit_count += 8;
    }
    s->bit_buf = val >> need;
    s->bit_count -= need;
    return (int)(val & ((1u << need) - 1));
}

static bool put(state_t *s, uint8_t byte) {
    if (s->out_len == s->out_cap) {
        if (s->out_cap == s->out_max) {
            s->error = "decompressed body exceeds its limit";
            return false;
        }
        size_t cap = s->out_cap ? s->out_cap * 2 : 4096;
        if (cap > s->out_max) cap = s->out_max;
        uint8_t *grown = realloc(s->out, cap);
        if (!grown) {
            s->error = "out of memory";
            return false;
        }
        s->out = grown;
        s->out_cap = cap;
    }
    s->out[s->out_len++] = byte;
    return true;
}

static int decode(state_t *s, const huffman_t *h) {
    int code = 0, first = 0, index = 0;
    for (int len = 1; len <= MAXBITS; len++) {
        code |= bits(s, 1);
        int count = h->count[len];
        if (code - count < first) return h->symbol[index + (code - first)];
        index += count;
        first += count;
        first <<= 1;
        code <<= 1;
    }
    return -1;
}

// Builds `h` from code lengths; returns 0 for a complete code, > 0 for an
// incomplete one, < 0 for an over-subscribed one.
static int construct(huffman_t *h, const short *length, int n) {
    short offs[MAXBITS + 1];
    for (int len = 0; len <= MAXBITS; len++) h->count[len] = 0;
    for (int symbol = 0; symbol < n; symbol++) h->count[length[symbol]]++;
    if (h->count[0] == n) return 0;
    int left = 1;
    for (int len = 1; len <= MAXBITS; len++) {
        left <<= 1;
        left -= h->count[len];
        if (left < 0) return left;
    }
    offs[1] = 0;
    for (int len = 1; len < MAXBITS; len++) offs[len + 1] = (short)(offs[len] + h->count[len]);
    for (int symbol = 0; symbol < n; symbol++)
        if (length[symbol] != 0) h->symbol[offs[length[symbol]]++] = (short)symbol;
    return left;
}

static const short length_base[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                      31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const short length_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                       2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const short dist_base[30] = {1,    2,    3,    4,    5,    7,     9,     13,    17,  25,
                                    33,   49,   65,   97,   129,  193,   257,   385,   513, 769,
                                    1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
static const short dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                     6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

static bool fail(state_t *s, const char *why) {
    if (!s->error) s->error = why;
    return false;
}

static bool codes(state_t *s, const huffman_t *lencode, const huffman_t *distcode) {
    for (;;) {
        int symbol = decode(s, lencode);
        if (s->short_input) return fail(s, "compressed body ends early");
        if (symbol < 0) return fail(s, "invalid literal/length code");
        if (symbol < 256) {
            if (!put(s, (uint8_t)symbol)) return false;
        } else if (symbol == 256) {
            return true;
        } else {
            symbol -= 257;
            if (symbol >= 29) return fail(s, "invalid length symbol");
            int len = length_base[symbol] + bits(s, length_extra[symbol]);
            symbol = decode(s, distcode);
            if (symbol < 0 || symbol >= 30) return fail(s, "invalid distance code");
            size_t dist = (size_t)(dist_base[symbol] + bits(s, dist_extra[symbol]));
            if (s->short_input) return fail(s, "compressed body ends early");
            if (dist > s->out_len) return fail(s, "distance too far back");
            while (len--)
                if (!put(s, s->out[s->out_len - dist])) return false;
        }
    }
}

static bool stored(state_t *s) {
    s->bit_buf = 0;
    s->bit_count = 0;
    if (s->in_len - s->in_pos < 4) return fail(s, "compressed body ends early");
    size_t len = s->in[s->in_pos] | (size_t)s->in[s->in_pos + 1] << 8;
    size_t check = s->in[s->in_pos + 2] | (size_t)s->in[s->in_pos + 3] << 8;
    s->in_pos += 4;
    if (check != (~len & 0xffff)) return fail(s, "stored block length does not match its complement");
    if (s->in_len - s->in_pos < len) return fail(s, "compressed body ends early");
    while (len--)
        if (!put(s, s->in[s->in_pos++])) return false;
    return true;
}

static bool fixed(state_t *s) {
    static short lensym[FIXLCODES], distsym[MAXDCODES];
    static huffman_t lencode = {.symbol = lensym}, distcode = {.symbol = distsym};
    static bool built = false;
    if (!built) {
        short lengths[FIXLCODES];
        int symbol = 0;
        for (; symbol < 144; symbol++) lengths[symbol] = 8;
        for (; symbol < 256; symbol++) lengths[symbol] = 9;
        for (; symbol < 280; symbol++) lengths[symbol] = 7;
        for (; symbol < FIXLCODES; symbol++) lengths[symbol] = 8;
        construct(&lencode, lengths, FIXLCODES);
        for (symbol = 0; symbol < MAXDCODES; symbol++) lengths[symbol] = 5;
        construct(&distcode, lengths, MAXDCODES);
        built = true;
    }
    return codes(s, &lencode, &distcode);
}

static bool dynamic(state_t *s) {
    static const short order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
    short lengths[MAXLCODES + MAXDCODES];
    short lensym[MAXLCODES], distsym[MAXDCODES];
    huffman_t lencode = {.symbol = lensym}, distcode = {.symbol = distsym};

    int nlen = bits(s, 5) + 257, ndist = bits(s, 5) + 1, ncode = bits(s, 4) + 4;
    if (nlen > MAXLCODES || ndist > MAXDCODES) return fail(s, "bad counts in a dynamic block");
    int index = 0;
    for (; index < ncode; index++) lengths[order[index]] = (short)bits(s, 3);
    for (; index < 19; index++) lengths[order[index]] = 0;
    if (s->short_input) return fail(s, "compressed body ends early");
    if (construct(&lencode, lengths, 19) != 0) return fail(s, "incomplete code-length code");

    for (index = 0; index < nlen + ndist;) {
        int symbol = decode(s, &lencode);
        if (s->short_input) return fail(s, "compressed body ends early");
        if (symbol < 0) return fail(s, "invalid code-length code");
        if (symbol < 16) {
            lengths[index++] = (short)symbol;
            continue;
        }
        short len = 0;
        if (symbol == 16) {
            if (index == 0) return fail(s, "repeat with no first length");
            len = lengths[index - 1];
            symbol = 3 + bits(s, 2);
        } else if (symbol == 17) {
            symbol = 3 + bits(s, 3);
        } else {
            symbol = 11 + bits(s, 7);
        }
        if (index + symbol > nlen + ndist) return fail(s, "too many code lengths");
        while (symbol--) lengths[index++] = len;
    }
    if (lengths[256] == 0) return fail(s, "no end-of-block code");
    int err = construct(&lencode, lengths, nlen);
    if (err && (err < 0 || nlen != lencode.count[0] + lencode.count[1]))
        return fail(s, "incomplete literal/length code");
    err = construct(&distcode, lengths + nlen, ndist);
    if (err && (err < 0 || ndist != distcode.count[0] + distcode.count[1]))
        return fail(s, "incomplete distance code");
    return codes(s, &lencode, &distcode);
}

static uint32_t adler32(const uint8_t *p, size_t len) {
    uint32_t a = 1, b = 0;
    for (size_t i = 0; i < len; i++) {
        a = (a + p[i]) % 65521;
        b = (b + a) % 65521;
    }
    return b << 16 | a;
}

uint8_t *zlib_inflate(const uint8_t *in, size_t len, size_t max, size_t *out_len,
                      const char **error) {
    if (len < 6 || (in[0] & 0x0f) != 8 || (in[0] >> 4) > 7 || ((in[0] << 8) | in[1]) % 31 != 0 ||
        (in[1] & 0x20)) {
        *error = "not a zlib stream";
        return NULL;
    }
    state_t s = {.in = in + 2, .in_len = len - 6, .out_max = max};
    bool ok = true;
    for (int last = 0; ok && !last;) {
        last = bits(&s, 1);
        int type = bits(&s, 2);
        ok = s.short_input ? fail(&s, "compressed body ends early")
             : type == 0   ? stored(&s)
             : type == 1   ? fixed(&s)
             : type == 2   ? dynamic(&s)
                           : fail(&s, "invalid block type");
    }
    const uint8_t *trailer = in + len - 4;
    uint32_t expected = (uint32_t)trailer[0] << 24 | (uint32_t)trailer[1] << 16 |
                        (uint32_t)trailer[2] << 8 | trailer[3];
    if (ok && adler32(s.out, s.out_len) != expected) ok = fail(&s, "checksum mismatch");
    if (!ok) {
        free(s.out);
        *error = s.error;
        return NULL;
    }
    *out_len = s.out_len;
    return s.out ? s.out : malloc(1);
}
