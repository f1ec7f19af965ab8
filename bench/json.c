/* json.c: the streaming JSON writer behind --json. Strings from outside (device names, paths, LLVM
 * feature lists, error messages) are escaped here, including control characters and malformed UTF-8
 * (written as U+FFFD), so the output always parses whatever the machine reports. */
#include <inttypes.h>
#include <math.h>

#include "bench/json.h"

void json_init(json_writer *w, FILE *out) {
  w->out = out;
  w->depth = 0;
  w->count[0] = 0;
  w->after_key = 0;
}

/* Writes the comma a new value or key needs at the current level. */
static void json_separator(json_writer *w) {
  if (w->after_key) {
    w->after_key = 0;
    return;
  }
  if (w->count[w->depth]++ > 0) fputc(',', w->out);
}

/* Length of the valid UTF-8 sequence at s, or 0 when it is malformed (overlong, surrogate, > U+10FFFF,
 * truncated). */
static int json_utf8_length(const unsigned char *s) {
  unsigned c = s[0];
  int n;
  unsigned min;
  if (c >= 0xC2 && c <= 0xDF) n = 2, min = 0x80;
  else if (c >= 0xE0 && c <= 0xEF) n = 3, min = 0x800;
  else if (c >= 0xF0 && c <= 0xF4) n = 4, min = 0x10000;
  else return 0;
  unsigned code = c & (0x7F >> n);
  for (int i = 1; i < n; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    code = (code << 6) | (s[i] & 0x3F);
  }
  if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return 0;
  return n;
}

void json_write_escaped(FILE *out, const char *text) {
  fputc('"', out);
  const unsigned char *s = (const unsigned char *)text;
  while (*s) {
    unsigned c = *s;
    if (c == '"' || c == '\\') {
      fputc('\\', out);
      fputc((int)c, out);
      s++;
    } else if (c < 0x20 || c == 0x7F) {
      if (c == '\n')
        fputs("\\n", out);
      else if (c == '\t')
        fputs("\\t", out);
      else if (c == '\r')
        fputs("\\r", out);
      else
        fprintf(out, "\\u%04x", c);
      s++;
    } else if (c < 0x80) {
      fputc((int)c, out);
      s++;
    } else {
      int n = json_utf8_length(s);
      if (n == 0) {
        fputs("\\ufffd", out);
        s++;
      } else {
        fwrite(s, 1, (size_t)n, out);
        s += n;
      }
    }
  }
  fputc('"', out);
}

static void json_open(json_writer *w, int bracket) {
  json_separator(w);
  fputc(bracket, w->out);
  if (w->depth + 1 < JSON_MAX_DEPTH) w->depth++;
  w->count[w->depth] = 0;
}

static void json_close(json_writer *w, int bracket) {
  fputc(bracket, w->out);
  if (w->depth > 0) w->depth--;
}

void json_object_begin(json_writer *w) { json_open(w, '{'); }
void json_object_end(json_writer *w) { json_close(w, '}'); }
void json_array_begin(json_writer *w) { json_open(w, '['); }
void json_array_end(json_writer *w) { json_close(w, ']'); }

void json_key(json_writer *w, const char *key) {
  json_separator(w);
  json_write_escaped(w->out, key);
  fputc(':', w->out);
  w->after_key = 1;
}

void json_string(json_writer *w, const char *text) {
  if (text == NULL) {
    json_null(w);
    return;
  }
  json_separator(w);
  json_write_escaped(w->out, text);
}

void json_int(json_writer *w, int64_t value) {
  json_separator(w);
  fprintf(w->out, "%" PRId64, value);
}

void json_uint(json_writer *w, uint64_t value) {
  json_separator(w);
  fprintf(w->out, "%" PRIu64, value);
}

void json_double(json_writer *w, double value) {
  if (!isfinite(value)) {
    json_null(w);
    return;
  }
  json_separator(w);
  /* %.17g round-trips but prints 0.1 as 0.10000000000000001; 10 digits are more than any timing has. */
  fprintf(w->out, "%.10g", value);
}

void json_bool(json_writer *w, int value) {
  json_separator(w);
  fputs(value ? "true" : "false", w->out);
}

void json_null(json_writer *w) {
  json_separator(w);
  fputs("null", w->out);
}

void json_finish(json_writer *w) {
  fputc('\n', w->out);
  fflush(w->out);
}

void json_kv_string(json_writer *w, const char *key, const char *text) {
  json_key(w, key);
  json_string(w, text);
}

void json_kv_int(json_writer *w, const char *key, int64_t value) {
  json_key(w, key);
  json_int(w, value);
}

void json_kv_uint(json_writer *w, const char *key, uint64_t value) {
  json_key(w, key);
  json_uint(w, value);
}

void json_kv_double(json_writer *w, const char *key, double value) {
  json_key(w, key);
  json_double(w, value);
}

void json_kv_bool(json_writer *w, const char *key, int value) {
  json_key(w, key);
  json_bool(w, value);
}
