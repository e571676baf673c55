/*
 * What the hook (stagegate-hook.c) and the `criu swrk` driver of `stagegate
 * restore` (swrk-restore.c) share. They are one executable: criu runs it with
 * no arguments as its action script; `stagegate restore` runs it as
 * `stagegate-hook restore ...`.
 */
#ifndef STAGEGATE_HOOK_H
#define STAGEGATE_HOOK_H

#include <stdarg.h>
#include <sys/types.h>

/* One action of the hook, as criu would run it: reads CRTOOLS_* and
 * STAGEGATE_* from the environment. Returns the exit code (0 proceed, 1
 * aborted, 2 misconfigured). Run it in a process of its own: it may fork a
 * guardian and keeps state for one action. */
int hook_main(void);

/* Whether the hook waits for a verdict at this criu action (else it only publishes). */
int hook_gated(const char *action);

/* For the swrk driver, in its own process: publishes an ungated stage's
 * event (read from the environment as hook_main reads it) over one IPC
 * connection kept open from call to call. 0 sent; -1 not (a gated stage, a
 * TCP endpoint, no coordinator there): the caller forks hook_main instead. */
int hook_publish(void);

/* For the swrk driver: opens that connection ahead (IPC only), so that the
 * first gate's hook inherits it too. 0 open; -1 not (the hooks connect). */
int hook_connect(void);

/* The criu the hook serves, when it is not the hook's parent. */
void hook_set_criu(pid_t criu);

/* Whether `s` is a session or tree name: 1-128 of [A-Za-z0-9._:-] (NULL is not). */
int hook_valid_name(const char *s);

/* Parses a decimal in [min, max] into *out: 0, or -1 when it is not one. */
int hook_parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out);

/* Whether STAGEGATE_* in the environment make a valid configuration (says nothing). */
int hook_config_ok(void);

/* Tells the coordinator that this run's tree failed to restore (restore-failed). */
void hook_report_failure(const char *reason);

/* Tells the coordinator that this run's tree failed to dump (dump-failed). */
void hook_report_dump_failure(const char *reason);

/* Signals every task of the tree rooted at `root`; how many were signalled, -1 on failure. */
int signal_tree(pid_t root, int sig);

/* Parent pid and start time (clock ticks since boot) of `pid`; -1 when unknown. */
int proc_stat(pid_t pid, long *ppid, unsigned long long *start);

/* The connection keeper (keeper.c): the IPC connection to the coordinator
 * that `criu`'s keeper holds, copied into this process (a descriptor,
 * close-on-exec), if there is a keeper of this user connected to the socket
 * bound at `path`; -1 otherwise. */
int keeper_take(pid_t criu, const char *path);

/* Forks a keeper for `criu` that holds a copy of `conn` (a ZMTP connection
 * past its handshake) for the later hooks of that criu; returns at once. */
void keeper_start(pid_t criu, int conn);

/* The static build (STAGEGATE_STATIC: no dynamic loader, so neither libzmq
 * nor libcrypto) runs `argv` as stagegate-hook-full beside it, the same code
 * linked dynamically, for what needs one of them (TCP endpoints, restore
 * --set); returns only when that exec failed (said in the log) or in the
 * full build itself, where there is nothing to hand over. */
void hook_need_full(char **argv);

/* The path of this program's static build (`full` 0) or its dynamic one (1),
 * from /proc/self/exe and the builds' naming rule: 0, or -1 when it does not fit. */
int hook_build_path(int full, char *out, size_t cap);

/* `stagegate restore` through `criu swrk` (swrk-restore.c); argv[1] is "restore". */
int swrk_restore(int argc, char **argv);

/* `stagegate dump` without Node.js (dump.c); argv[1] is "dump". */
int dump_tree(int argc, char **argv);

/* What the C wrappers of `stagegate restore` and `stagegate dump` share (swrk-restore.c). */

/* The checkout root: this executable is <root>/build/stagegate-hook(-full). 0, or -1. */
int hook_project_root(char *out, size_t cap);

/* Hands the whole command to the Node CLI (STAGEGATE_NO_SWRK keeps it from
 * coming back here); returns only when that exec failed (said), with 2. */
int hook_node_cli(char **argv);

/* Applies a wrapper's options (argv[2] on, up to "--") and their defaults
 * (src/cli/command.ts treeOf, runOptions) to the environment the hook reads;
 * --full-checksum only where `full_checksum` is given. Returns the index of
 * the first criu argument (after "--"); 0 when the command is not one this
 * path takes (the Node CLI parses it and says why). */
int hook_tree_options(int argc, char **argv, int *full_checksum);

/* The criu a wrapper runs: STAGEGATE_CRIU, else the checkout's .criu/bin/criu
 * (src/paths.ts criuPath). 0 when it is executable, else -1. */
int hook_criu_path(char *out, size_t cap);

/* A new run id, "sg-" and a random uuid: 0, or -1 when none could be read. */
int hook_new_run(char run[40]);

/* "stagegate COMMAND: " and the message as one line on stderr, in one write:
 * the trees of a job (restore --set's drivers, a job's dumps) share a stderr. */
void hook_sayv(const char *command, const char *fmt, va_list ap);

/* criu's exit in words, and the exit code a wrapper passes on (128 + signal when killed). */
int hook_criu_exit(int status, char *why, size_t cap);

/* Completes STAGEGATE_* in the environment with the defaults of `stagegate
 * restore` (launcher rank, timeout, endpoint); whether they are then valid. */
int restore_env_ok(void);

/* `stagegate restore --set` (set-restore.c): the exit code, or -1 when the
 * Node CLI must take the command (it checks again and says why). */
int set_restore(int argc, char **argv);

#endif
