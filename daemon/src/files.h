/* The static file set served over HTTP: every regular file under static_dir, read into memory
 * once (at startup, and again on SIGHUP from a short-lived loader thread) with its content type
 * and a content-hash ETag, so serving never touches the disk on the network thread. */
#ifndef JD_FILES_H
#define JD_FILES_H

#include <stdbool.h>
#include <stddef.h>

typedef struct jd_file {
    char *path; /* URL path, e.g. "/widget.js" */
    char *data;
    size_t len;
    char etag[24];
    const char *content_type;
} jd_file;

typedef struct jd_files {
    jd_file *items; /* sorted by path */
    size_t n;
} jd_files;

/* Loads every file under dir (up to 64 MiB in total). A missing dir gives an empty set. Returns
 * false with err filled on read errors or when the limit is exceeded. */
bool jd_files_load(const char *dir, jd_files **out, char *err, size_t err_len)
    __attribute__((warn_unused_result));
void jd_files_free(jd_files **files);
const jd_file *jd_files_find(const jd_files *files, const char *path);

#endif
