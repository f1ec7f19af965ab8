/* cli.h: what the `flashjit` command's files share: the subcommands, the exit codes, and the option
 * parser every subcommand uses so that a bad flag is always reported the same way: one line on stderr
 * that names the flag and the value, and exit code 2. */
#ifndef FJ_BENCH_CLI_H
#define FJ_BENCH_CLI_H
#include <stdint.h>
#include <stdio.h>

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAILURE 1  /* the request was fine but could not be carried out */
#define CLI_EXIT_USAGE 2    /* bad flags or an impossible problem */

/* Subcommands: argv[0] is the subcommand's name. They return an exit code. */
int cmd_info(int argc, char **argv);
int cmd_bench(int argc, char **argv);
void cmd_info_help(FILE *out);
void cmd_bench_help(FILE *out);

typedef enum cli_option_kind {
  CLI_FLAG,    /* no value; *(int *)value = 1 */
  CLI_INT,     /* an integer in [min, max]; *(int64_t *)value */
  CLI_STRING,  /* any text; *(const char **)value points into argv */
  CLI_FLOAT,   /* a finite decimal number in [min, max]; *(float *)value */
} cli_option_kind;

typedef struct cli_option {
  const char *name;  /* with the dashes: "--batch" */
  cli_option_kind kind;
  void *value;
  int64_t min, max;  /* CLI_INT and CLI_FLOAT only */
  int *seen;         /* (optional) set to 1 when the option is given */
} cli_option;

typedef enum cli_parse_result { CLI_PARSE_OK = 0, CLI_PARSE_HELP = 1, CLI_PARSE_ERROR = 2 } cli_parse_result;

/* Parses argv[1..argc) against options ("--name value" or "--name=value"; the last occurrence wins).
 * "--help"/"-h" gives CLI_PARSE_HELP. On a bad flag, a missing or malformed value, or a stray argument
 * it prints the one-line error (via cli_error) and gives CLI_PARSE_ERROR. */
cli_parse_result cli_parse(const char *command, int argc, char **argv, const cli_option *options,
                           int count);

/* Strict decimal integer: optional sign, digits, nothing else; 0 and *out on success, else -1 and
 * *why ("not an integer", "out of range"). Bounds are checked by the caller. */
int cli_parse_int64(const char *text, int64_t *out, const char **why);
/* A decimal number that is a finite float ("50", "0.5", "1e3"); 0 and *out, else -1 and *why ("not a
 * finite number"). Bounds are checked by the caller. */
int cli_parse_float(const char *text, float *out, const char **why);

/* Prints "flashjit <command>: <message>\n" to stderr as exactly one line (newlines in the message,
 * which library and LLVM messages may carry, become spaces). */
void cli_error(const char *command, const char *format, ...) __attribute__((format(printf, 2, 3)));
#endif
