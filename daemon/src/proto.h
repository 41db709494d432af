/* Protocol v1 codec and validation (proto/protocol.md). Pure C over jansson and the catalog: no
 * sockets, no threads, no database, so unit tests and fuzzers call it directly. The network module
 * feeds it one complete text frame at a time together with the connection's protocol state; it
 * returns either a reply to send, a record for the store, or an error to send back. */
#ifndef JD_PROTO_H
#define JD_PROTO_H

#include "catalog.h"
#include "util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JD_PROTO_VERSION 1
#define JD_PROTO_SUBPROTOCOL "journey.v1"
#define JD_PROTO_MAX_TEXT 4000 /* characters in free text */
#define JD_SLUG_MAX 64

typedef enum {
    JD_MSG_HELLO = 0,
    JD_MSG_ANSWER,
    JD_MSG_TOUCH,
    JD_MSG_CONSENT,
    JD_MSG_PING,
    JD_MSG_CHAT,    /* any chat.* frame: shape-checked by the chat module (docs/chat.md) */
    JD_MSG_INVALID, /* anything that failed to decode */
    JD_MSG_COUNT
} jd_msg_type;

typedef enum {
    JD_ERR_BAD_JSON = 0,
    JD_ERR_BAD_FRAME,
    JD_ERR_UNKNOWN_TYPE,
    JD_ERR_MISSING_FIELD,
    JD_ERR_BAD_FIELD,
    JD_ERR_UNSUPPORTED_VERSION,
    JD_ERR_UNKNOWN_SITE,
    JD_ERR_NOT_READY,
    JD_ERR_DUPLICATE_HELLO,
    JD_ERR_UNKNOWN_SURVEY,
    JD_ERR_UNKNOWN_QUESTION,
    JD_ERR_UNKNOWN_PERSONA,
    JD_ERR_UNKNOWN_STAGE,
    JD_ERR_UNKNOWN_TOUCHPOINT,
    JD_ERR_UNKNOWN_OBSTACLE,
    JD_ERR_OUT_OF_RANGE,
    JD_ERR_CONSENT_REQUIRED,
    JD_ERR_RATE_LIMITED,
    JD_ERR_STORE_REJECTED,
    JD_ERR_SHUTTING_DOWN,
    JD_ERR_FRAME_TOO_LARGE,
    JD_ERR_BAD_UTF8,
    JD_ERR_BAD_IDENTITY,
    JD_ERR_CHAT_FORBIDDEN,
    JD_ERR_CHAT_RATE_LIMITED,
    JD_ERR_COUNT
} jd_error_code;

/* What a record asks the store to write. */
typedef enum {
    JD_REC_NONE = 0,
    JD_REC_SESSION,
    JD_REC_ANSWER,
    JD_REC_TOUCH,
    JD_REC_DRAIN,    /* never produced by the codec: the network thread's end-of-input marker */
    JD_REC_API,      /* never produced by the codec: an admin API request for jd_api() */
    JD_REC_CHAT,     /* never produced by the codec: a chat call for jd_chat_rpc() */
    JD_REC_CHAT_HTTP /* never produced by the codec: an agent console route, jd_agent_http() */
} jd_record_kind;

/* Per-connection protocol state. Owned by the connection (net module); zero-initialise it. */
typedef struct jd_proto_session {
    bool hello_done;
    bool consent;
    jd_consent_mode consent_mode;
    int64_t site_id;
    int64_t default_map_id; /* the site's first map: resolves hints and touch slugs */
    char session_id[JD_UUID_LEN + 1];
    char respondent_id[JD_UUID_LEN + 1];
    char persona[JD_SLUG_MAX + 1]; /* hints from hello, "" when none */
    char stage[JD_SLUG_MAX + 1];
    char touchpoint[JD_SLUG_MAX + 1];
    char client_ip[48]; /* set by the connection's owner; stored truncated if the site asks */
    int max_frame;      /* announced in welcome; set by the connection's owner */
    int rate_per_sec;
    int rate_burst;
} jd_proto_session;

typedef struct jd_proto_error {
    jd_error_code code;
    int close_code;           /* 0 keeps the connection open, else the WebSocket close code */
    char id[JD_UUID_LEN + 1]; /* the frame's id when known, else "" */
    char field[32];           /* the offending field, else "" */
    char message[256];        /* for humans */
} jd_proto_error;

/* The outcome of one good frame. Initialise with jd_proto_out_init, release with
 * jd_proto_out_free; the caller owns both buffers and may steal record.data. */
typedef struct jd_proto_out {
    jd_msg_type type;
    char id[JD_UUID_LEN + 1];
    jd_buf reply;               /* one frame to send now (welcome or pong), or empty */
    bool send_surveys;          /* after welcome: send the site's survey frames */
    jd_record_kind record_kind; /* JD_REC_NONE when nothing is stored */
    bool record_acked;          /* the store's commit of record acks `id` to the client */
    jd_buf record;              /* JSON object for the store */
    void *chat; /* JD_MSG_CHAT: the decoded frame (a json_t *, one reference owned here) */
} jd_proto_out;

void jd_proto_out_init(jd_proto_out *out);
void jd_proto_out_free(jd_proto_out *out);

/* Decodes and validates one complete text frame for a connection opened for site_key.
 * catalog may be NULL only before the first load (then every frame but ping fails). Updates
 * *session on hello and consent. Returns true with *out filled, or false with *err filled. */
bool jd_proto_handle(const jd_catalog *catalog, const char *site_key, jd_proto_session *session,
                     const char *frame, size_t len, jd_proto_out *out, jd_proto_error *err)
    __attribute__((warn_unused_result));

/* Extracts the frame's id when it is a JSON object with a UUID id (for errors raised before
 * decoding, such as rate limits). Writes "" otherwise. */
void jd_proto_peek_id(const char *frame, size_t len, char id[JD_UUID_LEN + 1]);

/* Writes ip truncated to its /24 (IPv4, also when IPv4-mapped) or /48 (IPv6) network into out.
 * Returns false when ip is not an address. */
bool jd_proto_truncate_ip(const char *ip, char *out, size_t out_len)
    __attribute__((warn_unused_result));

/* Fills *err for errors raised outside the codec (rate limits, store rejections, shutdown). */
void jd_proto_error_set(jd_proto_error *err, jd_error_code code, const char *id,
                        const char *message);

/* Appends the error frame for err to out. */
void jd_proto_encode_error(jd_buf *out, const jd_proto_error *err);

/* Stable machine-readable names ("bad_json", ...), and message type names ("hello", ...). */
const char *jd_proto_error_name(jd_error_code code);
const char *jd_proto_msg_name(jd_msg_type type);

#endif
