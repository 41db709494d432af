/* What crosses between the network thread and the store thread. Records flow net -> store
 * through the inbound queue; events flow store -> net through the outbound queue. A pushed
 * record is owned by the store from then on and freed there; events are plain values except
 * JD_EV_CATALOG, whose snapshot the network thread takes over. */
#ifndef JD_CHANNEL_H
#define JD_CHANNEL_H

#include "proto.h"
#include "util.h"

#include <stddef.h>
#include <stdint.h>

/* One row (or upsert) for the store, with what is needed to ack it. Allocated in one block by
 * jd_record_new; freed with free(). */
typedef struct jd_record {
    jd_record_kind kind;
    bool acked; /* send an ack for client_id after COMMIT */
    uint64_t conn_id;
    uint64_t tag; /* JD_REC_CHAT: the chat module's request number, echoed in the reply */
    char client_id[JD_UUID_LEN + 1];
    size_t len;
    char json[]; /* NUL-terminated JSON object */
} jd_record;

/* Returns a new record copying json[0..len), or NULL when out of memory. */
jd_record *jd_record_new(jd_record_kind kind, bool acked, uint64_t conn_id, const char *client_id,
                         const char *json, size_t len);

typedef enum {
    JD_EV_ACK = 0,     /* client_id of conn_id is committed */
    JD_EV_REJECT,      /* the database refused client_id for good: send store_rejected */
    JD_EV_CATALOG,     /* ptr is a new jd_catalog the network thread now owns */
    JD_EV_RESUME,      /* the inbound queue has room again: retry stalled connections */
    JD_EV_DRAINED,     /* everything before the drain marker is committed and acked */
    JD_EV_HTTP,        /* ptr is a jd_http_response for request conn_id, now owned by net */
    JD_EV_CHAT_REPLY,  /* ptr is a jd_chat_reply for a JD_REC_CHAT record, now owned by net */
    JD_EV_CHAT_NOTIFY, /* conn_id is the jd_chat_channel, client_id the payload (an id) */
    JD_EV_CHAT_RESYNC, /* the chat listener (re)connected: notifications may have been missed */
    JD_EV_CHAT_TICK,   /* the chat store's 10 s timer: presence heartbeats, safety polls */
} jd_event_kind;

/* The LISTEN channels of sql/020_chat.sql. */
typedef enum {
    JD_CHAT_CHANNEL_CHAT = 0, /* journeyd_chat: a conversation id */
    JD_CHAT_CHANNEL_PRESENCE, /* journeyd_presence: a site id */
    JD_CHAT_CHANNEL_AGENT,    /* journeyd_agent: an agent id */
} jd_chat_channel;

/* The outcome of one jd_chat_rpc() call. tag and conn_id come back from the record. err is NULL
 * when json holds the result, else a stable code ("chat_forbidden", "unavailable", ...) with
 * field and message for humans. Allocated in one block by jd_chat_reply_new; freed with free(). */
typedef struct jd_chat_reply {
    uint64_t conn_id;
    uint64_t tag;
    const char *err; /* points into code, or NULL */
    char code[40];
    char field[40];
    char message[200];
    size_t len;
    char json[]; /* NUL-terminated; "" on error */
} jd_chat_reply;

/* Returns a new reply copying json[0..len), or NULL when out of memory. */
jd_chat_reply *jd_chat_reply_new(uint64_t conn_id, uint64_t tag, const char *json, size_t len);

typedef struct jd_event {
    jd_event_kind kind;
    uint64_t conn_id;
    char client_id[JD_UUID_LEN + 1];
    void *ptr;
} jd_event;

/* The answer to one admin API request (JD_REC_API), from jd_api() in PostgreSQL. */
typedef struct jd_http_response {
    int status;
    char content_type[96];
    bool set_cookie;  /* agent console routes: send the session cookie below */
    char cookie[128]; /* the session token to set, "" to clear the cookie */
    size_t len;
    char body[]; /* NUL-terminated */
} jd_http_response;

/* Returns a new response copying body[0..len), or NULL when out of memory. */
jd_http_response *jd_http_response_new(int status, const char *content_type, const char *body,
                                       size_t len);

#endif
