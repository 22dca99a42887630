/* The `cardgate` program: one binary, one file per subcommand. Uses only the
 * public API (include/cardgate.h) plus src/common/. */
#ifndef CG_CLI_H
#define CG_CLI_H

/* Each returns the process exit code: 0 success, 1 failure (the operation
 * failed or, for trigger, the answer was not 2xx), 2 usage error (a message
 * saying what was wrong and what to do has been printed to stderr). argv[0]
 * is the subcommand name; getopt_long state is reset by the caller. */
int cg_cli_serve(int argc, char **argv);
int cg_cli_trigger(int argc, char **argv);
int cg_cli_cards(int argc, char **argv);
int cg_cli_outbox(int argc, char **argv);
int cg_cli_emulate(int argc, char **argv);
int cg_cli_send(int argc, char **argv);

/* Prints "cardgate <cmd>: <msg>\nTry 'cardgate <cmd> --help'.\n" to stderr
 * and returns 2. */
int cg_cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* How the program was invoked (argv[0] of main), for printed command lines. */
extern const char *cg_cli_argv0;

/* Value of the environment variable, or NULL when unset or empty. */
const char *cg_cli_env(const char *name);

#endif
