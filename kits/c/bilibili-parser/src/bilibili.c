// Parser plugin in C: Bilibili's live danmaku stream.
//
// A collector connected to a room's danmaku server writes each WebSocket
// message it receives as one Kafka record, keyed by the room id in decimal.
// A message holds one or more packets, each with a 16-byte big-endian
// header:
//
//   u32 packet length (header included), u16 header length (16),
//   u16 protocol version, u32 operation, u32 sequence
//
// Version 0 bodies are JSON, version 1 a 4-byte number, version 2 a zlib
// stream of further packets, version 3 the same compressed with brotli
// (what the web client asks for in its auth packet today).
// Operation 3 is the heartbeat reply carrying the room's popularity, 5 a
// command (JSON with a "cmd"), 8 the auth reply.
//
// Commands become common events: DANMU_MSG a chat message, SEND_GIFT a
// gift, INTERACT_WORD with msg_type 1 (entered the room) a visit, LIVE and
// PREPARING a room status; popularity a streamer-stats event. Other
// commands (there are hundreds) carry nothing the common schema has, and
// are passed over. A record that cannot be read is refused whole, with the
// byte offset of the packet at fault. Each event's time is the message's
// own (a danmaku's send time, a gift's or an entry's timestamp), else the
// record's timestamp.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inflate.h"
#include "json.h"
#include "parser_plugin.h"
#include "unbrotli.h"

#define TOPIC "bilibili_danmaku"
#define HEADER_LEN 16
// A decompressed message larger than this is refused, not buffered.
#define MAX_INFLATED (4u << 20)

typedef apiary_plugin_types_event_t event_t;

// The events and rejections of one batch, grown as records are read.
typedef struct {
    event_t *events;
    size_t len, cap;
    apiary_plugin_types_rejection_t *rejected;
    size_t rejected_len;
    // The record being read: its index, room and timestamp.
    uint32_t record;
    int64_t room;
    parser_plugin_option_s64_t timestamp;
    char reason[160];
} batch_t;

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static event_t *push(batch_t *b, uint8_t tag) {
    if (b->len == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 256;
        b->events = realloc(b->events, b->cap * sizeof *b->events);
    }
    event_t *e = &b->events[b->len++];
    memset(e, 0, sizeof *e);
    e->record_index = b->record;
    e->body.tag = tag;
    return e;
}

static bool refuse(batch_t *b, size_t at, const char *what) {
    snprintf(b->reason, sizeof b->reason, "packet at byte %zu: %s", at, what);
    return false;
}

static parser_plugin_option_s64_t some(int64_t v) {
    return (parser_plugin_option_s64_t){.is_some = true, .val = v};
}

static bool text(json_t v, parser_plugin_string_t *out) {
    return json_string(v, &out->ptr, &out->len);
}

// json_int on a path: member names, or array indices written "#n".
static bool int_at(json_t v, const char *const *path, int64_t *out) {
    for (; *path; path++) {
        bool ok = (*path)[0] == '#' ? json_element(v, (size_t)atoi(*path + 1), &v)
                                    : json_member(v, *path, &v);
        if (!ok) return false;
    }
    return json_int(v, out);
}

static bool danmu_msg(batch_t *b, json_t root, size_t at) {
    json_t info, message, user, field;
    int64_t uid, when, level;
    if (!json_member(root, "info", &info) || !json_element(info, 1, &message) ||
        !json_element(info, 2, &user) || !json_element(user, 0, &field) || !json_int(field, &uid))
        return refuse(b, at, "DANMU_MSG without info[1] (text) and info[2][0] (uid)");
    event_t *e = push(b, APIARY_PLUGIN_TYPES_EVENT_BODY_CHAT);
    apiary_plugin_types_chat_message_t *chat = &e->body.val.chat;
    chat->user_id = uid;
    chat->room_id = b->room;
    if (!text(message, &chat->text)) return refuse(b, at, "DANMU_MSG info[1] is not a string");
    if (json_element(user, 1, &field)) chat->user_name.is_some = text(field, &chat->user_name.val);
    if (int_at(info, (const char *const[]){"#4", "#0", NULL}, &level)) {
        chat->level.is_some = true;
        chat->level.val = (int32_t)level;
    }
    chat->time = int_at(info, (const char *const[]){"#0", "#4", NULL}, &when) ? some(when)
                                                                              : b->timestamp;
    return true;
}

static bool send_gift(batch_t *b, json_t root, size_t at) {
    json_t data;
    int64_t uid, gift_id, coins, seconds;
    if (!json_member(root, "data", &data) ||
        !int_at(data, (const char *const[]){"uid", NULL}, &uid) ||
        !int_at(data, (const char *const[]){"giftId", NULL}, &gift_id) ||
        !int_at(data, (const char *const[]){"total_coin", NULL}, &coins))
        return refuse(b, at, "SEND_GIFT without data.uid, data.giftId and data.total_coin");
    event_t *e = push(b, APIARY_PLUGIN_TYPES_EVENT_BODY_GIFT);
    apiary_plugin_types_gift_t *gift = &e->body.val.gift;
    gift->user_id = uid;
    gift->room_id = b->room;
    gift->gift_type = (int32_t)gift_id;
    gift->amount = coins;
    gift->create_time = int_at(data, (const char *const[]){"timestamp", NULL}, &seconds)
                            ? some(seconds * 1000)
                            : b->timestamp;
    return true;
}

static bool interact_word(batch_t *b, json_t root, size_t at) {
    json_t data;
    int64_t uid, kind, seconds;
    if (!json_member(root, "data", &data) ||
        !int_at(data, (const char *const[]){"uid", NULL}, &uid) ||
        !int_at(data, (const char *const[]){"msg_type", NULL}, &kind))
        return refuse(b, at, "INTERACT_WORD without data.uid and data.msg_type");
    if (kind != 1) return true; // 2 follow, 3 share: not a visit
    event_t *e = push(b, APIARY_PLUGIN_TYPES_EVENT_BODY_VISIT);
    apiary_plugin_types_viewer_visit_t *visit = &e->body.val.visit;
    visit->user_id = uid;
    visit->room_id = b->room;
    visit->arrive_time = int_at(data, (const char *const[]){"timestamp", NULL}, &seconds)
                             ? some(seconds * 1000)
                             : b->timestamp;
    return true;
}

static bool command(batch_t *b, const uint8_t *body, size_t len, size_t at) {
    json_t root, cmd;
    if (!json_parse(body, len, &root) || !json_member(root, "cmd", &cmd))
        return refuse(b, at, "command body is not a JSON object with a \"cmd\"");
    if (json_command_is(cmd, "DANMU_MSG")) return danmu_msg(b, root, at);
    if (json_command_is(cmd, "SEND_GIFT")) return send_gift(b, root, at);
    if (json_command_is(cmd, "INTERACT_WORD")) return interact_word(b, root, at);
    bool live = json_command_is(cmd, "LIVE");
    if (live || json_command_is(cmd, "PREPARING")) {
        event_t *e = push(b, APIARY_PLUGIN_TYPES_EVENT_BODY_ROOM_STATUS);
        e->body.val.room_status.room_id = b->room;
        e->body.val.room_status.live = live;
        e->body.val.room_status.time = b->timestamp;
    }
    return true;
}

// Reads the packets in `data`. `nested` says they came out of the
// compressed packet at byte `base` of the record, and are reported there.
static bool packets(batch_t *b, const uint8_t *data, size_t len, size_t base, bool nested) {
    for (size_t pos = 0; pos < len;) {
        size_t at = nested ? base : base + pos;
        if (len - pos < HEADER_LEN) return refuse(b, at, "shorter than the 16-byte header");
        const uint8_t *p = data + pos;
        uint32_t packet_len = be32(p), operation = be32(p + 8);
        uint16_t header_len = be16(p + 4), version = be16(p + 6);
        if (header_len < HEADER_LEN || packet_len < header_len || packet_len > len - pos)
            return refuse(b, at, "length fields do not fit the message");
        const uint8_t *body = p + header_len;
        size_t body_len = packet_len - header_len;
        pos += packet_len;

        if (version == 2 || version == 3) {
            if (nested) return refuse(b, at, "compressed packet inside a compressed packet");
            const char *error = NULL;
            size_t inflated_len;
            uint8_t *inflated =
                version == 2
                    ? zlib_inflate(body, body_len, MAX_INFLATED, &inflated_len, &error)
                    : brotli_decompress(body, body_len, MAX_INFLATED, &inflated_len, &error);
            if (!inflated) return refuse(b, at, error);
            bool ok = packets(b, inflated, inflated_len, at, true);
            free(inflated);
            if (!ok) return false;
        } else if (operation == 3) {
            if (body_len < 4) return refuse(b, at, "heartbeat reply without a popularity");
            event_t *e = push(b, APIARY_PLUGIN_TYPES_EVENT_BODY_STREAMER_STATS);
            e->body.val.streamer_stats.room_id = b->room;
            e->body.val.streamer_stats.heat = some(be32(body));
            e->body.val.streamer_stats.time = b->timestamp;
        } else if (operation == 5) {
            if (!command(b, body, body_len, at)) return false;
        }
    }
    return true;
}

// An event's time: the one its body carries, which is the message's own or
// else the record's timestamp.
static parser_plugin_option_s64_t time_of(const apiary_plugin_types_event_body_t *body) {
    switch (body->tag) {
    case APIARY_PLUGIN_TYPES_EVENT_BODY_CHAT: return body->val.chat.time;
    case APIARY_PLUGIN_TYPES_EVENT_BODY_GIFT: return body->val.gift.create_time;
    case APIARY_PLUGIN_TYPES_EVENT_BODY_VISIT: return body->val.visit.arrive_time;
    case APIARY_PLUGIN_TYPES_EVENT_BODY_ROOM_STATUS: return body->val.room_status.time;
    case APIARY_PLUGIN_TYPES_EVENT_BODY_STREAMER_STATS: return body->val.streamer_stats.time;
    default: return (parser_plugin_option_s64_t){.is_some = false};
    }
}

static bool room_from_key(const uint8_t *key, size_t len, int64_t *room) {
    if (len == 0 || len > 18) return false;
    int64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (key[i] < '0' || key[i] > '9') return false;
        n = n * 10 + (key[i] - '0');
    }
    *room = n;
    return true;
}

// Parameters come from [plugins.params.bilibili-parser]; this parser takes none. An
// error rejects the plugin with its message. The list is freed here.
bool exports_apiary_plugin_parser_init(parser_plugin_list_tuple2_string_string_t *params,
                                       parser_plugin_string_t *err) {
    bool ok = params->len == 0;
    if (!ok) {
        char reason[160];
        parser_plugin_string_t *first = &params->ptr[0].f0;
        snprintf(reason, sizeof reason, "unknown parameter `%.*s`: bilibili-parser takes none",
                 (int)(first->len < 64 ? first->len : 64), (const char *)first->ptr);
        parser_plugin_string_dup(err, reason);
    }
    parser_plugin_list_tuple2_string_string_free(params);
    return ok;
}

void exports_apiary_plugin_parser_describe(exports_apiary_plugin_parser_parser_info_t *ret) {
    parser_plugin_string_dup(&ret->name, "bilibili-parser");
    parser_plugin_string_dup(&ret->version, "0.2.0");
    ret->topics.len = 1;
    ret->topics.ptr = malloc(sizeof(parser_plugin_string_t));
    parser_plugin_string_dup(&ret->topics.ptr[0], TOPIC);
}

void exports_apiary_plugin_parser_parse(exports_apiary_plugin_parser_raw_batch_t *batch,
                                        exports_apiary_plugin_parser_parse_output_t *ret) {
    batch_t b = {0};
    size_t records = batch->records.len;
    b.rejected = malloc((records ? records : 1) * sizeof *b.rejected);
    const uint8_t *data = batch->data.ptr;
    for (size_t i = 0; i < records; i++) {
        apiary_plugin_types_raw_record_t *r = &batch->records.ptr[i];
        size_t mark = b.len;
        b.record = (uint32_t)i;
        b.timestamp = r->timestamp;
        bool ok;
        if (!r->key.is_some ||
            !room_from_key(data + r->key.val.start, r->key.val.len, &b.room)) {
            snprintf(b.reason, sizeof b.reason, "record key must be the room id in decimal");
            ok = false;
        } else {
            ok = packets(&b, data + r->value.start, r->value.len, 0, false);
        }
        for (size_t e = mark; ok && e < b.len; e++) b.events[e].time = time_of(&b.events[e].body);
        if (!ok) {
            // The record is refused whole: drop the events it had given.
            while (b.len > mark) apiary_plugin_types_event_free(&b.events[--b.len]);
            b.rejected[b.rejected_len].index = (uint32_t)i;
            parser_plugin_string_dup(&b.rejected[b.rejected_len].reason, b.reason);
            b.rejected_len++;
        }
    }
    exports_apiary_plugin_parser_raw_batch_free(batch);

    parser_plugin_string_dup(&ret->platform, "bilibili");
    // Post-return frees only non-empty lists, so empty ones hold no memory.
    ret->events.len = b.len;
    ret->events.ptr = b.len ? b.events : NULL;
    if (!b.len) free(b.events);
    ret->rejected.len = b.rejected_len;
    ret->rejected.ptr = b.rejected_len ? b.rejected : NULL;
    if (!b.rejected_len) free(b.rejected);
}
