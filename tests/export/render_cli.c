/* Test helper for tests/integration/export.test.mjs: reads a journey.json document on stdin and
 * writes it rendered by jd_export_render on stdout.
 *   render_cli FORMAT [PERSONA]     exit 0 on success, 1 with the error on stderr otherwise */
#include "export.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    int rc = 1;
    char err[256] = "";
    json_error_t jerr;
    jd_buf out;
    jd_buf_init(&out);
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s FORMAT [PERSONA] < journey.json\n", argv[0]);
        return 2;
    }
    json_t *doc = json_loadf(stdin, 0, &jerr);
    if (!doc) {
        fprintf(stderr, "render_cli: bad JSON: %s (line %d)\n", jerr.text, jerr.line);
        goto fail;
    }
    if (!jd_export_render(argv[1], doc, argc == 3 ? argv[2] : NULL, &out, err, sizeof(err))) {
        fprintf(stderr, "render_cli: %s\n", err);
        goto fail;
    }
    if (fwrite(out.data, 1, out.len, stdout) != out.len || fflush(stdout) != 0) {
        perror("render_cli: write");
        goto fail;
    }
    rc = 0;
fail:
    json_decref(doc);
    jd_buf_free(&out);
    return rc;
}
