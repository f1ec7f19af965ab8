/* json_reader.h: a small, strict JSON reader for the tuning database's import (RFC 8259 and nothing
 * more: no comments, no trailing commas, no NaN, no duplicate keys, UTF-8 only). It builds a tree the
 * caller walks and frees. Input comes from other machines, so depth, sizes and counts are bounded, and
 * every malformed input is an error naming the byte offset where reading stopped. */
#ifndef FJ_CACHE_JSON_READER_H
#define FJ_CACHE_JSON_READER_H
#include <stddef.h>
#include <stdint.h>
#include "flashjit.h"

#define JSON_MAX_DEPTH 64
#define JSON_MAX_TEXT ((size_t)256 << 20)  /* bytes of input */
#define JSON_MAX_STRING ((size_t)1 << 20)  /* bytes of one string, decoded */
#define JSON_MAX_MEMBERS 4096              /* keys of one object (duplicate check is quadratic) */
#define JSON_MAX_VALUES ((size_t)1 << 24)  /* values in the whole document */

typedef enum json_type {
  JSON_NULL = 0,
  JSON_FALSE,
  JSON_TRUE,
  JSON_NUMBER,
  JSON_STRING,
  JSON_ARRAY,
  JSON_OBJECT
} json_type;

typedef struct json_value json_value;
struct json_value {
  json_type type;
  size_t offset;      /* byte offset of the value's first character in the input */
  double number;      /* JSON_NUMBER (out-of-range magnitudes become +-inf, as strtod gives) */
  int is_integer;     /* JSON_NUMBER written without fraction or exponent and fitting int64 */
  int64_t integer;    /* its exact value when is_integer */
  char *string;       /* JSON_STRING: decoded UTF-8, NUL-terminated (\u0000 is refused) */
  size_t length;      /* JSON_STRING: bytes before the NUL */
  size_t count;       /* JSON_ARRAY / JSON_OBJECT: number of items */
  json_value *items;  /* JSON_ARRAY / JSON_OBJECT: count values */
  char **keys;        /* JSON_OBJECT: count keys, in input order */
};

/* Parses length bytes of text (one JSON value, surrounded by optional whitespace). On success *out is
 * a tree to free with json_free. Malformed input or a limit passed: FJ_INVALID_ARGUMENT with a message
 * "JSON: <what> at byte N"; no memory: FJ_OUT_OF_MEMORY. *out is NULL on failure. */
fj_status json_parse(const char *text, size_t length, json_value **out);
void json_free(json_value *value);  /* NULL-safe */

/* The member of an object named key, NULL when absent or when object is not an object. */
const json_value *json_get(const json_value *object, const char *key);
/* "null", "false", "true", "number", "string", "array", "object". */
const char *json_type_name(json_type type);
#endif
