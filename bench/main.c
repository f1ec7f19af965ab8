/* main.c: the `flashjit` command: dispatches to a subcommand (info, bench, tune, cache), prints help
 * and the version. Exit codes are the same everywhere: 0 done, 1 could not be done, 2 bad usage; every
 * error is one line on stderr. */
#include <stdio.h>
#include <string.h>

#include "bench/cli.h"
#include "bench/presets.h"
#include "flashjit.h"
#include "jit/jit.h"
#include "tuner/tuner.h"

typedef struct cli_command {
  const char *name;
  const char *summary;
  int (*run)(int argc, char **argv);
  void (*help)(FILE *out);
} cli_command;

static const cli_command cli_commands[] = {
    {"info", "list devices, the cache folder, LLVM, the host CPU and its measured peak", cmd_info,
     cmd_info_help},
    {"bench", "time the attention forward on a device for one shape, optionally checked", cmd_bench,
     cmd_bench_help},
    {"tune", "search kernel configs for problems on a device and keep the winners", cmd_tune, cmd_tune_help},
    {"cache", "the tuning database and compiled kernels: list, show, export, import, prune, clear, warm",
     cmd_cache, cmd_cache_help},
};
#define CLI_COMMAND_COUNT ((int)(sizeof cli_commands / sizeof cli_commands[0]))

static const cli_command *cli_find_command(const char *name) {
  for (int i = 0; i < CLI_COMMAND_COUNT; i++)
    if (strcmp(cli_commands[i].name, name) == 0) return &cli_commands[i];
  return NULL;
}

static void cli_usage(FILE *out) {
  fprintf(out,
          "flashjit %s: JIT-compiled flash attention\n"
          "\n"
          "usage: flashjit <command> [options]\n"
          "\n"
          "commands:\n",
          fj_version_string());
  for (int i = 0; i < CLI_COMMAND_COUNT; i++)
    fprintf(out, "  %-8s %s\n", cli_commands[i].name, cli_commands[i].summary);
  fprintf(out,
          "  help     help on a command: flashjit help bench\n"
          "\n"
          "options:\n"
          "  --help, -h   this text\n"
          "  --version    the version of flashjit and of LLVM\n"
          "\n"
          "environment:\n"
          "  FLASHJIT_DEVICE     the device when no --device is given (\"cpu\", \"cuda:0\"); else auto\n"
          "  FLASHJIT_CACHE_DIR  compiled kernels and tuning results (default ~/.cache/flashjit)\n"
          "  FLASHJIT_LOG        error, warn (default), info or debug\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    cli_error(NULL, "no command given (try flashjit --help)");
    return CLI_EXIT_USAGE;
  }
  const char *name = argv[1];
  /* The tuner's exec'd children (tuner/tune_isolate.c): hidden, not a command anyone types. */
  if (strcmp(name, TUNE_CHILD_COMMAND) == 0) return tune_child_exec_main(argc, argv);
  if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
    cli_usage(stdout);
    return CLI_EXIT_OK;
  }
  if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
    if (argc > 2) {
      cli_error(NULL, "--version: unexpected argument '%s'", argv[2]);
      return CLI_EXIT_USAGE;
    }
    printf("flashjit %s (LLVM %s)\n", fj_version_string(), jit_llvm_version());
    return CLI_EXIT_OK;
  }
  if (strcmp(name, "help") == 0) {
    if (argc == 2) {
      cli_usage(stdout);
      return CLI_EXIT_OK;
    }
    const cli_command *command = cli_find_command(argv[2]);
    if (command == NULL || argc > 3) {
      cli_error("help", "unknown command '%s' (commands: info, bench, tune, cache)", argv[argc > 3 ? 3 : 2]);
      return CLI_EXIT_USAGE;
    }
    command->help(stdout);
    return CLI_EXIT_OK;
  }
  const cli_command *command = cli_find_command(name);
  if (command == NULL) {
    cli_error(NULL, "unknown command '%s' (try flashjit --help)", name);
    return CLI_EXIT_USAGE;
  }
  return command->run(argc - 1, argv + 1);
}
