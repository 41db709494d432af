/* Fuzz target for the protocol codec: any byte string as a frame, in a fresh session and after a
 * valid hello, against the fixture catalog. Built with libFuzzer when JD_FUZZ=ON (clang), and as
 * a plain replay program otherwise so the seed corpus runs in every ctest. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "proto.h"
#include "../unit/fixture_catalog.h"

static jd_catalog *catalog;

static void one(jd_proto_session *s, const uint8_t *data, size_t size)
{
    jd_proto_out out;
    jd_proto_error err;
    jd_proto_out_init(&out);
    if (jd_proto_handle(catalog, "site-key-0001", s, (const char *)data, size, &out, &err)) {
        /* Whatever is accepted must produce well-formed JSON for the store and the client. */
        const jd_buf *bufs[2] = {&out.record, &out.reply};
        for (int i = 0; i < 2; i++) {
            if (!bufs[i]->len)
                continue;
            json_t *j = json_loadb(bufs[i]->data, bufs[i]->len, 0, NULL);
            if (!j)
                abort();
            json_decref(j);
        }
    } else {
        jd_buf b;
        jd_buf_init(&b);
        jd_proto_encode_error(&b, &err);
        json_t *j = json_loadb(b.data, b.len, 0, NULL);
        if (!j)
            abort();
        json_decref(j);
        jd_buf_free(&b);
    }
    jd_proto_out_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!catalog) {
        char err[256];
        if (!jd_catalog_parse(fixture_catalog_json, strlen(fixture_catalog_json), &catalog, err,
                              sizeof(err)))
            abort();
    }
    jd_proto_session fresh = {0};
    one(&fresh, data, size);
    jd_proto_session greeted = {0};
    static const char hello[] = "{\"type\":\"hello\",\"id\":\"11111111-1111-4111-8111-111111111111\","
                                "\"v\":1,\"site\":\"site-key-0001\"}";
    one(&greeted, (const uint8_t *)hello, sizeof(hello) - 1);
    one(&greeted, data, size);
    return 0;
}

#ifndef JD_LIBFUZZER
/* Replays every file named on the command line (the seed corpus) through the target. */
int main(int argc, char **argv)
{
    int n = 0;
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f)
            continue;
        static uint8_t buf[1 << 20];
        size_t len = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, len);
        n++;
    }
    printf("fuzz_proto: replayed %d inputs\n", n);
    return n > 0 ? 0 : 1;
}
#endif
