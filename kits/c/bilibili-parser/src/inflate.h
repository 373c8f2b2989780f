// zlib (RFC 1950) decompression of Bilibili's protocol-version-2 bodies:
// a small canonical-Huffman inflater (RFC 1951) after Mark Adler's puff.

#ifndef BILIBILI_INFLATE_H
#define BILIBILI_INFLATE_H

#include <stddef.h>
#include <stdint.h>

// Decompresses the zlib stream `in` into a malloc'd buffer of at most `max`
// bytes. Returns NULL with `*error` set to a reason when the stream is
// malformed, fails its checksum, or would exceed `max`.
uint8_t *zlib_inflate(const uint8_t *in, size_t len, size_t max, size_t *out_len,
                      const char **error);

#endif
