/*
 * `stagegate restore --set DIR... -- ARGS` without Node.js: checks that the
 * given images directories are one committed set (src/checkpoint/
 * commit-record.ts and set.ts say what that means, and stay the reference),
 * then restores this host's trees at once, each through the criu swrk driver
 * (swrk-restore.c) in a process of its own (the static executable, as for one
 * tree), and exits with the worst exit code.
 *
 * Only a set that passes every check is restored here. Anything else goes to
 * the Node CLI unchanged, which checks again and says what is wrong: a record
 * that is missing, torn, edited or of a shape this file does not reproduce
 * byte for byte (the record's digest is sha256 over JavaScript's
 * JSON.stringify of it: a number that is not a safe integer, a key made of
 * digits, which JavaScript orders first, is left to JavaScript), a changed
 * image, records of different commits, no tree of this host, --force, an
 * option this file does not take, and trees whose TCP connections
 * `restore --set` must hold until every tree is back (src/criu/tcp-lock.ts).
 *
 * sha256 and the record's digest: commit-record.c.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "commit-record.h"
#include "hook.h"

#define MAX_RECORD_BYTES (16 << 20)
#define MAX_MEMBERS 65536
#define MAX_DIRS 4096
#define NOT_HERE -1 /* the Node CLI takes this command */

/* ---- one directory's record and images ---------------------------------------------------- */

typedef struct {
	const char *dir;
	json_t *record;
	const char *session, *tree, *commit, *host;
	long long attempt;
	size_t members;
	int sampled; /* page images hashed at their ends only (checksum "sampled") */
} member_t;

/* A string member of `o` of at most `max` bytes, else NULL. */
static const char *str(json_t *o, const char *key, size_t max) {
	json_t *v = json_object_get(o, key);
	return json_is_string(v) && json_string_length(v) <= max && strlen(json_string_value(v)) == json_string_length(v)
		       ? json_string_value(v)
		       : NULL;
}

/* An integral number member of `o` (JavaScript's Number.isSafeInteger), else -1. */
static int safe_int(json_t *o, const char *key, long long *out) {
	json_t *v = json_object_get(o, key);
	if (json_is_integer(v))
		*out = json_integer_value(v);
	else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
		 fabs(json_real_value(v)) <= (double)MAX_SAFE_INTEGER)
		*out = (long long)json_real_value(v);
	else
		return -1;
	return *out > MAX_SAFE_INTEGER || *out < -MAX_SAFE_INTEGER ? -1 : 0;
}

/* Reads and checks `dir`'s commit record (readRecord in commit-record.ts). */
static int read_record(member_t *m) {
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/%s", m->dir, RECORD_NAME) >= (int)sizeof(path))
		return -1;
	size_t got;
	char *text = (char *)read_small(path, MAX_RECORD_BYTES, &got);
	if (!text)
		return -1;
	json_error_t err;
	json_t *r = json_loadb(text, got, JSON_REJECT_DUPLICATES, &err);
	free(text);
	if (!json_is_object(r))
		goto bad;
	m->record = r;
	const char *format = str(r, "format", 64), *digest = str(r, "digest", 64), *checksum = str(r, "checksum", 16);
	m->session = str(r, "session", 128);
	m->tree = str(r, "tree", 128);
	m->commit = str(r, "commit", 64);
	m->host = str(r, "host", 256);
	if (!format || strcmp(format, RECORD_FORMAT) || !hook_valid_name(m->session) || !hook_valid_name(m->tree) || !m->commit ||
	    !m->host || !digest || !checksum || (strcmp(checksum, "sampled") && strcmp(checksum, "full")))
		return -1;
	m->sampled = strcmp(checksum, "sampled") == 0;
	if (safe_int(r, "attempt", &m->attempt) || m->attempt < 1 || m->attempt > 1000000)
		return -1;
	json_t *members = json_object_get(r, "members"), *files = json_object_get(r, "files"), *x;
	size_t i;
	m->members = json_array_size(members);
	if (!json_is_array(members) || m->members < 1 || m->members > MAX_MEMBERS)
		return -1;
	int mine = 0;
	json_array_foreach(members, i, x) {
		const char *tree = str(x, "tree", 128);
		if (!hook_valid_name(tree) || !str(x, "host", 256) || !str(x, "run", 256))
			return -1;
		mine |= strcmp(tree, m->tree) == 0;
	}
	if (!mine || !json_is_array(files) || json_array_size(files) > MAX_RECORD_FILES)
		return -1;
	json_array_foreach(files, i, x) {
		const char *name = str(x, "name", 256);
		long long size;
		if (!name || !covered(name) || safe_int(x, "size", &size) || !str(x, "sha256", 80))
			return -1;
	}
	char hex[65], id[35];
	if (record_digest(r, hex) || strcmp(hex, digest) || commit_id(m->session, m->attempt, members, id) ||
	    strcmp(id, m->commit))
		return -1;
	return 0;
bad:
	json_decref(r);
	return -1;
}

/* Whether an image is as committed: a regular file of its size and digest (checkFiles, hashImage). */
static int image_unchanged(const char *dir, json_t *f, int sampled_mode, unsigned char *buf /* DIGEST_CHUNK */) {
	const char *name = json_string_value(json_object_get(f, "name"));
	const char *want = json_string_value(json_object_get(f, "sha256"));
	long long size;
	safe_int(f, "size", &size);
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
		return -1;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	struct stat st;
	if (fd < 0)
		return -1;
	char got[80];
	int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == size &&
		 image_digest(fd, name, size, sampled_mode, buf, got) == 0;
	close(fd);
	return ok && strcmp(want, got) == 0 ? 0 : -1;
}

static int images_unchanged(const member_t *m, unsigned char *buf) {
	json_t *files = json_object_get(m->record, "files"), *f;
	size_t i;
	json_array_foreach(files, i, f) {
		if (image_unchanged(m->dir, f, m->sampled, buf))
			return -1;
	}
	return 0;
}

/* The members' images are hashed on every CPU at once (a tree's pages are megabytes, and
 * nothing is restored before all are checked), until one is changed. Only reads: each
 * member's record is its own. */
static int member_unchanged(void *ctx, size_t i, unsigned char *buf) { return images_unchanged((const member_t *)ctx + i, buf); }

/* 0 when every member's images are as committed. */
static int all_images_unchanged(const member_t *m, int n) { return hash_parallel((size_t)n, member_unchanged, (void *)m); }

/* A tree whose TCP connections `restore --set` would hold (no netns of its own, established streams). */
static int holds_tcp(const char *dir) {
	DIR *d = opendir(dir);
	if (!d)
		return 1;
	int netns = 0, streams = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		netns |= strncmp(e->d_name, "netns-", 6) == 0;
		streams |= strncmp(e->d_name, "tcp-stream-", 11) == 0;
	}
	closedir(d);
	return streams && !netns;
}

/* ---- the command ------------------------------------------------------------------------------ */

int set_restore(int argc, char **argv) {
	static member_t m[MAX_DIRS];
	int n = 0, any_host = 0, rest = 0;
	const char *endpoint = NULL, *attempt = NULL, *timeout = NULL;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		const char **value = NULL;
		if (strcmp(a, "--") == 0) {
			rest = i + 1;
			break;
		} else if (strcmp(a, "--set") == 0)
			continue;
		else if (strcmp(a, "--any-host") == 0)
			any_host = 1;
		else if (strcmp(a, "--endpoint") == 0)
			value = &endpoint;
		else if (strcmp(a, "--attempt") == 0)
			value = &attempt;
		else if (strcmp(a, "--timeout") == 0)
			value = &timeout;
		else if (a[0] == '-' || n == MAX_DIRS)
			return NOT_HERE; /* --force, the =value forms, what the CLI refuses */
		else
			m[n++].dir = a;
		if (value) {
			if (i + 1 >= argc || argv[i + 1][0] == '-')
				return NOT_HERE;
			*value = argv[++i];
		}
	}
	if (!rest || n == 0 || crypto_load())
		return NOT_HERE;
	if (!attempt)
		attempt = getenv("STAGEGATE_ATTEMPT");
	unsigned long attempt_n = 0, timeout_s;
	if ((attempt && hook_parse_uint(attempt, 1, 1000000, &attempt_n)) ||
	    (timeout && hook_parse_uint(timeout, 1, 86400, &timeout_s)))
		return NOT_HERE;
	char here[256] = "";
	if (gethostname(here, sizeof(here) - 1))
		return NOT_HERE;
	int mine = 0;
	for (int i = 0; i < n; i++) {
		if (read_record(&m[i]) || strcmp(m[i].commit, m[0].commit))
			return NOT_HERE;
		for (int j = 0; j < i; j++)
			if (strcmp(m[j].tree, m[i].tree) == 0)
				return NOT_HERE; /* a tree given twice */
		if (any_host || strcmp(m[i].host, here) == 0) {
			if (holds_tcp(m[i].dir))
				return NOT_HERE;
			mine++;
		}
	}
	if (mine == 0 || all_images_unchanged(m, n))
		return NOT_HERE;
	char att[16], trees[16];
	snprintf(att, sizeof(att), "%lld", attempt ? (long long)attempt_n : m[0].attempt);
	snprintf(trees, sizeof(trees), "%zu", m[0].members);
	/* the options every tree's driver gets: refused by the hook's own check? then by the CLI, once */
	setenv("STAGEGATE_SESSION", m[0].session, 1);
	setenv("STAGEGATE_TREE", m[0].tree, 1);
	setenv("STAGEGATE_TREES", trees, 1);
	setenv("STAGEGATE_ATTEMPT", att, 1);
	if (endpoint)
		setenv("STAGEGATE_ENDPOINT", endpoint, 1);
	if (timeout)
		setenv("STAGEGATE_TIMEOUT", timeout, 1);
	if (!restore_env_ok())
		return NOT_HERE;
	if (mine < n)
		fprintf(stderr, "stagegate restore: restoring the %d tree(s) dumped on %s; the other hosts restore theirs\n",
			mine, here);
	fflush(NULL);
	/* Each tree's driver is the static executable beside this one, not a fork of this
	 * process: with libcrypto and the records in it, this one's address space made every
	 * fork of a driver (its gate hooks) cost more, and the tree's restore with it. */
	char lean[PATH_MAX];
	if (hook_build_path(0, lean, sizeof(lean))) {
		fprintf(stderr, "stagegate restore: cannot find the static executable beside this one\n");
		return 2;
	}
	setenv("STAGEGATE_COMMIT", m[0].commit, 1); /* one commit: read_record checked every member's */
	int worst = 0, started = 0;
	int cap = argc - rest + 16;
	char **av = calloc((size_t)cap, sizeof(*av));
	if (!av)
		return 2;
	for (int i = 0; i < n; i++) {
		if (!any_host && strcmp(m[i].host, here))
			continue;
		/* restore --session S --tree T --trees N --attempt A -- ARGS -D DIR */
		int k = 0;
		av[k++] = lean;
		av[k++] = "restore";
		av[k++] = "--session";
		av[k++] = (char *)m[i].session;
		av[k++] = "--tree";
		av[k++] = (char *)m[i].tree;
		av[k++] = "--trees";
		av[k++] = trees;
		av[k++] = "--attempt";
		av[k++] = att;
		av[k++] = "--";
		for (int j = rest; j < argc; j++)
			av[k++] = argv[j];
		av[k++] = "-D";
		av[k++] = (char *)m[i].dir;
		av[k] = NULL;
		pid_t pid;
		int err = posix_spawn(&pid, lean, NULL, NULL, av, environ);
		if (err) {
			fprintf(stderr, "stagegate restore: cannot start the restore of tree %s: %s\n", m[i].tree,
				strerror(err));
			worst = 1;
			break;
		}
		started++;
	}
	free(av);
	for (; started > 0; started--) {
		int status;
		if (wait(&status) < 0)
			break;
		int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		if (rc > worst)
			worst = rc;
	}
	return worst;
}
