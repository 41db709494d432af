/* Allocation of the records that cross from the network thread to the store thread. */
#include "channel.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

jd_record *jd_record_new(jd_record_kind kind, bool acked, uint64_t conn_id, const char *client_id,
                         const char *json, size_t len)
{
    jd_record *r = malloc(sizeof(*r) + len + 1);
    if (!r)
        return NULL;
    r->kind = kind;
    r->acked = acked;
    r->conn_id = conn_id;
    r->tag = 0;
    snprintf(r->client_id, sizeof(r->client_id), "%s", client_id ? client_id : "");
    r->len = len;
    if (len)
        memcpy(r->json, json, len);
    r->json[len] = '\0';
    return r;
}

jd_http_response *jd_http_response_new(int status, const char *content_type, const char *body,
                                       size_t len)
{
    jd_http_response *r = malloc(sizeof(*r) + len + 1);
    if (!r)
        return NULL;
    r->status = status;
    r->set_cookie = false;
    r->cookie[0] = '\0';
    snprintf(r->content_type, sizeof(r->content_type), "%s", content_type);
    r->len = len;
    if (len)
        memcpy(r->body, body, len);
    r->body[len] = '\0';
    return r;
}

jd_chat_reply *jd_chat_reply_new(uint64_t conn_id, uint64_t tag, const char *json, size_t len)
{
    jd_chat_reply *r = calloc(1, sizeof(*r) + len + 1);
    if (!r)
        return NULL;
    r->conn_id = conn_id;
    r->tag = tag;
    r->len = len;
    if (len)
        memcpy(r->json, json, len);
    r->json[len] = '\0';
    return r;
}
