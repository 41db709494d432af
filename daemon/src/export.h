/* Journey map file rendering: turns the canonical journey.json document that jd_map_export()
 * builds in PostgreSQL (format "journeyd.map/1", proto/journey-map.schema.json) into the files a
 * person opens: pretty JSON, CSV (long and grid), Mermaid journey diagrams, draw.io and a
 * standalone HTML page. Pure: jansson and jd_buf only, no database, no network, no global state,
 * so the daemon, journeyctl and the tests all call the same code. docs/export.md describes every
 * format. */
#ifndef JD_EXPORT_H
#define JD_EXPORT_H

#include "util.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Renders doc in format ("json", "csv", "csv-grid", "mermaid", "drawio", "html"; or "diff-html"
 * for a journeyd.map-diff/1 document from jd_map_diff) and appends the
 * file to out. persona selects one persona by slug or id ("all" = the all-personas view); NULL
 * means every persona where the format holds several (CSV long, draw.io pages, HTML sections) and
 * the all-personas view where it holds one (CSV grid, Mermaid). "json" ignores persona. On failure
 * (unknown format or persona, a document that is not a journeyd.map/1 map, out of memory) returns
 * false with a message in err; out may then hold a partial file. */
bool jd_export_render(const char *format, const json_t *doc, const char *persona, jd_buf *out,
                      char *err, size_t err_len) __attribute__((warn_unused_result));

/* The MIME type and file extension (without dot) of a format, or NULL when it is unknown. */
const char *jd_export_content_type(const char *format);
const char *jd_export_extension(const char *format);

/* Escapers, exported for the unit tests and for callers that build their own files. Each appends
 * the escaped text to out. */
void jd_export_csv_field(jd_buf *out, const char *text); /* RFC 4180 + formula-injection guard */
void jd_export_xml_text(jd_buf *out, const char *text);  /* XML/HTML text and attribute values */
void jd_export_mermaid_text(jd_buf *out, const char *text, bool actor); /* journey task/section */

#endif
