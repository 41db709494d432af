/* Bounded ring buffer between the network and store threads. A mutex rather than a lock-free
 * design: each side moves many elements per lock, so contention is negligible and correctness is
 * obvious. */
#include "queue.h"

#include <stdlib.h>
#include <string.h>

bool jd_queue_init(jd_queue *q, size_t elem_size, size_t capacity)
{
    memset(q, 0, sizeof(*q));
    q->slots = calloc(capacity, elem_size);
    if (!q->slots)
        return false;
    q->elem_size = elem_size;
    q->capacity = capacity;
    pthread_mutex_init(&q->lock, NULL);
    return true;
}

void jd_queue_destroy(jd_queue *q)
{
    if (!q->slots)
        return;
    pthread_mutex_destroy(&q->lock);
    free(q->slots);
    q->slots = NULL;
}

size_t jd_queue_push(jd_queue *q, const void *elems, size_t n, bool *was_empty)
{
    const unsigned char *src = elems;
    pthread_mutex_lock(&q->lock);
    *was_empty = q->count == 0;
    size_t space = q->capacity - q->count;
    size_t take = n < space ? n : space;
    for (size_t i = 0; i < take; i++) {
        size_t tail = (q->head + q->count) % q->capacity;
        memcpy(q->slots + tail * q->elem_size, src + i * q->elem_size, q->elem_size);
        q->count++;
    }
    if (take < n)
        q->producer_blocked = true;
    pthread_mutex_unlock(&q->lock);
    return take;
}

size_t jd_queue_pop(jd_queue *q, void *elems, size_t max, bool *unblocked)
{
    unsigned char *dst = elems;
    pthread_mutex_lock(&q->lock);
    size_t take = max < q->count ? max : q->count;
    for (size_t i = 0; i < take; i++) {
        memcpy(dst + i * q->elem_size, q->slots + q->head * q->elem_size, q->elem_size);
        q->head = (q->head + 1) % q->capacity;
        q->count--;
    }
    *unblocked = false;
    if (q->producer_blocked && q->count <= q->capacity / 2) {
        q->producer_blocked = false;
        *unblocked = true;
    }
    pthread_mutex_unlock(&q->lock);
    return take;
}

size_t jd_queue_count(jd_queue *q)
{
    pthread_mutex_lock(&q->lock);
    size_t n = q->count;
    pthread_mutex_unlock(&q->lock);
    return n;
}
