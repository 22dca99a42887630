/* cardgate — one program, subcommands (like git). */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardgate.h"
#include "cli.h"

typedef struct command {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} command;

static const command commands[] = {
    {"serve", cg_cli_serve, "receive, verify and answer card callbacks (Lark webhooks)"},
    {"trigger", cg_cli_trigger, "send a card click exactly as Lark would (signed, encrypted)"},
    {"send", cg_cli_send, "send a card through the Lark Open API and record it in the store"},
    {"cards", cg_cli_cards, "inspect the card store: cards list | cards show ID"},
    {"outbox", cg_cli_outbox, "late card updates: outbox list | show ID | retry ID | drop ID"},
    {"emulate", cg_cli_emulate, "run Lark (Open API + card clicks) on this machine, for tests"},
};

static void usage(FILE *f) {
  fprintf(f,
          "cardgate %s — interactive message-card callbacks for Lark/Feishu\n\n"
          "Usage: cardgate <command> [options]\n\nCommands:\n",
          cg_version());
  for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
    fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
  fprintf(f,
          "\nRun 'cardgate <command> --help' for a command's options.\n"
          "Secrets come from LARK_VERIFICATION_TOKEN, LARK_ENCRYPT_KEY (and flags).\n");
}

const char *cg_cli_argv0 = "cardgate";

int cg_cli_usage_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "cardgate %s: ", cmd);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nTry 'cardgate %s --help'.\n", cmd);
  return 2;
}

const char *cg_cli_env(const char *name) {
  const char *v = getenv(name);
  return (v && *v) ? v : NULL;
}

int main(int argc, char **argv) {
  if (argc > 0 && argv[0]) cg_cli_argv0 = argv[0];
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
    printf("cardgate %s\n", cg_version());
    return 0;
  }
  for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
    if (!strcmp(cmd, commands[i].name)) {
      optind = 0; /* full getopt reset for the subcommand */
      return commands[i].run(argc - 1, argv + 1);
    }
  }
  fprintf(stderr, "cardgate: unknown command '%s'\n\n", cmd);
  usage(stderr);
  return 2;
}
