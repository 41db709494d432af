/* Live chat on the network thread (issue 6, docs/chat.md): who is chatting on this instance,
 * which conversations each connection watches, and how database wake-ups become frames. It
 * checks the shape of chat frames from visitors (journey.v1, already past proto.c's envelope and
 * consent checks) and from agent consoles (journey.agent.v1), turns each into one jd_chat_rpc()
 * call for the chat store, and turns the replies into frames. Messages never travel in
 * notifications: a notification marks a conversation dirty, one poll at a time reads every dirty
 * conversation's messages after the lowest seq its watchers have, and each watcher gets only
 * seq > the last it was sent, in order. Pure C over jansson: no lws, no libpq, no threads; the
 * network module gives it a jd_chat_io to send frames, close connections and queue calls. */
#ifndef JD_CHAT_H
#define JD_CHAT_H

#include "channel.h"
#include "proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JD_CHAT_AGENT_SUBPROTOCOL "journey.agent.v1"

typedef struct jd_chat jd_chat;

typedef enum { JD_CHAT_VISITOR = 0, JD_CHAT_AGENT } jd_chat_role;

/* How the chat module reaches connections and the store. All called on the network thread. */
typedef struct jd_chat_io {
    /* Sends one text frame (copied) to connection conn_id; type names it for metrics. */
    void (*send)(void *arg, uint64_t conn_id, const char *type, const char *frame, size_t len);
    /* Closes connection conn_id with a WebSocket close code and reason. */
    void (*close)(void *arg, uint64_t conn_id, int code, const char *reason);
    /* Queues rec for the chat store and takes it; false (rec not taken) when the queue is full. */
    bool (*submit)(void *arg, jd_record *rec);
    void *arg;
} jd_chat_io;

/* Creates the module. io is copied; instance (copied) names this instance in agent presence.
 * Returns false on allocation failure. */
bool jd_chat_create(const jd_chat_io *io, const char *instance, jd_chat **out)
    __attribute__((warn_unused_result));

/* Frees everything and sets *chat to NULL. */
void jd_chat_destroy(jd_chat **chat);

/* A visitor said hello on a site that offers chat: it is sent chat.presence (from a cache of
 * at most 30 s, else after one query per site), so the widget can offer the offline form up
 * front. */
void jd_chat_visitor_hello(jd_chat *chat, uint64_t conn_id, int64_t site_id);

/* An agent console connected; token (copied) is its session cookie, checked on hello. */
void jd_chat_agent_connected(jd_chat *chat, uint64_t conn_id, const char *token);

/* A connection (visitor or agent) closed: its watches and pending calls are dropped. */
void jd_chat_conn_closed(jd_chat *chat, uint64_t conn_id);

/* A visitor's chat.* frame. msg is the decoded frame (a json_t *, borrowed); session is the
 * connection's protocol state after hello. Replies and errors are sent through io. */
void jd_chat_visitor_frame(jd_chat *chat, uint64_t conn_id, const jd_proto_session *session,
                           void *msg);

/* One complete text frame from an agent console. */
void jd_chat_agent_frame(jd_chat *chat, uint64_t conn_id, const char *frame, size_t len);

/* The chat store's answer to a call this module queued; takes reply. */
void jd_chat_on_reply(jd_chat *chat, jd_chat_reply *reply);

/* A notification: a conversation, site or agent id on one of the LISTEN channels. */
void jd_chat_on_notify(jd_chat *chat, jd_chat_channel channel, const char *payload);

/* The listener (re)connected: every watched conversation is polled again. */
void jd_chat_on_resync(jd_chat *chat);

/* Every 10 s: agent presence heartbeats; every 30 s a safety poll and presence refresh; every
 * 5 minutes the agents' sessions are checked again. */
void jd_chat_on_tick(jd_chat *chat);

/* Builds the chat store record for an agent console route into rec: [op, args], where args is
 * the JSON body's object (may be empty), merged with the query object and the session token.
 * Returns false when the body or query is not a JSON object. */
bool jd_chat_http_record(const char *op, const char *body, size_t body_len, const char *query,
                         size_t query_len, const char *token, jd_buf *rec)
    __attribute__((warn_unused_result));

/* Counts for tests and logs. */
size_t jd_chat_watch_count(const jd_chat *chat);

#endif
