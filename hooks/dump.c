/*
 * `stagegate dump ... -- ARGS` without Node.js: runs `criu dump --action-script
 * <hook> ARGS` with the hook's environment and, once criu has exited 0 (its
 * post-dump answered COMMIT), writes the commit record into the images
 * directory. src/criu/dump.ts does the same and stays the reference; a Node.js
 * start before criu and the record's hashing in JavaScript after it made a
 * coordinated dump cost 0.2-0.8 s more than criu's own (issue #10's line).
 *
 * What this file does not take goes to the Node CLI unchanged, before
 * anything ran: --help, an option it does not know, a value the hook's own
 * check refuses, no criu or hook where they should be.
 *
 * - The hook holds the tree at pre-dump, network-lock (its own netns) and
 *   post-dump; an ABORT at post-dump makes criu unlock the network and resume
 *   the tree.
 * - When criu fails or is killed, the coordinator is told at once
 *   (dump-failed), so every other tree is rolled back now.
 * - When criu succeeds, the hook left the COMMIT verdict, which names the
 *   set's members, in a mark file: the record is written from it. Without a
 *   mark of this run (the hook could not write it) no record is written and
 *   the command fails: the set then does not count as committed, the safe
 *   side. (The Node CLI asks the coordinator instead, for a hook of another
 *   version; this file runs only with its own.)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "commit-record.h"
#include "hook.h"
#include "stagegate.pb-c.h"

#define MAX_MARK_BYTES (1 << 20)

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	hook_sayv("dump", fmt, ap);
	va_end(ap);
}

/* The value of a criu option (`-t N`, `--tree N`, `--tree=N`), the last one given (criuOption). */
static const char *criu_option(char **args, int n, const char *shrt, const char *lng) {
	const char *v = NULL;
	size_t ll = strlen(lng);
	for (int i = 0; i < n; i++) {
		const char *a = args[i];
		if ((strcmp(a, shrt) == 0 || strcmp(a, lng) == 0) && i + 1 < n)
			v = args[++i];
		else if (strncmp(a, lng, ll) == 0 && a[ll] == '=')
			v = a + ll + 1;
	}
	return v;
}

/* Whether the tree rooted at `pid` has a network namespace other than ours (criu then runs
 * network-lock): 1, 0, or -1 when it cannot tell (the hook then decides by itself). */
static int own_netns(const char *pid) {
	unsigned long p;
	char path[64];
	struct stat theirs, ours;
	if (!pid || strlen(pid) > 9 || hook_parse_uint(pid, 0, 999999999, &p))
		return -1;
	snprintf(path, sizeof(path), "/proc/%lu/ns/net", p);
	if (stat(path, &theirs) || stat("/proc/self/ns/net", &ours))
		return -1;
	return theirs.st_ino != ours.st_ino;
}

/* This run's scratch: the hook's abort note and commit mark (a private directory). */
static char g_scratch[PATH_MAX], g_note[PATH_MAX + 16], g_mark[PATH_MAX + 16];

static void scratch_remove(void) {
	if (!g_scratch[0])
		return;
	unlink(g_note);
	unlink(g_mark);
	rmdir(g_scratch);
}

/* The first line of the abort note, printed: why this tree's dump was aborted. */
static void print_abort_note(void) {
	size_t n;
	char *text = (char *)read_small(g_note, 64 << 10, &n);
	if (!text)
		return;
	text[n] = '\0';
	text[strcspn(text, "\n")] = '\0';
	if (*text)
		say("aborted at %s", text);
	free(text);
}

/* The committed set's members from the hook's COMMIT verdict (committedSet in dump.ts), if it
 * is this run's: a JSON array of {tree, host, run}, and this tree's host. NULL otherwise. */
static json_t *committed_set(const char *session, unsigned long attempt, const char *tree, const char *run,
			     const char **host) {
	size_t len;
	uint8_t *buf = read_small(g_mark, MAX_MARK_BYTES, &len);
	Stagegate__V1__Verdict *v = buf ? stagegate__v1__verdict__unpack(NULL, len, buf) : NULL;
	free(buf);
	if (!v)
		return NULL;
	json_t *members = NULL;
	int ok = v->decision == STAGEGATE__V1__DECISION__PROCEED && v->action == STAGEGATE__V1__ACTION__POST_DUMP &&
		 v->session && strcmp(v->session, session) == 0 && v->attempt == attempt && v->tree &&
		 strcmp(v->tree, tree) == 0 && (members = json_array());
	int mine = 0;
	for (size_t i = 0; ok && i < v->n_members; i++) {
		const Stagegate__V1__SetMember *m = v->members[i];
		const char *t = m->tree ? m->tree : "", *h = m->host ? m->host : "", *r = m->run ? m->run : "";
		json_t *o = json_object();
		/* json_string refuses what is not UTF-8: such a member cannot be written as JSON */
		ok = o && !json_object_set_new(o, "tree", json_string(t)) && !json_object_set_new(o, "host", json_string(h)) &&
		     !json_object_set_new(o, "run", json_string(r)) && !json_array_append_new(members, o);
		if (ok && !mine && strcmp(t, tree) == 0 && strcmp(r, run) == 0) {
			mine = 1;
			*host = json_string_value(json_object_get(o, "host"));
		}
	}
	stagegate__v1__verdict__free_unpacked(v, NULL);
	if (ok && mine)
		return members;
	json_decref(members);
	return NULL;
}

/* criu succeeded: its post-dump was answered COMMIT. Records the set in this tree's images. */
static int commit(const char *images, const char *run, int full) {
	const char *session = getenv("STAGEGATE_SESSION"), *tree = getenv("STAGEGATE_TREE"), *host = NULL;
	unsigned long attempt = 1;
	const char *a = getenv("STAGEGATE_ATTEMPT");
	if (a)
		hook_parse_uint(a, 1, 1000000, &attempt);
	json_t *members = committed_set(session, attempt, tree, run, &host);
	if (!members) {
		say("criu dumped tree %s, but the commit is not confirmed (no commit mark from the hook): no commit record written, "
		    "so this set does not count as committed",
		    tree);
		return 1;
	}
	char why[PATH_MAX + 512], id[35];
	size_t files = 0;
	record_head_t h = {.session = session, .tree = tree, .host = host, .attempt = (long long)attempt, .members = members,
			   .full = full};
	int rc = 1;
	if (crypto_load())
		say("cannot load libcrypto's sha256: no commit record written, so this set does not count as committed");
	else if (record_write(images, &h, id, &files, why, sizeof(why)))
		say("no commit record written (%s), so this set does not count as committed", why);
	else {
		say("committed tree %s of session %s attempt %lu as %s (%zu image files)", tree, session, attempt, id, files);
		rc = 0;
	}
	json_decref(members);
	return rc;
}

int dump_tree(int argc, char **argv) {
	if (getenv("STAGEGATE_NO_SWRK"))
		return hook_node_cli(argv); /* not reached: bin/stagegate sends it to Node */
	hook_need_full(argv); /* libcrypto for the record (the static build has no dlopen) */
#ifdef STAGEGATE_STATIC
	return hook_node_cli(argv); /* the dynamic build could not be run (said) */
#endif
	int full = 0;
	int first = hook_tree_options(argc, argv, &full);
	if (!first)
		return hook_node_cli(argv);
	char criu[PATH_MAX + 32], hook[PATH_MAX];
	/* criu runs the static build at every action, as `criu dump --action-script` from the CLI */
	if (hook_criu_path(criu, sizeof(criu)) || hook_build_path(0, hook, sizeof(hook)) || access(hook, X_OK) != 0)
		return hook_node_cli(argv); /* the CLI says where it looked */
	if (!getenv("STAGEGATE_ATTEMPT"))
		setenv("STAGEGATE_ATTEMPT", "1", 1);
	char **args = argv + first;
	int nargs = argc - first;

	/* this dump's identity: every hook of this criu, and this wrapper, speak as this run */
	char run[40];
	if (hook_new_run(run)) {
		say("cannot read a random uuid to name this run");
		return 1;
	}
	const char *tmp = getenv("TMPDIR");
	snprintf(g_scratch, sizeof(g_scratch), "%s/stagegate-dump-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(g_scratch)) {
		say("cannot make a private directory under %s: %s", tmp && *tmp ? tmp : "/tmp", strerror(errno));
		g_scratch[0] = '\0';
		return 1;
	}
	snprintf(g_note, sizeof(g_note), "%s/abort", g_scratch);
	snprintf(g_mark, sizeof(g_mark), "%s/committed", g_scratch);
	setenv("STAGEGATE_RUN", run, 1);
	setenv("STAGEGATE_ABORT_NOTE", g_note, 1);
	unsetenv("STAGEGATE_ABORT_NOTE_FD");
	setenv("STAGEGATE_COMMIT_MARK", g_mark, 1);
	int netns = own_netns(criu_option(args, nargs, "-t", "--tree"));
	if (netns >= 0)
		setenv("STAGEGATE_NET_LOCK", netns ? "1" : "0", 1);
	/* the directory criu writes (it resolves -D against this cwd; it says itself when it is missing) */
	const char *dir = criu_option(args, nargs, "-D", "--images-dir");
	char images[PATH_MAX];
	if (!realpath(dir ? dir : ".", images))
		snprintf(images, sizeof(images), "%s", dir ? dir : ".");

	char **av = calloc((size_t)nargs + 5, sizeof(*av)); /* and the NULL */
	if (!av) {
		scratch_remove();
		return 1;
	}
	av[0] = criu;
	av[1] = "dump";
	av[2] = "--action-script";
	av[3] = hook;
	memcpy(av + 4, args, (size_t)nargs * sizeof(*av));
	/* a daemon that restarted closes our connection under the failure report's write: not fatal */
	signal(SIGPIPE, SIG_IGN);
	posix_spawnattr_t attr;
	sigset_t def;
	sigemptyset(&def);
	sigaddset(&def, SIGPIPE); /* criu as it would be started from a shell */
	pid_t pid = -1;
	fflush(stderr);
	int err = posix_spawnattr_init(&attr);
	if (!err) {
		if (!(err = posix_spawnattr_setsigdefault(&attr, &def)) && !(err = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF)))
			err = posix_spawn(&pid, criu, NULL, &attr, av, environ);
		posix_spawnattr_destroy(&attr);
	}
	free(av);
	char why[128];
	if (err) {
		snprintf(why, sizeof(why), "cannot run criu: %s", strerror(err));
		say("%s", why);
		hook_report_dump_failure(why);
		scratch_remove();
		return 1;
	}
	hook_set_criu(pid);
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	int rc = hook_criu_exit(status, why, sizeof(why));
	if (rc != 0) {
		print_abort_note();
		hook_report_dump_failure(why);
	} else
		rc = commit(images, run, full);
	scratch_remove();
	return rc;
}
