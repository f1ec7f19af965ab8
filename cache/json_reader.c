/* json_reader.c: a recursive-descent reader for strict JSON, enough for the tuning database's import.
 * Recursion is bounded by JSON_MAX_DEPTH, every allocation by the JSON_MAX_* limits, and the first
 * error stops the parse with its byte offset, so a truncated or hostile file costs one message and no
 * partial result. Numbers are converted in the "C" locale whatever the host program has set. */
#include <errno.h>
#include <locale.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "cache/json_reader.h"
#include "core/error.h"

typedef struct json_parser {
  const char *text;
  size_t length;
  size_t pos;
  int depth;
  size_t values;
  fj_status status; /* FJ_OK until the first error */
  locale_t c_locale;
} json_parser;

static void json_fail_at(json_parser *p, size_t offset, const char *what) {
  if (p->status != FJ_OK)
    return; /* keep the first error: later ones are consequences */
  p->status = core_error(FJ_INVALID_ARGUMENT, "JSON: %s at byte %zu", what, offset);
}

static void json_out_of_memory(json_parser *p) {
  if (p->status == FJ_OK)
    p->status = core_error(FJ_OUT_OF_MEMORY, "JSON: no memory at byte %zu", p->pos);
}

static void json_skip_space(json_parser *p) {
  while (p->pos < p->length) {
    char c = p->text[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
      break;
    p->pos++;
  }
}

static int json_literal(json_parser *p, const char *word) {
  size_t n = strlen(word);
  if (p->length - p->pos < n || memcmp(p->text + p->pos, word, n) != 0)
    return 0;
  p->pos += n;
  return 1;
}

/* ---- strings ---------------------------------------------------------------------------------- */

static int json_hex4(const char *s, unsigned *out) {
  unsigned value = 0;
  for (int i = 0; i < 4; i++) {
    char c = s[i];
    value <<= 4;
    if (c >= '0' && c <= '9')
      value |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f')
      value |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F')
      value |= (unsigned)(c - 'A' + 10);
    else
      return 0;
  }
  *out = value;
  return 1;
}

static size_t json_put_utf8(char *out, unsigned code) {
  if (code < 0x80) {
    out[0] = (char)code;
    return 1;
  }
  if (code < 0x800) {
    out[0] = (char)(0xC0 | (code >> 6));
    out[1] = (char)(0x80 | (code & 0x3F));
    return 2;
  }
  if (code < 0x10000) {
    out[0] = (char)(0xE0 | (code >> 12));
    out[1] = (char)(0x80 | ((code >> 6) & 0x3F));
    out[2] = (char)(0x80 | (code & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | (code >> 18));
  out[1] = (char)(0x80 | ((code >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((code >> 6) & 0x3F));
  out[3] = (char)(0x80 | (code & 0x3F));
  return 4;
}

/* Length of the well-formed UTF-8 sequence at s (at most avail bytes), 0 when it is not one: overlong
 * forms, surrogates and code points past U+10FFFF are refused as the standard says. */
static size_t json_utf8_length(const unsigned char *s, size_t avail) {
  unsigned char c = s[0];
  size_t n;
  unsigned code;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    code = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    code = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    code = c & 0x07;
  } else {
    return 0;
  }
  if (avail < n)
    return 0;
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xC0) != 0x80)
      return 0;
    code = (code << 6) | (s[i] & 0x3F);
  }
  if ((n == 3 && code < 0x800) || (n == 4 && code < 0x10000) || code > 0x10FFFF ||
      (code >= 0xD800 && code <= 0xDFFF))
    return 0;
  return n;
}

/* Reads the string starting at the opening quote; returns a malloc'd NUL-terminated copy. */
static char *json_read_string(json_parser *p, size_t *length_out) {
  size_t start = p->pos++; /* the quote */
  /* The decoded text is never longer than the raw text, so one allocation of the raw span does. */
  size_t end = p->pos;
  while (end < p->length && p->text[end] != '"') {
    if (p->text[end] == '\\')
      end++;
    end++;
  }
  if (end >= p->length) {
    json_fail_at(p, start, "unterminated string");
    return NULL;
  }
  if (end - p->pos > JSON_MAX_STRING) {
    json_fail_at(p, start, "string longer than the limit of 1 MiB");
    return NULL;
  }
  char *out = malloc(end - p->pos + 1);
  if (!out) {
    json_out_of_memory(p);
    return NULL;
  }
  size_t n = 0;
  while (p->pos < end) {
    unsigned char c = (unsigned char)p->text[p->pos];
    if (c < 0x20) {
      json_fail_at(p, p->pos, "control character in a string");
      break;
    }
    if (c >= 0x80) {
      size_t len = json_utf8_length((const unsigned char *)p->text + p->pos, end - p->pos);
      if (len == 0) {
        json_fail_at(p, p->pos, "invalid UTF-8 in a string");
        break;
      }
      memcpy(out + n, p->text + p->pos, len);
      n += len;
      p->pos += len;
      continue;
    }
    if (c != '\\') {
      out[n++] = (char)c;
      p->pos++;
      continue;
    }
    size_t escape_at = p->pos;
    char e = p->text[p->pos + 1];
    p->pos += 2;
    switch (e) {
    case '"': out[n++] = '"'; continue;
    case '\\': out[n++] = '\\'; continue;
    case '/': out[n++] = '/'; continue;
    case 'b': out[n++] = '\b'; continue;
    case 'f': out[n++] = '\f'; continue;
    case 'n': out[n++] = '\n'; continue;
    case 'r': out[n++] = '\r'; continue;
    case 't': out[n++] = '\t'; continue;
    case 'u': break;
    default: json_fail_at(p, escape_at, "unknown escape in a string"); goto done;
    }
    unsigned code;
    if (end - p->pos < 4 || !json_hex4(p->text + p->pos, &code)) {
      json_fail_at(p, escape_at, "\\u needs four hex digits");
      break;
    }
    p->pos += 4;
    if (code >= 0xD800 && code <= 0xDBFF) {
      unsigned low;
      if (end - p->pos < 6 || p->text[p->pos] != '\\' || p->text[p->pos + 1] != 'u' ||
          !json_hex4(p->text + p->pos + 2, &low) || low < 0xDC00 || low > 0xDFFF) {
        json_fail_at(p, escape_at, "high surrogate without its low surrogate");
        break;
      }
      p->pos += 6;
      code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
    } else if (code >= 0xDC00 && code <= 0xDFFF) {
      json_fail_at(p, escape_at, "lone low surrogate");
      break;
    } else if (code == 0) {
      /* The tree hands out C strings: an embedded NUL would silently cut the value short. */
      json_fail_at(p, escape_at, "\\u0000 is not accepted");
      break;
    }
    /* Six escape characters give at most four bytes, so the raw-span allocation still suffices. */
    n += json_put_utf8(out + n, code);
  }
done:
  if (p->status != FJ_OK) {
    free(out);
    return NULL;
  }
  out[n] = '\0';
  p->pos = end + 1;
  *length_out = n;
  return out;
}

/* ---- numbers ---------------------------------------------------------------------------------- */

static void json_read_number(json_parser *p, json_value *v) {
  size_t start = p->pos, i = p->pos;
  const char *s = p->text;
  int integral = 1;
  if (i < p->length && s[i] == '-')
    i++;
  if (i < p->length && s[i] == '0') {
    i++;
  } else if (i < p->length && s[i] >= '1' && s[i] <= '9') {
    while (i < p->length && s[i] >= '0' && s[i] <= '9')
      i++;
  } else {
    json_fail_at(p, start, "malformed number");
    return;
  }
  if (i < p->length && s[i] == '.') {
    integral = 0;
    i++;
    if (i >= p->length || s[i] < '0' || s[i] > '9') {
      json_fail_at(p, i, "digit expected after the decimal point");
      return;
    }
    while (i < p->length && s[i] >= '0' && s[i] <= '9')
      i++;
  }
  if (i < p->length && (s[i] == 'e' || s[i] == 'E')) {
    integral = 0;
    i++;
    if (i < p->length && (s[i] == '+' || s[i] == '-'))
      i++;
    if (i >= p->length || s[i] < '0' || s[i] > '9') {
      json_fail_at(p, i, "digit expected in the exponent");
      return;
    }
    while (i < p->length && s[i] >= '0' && s[i] <= '9')
      i++;
  }
  char buffer[128];
  if (i - start >= sizeof buffer) {
    json_fail_at(p, start, "number longer than 127 characters");
    return;
  }
  /* The input need not be NUL-terminated after the number: convert a copy. */
  memcpy(buffer, s + start, i - start);
  buffer[i - start] = '\0';
  v->type = JSON_NUMBER;
  v->number = strtod_l(buffer, NULL, p->c_locale);
  if (integral) {
    errno = 0;
    long long value = strtoll(buffer, NULL, 10);
    if (errno == 0) {
      v->is_integer = 1;
      v->integer = (int64_t)value;
    }
  }
  p->pos = i;
}

/* ---- values ----------------------------------------------------------------------------------- */

static void json_free_children(json_value *v);
static void json_read_value(json_parser *p, json_value *v);

/* Appends one zeroed slot to a growing item array; NULL when out of memory. */
static json_value *json_push(json_parser *p, json_value *v, size_t *capacity, int with_key) {
  if (v->count == *capacity) {
    size_t grown = *capacity ? *capacity * 2 : 4;
    json_value *items = realloc(v->items, grown * sizeof *items);
    if (!items) {
      json_out_of_memory(p);
      return NULL;
    }
    v->items = items;
    if (with_key) {
      char **keys = realloc(v->keys, grown * sizeof *keys);
      if (!keys) {
        json_out_of_memory(p);
        return NULL;
      }
      v->keys = keys;
    }
    *capacity = grown;
  }
  json_value *slot = &v->items[v->count];
  memset(slot, 0, sizeof *slot);
  if (with_key)
    v->keys[v->count] = NULL;
  v->count++;
  return slot;
}

/* Steps over an array's or object's opening bracket; 1 (and past the close) when it is empty. */
static int json_open_is_empty(json_parser *p, char close) {
  p->pos++;
  json_skip_space(p);
  if (p->pos < p->length && p->text[p->pos] == close) {
    p->pos++;
    return 1;
  }
  return 0;
}

/* After an item: 1 past a ',' (another item follows), 0 past the close or with the parse failed. */
static int json_next_item(json_parser *p, char close) {
  json_skip_space(p);
  if (p->pos < p->length && p->text[p->pos] == ',') {
    p->pos++;
    return 1;
  }
  if (p->pos < p->length && p->text[p->pos] == close) {
    p->pos++;
    return 0;
  }
  json_fail_at(p, p->pos, close == ']' ? "',' or ']' expected" : "',' or '}' expected");
  return 0;
}

static void json_read_array(json_parser *p, json_value *v) {
  size_t capacity = 0;
  v->type = JSON_ARRAY;
  if (json_open_is_empty(p, ']'))
    return;
  for (;;) {
    json_value *item = json_push(p, v, &capacity, 0);
    if (!item)
      return;
    json_read_value(p, item);
    if (p->status != FJ_OK || !json_next_item(p, ']'))
      return;
  }
}

static void json_read_object(json_parser *p, json_value *v) {
  size_t capacity = 0;
  v->type = JSON_OBJECT;
  if (json_open_is_empty(p, '}'))
    return;
  for (;;) {
    json_skip_space(p);
    size_t key_at = p->pos;
    if (p->pos >= p->length || p->text[p->pos] != '"') {
      json_fail_at(p, p->pos, "a string key expected");
      return;
    }
    if (v->count == JSON_MAX_MEMBERS) {
      json_fail_at(p, key_at, "object with more than 4096 members");
      return;
    }
    json_value *item = json_push(p, v, &capacity, 1);
    if (!item)
      return;
    size_t key_length;
    char *key = json_read_string(p, &key_length);
    if (!key)
      return;
    v->keys[v->count - 1] = key;
    for (size_t i = 0; i + 1 < v->count; i++) {
      if (strcmp(v->keys[i], key) == 0) {
        /* Two values for one field leave it unclear which one the writer meant. */
        json_fail_at(p, key_at, "duplicate key in an object");
        return;
      }
    }
    json_skip_space(p);
    if (p->pos >= p->length || p->text[p->pos] != ':') {
      json_fail_at(p, p->pos, "':' expected after a key");
      return;
    }
    p->pos++;
    json_read_value(p, item);
    if (p->status != FJ_OK || !json_next_item(p, '}'))
      return;
  }
}

static void json_read_value(json_parser *p, json_value *v) {
  json_skip_space(p);
  v->offset = p->pos;
  if (p->pos >= p->length) {
    json_fail_at(p, p->pos, "unexpected end of input");
    return;
  }
  if (++p->values > JSON_MAX_VALUES) {
    json_fail_at(p, p->pos, "more than 16777216 values");
    return;
  }
  char c = p->text[p->pos];
  if (c == '{' || c == '[') {
    if (p->depth == JSON_MAX_DEPTH) {
      json_fail_at(p, p->pos, "nesting deeper than 64");
      return;
    }
    p->depth++;
    if (c == '{')
      json_read_object(p, v);
    else
      json_read_array(p, v);
    p->depth--;
  } else if (c == '"') {
    v->type = JSON_STRING;
    v->string = json_read_string(p, &v->length);
  } else if (c == '-' || (c >= '0' && c <= '9')) {
    json_read_number(p, v);
  } else if (json_literal(p, "true")) {
    v->type = JSON_TRUE;
  } else if (json_literal(p, "false")) {
    v->type = JSON_FALSE;
  } else if (json_literal(p, "null")) {
    v->type = JSON_NULL;
  } else {
    json_fail_at(p, p->pos, "a value expected");
  }
}

fj_status json_parse(const char *text, size_t length, json_value **out) {
  if (out)
    *out = NULL;
  if (!text || !out)
    return core_error(FJ_INVALID_ARGUMENT, "json_parse: %s is NULL", !text ? "text" : "out");
  if (length > JSON_MAX_TEXT)
    return core_error(FJ_INVALID_ARGUMENT, "JSON: input of %zu bytes is over the limit of %zu bytes", length,
                      JSON_MAX_TEXT);
  json_parser p = {.text = text, .length = length};
  p.c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
  if (!p.c_locale)
    return core_error(FJ_OUT_OF_MEMORY, "JSON: cannot create the C locale");
  json_value *root = calloc(1, sizeof *root);
  if (!root) {
    freelocale(p.c_locale);
    return core_error(FJ_OUT_OF_MEMORY, "JSON: no memory");
  }
  json_read_value(&p, root);
  if (p.status == FJ_OK) {
    json_skip_space(&p);
    if (p.pos < p.length)
      json_fail_at(&p, p.pos, p.text[p.pos] == '\0' ? "NUL byte" : "trailing characters after the value");
  }
  freelocale(p.c_locale);
  if (p.status != FJ_OK) {
    json_free(root);
    return p.status;
  }
  *out = root;
  return FJ_OK;
}

static void json_free_children(json_value *v) {
  if (v->type == JSON_STRING)
    free(v->string);
  if (v->type == JSON_ARRAY || v->type == JSON_OBJECT) {
    for (size_t i = 0; i < v->count; i++) {
      json_free_children(&v->items[i]);
      if (v->keys)
        free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
  }
}

void json_free(json_value *value) {
  if (!value)
    return;
  json_free_children(value);
  free(value);
}

const json_value *json_get(const json_value *object, const char *key) {
  if (!object || object->type != JSON_OBJECT || !key)
    return NULL;
  for (size_t i = 0; i < object->count; i++)
    if (object->keys[i] && strcmp(object->keys[i], key) == 0)
      return &object->items[i];
  return NULL;
}

const char *json_type_name(json_type type) {
  switch (type) {
  case JSON_NULL: return "null";
  case JSON_FALSE: return "false";
  case JSON_TRUE: return "true";
  case JSON_NUMBER: return "number";
  case JSON_STRING: return "string";
  case JSON_ARRAY: return "array";
  case JSON_OBJECT: return "object";
  }
  return "unknown";
}
