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
 * sha256 comes from OpenSSL's libcrypto, loaded here at run time as the hook
 * loads libzmq: the action script, the same executable, must not pay for it.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hook.h"

#define RECORD_NAME "stagegate-commit.json"
#define RECORD_FORMAT "stagegate-commit/1"
#define MAX_RECORD_BYTES (16 << 20)
#define MAX_RECORD_FILES 100000
#define MAX_MEMBERS 65536
#define MAX_DIRS 4096
#define SAMPLE_BYTES (1 << 20)
#define MAX_SAFE_INTEGER 9007199254740991LL
#define NOT_HERE -1 /* the Node CLI takes this command */

/* ---- sha256 (libcrypto's EVP interface, resolved at run time) ---------------------------- */

static struct {
	void *(*ctx_new)(void);
	void (*ctx_free)(void *);
	const void *(*sha256)(void);
	int (*init)(void *, const void *, void *);
	int (*update)(void *, const void *, size_t);
	int (*final)(void *, unsigned char *, unsigned *);
} evp;

#ifdef STAGEGATE_STATIC
static int crypto_load(void) { return -1; } /* not reached: swrk_restore hands --set to stagegate-hook-full */
#else
static int crypto_load(void) {
	void *h = dlopen("libcrypto.so.3", RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return -1;
	/* sha256 needs no configuration: not reading openssl.cnf saves its parse on every restore */
	int (*init_crypto)(uint64_t, const void *);
	*(void **)&init_crypto = dlsym(h, "OPENSSL_init_crypto");
	if (init_crypto)
		init_crypto(0x00000080L /* OPENSSL_INIT_NO_LOAD_CONFIG */, NULL);
	*(void **)&evp.ctx_new = dlsym(h, "EVP_MD_CTX_new");
	*(void **)&evp.ctx_free = dlsym(h, "EVP_MD_CTX_free");
	*(void **)&evp.sha256 = dlsym(h, "EVP_sha256");
	*(void **)&evp.init = dlsym(h, "EVP_DigestInit_ex");
	*(void **)&evp.update = dlsym(h, "EVP_DigestUpdate");
	*(void **)&evp.final = dlsym(h, "EVP_DigestFinal_ex");
	return evp.ctx_new && evp.ctx_free && evp.sha256 && evp.init && evp.update && evp.final ? 0 : -1;
}
#endif

static void *sha_begin(void) {
	void *c = evp.ctx_new();
	if (c && evp.init(c, evp.sha256(), NULL) != 1) {
		evp.ctx_free(c);
		return NULL;
	}
	return c;
}

/* Ends `c` and writes its digest as 64 hex digits. */
static int sha_end(void *c, char hex[65]) {
	unsigned char md[32];
	unsigned n = 0;
	int ok = evp.final(c, md, &n) == 1 && n == 32;
	evp.ctx_free(c);
	for (unsigned i = 0; ok && i < 32; i++)
		sprintf(hex + 2 * i, "%02x", md[i]);
	return ok ? 0 : -1;
}

/* ---- the record's digest: JSON.stringify of it, byte for byte ---------------------------- */

typedef struct {
	void *sha;
	size_t n;
	unsigned char buf[16384];
} emit_t;

static void put(emit_t *e, const void *p, size_t len) {
	if (e->n + len > sizeof(e->buf)) {
		evp.update(e->sha, e->buf, e->n);
		e->n = 0;
		if (len > sizeof(e->buf)) {
			evp.update(e->sha, p, len);
			return;
		}
	}
	memcpy(e->buf + e->n, p, len);
	e->n += len;
}

static void puts_(emit_t *e, const char *s) { put(e, s, strlen(s)); }

/* A string as JSON.stringify writes it (jansson has checked it is UTF-8 without NUL or lone surrogates). */
static void put_string(emit_t *e, const char *s, size_t len) {
	put(e, "\"", 1);
	size_t run = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		const char *esc = NULL;
		char u[8];
		switch (c) {
		case '"': esc = "\\\""; break;
		case '\\': esc = "\\\\"; break;
		case '\b': esc = "\\b"; break;
		case '\f': esc = "\\f"; break;
		case '\n': esc = "\\n"; break;
		case '\r': esc = "\\r"; break;
		case '\t': esc = "\\t"; break;
		default:
			if (c < 0x20) {
				snprintf(u, sizeof(u), "\\u%04x", c);
				esc = u;
			}
		}
		if (!esc)
			continue;
		put(e, s + run, i - run);
		puts_(e, esc);
		run = i + 1;
	}
	put(e, s + run, len - run);
	put(e, "\"", 1);
}

/* A key JavaScript would not keep in its place: array indices come first in its objects. */
static int reordered_key(const char *k) {
	return (*k && strspn(k, "0123456789") == strlen(k)) || strcmp(k, "__proto__") == 0;
}

static int put_value(emit_t *e, json_t *v, int depth) {
	char num[32];
	if (depth > 16)
		return -1;
	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		const char *k;
		json_t *x;
		int first = 1;
		put(e, "{", 1);
		json_object_foreach(v, k, x) {
			if (reordered_key(k))
				return -1;
			if (!first)
				put(e, ",", 1);
			first = 0;
			put_string(e, k, strlen(k));
			put(e, ":", 1);
			if (put_value(e, x, depth + 1))
				return -1;
		}
		put(e, "}", 1);
		return 0;
	}
	case JSON_ARRAY: {
		size_t i;
		json_t *x;
		put(e, "[", 1);
		json_array_foreach(v, i, x) {
			if (i)
				put(e, ",", 1);
			if (put_value(e, x, depth + 1))
				return -1;
		}
		put(e, "]", 1);
		return 0;
	}
	case JSON_STRING:
		put_string(e, json_string_value(v), json_string_length(v));
		return 0;
	case JSON_INTEGER: {
		json_int_t i = json_integer_value(v);
		if (i > MAX_SAFE_INTEGER || i < -MAX_SAFE_INTEGER)
			return -1; /* JavaScript would round it */
		snprintf(num, sizeof(num), "%lld", (long long)i);
		puts_(e, num);
		return 0;
	}
	case JSON_REAL: {
		double d = json_real_value(v);
		if (!isfinite(d) || d != floor(d) || fabs(d) > (double)MAX_SAFE_INTEGER)
			return -1; /* JavaScript's shortest round-trip form is not reproduced here */
		snprintf(num, sizeof(num), "%.0f", d == 0 ? 0.0 : d);
		puts_(e, num);
		return 0;
	}
	case JSON_TRUE: puts_(e, "true"); return 0;
	case JSON_FALSE: puts_(e, "false"); return 0;
	case JSON_NULL: puts_(e, "null"); return 0;
	}
	return -1;
}

/* sha256 hex of JSON.stringify(record without its "digest"). */
static int record_digest(json_t *r, char hex[65]) {
	static emit_t e;
	e.n = 0;
	if (!(e.sha = sha_begin()))
		return -1;
	const char *k;
	json_t *x;
	int first = 1, bad = 0;
	put(&e, "{", 1);
	json_object_foreach(r, k, x) {
		if (strcmp(k, "digest") == 0)
			continue;
		if (reordered_key(k)) {
			bad = 1;
			break;
		}
		if (!first)
			put(&e, ",", 1);
		first = 0;
		put_string(&e, k, strlen(k));
		put(&e, ":", 1);
		if (put_value(&e, x, 1)) {
			bad = 1;
			break;
		}
	}
	put(&e, "}", 1);
	evp.update(e.sha, e.buf, e.n);
	if (sha_end(e.sha, hex))
		return -1;
	return bad ? -1 : 0;
}

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

static int covered(const char *name) {
	size_t n = strlen(name);
	return name[0] != '.' && !strchr(name, '/') &&
	       ((n > 4 && strcmp(name + n - 4, ".img") == 0) || strcmp(name, "stats-dump") == 0);
}

static int is_pages(const char *name) {
	const char *p = name + 6;
	size_t digits = strspn(p, "0123456789");
	return strncmp(name, "pages-", 6) == 0 && digits > 0 && strcmp(p + digits, ".img") == 0;
}

static int cmp_tree(const void *a, const void *b) {
	return strcmp(json_string_value(json_object_get(*(json_t *const *)a, "tree")),
		      json_string_value(json_object_get(*(json_t *const *)b, "tree")));
}

/* The set's commit id from its session, attempt and members (commitId in commit-record.ts). */
static int commit_id(const char *session, long long attempt, json_t *members, char out[35]) {
	size_t n = json_array_size(members);
	json_t **sorted = malloc(n * sizeof(*sorted));
	void *c = sorted ? sha_begin() : NULL;
	if (!c) {
		free(sorted);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		sorted[i] = json_array_get(members, i);
	qsort(sorted, n, sizeof(*sorted), cmp_tree);
	char head[64];
	int len = snprintf(head, sizeof(head), "%lld", attempt);
	evp.update(c, "stagegate commit v1", 20);
	evp.update(c, session, strlen(session) + 1);
	evp.update(c, head, (size_t)len + 1);
	int dup = 0;
	for (size_t i = 0; i < n; i++) {
		if (i && cmp_tree(&sorted[i - 1], &sorted[i]) == 0)
			dup = 1; /* JavaScript's sort would order them by chance */
		for (const char *const *k = (const char *const[]){"tree", "host", "run", NULL}; *k; k++) {
			const char *s = json_string_value(json_object_get(sorted[i], *k));
			evp.update(c, s, strlen(s) + 1);
		}
	}
	free(sorted);
	char hex[65];
	if (sha_end(c, hex) || dup)
		return -1;
	snprintf(out, 35, "c-%.32s", hex);
	return 0;
}

/* Reads and checks `dir`'s commit record (readRecord in commit-record.ts). */
static int read_record(member_t *m) {
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/%s", m->dir, RECORD_NAME) >= (int)sizeof(path))
		return -1;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	struct stat st;
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > MAX_RECORD_BYTES) {
		close(fd);
		return -1;
	}
	char *text = malloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (text && got < (size_t)st.st_size) {
		ssize_t r = read(fd, text + got, (size_t)st.st_size - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	if (!text || got != (size_t)st.st_size) {
		free(text);
		return -1;
	}
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
static int image_unchanged(const char *dir, json_t *f, int sampled_mode, unsigned char *buf /* SAMPLE_BYTES */) {
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
	int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == size;
	void *c = ok ? sha_begin() : NULL;
	if (!c) {
		close(fd);
		return -1;
	}
	int sampled = sampled_mode && is_pages(name) && size > 2LL * SAMPLE_BYTES;
	long long ranges[2][2] = {{0, sampled ? SAMPLE_BYTES : size}, {size - SAMPLE_BYTES, SAMPLE_BYTES}};
	if (sampled) {
		char head[48];
		int n = snprintf(head, sizeof(head), "size %lld", size);
		evp.update(c, head, (size_t)n + 1);
	}
	for (int k = 0; ok && k < (sampled ? 2 : 1); k++) {
		for (long long off = 0; ok && off < ranges[k][1];) {
			size_t want_n = (size_t)(ranges[k][1] - off < SAMPLE_BYTES ? ranges[k][1] - off : SAMPLE_BYTES);
			ssize_t got = pread(fd, buf, want_n, ranges[k][0] + off);
			if (got <= 0)
				ok = 0;
			else {
				evp.update(c, buf, (size_t)got);
				off += got;
			}
		}
	}
	close(fd);
	char hex[65], expected[80];
	if (sha_end(c, hex) || !ok)
		return -1;
	snprintf(expected, sizeof(expected), "%s%s", sampled ? "sampled:" : "", hex);
	return strcmp(want, expected) == 0 ? 0 : -1;
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
 * nothing is restored before all are checked); each thread takes the next member until
 * one is changed. Only reads: each member's record is its own. */
typedef struct {
	const member_t *m;
	int n, next, changed;
} check_t;

static void *check_members(void *arg) {
	check_t *c = arg;
	unsigned char *buf = malloc(SAMPLE_BYTES);
	for (int i; buf && !__atomic_load_n(&c->changed, __ATOMIC_RELAXED) &&
		    (i = __atomic_fetch_add(&c->next, 1, __ATOMIC_RELAXED)) < c->n;)
		if (images_unchanged(&c->m[i], buf))
			__atomic_store_n(&c->changed, 1, __ATOMIC_RELAXED);
	if (!buf)
		__atomic_store_n(&c->changed, 1, __ATOMIC_RELAXED);
	free(buf);
	return NULL;
}

/* 0 when every member's images are as committed. */
static int all_images_unchanged(const member_t *m, int n) {
	check_t c = {m, n, 0, 0};
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int threads = (int)(cpus < 1 ? 1 : cpus > 16 ? 16 : cpus);
	if (threads > n)
		threads = n;
	pthread_t t[16];
	int started = 0;
	while (started < threads - 1 && pthread_create(&t[started], NULL, check_members, &c) == 0)
		started++;
	check_members(&c); /* this thread too */
	while (started > 0)
		pthread_join(t[--started], NULL);
	return c.changed ? -1 : 0;
}

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
