/* journeyd load generator: plain sockets, a minimal WebSocket client (RFC 6455: HTTP upgrade with
 * subprotocol journey.v1, masked text frames, server frames parsed incrementally), epoll, one
 * process with one or more worker threads.
 *
 * One run has four steps, each bounded in time:
 *   1. open --idle connections (hello, wait for welcome), then hold them open;
 *   2. sample the daemon's VmRSS (--pid) before and after, for memory per idle connection;
 *   3. open --conns active connections (hello, welcome);
 *   4. send answers for --warmup + --duration seconds, then stop sending and wait up to
 *      --drain-timeout for the outstanding acks.
 * Sending is closed-loop (--rate 0: every active connection keeps up to --window answers unacked)
 * or open-loop (--rate R: R answers/s in total, scheduled evenly and spread round-robin across
 * the connections; latency is measured from the scheduled send time, so a stall is not hidden by
 * coordinated omission). Each answer carries a fresh UUID v4 id; acks are matched against the
 * connection's outstanding ids, so a duplicate or unknown ack is counted, not silently accepted.
 * A JSON summary goes to stdout, a human summary to stderr. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_WORKERS 8
#define MAX_QUESTIONS 16
#define MAX_ERROR_CODES 32
#define UUID_LEN 36
#define CONNECTING_MAX 256 /* handshakes in progress per worker */
#define TIMELINE_MAX 1024

/* --- options ------------------------------------------------------------------------------ */

typedef struct {
    long survey, question;
} question_t;

static struct {
    const char *host;
    int port;
    const char *site;
    int idle, conns, window, threads;
    double rate, duration, warmup, drain_timeout, connect_timeout, settle;
    question_t questions[MAX_QUESTIONS];
    int n_questions;
    int pid;
    int src_spread; /* spread source addresses over 127.0.0.2 .. 127.0.0.(1+N); 0 = auto */
    int text_len;
    bool quiet;
} opt = {
    .host = "127.0.0.1",
    .port = 8080,
    .site = "demo-site-key-0001",
    .idle = 0,
    .conns = 100,
    .window = 64,
    .threads = 1,
    .rate = 0,
    .duration = 10,
    .warmup = 2,
    .drain_timeout = 15,
    .connect_timeout = 60,
    .settle = 1.5,
    .text_len = 100,
};

/* --- time, randomness, uuids --------------------------------------------------------------- */

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void sleep_until_us(uint64_t t)
{
    struct timespec ts = {(time_t)(t / 1000000u), (long)(t % 1000000u) * 1000};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

typedef struct {
    uint64_t s[2];
} rng_t;

static uint64_t rng_next(rng_t *r)
{
    uint64_t s1 = r->s[0];
    const uint64_t s0 = r->s[1];
    r->s[0] = s0;
    s1 ^= s1 << 23;
    r->s[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return r->s[1] + s0;
}

static void rng_seed(rng_t *r)
{
    if (getrandom(r->s, sizeof(r->s), 0) != sizeof(r->s)) {
        r->s[0] = now_us() ^ 0x9e3779b97f4a7c15ull;
        r->s[1] = (uint64_t)getpid() * 0xbf58476d1ce4e5b9ull;
    }
    if (!r->s[0] && !r->s[1])
        r->s[0] = 1;
}

static void uuid4(rng_t *r, char out[UUID_LEN])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char u[16];
    uint64_t a = rng_next(r), b = rng_next(r);
    memcpy(u, &a, 8);
    memcpy(u + 8, &b, 8);
    u[6] = (unsigned char)((u[6] & 0x0f) | 0x40);
    u[8] = (unsigned char)((u[8] & 0x3f) | 0x80);
    int o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[u[i] >> 4];
        out[o++] = hex[u[i] & 15];
    }
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

/* --- realistic answer content --------------------------------------------------------------- */

static const char *const personas[] = {"budget-parent", "busy-professional", "first-time-buyer"};
static const char *const stages[] = {"awareness", "interest", "consideration", "purchase",
                                     "advocacy"};
static const char *const touchpoints[] = {"marketing-content", "paid-ads", "social-media",
                                          "reviews",           "website",  "email",
                                          "phone",             "live-chat", "in-person",
                                          "onboarding",        "self-service"};
static const char *const sentences[] = {
    "The delivery estimate changed twice while I was paying, so I am not sure when it arrives.",
    "Shipping cost only showed up on the last page; I almost left because of that surprise.",
    "I liked the size guide but could not find whether the fabric is machine washable at all.",
    "Checkout asked me to create an account before I could pay, which felt like a lot of effort.",
    "Comparing the two models side by side was easy and the reviews helped me decide quickly.",
    "The discount code from the newsletter did not apply to sale items and nothing explained it.",
    "Paying with my phone worked first time, but the confirmation email took ages to arrive here.",
    "I wanted to talk to someone about the warranty and the chat window kept closing on mobile.",
};
#define N_SENTENCES (sizeof(sentences) / sizeof(sentences[0]))

static char texts[N_SENTENCES][512];

static void make_texts(void)
{
    int want = opt.text_len < 1 ? 1 : opt.text_len > 500 ? 500 : opt.text_len;
    for (size_t i = 0; i < N_SENTENCES; i++) {
        int n = 0;
        while (n < want) {
            const char *s = sentences[(i + (size_t)n) % N_SENTENCES];
            int len = (int)strlen(s);
            int take = want - n < len ? want - n : len;
            memcpy(texts[i] + n, s, (size_t)take);
            n += take;
            if (n < want)
                texts[i][n++] = ' ';
        }
        while (n > 1 && texts[i][n - 1] == ' ')
            n--;
        texts[i][n] = '\0';
    }
}

/* --- buffers -------------------------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, off, cap;
} buf_t;

static void buf_reserve(buf_t *b, size_t extra)
{
    if (b->off && b->off == b->len) {
        b->off = b->len = 0;
    }
    if (b->len + extra <= b->cap)
        return;
    if (b->off) { /* compact first */
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->len + extra <= b->cap)
            return;
    }
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + extra)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        die("out of memory");
    b->p = p;
    b->cap = cap;
}

static void buf_free(buf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* --- connections ---------------------------------------------------------------------------- */

enum { C_NEW = 0, C_CONNECTING, C_UPGRADING, C_HELLO, C_READY, C_DEAD };

typedef struct {
    char id[UUID_LEN];
    bool done;
    uint64_t t_us;
} pend_t;

typedef struct conn {
    int fd;
    uint8_t state;
    bool active, dirty, want_out;
    buf_t out, in, msg;
    int msg_op;
    pend_t *ring;
    uint32_t rhead, rcount, rcap, outstanding;
    uint32_t acked_window; /* acks in the measured window: fairness across connections */
} conn_t;

typedef struct {
    char code[32];
    uint64_t count;
} errcount_t;

typedef struct worker {
    int index;
    pthread_t thread;
    int ep;
    rng_t rng;
    conn_t *conns; /* idle ones first, then active ones */
    int n_idle, n_active, n_conns;
    int next_connect, connecting, first_active;
    conn_t **dirty;
    int n_dirty;
    /* stats */
    uint64_t sent, acked, acked_window, rejected, unknown_acks, bad_frames, closed_by_server;
    uint64_t connect_failed, upgrade_failed, established, welcomed, lost_unacked;
    errcount_t errors[MAX_ERROR_CODES];
    int n_errors;
    uint32_t *lat;
    size_t n_lat, cap_lat;
    /* per second since t_warm: acks, and the slowest ack (us) */
    uint32_t tl_acks[TIMELINE_MAX], tl_max[TIMELINE_MAX];
    uint64_t max_any_us; /* slowest ack of the whole run, warm-up and drain included */
    /* open-loop pacing */
    double rate;
    uint64_t scheduled;
    int rr;
    uint64_t starved; /* answers due while every connection's window was full */
    bool sending;
    char ts[32];
    time_t ts_sec;
} worker_t;

static worker_t workers[MAX_WORKERS];
static pthread_barrier_t barrier;
/* Written by the coordinator before a barrier, read by the workers after it. */
static uint64_t t_warm, t_start, t_end;

static struct sockaddr_in server_addr;

static void count_error(worker_t *w, const char *code, size_t len)
{
    if (len >= sizeof(w->errors[0].code))
        len = sizeof(w->errors[0].code) - 1;
    for (int i = 0; i < w->n_errors; i++)
        if (strlen(w->errors[i].code) == len && memcmp(w->errors[i].code, code, len) == 0) {
            w->errors[i].count++;
            return;
        }
    if (w->n_errors == MAX_ERROR_CODES)
        return;
    memcpy(w->errors[w->n_errors].code, code, len);
    w->errors[w->n_errors].code[len] = '\0';
    w->errors[w->n_errors].count = 1;
    w->n_errors++;
}

static void mark_dirty(worker_t *w, conn_t *c)
{
    if (!c->dirty) {
        c->dirty = true;
        w->dirty[w->n_dirty++] = c;
    }
}

static void conn_kill(worker_t *w, conn_t *c)
{
    if (c->state == C_DEAD)
        return;
    if (c->state == C_CONNECTING || c->state == C_UPGRADING || c->state == C_HELLO)
        w->connecting--;
    if (c->fd >= 0) {
        epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    w->lost_unacked += c->outstanding;
    c->outstanding = 0;
    c->state = C_DEAD;
    buf_free(&c->in);
    buf_free(&c->msg);
    buf_free(&c->out);
}

static void set_want_out(worker_t *w, conn_t *c, bool want)
{
    if (c->want_out == want || c->fd < 0)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want;
}

/* Writes what is queued; arms EPOLLOUT when the socket is full. */
static void conn_flush(worker_t *w, conn_t *c)
{
    for (int i = 0; i < 64 && c->out.off < c->out.len; i++) {
        ssize_t n = send(c->fd, c->out.p + c->out.off, c->out.len - c->out.off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out.off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_want_out(w, c, true);
            return;
        }
        w->closed_by_server++;
        conn_kill(w, c);
        return;
    }
    if (c->out.off == c->out.len) {
        c->out.off = c->out.len = 0;
        set_want_out(w, c, false);
    } else {
        set_want_out(w, c, true);
    }
}

/* Appends one masked client frame. */
static void put_frame(worker_t *w, conn_t *c, int opcode, const char *payload, size_t len)
{
    buf_reserve(&c->out, len + 14);
    unsigned char *h = (unsigned char *)c->out.p + c->out.len;
    size_t hl = 0;
    h[hl++] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        h[hl++] = (unsigned char)(0x80 | len);
    } else if (len <= 0xffff) {
        h[hl++] = 0x80 | 126;
        h[hl++] = (unsigned char)(len >> 8);
        h[hl++] = (unsigned char)len;
    } else {
        h[hl++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            h[hl++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    uint32_t key = (uint32_t)rng_next(&w->rng);
    unsigned char mask[4];
    memcpy(mask, &key, 4);
    memcpy(h + hl, mask, 4);
    hl += 4;
    unsigned char *p = h + hl;
    for (size_t i = 0; i < len; i++)
        p[i] = (unsigned char)payload[i] ^ mask[i & 3];
    c->out.len += hl + len;
    mark_dirty(w, c);
}

static void base64(const unsigned char *in, size_t n, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = t[(v >> 18) & 63];
        out[o++] = t[(v >> 12) & 63];
        out[o++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? t[v & 63] : '=';
    }
    out[o] = '\0';
}

static void conn_start(worker_t *w, conn_t *c, int global_index)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        w->connect_failed++;
        c->state = C_DEAD;
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int spread = opt.src_spread;
    if (spread > 0) {
        /* 28k ephemeral ports per source/destination pair: spread sources over 127.0.0.2.. */
        struct sockaddr_in src = {.sin_family = AF_INET};
        uint32_t host = (127u << 24) | (uint32_t)(2 + global_index % spread);
        src.sin_addr.s_addr = htonl(host);
#ifdef IP_BIND_ADDRESS_NO_PORT
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
#endif
        if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
            close(c->fd);
            c->fd = -1;
            w->connect_failed++;
            c->state = C_DEAD;
            return;
        }
    }
    int r = connect(c->fd, (struct sockaddr *)&server_addr, sizeof(server_addr));
    if (r != 0 && errno != EINPROGRESS) {
        close(c->fd);
        c->fd = -1;
        w->connect_failed++;
        c->state = C_DEAD;
        return;
    }
    c->state = C_CONNECTING;
    w->connecting++;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    c->want_out = true;
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        w->connect_failed++;
        conn_kill(w, c);
    }
}

static void send_upgrade(worker_t *w, conn_t *c)
{
    unsigned char key[16];
    uint64_t a = rng_next(&w->rng), b = rng_next(&w->rng);
    memcpy(key, &a, 8);
    memcpy(key + 8, &b, 8);
    char key64[32];
    base64(key, 16, key64);
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET /ws?site=%s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: journey.v1\r\n"
                     "User-Agent: journeyd-loadgen\r\n\r\n",
                     opt.site, opt.host, opt.port, key64);
    buf_reserve(&c->out, (size_t)n);
    memcpy(c->out.p + c->out.len, req, (size_t)n);
    c->out.len += (size_t)n;
    mark_dirty(w, c);
    c->state = C_UPGRADING;
}

static void send_hello(worker_t *w, conn_t *c)
{
    char id[UUID_LEN], resp[UUID_LEN];
    uuid4(&w->rng, id);
    uuid4(&w->rng, resp);
    const char *persona = personas[rng_next(&w->rng) % 3];
    char frame[768];
    int n = snprintf(frame, sizeof(frame),
                     "{\"type\":\"hello\",\"id\":\"%.36s\",\"v\":1,\"site\":\"%s\","
                     "\"respondent\":\"%.36s\",\"page\":{\"url\":\"https://shop.example/product/"
                     "%u\",\"referrer\":\"https://www.google.com/\",\"lang\":\"en-GB\","
                     "\"title\":\"Trail running shoes\",\"utm\":{\"source\":\"newsletter\","
                     "\"medium\":\"email\",\"campaign\":\"spring\"}},\"persona\":\"%s\","
                     "\"stage\":\"consideration\",\"touchpoint\":\"website\",\"consent\":true}",
                     id, opt.site, resp, (unsigned)(rng_next(&w->rng) % 1000), persona);
    put_frame(w, c, 1, frame, (size_t)n);
    c->state = C_HELLO;
}

static const char *client_ts(worker_t *w)
{
    time_t t = time(NULL);
    if (t != w->ts_sec) {
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(w->ts, sizeof(w->ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
        w->ts_sec = t;
    }
    return w->ts;
}

/* Queues one answer; t_us is when it was (or should have been) sent. */
static void send_answer(worker_t *w, conn_t *c, uint64_t t_us)
{
    pend_t *p = &c->ring[(c->rhead + c->rcount) % c->rcap];
    uuid4(&w->rng, p->id);
    p->done = false;
    p->t_us = t_us;
    c->rcount++;
    c->outstanding++;
    const question_t *q = &opt.questions[rng_next(&w->rng) % (uint64_t)opt.n_questions];
    uint64_t r = rng_next(&w->rng);
    char frame[1024];
    int n = snprintf(frame, sizeof(frame),
                     "{\"type\":\"answer\",\"id\":\"%.36s\",\"survey\":%ld,\"question\":%ld,"
                     "\"value\":%u,\"persona\":\"%s\",\"stage\":\"%s\",\"touchpoint\":\"%s\","
                     "\"text\":\"%s\",\"ts\":\"%s\"}",
                     p->id, q->survey, q->question, (unsigned)(r % 5) + 1, personas[(r >> 8) % 3],
                     stages[(r >> 16) % 5], touchpoints[(r >> 24) % 11],
                     texts[(r >> 32) % N_SENTENCES], client_ts(w));
    put_frame(w, c, 1, frame, (size_t)n);
    w->sent++;
}

static bool conn_has_room(const conn_t *c)
{
    return c->state == C_READY && c->active && c->outstanding < (uint32_t)opt.window &&
           c->rcount < c->rcap;
}

static void fill_window(worker_t *w, conn_t *c)
{
    if (!w->sending || opt.rate > 0)
        return;
    uint64_t t = now_us();
    while (conn_has_room(c))
        send_answer(w, c, t);
}

static void record_latency(worker_t *w, uint64_t us)
{
    if (w->n_lat == w->cap_lat) {
        size_t cap = w->cap_lat ? w->cap_lat * 2 : 65536;
        if (cap > 64u * 1024 * 1024)
            return; /* bounded: 256 MB of samples is plenty */
        uint32_t *p = realloc(w->lat, cap * sizeof(*p));
        if (!p)
            return;
        w->lat = p;
        w->cap_lat = cap;
    }
    w->lat[w->n_lat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

/* Finds an outstanding id and retires it. Acks arrive in order almost always: try the head. */
static pend_t *take_pending(conn_t *c, const char *id)
{
    if (!c->ring)
        return NULL;
    pend_t *hit = NULL;
    for (uint32_t i = 0; i < c->rcount; i++) {
        pend_t *p = &c->ring[(c->rhead + i) % c->rcap];
        if (!p->done && memcmp(p->id, id, UUID_LEN) == 0) {
            hit = p;
            break;
        }
    }
    if (!hit)
        return NULL;
    hit->done = true;
    c->outstanding--;
    while (c->rcount && c->ring[c->rhead].done) {
        c->rhead = (c->rhead + 1) % c->rcap;
        c->rcount--;
    }
    return hit;
}

static const char *find_key(const char *m, size_t len, const char *key)
{
    const char *p = memmem(m, len, key, strlen(key));
    return p ? p + strlen(key) : NULL;
}

static void on_ack(worker_t *w, conn_t *c, const char *m, size_t len)
{
    const char *end = m + len;
    const char *p = find_key(m, len, "\"ids\":[");
    if (!p) {
        w->bad_frames++;
        return;
    }
    uint64_t t = now_us();
    bool in_window = t >= t_start && t < t_end;
    while (p < end) {
        const char *q = memchr(p, '"', (size_t)(end - p));
        if (!q || end - q < UUID_LEN + 2)
            break;
        if (q[UUID_LEN + 1] != '"') {
            w->bad_frames++;
            break;
        }
        pend_t *hit = take_pending(c, q + 1);
        if (!hit) {
            w->unknown_acks++;
        } else {
            w->acked++;
            if (in_window) {
                w->acked_window++;
                c->acked_window++;
            }
            if (t > hit->t_us && t - hit->t_us > w->max_any_us)
                w->max_any_us = t - hit->t_us;
            if (t >= t_warm && (t - t_warm) / 1000000u < TIMELINE_MAX) {
                size_t sec = (size_t)((t - t_warm) / 1000000u);
                uint64_t l = t > hit->t_us ? t - hit->t_us : 0;
                w->tl_acks[sec]++;
                if (l > w->tl_max[sec])
                    w->tl_max[sec] = l > UINT32_MAX ? UINT32_MAX : (uint32_t)l;
            }
            if (hit->t_us >= t_start && hit->t_us < t_end)
                record_latency(w, t > hit->t_us ? t - hit->t_us : 0);
        }
        p = q + UUID_LEN + 2;
    }
}

static void on_error_frame(worker_t *w, conn_t *c, const char *m, size_t len)
{
    const char *code = find_key(m, len, "\"code\":\"");
    if (code) {
        const char *e = memchr(code, '"', (size_t)(m + len - code));
        if (e)
            count_error(w, code, (size_t)(e - code));
    }
    const char *id = find_key(m, len, "\"id\":\"");
    if (id && m + len - id > UUID_LEN && take_pending(c, id))
        w->rejected++;
}

static void on_message(worker_t *w, conn_t *c, const char *m, size_t len)
{
    static const char prefix[] = "{\"type\":\"";
    if (len < sizeof(prefix) || memcmp(m, prefix, sizeof(prefix) - 1) != 0) {
        w->bad_frames++;
        return;
    }
    const char *t = m + sizeof(prefix) - 1;
    size_t rest = len - (sizeof(prefix) - 1);
    if (rest >= 4 && memcmp(t, "ack\"", 4) == 0) {
        on_ack(w, c, m, len);
    } else if (rest >= 8 && memcmp(t, "welcome\"", 8) == 0) {
        if (c->state == C_HELLO) {
            c->state = C_READY;
            w->connecting--;
            w->welcomed++;
            if (c->active)
                fill_window(w, c);
        }
    } else if (rest >= 6 && memcmp(t, "error\"", 6) == 0) {
        on_error_frame(w, c, m, len);
    } else if ((rest >= 7 && memcmp(t, "survey\"", 7) == 0) ||
               (rest >= 5 && memcmp(t, "pong\"", 5) == 0) ||
               (rest >= 5 && memcmp(t, "chat.", 5) == 0)) {
        /* nothing to do (chat.presence follows the welcome on sites with live chat) */
    } else {
        w->bad_frames++;
    }
}

/* Parses every complete frame in c->in. Returns false when the connection is gone. */
static bool parse_frames(worker_t *w, conn_t *c)
{
    for (;;) {
        const unsigned char *p = (const unsigned char *)c->in.p + c->in.off;
        size_t avail = c->in.len - c->in.off;
        if (avail < 2)
            break;
        bool fin = p[0] & 0x80;
        int op = p[0] & 0x0f;
        bool masked = p[1] & 0x80;
        uint64_t len = p[1] & 0x7f;
        size_t hl = 2;
        if (len == 126) {
            if (avail < 4)
                break;
            len = ((uint64_t)p[2] << 8) | p[3];
            hl = 4;
        } else if (len == 127) {
            if (avail < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | p[2 + i];
            hl = 10;
        }
        if (masked)
            hl += 4;
        if (len > (64u << 20)) {
            w->bad_frames++;
            conn_kill(w, c);
            return false;
        }
        if (avail < hl + len) {
            buf_reserve(&c->in, hl + (size_t)len - avail);
            break;
        }
        const char *payload = (const char *)p + hl;
        c->in.off += hl + (size_t)len;
        switch (op) {
        case 0: /* continuation */
        case 1:
        case 2:
            if (op != 0)
                c->msg_op = op;
            if (fin && op != 0 && c->msg.len == 0) {
                on_message(w, c, payload, (size_t)len);
            } else {
                buf_reserve(&c->msg, (size_t)len);
                memcpy(c->msg.p + c->msg.len, payload, (size_t)len);
                c->msg.len += (size_t)len;
                if (fin) {
                    on_message(w, c, c->msg.p, c->msg.len);
                    c->msg.len = c->msg.off = 0;
                }
            }
            break;
        case 8: /* close */
            w->closed_by_server++;
            conn_kill(w, c);
            return false;
        case 9: /* ping: answer with the same payload */
            put_frame(w, c, 10, payload, (size_t)len);
            break;
        default:
            break;
        }
        if (c->state == C_DEAD)
            return false;
    }
    if (c->in.off == c->in.len)
        c->in.off = c->in.len = 0;
    return true;
}

static bool handle_upgrade_reply(worker_t *w, conn_t *c)
{
    const char *end = memmem(c->in.p + c->in.off, c->in.len - c->in.off, "\r\n\r\n", 4);
    if (!end) {
        if (c->in.len - c->in.off > 8192) {
            w->upgrade_failed++;
            conn_kill(w, c);
            return false;
        }
        return true; /* wait for the rest */
    }
    if (c->in.len - c->in.off < 12 || memcmp(c->in.p + c->in.off, "HTTP/1.1 101", 12) != 0) {
        if (w->upgrade_failed < 3 && !opt.quiet)
            fprintf(stderr, "loadgen: upgrade refused: %.*s\n",
                    (int)strcspn(c->in.p + c->in.off, "\r\n"), c->in.p + c->in.off);
        w->upgrade_failed++;
        conn_kill(w, c);
        return false;
    }
    c->in.off = (size_t)(end + 4 - c->in.p);
    w->established++;
    send_hello(w, c);
    return true;
}

static void on_readable(worker_t *w, conn_t *c)
{
    for (int i = 0; i < 16; i++) {
        buf_reserve(&c->in, 16384);
        size_t space = c->in.cap - c->in.len;
        ssize_t n = recv(c->fd, c->in.p + c->in.len, space, 0);
        if (n > 0) {
            c->in.len += (size_t)n;
            if (c->state == C_UPGRADING && !handle_upgrade_reply(w, c))
                return;
            if (c->state != C_UPGRADING && !parse_frames(w, c))
                return;
            if ((size_t)n < space)
                break; /* the socket is drained */
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        /* EOF or error */
        if (c->state == C_UPGRADING)
            w->upgrade_failed++;
        else
            w->closed_by_server++;
        conn_kill(w, c);
        return;
    }
    if (c->state == C_READY && c->active)
        fill_window(w, c);
    /* Idle connections keep no receive buffer. */
    if (!c->active && c->in.len == 0 && c->in.cap > 0) {
        buf_free(&c->in);
        buf_free(&c->msg);
    }
}

static void on_event(worker_t *w, conn_t *c, uint32_t events)
{
    if (c->state == C_DEAD)
        return;
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err || (events & (EPOLLERR | EPOLLHUP))) {
            w->connect_failed++;
            conn_kill(w, c);
            return;
        }
        if (!(events & EPOLLOUT))
            return;
        send_upgrade(w, c);
        return;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        on_readable(w, c);
    if (c->state != C_DEAD && (events & EPOLLOUT))
        mark_dirty(w, c);
}

static void flush_dirty(worker_t *w)
{
    for (int i = 0; i < w->n_dirty; i++) {
        conn_t *c = w->dirty[i];
        c->dirty = false;
        if (c->state != C_DEAD)
            conn_flush(w, c);
    }
    w->n_dirty = 0;
}

static void poll_once(worker_t *w, int timeout_ms)
{
    struct epoll_event evs[512];
    int n = epoll_wait(w->ep, evs, 512, timeout_ms);
    for (int i = 0; i < n; i++)
        on_event(w, evs[i].data.ptr, evs[i].events);
    flush_dirty(w);
}

/* Opens connections [from, to) with at most CONNECTING_MAX handshakes at once, until each is
 * welcomed or dead, or the deadline passes. */
static void connect_range(worker_t *w, int from, int to, uint64_t deadline)
{
    w->next_connect = from;
    while (now_us() < deadline) {
        while (w->next_connect < to && w->connecting < CONNECTING_MAX) {
            conn_t *c = &w->conns[w->next_connect];
            int global = w->index + opt.threads * w->next_connect;
            conn_start(w, c, global);
            w->next_connect++;
        }
        flush_dirty(w);
        if (w->next_connect >= to && w->connecting == 0)
            return;
        poll_once(w, 10);
    }
    /* Whatever did not make it in time does not take part. */
    for (int i = from; i < to; i++) {
        conn_t *c = &w->conns[i];
        if (c->state != C_READY && c->state != C_DEAD) {
            w->connect_failed++;
            conn_kill(w, c);
        }
    }
}

/* Open-loop: sends every answer that is due by now, round-robin across the connections. */
static void pace(worker_t *w, uint64_t t)
{
    if (!w->sending || w->rate <= 0 || !w->n_active)
        return;
    double due_f = (double)(t - t_warm) * w->rate / 1e6;
    uint64_t due = (uint64_t)due_f;
    while (w->scheduled < due) {
        int tried = 0;
        conn_t *c = NULL;
        while (tried < w->n_active) {
            conn_t *k = &w->conns[w->first_active + w->rr];
            w->rr = (w->rr + 1) % w->n_active;
            tried++;
            if (conn_has_room(k)) {
                c = k;
                break;
            }
        }
        if (!c) {
            w->starved += due - w->scheduled;
            /* Keep the schedule: these answers are late, and their latency says so. */
            break;
        }
        uint64_t intended = t_warm + (uint64_t)((double)w->scheduled * 1e6 / w->rate);
        send_answer(w, c, intended);
        w->scheduled++;
    }
}

static uint64_t worker_outstanding(worker_t *w)
{
    uint64_t n = 0;
    for (int i = w->first_active; i < w->n_conns; i++)
        if (w->conns[i].state != C_DEAD)
            n += w->conns[i].outstanding;
    return n;
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    uint64_t start = now_us();
    /* 1. idle connections */
    connect_range(w, 0, w->n_idle, start + (uint64_t)(opt.connect_timeout * 1e6));
    pthread_barrier_wait(&barrier); /* A: idle connections open */
    pthread_barrier_wait(&barrier); /* B: the coordinator has sampled memory */
    /* 2. active connections */
    for (int i = w->first_active; i < w->n_conns; i++) {
        conn_t *c = &w->conns[i];
        c->active = true;
        c->rcap = (uint32_t)(opt.rate > 0 ? opt.window : opt.window * 2) + 8;
        c->ring = calloc(c->rcap, sizeof(pend_t));
        if (!c->ring)
            die("out of memory");
    }
    connect_range(w, w->first_active, w->n_conns,
                  now_us() + (uint64_t)(opt.connect_timeout * 1e6));
    pthread_barrier_wait(&barrier); /* C: active connections open */
    pthread_barrier_wait(&barrier); /* D: t_warm, t_start, t_end are set */
    /* 3. load */
    sleep_until_us(t_warm);
    w->sending = true;
    for (int i = w->first_active; i < w->n_conns; i++)
        fill_window(w, &w->conns[i]);
    flush_dirty(w);
    for (;;) {
        uint64_t t = now_us();
        if (t >= t_end)
            break;
        pace(w, t);
        flush_dirty(w);
        int timeout = opt.rate > 0 ? 1 : (int)((t_end - t) / 1000 + 1);
        if (timeout > 100)
            timeout = 100;
        poll_once(w, timeout);
    }
    /* 4. drain: no more sending, wait for the acks still owed */
    w->sending = false;
    uint64_t drain_end = t_end + (uint64_t)(opt.drain_timeout * 1e6);
    while (now_us() < drain_end && worker_outstanding(w) > 0)
        poll_once(w, 10);
    w->lost_unacked += worker_outstanding(w);
    pthread_barrier_wait(&barrier); /* E: done */
    return NULL;
}

/* --- daemon sampling from /proc -------------------------------------------------------------- */

static long proc_status_kb(int pid, const char *field)
{
    if (pid <= 0)
        return -1;
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
            v = strtol(line + fl + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

static double proc_cpu_sec(int pid)
{
    if (pid <= 0)
        return -1;
    char path[64], buf[2048];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    /* after ") " come state(3) ... utime(14) stime(15) */
    unsigned long long ut = 0, st = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_sec(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const uint32_t *v, size_t n, double p)
{
    if (!n)
        return -1;
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    if (i >= n)
        i = n - 1;
    return v[i] / 1000.0;
}

/* --- main --------------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen [options]\n"
            "  --mode throughput|latency|idle  presets (see below); later options override\n"
            "  --host H --port P              daemon address (loopback only; default 127.0.0.1:8080)\n"
            "  --site KEY                     site key (default demo-site-key-0001)\n"
            "  --question SURVEY:QUESTION     an emotion question to answer (repeatable, required\n"
            "                                 when --conns > 0)\n"
            "  --conns N                      active connections (default 100)\n"
            "  --idle N                       idle connections opened first and held (default 0)\n"
            "  --window W                     unacked answers per connection (default 64)\n"
            "  --rate R                       open loop: R answers/s in total (0 = closed loop)\n"
            "  --duration S --warmup S        measured seconds, unmeasured seconds before\n"
            "  --drain-timeout S              wait for outstanding acks after the run (15)\n"
            "  --connect-timeout S            limit for opening all connections (60)\n"
            "  --threads T                    worker threads (default 1, max %d)\n"
            "  --pid PID                      daemon pid: sample VmRSS/VmHWM and CPU from /proc\n"
            "  --src-spread K                 bind sources across 127.0.0.2..127.0.0.(K+1)\n"
            "                                 (default: 0, or automatic above 25000 connections)\n"
            "  --text-len N                   length of the free text (default 100)\n"
            "  --quiet                        no human summary on stderr\n"
            "presets: throughput = --conns 100 --window 64 --rate 0; latency = --conns 100\n"
            "--window 1024 --rate 10000; idle = --idle 10000 --conns 0 --duration 5\n",
            MAX_WORKERS);
    exit(2);
}

static double num_arg(const char *v, const char *name)
{
    char *end;
    double d = strtod(v, &end);
    if (!*v || *end)
        die("%s: not a number: %s", name, v);
    return d;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDV()                                                                                  \
    do {                                                                                         \
        if (!v)                                                                                  \
            die("%s needs a value", a);                                                          \
        i++;                                                                                     \
    } while (0)
        if (strcmp(a, "--mode") == 0) {
            NEEDV();
            if (strcmp(v, "throughput") == 0) {
                opt.conns = 100, opt.window = 64, opt.rate = 0;
            } else if (strcmp(v, "latency") == 0) {
                opt.conns = 100, opt.window = 1024, opt.rate = 10000;
            } else if (strcmp(v, "idle") == 0) {
                opt.idle = 10000, opt.conns = 0, opt.duration = 5, opt.warmup = 0;
            } else {
                die("unknown mode %s", v);
            }
        } else if (strcmp(a, "--host") == 0) {
            NEEDV();
            opt.host = v;
        } else if (strcmp(a, "--port") == 0) {
            NEEDV();
            opt.port = (int)num_arg(v, a);
        } else if (strcmp(a, "--site") == 0) {
            NEEDV();
            opt.site = v;
        } else if (strcmp(a, "--question") == 0) {
            NEEDV();
            if (opt.n_questions == MAX_QUESTIONS)
                die("too many --question");
            if (sscanf(v, "%ld:%ld", &opt.questions[opt.n_questions].survey,
                       &opt.questions[opt.n_questions].question) != 2)
                die("--question wants SURVEY:QUESTION");
            opt.n_questions++;
        } else if (strcmp(a, "--conns") == 0) {
            NEEDV();
            opt.conns = (int)num_arg(v, a);
        } else if (strcmp(a, "--idle") == 0) {
            NEEDV();
            opt.idle = (int)num_arg(v, a);
        } else if (strcmp(a, "--window") == 0) {
            NEEDV();
            opt.window = (int)num_arg(v, a);
        } else if (strcmp(a, "--rate") == 0) {
            NEEDV();
            opt.rate = num_arg(v, a);
        } else if (strcmp(a, "--duration") == 0) {
            NEEDV();
            opt.duration = num_arg(v, a);
        } else if (strcmp(a, "--warmup") == 0) {
            NEEDV();
            opt.warmup = num_arg(v, a);
        } else if (strcmp(a, "--drain-timeout") == 0) {
            NEEDV();
            opt.drain_timeout = num_arg(v, a);
        } else if (strcmp(a, "--connect-timeout") == 0) {
            NEEDV();
            opt.connect_timeout = num_arg(v, a);
        } else if (strcmp(a, "--threads") == 0) {
            NEEDV();
            opt.threads = (int)num_arg(v, a);
        } else if (strcmp(a, "--pid") == 0) {
            NEEDV();
            opt.pid = (int)num_arg(v, a);
        } else if (strcmp(a, "--src-spread") == 0) {
            NEEDV();
            opt.src_spread = (int)num_arg(v, a);
        } else if (strcmp(a, "--text-len") == 0) {
            NEEDV();
            opt.text_len = (int)num_arg(v, a);
        } else if (strcmp(a, "--quiet") == 0) {
            opt.quiet = true;
        } else {
            usage();
        }
    }
    if (opt.threads < 1 || opt.threads > MAX_WORKERS)
        die("--threads must be 1..%d", MAX_WORKERS);
    if (opt.conns < 0 || opt.idle < 0 || opt.conns + opt.idle > 1000000)
        die("bad connection counts");
    if (opt.window < 1 || opt.window > 100000)
        die("--window must be 1..100000");
    if (opt.duration <= 0 || opt.duration > 3600 || opt.warmup < 0 || opt.warmup > 600 ||
        opt.drain_timeout < 0 || opt.drain_timeout > 600 || opt.connect_timeout <= 0 ||
        opt.connect_timeout > 600)
        die("durations out of range");
    if (opt.conns > 0 && opt.n_questions == 0)
        die("--question SURVEY:QUESTION is required when sending answers");
    if (inet_pton(AF_INET, opt.host, &server_addr.sin_addr) != 1)
        die("--host must be an IPv4 address");
    if ((ntohl(server_addr.sin_addr.s_addr) >> 24) != 127)
        die("--host must be a loopback address (127.0.0.0/8)");
    server_addr.sin_family = AF_INET;
    server_addr.sin_port = htons((uint16_t)opt.port);
    int total = opt.conns + opt.idle;
    if (opt.src_spread == 0 && total > 25000)
        opt.src_spread = (total + 19999) / 20000;
    if (opt.src_spread < 0 || opt.src_spread > 250)
        die("--src-spread must be 0..250");
    make_texts();

    /* One descriptor per connection plus slack. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rlim_t want = (rlim_t)total + 64;
        if (rl.rlim_cur < want) {
            rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
            if (rl.rlim_max < want) {
                struct rlimit up = {want, want};
                if (setrlimit(RLIMIT_NOFILE, &up) == 0)
                    rl = up;
            }
            setrlimit(RLIMIT_NOFILE, &rl);
        }
        getrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < (rlim_t)total + 16)
            die("RLIMIT_NOFILE is %llu, need %d: raise the hard limit (ulimit -Hn)",
                (unsigned long long)rl.rlim_cur, total + 16);
    }

    pthread_barrier_init(&barrier, NULL, (unsigned)opt.threads + 1);
    for (int t = 0; t < opt.threads; t++) {
        worker_t *w = &workers[t];
        w->index = t;
        rng_seed(&w->rng);
        w->ep = epoll_create1(EPOLL_CLOEXEC);
        if (w->ep < 0)
            die("epoll_create1: %s", strerror(errno));
        w->n_idle = opt.idle / opt.threads + (t < opt.idle % opt.threads);
        w->n_active = opt.conns / opt.threads + (t < opt.conns % opt.threads);
        w->n_conns = w->n_idle + w->n_active;
        w->first_active = w->n_idle;
        w->conns = calloc((size_t)w->n_conns + 1, sizeof(conn_t));
        w->dirty = calloc((size_t)w->n_conns + 1, sizeof(conn_t *));
        if (!w->conns || !w->dirty)
            die("out of memory");
        for (int i = 0; i < w->n_conns; i++)
            w->conns[i].fd = -1;
        w->rate = opt.rate / opt.threads;
    }

    double rss_before = (double)proc_status_kb(opt.pid, "VmRSS");
    uint64_t t0 = now_us();
    for (int t = 0; t < opt.threads; t++)
        if (pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]) != 0)
            die("pthread_create failed");
    pthread_barrier_wait(&barrier); /* A */
    double idle_open_s = (double)(now_us() - t0) / 1e6;
    int idle_ok = 0;
    for (int t = 0; t < opt.threads; t++)
        for (int i = 0; i < workers[t].n_idle; i++)
            idle_ok += workers[t].conns[i].state == C_READY;
    double rss_idle = rss_before;
    if (opt.idle > 0) {
        sleep_until_us(now_us() + (uint64_t)(opt.settle * 1e6));
        rss_idle = (double)proc_status_kb(opt.pid, "VmRSS");
    }
    pthread_barrier_wait(&barrier); /* B */
    pthread_barrier_wait(&barrier); /* C */
    t_warm = now_us() + 10000;
    t_start = t_warm + (uint64_t)(opt.warmup * 1e6);
    t_end = t_start + (uint64_t)(opt.duration * 1e6);
    pthread_barrier_wait(&barrier); /* D */
    sleep_until_us(t_start);
    double cpu0 = proc_cpu_sec(opt.pid), self0 = self_cpu_sec();
    sleep_until_us(t_end);
    double cpu1 = proc_cpu_sec(opt.pid), self1 = self_cpu_sec();
    double rss_end = (double)proc_status_kb(opt.pid, "VmRSS");
    pthread_barrier_wait(&barrier); /* E */
    double hwm = (double)proc_status_kb(opt.pid, "VmHWM");

    /* merge */
    worker_t sum;
    memset(&sum, 0, sizeof(sum));
    size_t n_lat = 0;
    for (int t = 0; t < opt.threads; t++)
        n_lat += workers[t].n_lat;
    uint32_t *lat = malloc((n_lat + 1) * sizeof(*lat));
    if (!lat)
        die("out of memory");
    n_lat = 0;
    int active_ok = 0;
    for (int t = 0; t < opt.threads; t++) {
        worker_t *w = &workers[t];
        sum.sent += w->sent;
        sum.acked += w->acked;
        sum.acked_window += w->acked_window;
        sum.rejected += w->rejected;
        sum.unknown_acks += w->unknown_acks;
        sum.bad_frames += w->bad_frames;
        sum.closed_by_server += w->closed_by_server;
        sum.connect_failed += w->connect_failed;
        sum.upgrade_failed += w->upgrade_failed;
        sum.established += w->established;
        sum.welcomed += w->welcomed;
        sum.lost_unacked += w->lost_unacked;
        sum.starved += w->starved;
        for (int e = 0; e < w->n_errors; e++) {
            int found = -1;
            for (int s = 0; s < sum.n_errors; s++)
                if (strcmp(sum.errors[s].code, w->errors[e].code) == 0)
                    found = s;
            if (found < 0 && sum.n_errors < MAX_ERROR_CODES) {
                found = sum.n_errors++;
                strcpy(sum.errors[found].code, w->errors[e].code);
            }
            if (found >= 0)
                sum.errors[found].count += w->errors[e].count;
        }
        memcpy(lat + n_lat, w->lat, w->n_lat * sizeof(*lat));
        n_lat += w->n_lat;
        for (int i = w->first_active; i < w->n_conns; i++)
            active_ok += w->conns[i].state == C_READY;
    }
    qsort(lat, n_lat, sizeof(*lat), cmp_u32);
    uint64_t max_any = 0;
    for (int t = 0; t < opt.threads; t++)
        if (workers[t].max_any_us > max_any)
            max_any = workers[t].max_any_us;
    /* fairness: answers acked per active connection during the window */
    uint32_t *per_conn = malloc(((size_t)opt.conns + 1) * sizeof(*per_conn));
    size_t n_pc = 0;
    if (!per_conn)
        die("out of memory");
    for (int t = 0; t < opt.threads; t++)
        for (int i = workers[t].first_active; i < workers[t].n_conns; i++)
            if (workers[t].conns[i].ring)
                per_conn[n_pc++] = workers[t].conns[i].acked_window;
    qsort(per_conn, n_pc, sizeof(*per_conn), cmp_u32);
    double rate = (double)sum.acked_window / opt.duration;
    double cpu = cpu0 >= 0 && cpu1 >= 0 ? cpu1 - cpu0 : -1;
    double per_idle = opt.idle > 0 && idle_ok > 0 && rss_before >= 0 && rss_idle >= 0
                          ? (rss_idle - rss_before) * 1024.0 / idle_ok
                          : -1;
    double lat_mean = 0;
    for (size_t i = 0; i < n_lat; i++)
        lat_mean += lat[i];
    lat_mean = n_lat ? lat_mean / (double)n_lat / 1000.0 : -1;

    printf("{\"conns\":%d,\"conns_ok\":%d,\"idle\":%d,\"idle_ok\":%d,\"idle_open_s\":%.2f,"
           "\"window\":%d,\"rate_offered\":%.0f,\"threads\":%d,\"duration_s\":%.1f,"
           "\"warmup_s\":%.1f,\"sent\":%llu,\"acked\":%llu,\"acked_in_window\":%llu,"
           "\"acked_per_s\":%.0f,\"rejected\":%llu,\"unknown_acks\":%llu,\"unacked_at_end\":%llu,"
           "\"starved\":%llu,\"bad_frames\":%llu,\"closed_by_server\":%llu,"
           "\"connect_failed\":%llu,\"upgrade_failed\":%llu,",
           opt.conns, active_ok, opt.idle, idle_ok, idle_open_s, opt.window, opt.rate,
           opt.threads, opt.duration, opt.warmup, (unsigned long long)sum.sent,
           (unsigned long long)sum.acked, (unsigned long long)sum.acked_window, rate,
           (unsigned long long)sum.rejected, (unsigned long long)sum.unknown_acks,
           (unsigned long long)sum.lost_unacked, (unsigned long long)sum.starved,
           (unsigned long long)sum.bad_frames, (unsigned long long)sum.closed_by_server,
           (unsigned long long)sum.connect_failed, (unsigned long long)sum.upgrade_failed);
    printf("\"errors\":{");
    for (int s = 0; s < sum.n_errors; s++)
        printf("%s\"%s\":%llu", s ? "," : "", sum.errors[s].code,
               (unsigned long long)sum.errors[s].count);
    printf("},\"latency_ms\":{\"samples\":%zu,\"mean\":%.3f,\"p50\":%.3f,\"p95\":%.3f,"
           "\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f},",
           n_lat, lat_mean, pct(lat, n_lat, 50), pct(lat, n_lat, 95), pct(lat, n_lat, 99),
           pct(lat, n_lat, 99.9), n_lat ? lat[n_lat - 1] / 1000.0 : -1);
    size_t starved_conns = 0;
    while (starved_conns < n_pc && per_conn[starved_conns] == 0)
        starved_conns++;
    printf("\"acked_per_conn\":{\"min\":%u,\"p1\":%u,\"p50\":%u,\"max\":%u,"
           "\"conns_with_none\":%zu},\"max_latency_any_ms\":%.1f,",
           n_pc ? per_conn[0] : 0, n_pc ? per_conn[(n_pc - 1) / 100] : 0,
           n_pc ? per_conn[(n_pc - 1) / 2] : 0, n_pc ? per_conn[n_pc - 1] : 0, starved_conns,
           max_any / 1000.0);
    free(per_conn);
    /* per-second timeline from the start of the warm-up to the end of the drain */
    size_t secs = (size_t)((opt.warmup + opt.duration) + 0.999);
    for (size_t sec = secs; sec < TIMELINE_MAX; sec++)
        for (int t = 0; t < opt.threads; t++)
            if (workers[t].tl_acks[sec])
                secs = sec + 1;
    printf("\"timeline\":{\"acks_per_s\":[");
    for (size_t sec = 0; sec < secs && sec < TIMELINE_MAX; sec++) {
        uint64_t a = 0;
        for (int t = 0; t < opt.threads; t++)
            a += workers[t].tl_acks[sec];
        printf("%s%llu", sec ? "," : "", (unsigned long long)a);
    }
    printf("],\"max_latency_ms\":[");
    for (size_t sec = 0; sec < secs && sec < TIMELINE_MAX; sec++) {
        uint32_t mx = 0;
        for (int t = 0; t < opt.threads; t++)
            if (workers[t].tl_max[sec] > mx)
                mx = workers[t].tl_max[sec];
        printf("%s%.1f", sec ? "," : "", mx / 1000.0);
    }
    printf("]},");
    printf("\"daemon\":{\"pid\":%d,\"rss_before_kb\":%.0f,\"rss_idle_kb\":%.0f,"
           "\"rss_end_kb\":%.0f,\"hwm_kb\":%.0f,\"bytes_per_idle_conn\":%.0f,\"cpu_s\":%.2f,"
           "\"cpu_pct\":%.1f},\"loadgen_cpu_pct\":%.1f,\"loadgen_cpu_s_total\":%.2f}\n",
           opt.pid, rss_before, rss_idle, rss_end, hwm, per_idle, cpu,
           cpu >= 0 ? 100.0 * cpu / opt.duration : -1, 100.0 * (self1 - self0) / opt.duration,
           self_cpu_sec());
    fflush(stdout);
    if (!opt.quiet) {
        fprintf(stderr,
                "loadgen: %d active (%d ok) + %d idle (%d ok), window %d, rate %s: acked %.0f/s "
                "(%llu in %.0fs), p50 %.2f p95 %.2f p99 %.2f ms, unacked %llu, unknown acks "
                "%llu, rejected %llu, daemon cpu %.0f%%, loadgen cpu %.0f%%\n",
                opt.conns, active_ok, opt.idle, idle_ok, opt.window,
                opt.rate > 0 ? "open" : "closed", rate, (unsigned long long)sum.acked_window,
                opt.duration, pct(lat, n_lat, 50), pct(lat, n_lat, 95), pct(lat, n_lat, 99),
                (unsigned long long)sum.lost_unacked, (unsigned long long)sum.unknown_acks,
                (unsigned long long)sum.rejected, cpu >= 0 ? 100.0 * cpu / opt.duration : -1,
                100.0 * (self1 - self0) / opt.duration);
        if (opt.idle > 0)
            fprintf(stderr, "loadgen: idle: %d open in %.1fs; daemon RSS %.0f -> %.0f kB = %.0f "
                            "bytes per connection\n",
                    idle_ok, idle_open_s, rss_before, rss_idle, per_idle);
    }
    for (int t = 0; t < opt.threads; t++) {
        worker_t *w = &workers[t];
        for (int i = 0; i < w->n_conns; i++) {
            conn_t *c = &w->conns[i];
            if (c->fd >= 0)
                close(c->fd);
            buf_free(&c->in);
            buf_free(&c->out);
            buf_free(&c->msg);
            free(c->ring);
        }
        free(w->conns);
        free(w->dirty);
        free(w->lat);
        close(w->ep);
    }
    free(lat);
    return 0;
}
