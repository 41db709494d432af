/* The network module's private parts, shared by its two files: net.c (the lws context, the
 * service thread, WebSocket connections, flow control, cross-thread events) and net_http.c
 * (HTTP: static files, /healthz, /metrics, the /api/v1 bridge and the agent console's routes).
 * Nothing outside the network module includes this header; all of it belongs to the network
 * thread. */
#ifndef JD_NET_PRIVATE_H
#define JD_NET_PRIVATE_H

#include "catalog.h"
#include "channel.h"
#include "chat.h"
#include "config.h"
#include "files.h"
#include "net.h"
#include "proto.h"
#include "queue.h"
#include "util.h"

#include <libwebsockets.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define JD_MAX_OUTQ 256    /* queued frames before a reader is deemed stuck */
#define JD_FLOOD_CLOSE 200 /* refused frames in a row before closing 1008 */
#define JD_LOGINS_PER_MINUTE 20

/* OPEN -> CLOSING (we decided to close; owed frames still go out) -> CLOSE_SENT (the close is
 * lws's now: it sends the close frame and waits for the peer's reply) -> CLOSED (wsi gone). */
typedef enum {
    JD_CONN_OPEN = 0,
    JD_CONN_CLOSING,
    JD_CONN_CLOSE_SENT,
    JD_CONN_CLOSED
} jd_conn_state;

typedef struct jd_frame {
    struct jd_frame *next;
    size_t len;
    unsigned char data[]; /* LWS_PRE bytes of headroom, then the payload */
} jd_frame;

typedef struct jd_ip_count {
    struct jd_ip_count *next;
    int count;
    char ip[48];
} jd_ip_count;

typedef struct jd_conn {
    uint64_t id;
    struct lws *wsi;
    jd_conn_state state;
    bool agent; /* an agent console (journey.agent.v1), else a visitor (journey.v1) */
    struct jd_conn *table_next; /* hash chain */
    struct jd_conn *reap_next;
    jd_ip_count *ip;
    char site_key[72];
    char peer[48]; /* client address, for log lines */
    jd_proto_session proto;
    jd_buf rx; /* fragments of the current message */
    jd_frame *out_head, *out_tail;
    int out_count;
    jd_buf acks; /* "id","id",... waiting for an ack frame */
    int n_acks;
    int inflight; /* records pushed or stalled and not yet acked or rejected */
    jd_record **stalled;
    size_t n_stalled, cap_stalled;
    struct jd_conn *stall_prev, *stall_next; /* place in net's FIFO of stalled connections */
    bool in_stall_list;
    bool rx_paused;
    double tokens;
    uint64_t tokens_at_us;
    int refused_in_a_row;
    int close_code;
    char close_reason[64];
} jd_conn;

typedef struct jd_http {
    char *body;
    size_t len, sent;
    bool owned;
    bool head_only;
    bool close_after; /* the request's body was not read: the connection cannot be reused */
} jd_http;

#define JD_API_MAX_BODY (1u << 20)

/* An admin API request while its body arrives and while jd_api() runs. */
typedef struct jd_api_call {
    uint64_t id; /* 0 when no call is pending */
    char method[8];
    char path[512];
    char token[320];
    const char *agent_op; /* an agent console route (jd_agent_http), else NULL: admin API */
    jd_buf query;         /* JSON object text */
    jd_buf body;
    bool too_large;
    bool bad_query;
    bool answered;              /* an error went out before the body was read: ignore the body */
    jd_http_response *response; /* owned; the body being written points into it */
} jd_api_call;

/* Per-session data lws allocates for both protocols. */
typedef struct jd_pss {
    jd_conn *conn;
    jd_http http;
    jd_api_call *api; /* only while an admin request is open: WebSocket sessions stay small */
    struct jd_pss *api_next; /* pending list, to find the request when its answer arrives */
    struct lws *wsi;
} jd_pss;

typedef enum { JD_NET_SERVING = 0, JD_NET_DRAINING, JD_NET_CLOSING, JD_NET_DONE } jd_net_state;

struct jd_net {
    struct lws_context *context;
    pthread_t thread;
    bool thread_started;
    jd_net_hooks hooks;
    jd_config config;
    jd_files *files;
    jd_catalog *catalog;
    jd_queue *inbound, *api, *chatq, *outbound;
    jd_chat *chat;
    jd_pss *api_pending;
    uint64_t next_api_id;
    jd_net_state state;
    bool tls;
    bool marker_pushed;
    uint64_t next_conn_id;

    jd_conn *stall_head, *stall_tail; /* stalled connections, oldest first: served in turn */
    jd_conn **table;                  /* hash of open connections by id */
    size_t table_size, n_conns;
    jd_ip_count *ips[1024];
    jd_conn *reap;

    /* Written by other threads, read on the service thread. */
    pthread_mutex_t update_lock;
    jd_config pending_config;
    bool pending_config_set;
    jd_files *pending_files;
    atomic_bool drain_requested;
    atomic_bool abort_requested;

    /* Agent sign-ins per client address and minute (slots shared on hash collision, which only
     * ever makes the limit stricter). */
    struct {
        char ip[48];
        double tokens;
        uint64_t at_us;
    } logins[256];

    lws_retry_bo_t retry;
    char iface[256];
    jd_event event_buf[512];
};

/* net.c: the client's address, honouring trusted proxies' X-Forwarded-For. */
void jd_net_client_address(jd_net *net, struct lws *wsi, char *out, size_t out_len);

/* net_http.c: the agent console's session cookie into out; false when there is none. */
bool jd_net_agent_cookie(struct lws *wsi, char *out, size_t out_len);

/* net_http.c: true unless the request carries an Origin other than our own Host. */
bool jd_net_same_origin(struct lws *wsi);

/* net_http.c: LWS_CALLBACK_HTTP for path. Returns the callback's return value. */
int jd_net_http_request(jd_net *net, struct lws *wsi, jd_pss *pss, const char *path);

/* net_http.c: LWS_CALLBACK_HTTP_WRITEABLE: headers of an arrived API answer, then body chunks. */
int jd_net_http_writeable(struct lws *wsi, jd_pss *pss);

/* net_http.c: frees a response body the session owns (the request is over). */
void jd_net_http_release(jd_pss *pss);

/* net_http.c: LWS_CALLBACK_HTTP_BODY: collects an API request's body (up to 1 MiB). */
int jd_net_api_body(jd_pss *pss, const void *in, size_t len);

/* net_http.c: LWS_CALLBACK_HTTP_BODY_COMPLETION: queues the request for its store. */
int jd_net_api_submit(jd_net *net, struct lws *wsi, jd_pss *pss);

/* net_http.c: forgets the session's API request (closed or finished). */
void jd_net_api_release(jd_net *net, jd_pss *pss);

/* net_http.c: the answer to API request id arrived (JD_EV_HTTP); takes response. */
void jd_net_api_answered(jd_net *net, uint64_t id, jd_http_response *response);

#endif
