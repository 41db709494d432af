/* Loads the static web assets into memory and finds them by URL path. */
#include "files.h"

#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define JD_FILES_MAX_TOTAL (64u << 20)

static const char *content_type_for(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {{".html", "text/html; charset=utf-8"},
                 {".js", "text/javascript; charset=utf-8"},
                 {".mjs", "text/javascript; charset=utf-8"},
                 {".css", "text/css; charset=utf-8"},
                 {".json", "application/json"},
                 {".svg", "image/svg+xml"},
                 {".png", "image/png"},
                 {".ico", "image/x-icon"},
                 {".map", "application/json"},
                 {".txt", "text/plain; charset=utf-8"},
                 {".webmanifest", "application/manifest+json"}};
    const char *dot = strrchr(path, '.');
    if (dot)
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
            if (strcmp(dot, types[i].ext) == 0)
                return types[i].type;
    return "application/octet-stream";
}

static int compare_files(const void *a, const void *b)
{
    return strcmp(((const jd_file *)a)->path, ((const jd_file *)b)->path);
}

static bool add_file(jd_files *set, size_t *cap, size_t *total, const char *fs_path,
                     const char *url_path, char *err, size_t err_len)
{
    FILE *f = fopen(fs_path, "rb");
    if (!f) {
        snprintf(err, err_len, "static: cannot open %s: %s", fs_path, strerror(errno));
        return false;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || (size_t)st.st_size + *total > JD_FILES_MAX_TOTAL) {
        snprintf(err, err_len, "static: %s is unreadable or the set exceeds 64 MiB", fs_path);
        fclose(f);
        return false;
    }
    char *data = malloc((size_t)st.st_size + 1);
    if (!data || fread(data, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        snprintf(err, err_len, "static: cannot read %s", fs_path);
        free(data);
        fclose(f);
        return false;
    }
    fclose(f);
    if (set->n == *cap) {
        *cap = *cap ? *cap * 2 : 32;
        jd_file *grown = realloc(set->items, *cap * sizeof(*grown));
        if (!grown) {
            free(data);
            snprintf(err, err_len, "static: out of memory");
            return false;
        }
        set->items = grown;
    }
    jd_file *file = &set->items[set->n++];
    file->path = strdup(url_path);
    file->data = data;
    file->len = (size_t)st.st_size;
    file->content_type = content_type_for(url_path);
    snprintf(file->etag, sizeof(file->etag), "\"%016llx\"",
             (unsigned long long)jd_hash64(data, file->len));
    *total += file->len;
    return file->path != NULL;
}

static bool walk(jd_files *set, size_t *cap, size_t *total, const char *fs_dir, const char *url_dir,
                 int depth, char *err, size_t err_len)
{
    if (depth > 8)
        return true;
    DIR *d = opendir(fs_dir);
    if (!d)
        return true;
    struct dirent *e;
    bool ok = true;
    while (ok && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char fs_path[4096], url_path[4096];
        snprintf(fs_path, sizeof(fs_path), "%s/%s", fs_dir, e->d_name);
        snprintf(url_path, sizeof(url_path), "%s/%s", url_dir, e->d_name);
        struct stat st;
        if (stat(fs_path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode))
            ok = walk(set, cap, total, fs_path, url_path, depth + 1, err, err_len);
        else if (S_ISREG(st.st_mode))
            ok = add_file(set, cap, total, fs_path, url_path, err, err_len);
    }
    closedir(d);
    return ok;
}

bool jd_files_load(const char *dir, jd_files **out, char *err, size_t err_len)
{
    jd_files *set = calloc(1, sizeof(*set));
    size_t cap = 0, total = 0;
    if (!set) {
        snprintf(err, err_len, "static: out of memory");
        return false;
    }
    if (!walk(set, &cap, &total, dir, "", 0, err, err_len)) {
        jd_files_free(&set);
        return false;
    }
    qsort(set->items, set->n, sizeof(*set->items), compare_files);
    *out = set;
    return true;
}

void jd_files_free(jd_files **files)
{
    if (!*files)
        return;
    for (size_t i = 0; i < (*files)->n; i++) {
        free((*files)->items[i].path);
        free((*files)->items[i].data);
    }
    free((*files)->items);
    free(*files);
    *files = NULL;
}

const jd_file *jd_files_find(const jd_files *files, const char *path)
{
    if (!files)
        return NULL;
    jd_file probe = {.path = (char *)path};
    return bsearch(&probe, files->items, files->n, sizeof(probe), compare_files);
}
