/* A bounded ring of fixed-size elements between two threads, guarded by one mutex. Pushes never
 * block and never grow memory: when the ring is full the push fails and the producer applies
 * backpressure. Both ends move elements in bulk so one lock round trip covers many records. The
 * caller supplies the wake-up (event_active or lws_cancel_service); push reports when the ring
 * went from empty to non-empty, which is the only time a wake-up is needed. */
#ifndef JD_QUEUE_H
#define JD_QUEUE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct jd_queue {
    pthread_mutex_t lock;
    unsigned char *slots;
    size_t elem_size;
    size_t capacity;
    size_t head; /* next to pop */
    size_t count;
    bool producer_blocked; /* a push failed since the consumer last drained below half */
} jd_queue;

/* Allocates capacity slots of elem_size bytes. Returns false when out of memory. */
bool jd_queue_init(jd_queue *q, size_t elem_size, size_t capacity)
    __attribute__((warn_unused_result));
void jd_queue_destroy(jd_queue *q);

/* Copies up to n elements in; returns how many fitted. *was_empty tells whether the ring was
 * empty before (wake the consumer then). */
size_t jd_queue_push(jd_queue *q, const void *elems, size_t n, bool *was_empty);

/* Copies up to max elements out; returns how many. *unblocked is set when a producer had been
 * refused and the ring is now at most half full (tell the producer to retry). */
size_t jd_queue_pop(jd_queue *q, void *elems, size_t max, bool *unblocked);

size_t jd_queue_count(jd_queue *q);

#endif
