/* json.h: a small streaming JSON writer for the command's --json output: it tracks nesting and commas,
 * escapes strings, and writes non-finite numbers as null (JSON has no NaN or infinity). */
#ifndef FJ_BENCH_JSON_H
#define FJ_BENCH_JSON_H
#include <stdint.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 32

typedef struct json_writer {
  FILE *out;
  int depth;
  int count[JSON_MAX_DEPTH];  /* values written so far at each level, for the commas */
  int after_key;              /* a key was written: the next value needs no comma */
} json_writer;

void json_init(json_writer *w, FILE *out);
void json_object_begin(json_writer *w);
void json_object_end(json_writer *w);
void json_array_begin(json_writer *w);
void json_array_end(json_writer *w);
void json_key(json_writer *w, const char *key);
void json_string(json_writer *w, const char *text);  /* NULL writes null */
void json_int(json_writer *w, int64_t value);
void json_uint(json_writer *w, uint64_t value);
void json_double(json_writer *w, double value);
void json_bool(json_writer *w, int value);
void json_null(json_writer *w);
/* Ends the document with a newline and flushes. */
void json_finish(json_writer *w);

/* key + value in one call */
void json_kv_string(json_writer *w, const char *key, const char *text);
void json_kv_int(json_writer *w, const char *key, int64_t value);
void json_kv_uint(json_writer *w, const char *key, uint64_t value);
void json_kv_double(json_writer *w, const char *key, double value);
void json_kv_bool(json_writer *w, const char *key, int value);

/* Writes text as a JSON string literal (with the quotes) to out. */
void json_write_escaped(FILE *out, const char *text);
#endif
