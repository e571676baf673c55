/*
 * The commit record in C (src/checkpoint/commit-record.ts says what it is and
 * stays the reference): sha256, the record's digest over JSON.stringify of it
 * byte for byte, the set's commit id, an image's digest, and writing a
 * record durably. `stagegate restore --set` (set-restore.c) reads records with
 * it, `stagegate dump` (dump.c) writes them.
 *
 * sha256 comes from OpenSSL's libcrypto, loaded at run time as the hook loads
 * libzmq: the action script, the same executable, must not pay for it. Only
 * the dynamic build (stagegate-hook-full) has it.
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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "commit-record.h"

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
int crypto_load(void) { return -1; } /* not reached: restore --set and dump run as stagegate-hook-full */
#else
int crypto_load(void) {
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

void *sha_begin(void) {
	void *c = evp.ctx_new();
	if (c && evp.init(c, evp.sha256(), NULL) != 1) {
		evp.ctx_free(c);
		return NULL;
	}
	return c;
}

/* Ends `c` and writes its digest as 64 hex digits. */
int sha_end(void *c, char hex[65]) {
	unsigned char md[32];
	unsigned n = 0;
	int ok = evp.final(c, md, &n) == 1 && n == 32;
	evp.ctx_free(c);
	for (unsigned i = 0; ok && i < 32; i++)
		sprintf(hex + 2 * i, "%02x", md[i]);
	return ok ? 0 : -1;
}

void sha_update(void *c, const void *p, size_t n) { evp.update(c, p, n); }

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
int record_digest(json_t *r, char hex[65]) {
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
int covered(const char *name) {
	size_t n = strlen(name);
	return name[0] != '.' && !strchr(name, '/') &&
	       ((n > 4 && strcmp(name + n - 4, ".img") == 0) || strcmp(name, "stats-dump") == 0);
}

int is_pages(const char *name) {
	const char *p = name + 6;
	size_t digits = strspn(p, "0123456789");
	return strncmp(name, "pages-", 6) == 0 && digits > 0 && strcmp(p + digits, ".img") == 0;
}

static int cmp_tree(const void *a, const void *b) {
	return strcmp(json_string_value(json_object_get(*(json_t *const *)a, "tree")),
		      json_string_value(json_object_get(*(json_t *const *)b, "tree")));
}

/* The set's commit id from its session, attempt and members (commitId in commit-record.ts). */
int commit_id(const char *session, long long attempt, json_t *members, char out[35]) {
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

/* ---- small files ---------------------------------------------------------------------------- */

uint8_t *read_small(const char *path, size_t max, size_t *len) {
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	struct stat st;
	if (fd < 0)
		return NULL;
	uint8_t *buf = NULL;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size <= max &&
	    (buf = malloc((size_t)st.st_size + 1))) {
		size_t got = 0;
		while (got < (size_t)st.st_size) {
			ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				break;
			got += (size_t)r;
		}
		if (got != (size_t)st.st_size) {
			free(buf);
			buf = NULL;
		}
		*len = got;
	}
	close(fd);
	return buf;
}

/* ---- an image's digest ------------------------------------------------------------------------ */

int image_digest(int fd, const char *name, long long size, int sampled_mode, unsigned char *buf, char out[80]) {
	void *c = sha_begin();
	if (!c)
		return -1;
	int sampled = sampled_mode && is_pages(name) && size > 2LL * SAMPLE_BYTES, ok = 1;
	long long ranges[2][2] = {{0, sampled ? SAMPLE_BYTES : size}, {size - SAMPLE_BYTES, SAMPLE_BYTES}};
	if (sampled) {
		char head[48];
		int n = snprintf(head, sizeof(head), "size %lld", size);
		evp.update(c, head, (size_t)n + 1); /* with its NUL, as `size ${size}\0` */
	}
	for (int k = 0; ok && k < (sampled ? 2 : 1); k++) {
		for (long long off = 0; ok && off < ranges[k][1];) {
			size_t want = (size_t)(ranges[k][1] - off < DIGEST_CHUNK ? ranges[k][1] - off : DIGEST_CHUNK);
			ssize_t got = pread(fd, buf, want, ranges[k][0] + off);
			if (got <= 0)
				ok = 0;
			else {
				evp.update(c, buf, (size_t)got);
				off += got;
			}
		}
	}
	char hex[65];
	if (sha_end(c, hex) || !ok)
		return -1;
	snprintf(out, 80, "%s%s", sampled ? "sampled:" : "", hex);
	return 0;
}

/* ---- writing a record ------------------------------------------------------------------------- */

typedef struct {
	char name[256];
	long long size;
	ino_t ino;
	char sha256[80];
} image_t;

/* The images being recorded, and why the first that failed did. */
typedef struct {
	int dirfd, full, reported;
	image_t *img;
	char why[512];
} digest_job_t;

static int image_failed(digest_job_t *j, const image_t *im, const char *reason) {
	if (!__atomic_exchange_n(&j->reported, 1, __ATOMIC_ACQ_REL))
		snprintf(j->why, sizeof(j->why), "%s: %s", im->name, reason);
	return -1;
}

/* One image: opened without following a symlink, a regular file, hashed; its writeback is
 * started (not waited for) so that the fsync pass after finds it on its way to the disk. */
static int digest_one(void *ctx, size_t i, unsigned char *buf) {
	digest_job_t *j = ctx;
	image_t *im = &j->img[i];
	int fd = openat(j->dirfd, im->name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	struct stat st;
	if (fd < 0)
		return image_failed(j, im, errno == ELOOP ? "a symlink (not followed)" : strerror(errno));
	int rc = 0;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode))
		rc = image_failed(j, im, "not a regular file");
	else if (im->size = st.st_size, im->ino = st.st_ino, image_digest(fd, im->name, im->size, !j->full, buf, im->sha256))
		rc = image_failed(j, im, "shorter than its size while hashing, or unreadable");
	else
		sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE); /* a hint: the fsync below is what counts */
	close(fd);
	return rc;
}

/* hash_parallel's threads: each takes the next item until none is left or one failed. */
typedef struct {
	size_t n, next;
	int failed;
	int (*each)(void *ctx, size_t i, unsigned char *buf);
	void *ctx;
} pool_t;

static void *pool_work(void *arg) {
	pool_t *p = arg;
	unsigned char *buf = malloc(DIGEST_CHUNK);
	for (size_t i; buf && !__atomic_load_n(&p->failed, __ATOMIC_RELAXED) &&
		       (i = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED)) < p->n;)
		if (p->each(p->ctx, i, buf))
			__atomic_store_n(&p->failed, 1, __ATOMIC_RELAXED);
	if (!buf)
		__atomic_store_n(&p->failed, 1, __ATOMIC_RELAXED);
	free(buf);
	return NULL;
}

int hash_parallel(size_t n, int (*each)(void *ctx, size_t i, unsigned char *buf), void *ctx) {
	pool_t p = {.n = n, .each = each, .ctx = ctx};
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t threads = cpus < 1 ? 1 : cpus > 16 ? 16 : (size_t)cpus;
	if (threads > n)
		threads = n;
	pthread_t t[16];
	size_t started = 0;
	while (started + 1 < threads && pthread_create(&t[started], NULL, pool_work, &p) == 0)
		started++;
	pool_work(&p); /* this thread too */
	while (started > 0)
		pthread_join(t[--started], NULL);
	return p.failed ? -1 : 0;
}

static int cmp_image(const void *a, const void *b) { return strcmp(((const image_t *)a)->name, ((const image_t *)b)->name); }

/* The covered images of `dirfd`, sorted by name (digestDir's readdir, filter and sort). */
static image_t *list_images(int dirfd, size_t *n, char *why, size_t cap) {
	int dfd = dup(dirfd);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	if (!d) {
		if (dfd >= 0)
			close(dfd);
		snprintf(why, cap, "cannot list it: %s", strerror(errno));
		return NULL;
	}
	image_t *img = NULL;
	size_t len = 0, room = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!covered(e->d_name))
			continue;
		if (strlen(e->d_name) >= sizeof(img->name) || len == MAX_RECORD_FILES) {
			snprintf(why, cap, "%s", len == MAX_RECORD_FILES ? "more image files than a record may list" : "an image name too long");
			goto fail;
		}
		if (len == room) {
			room = room ? 2 * room : 64;
			image_t *more = realloc(img, room * sizeof(*img));
			if (!more) {
				snprintf(why, cap, "out of memory");
				goto fail;
			}
			img = more;
		}
		memset(&img[len], 0, sizeof(*img));
		snprintf(img[len].name, sizeof(img[len].name), "%s", e->d_name);
		len++;
	}
	closedir(d);
	if (len == 0) {
		snprintf(why, cap, "no CRIU images");
		free(img);
		return NULL;
	}
	qsort(img, len, sizeof(*img), cmp_image);
	*n = len;
	return img;
fail:
	closedir(d);
	free(img);
	return NULL;
}

/* Every image fsync'd, one after the other: the writeback each was given while it was hashed
 * is under way, so the first waits for the disk and the rest mostly find their data there.
 * (16 threads at once, as writeRecord's fsyncs, and one syncfs measured the same.) */
static int fsync_all(int dirfd, image_t *img, size_t n, char *why, size_t cap) {
	for (size_t i = 0; i < n; i++) {
		int fd = openat(dirfd, img[i].name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		struct stat st;
		int replaced = 0, ok = fd >= 0 && fstat(fd, &st) == 0 && !(replaced = st.st_ino != img[i].ino) && fsync(fd) == 0;
		int e = errno;
		if (fd >= 0)
			close(fd);
		if (!ok) {
			snprintf(why, cap, "%s: %s", img[i].name, replaced ? "replaced while it was recorded" : strerror(e));
			return -1;
		}
	}
	return 0;
}

/* 0 when every image was digested and is on disk; else why the first that failed did. */
static int digest_all(int dirfd, int full, image_t *img, size_t n, char *why, size_t cap) {
	digest_job_t j = {.dirfd = dirfd, .full = full, .img = img};
	if (!hash_parallel(n, digest_one, &j))
		return fsync_all(dirfd, img, n, why, cap);
	snprintf(why, cap, "%s", j.reported ? j.why : "out of memory");
	return -1;
}

/* committedAt: new Date().toISOString() */
static void iso_now(char out[32]) {
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 32 - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* `text` into `dir` as the record: a temporary name, fsync'd, renamed into place. */
static int put_record(int dirfd, const char *text, char *why, size_t cap) {
	char tmp[64];
	snprintf(tmp, sizeof(tmp), "." RECORD_NAME ".%d.tmp", (int)getpid());
	int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0) {
		snprintf(why, cap, "cannot create %s: %s", tmp, strerror(errno));
		return -1;
	}
	size_t len = strlen(text), done = 0;
	while (done < len) {
		ssize_t w = write(fd, text + done, len - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		done += (size_t)w;
	}
	int ok = done == len && fsync(fd) == 0;
	if (!ok)
		snprintf(why, cap, "cannot write %s: %s", tmp, strerror(errno ? errno : EIO));
	if (close(fd) && ok) {
		ok = 0;
		snprintf(why, cap, "cannot write %s: %s", tmp, strerror(errno));
	}
	if (ok && renameat(dirfd, tmp, dirfd, RECORD_NAME)) {
		ok = 0;
		snprintf(why, cap, "cannot rename %s into place: %s", tmp, strerror(errno));
	}
	if (!ok)
		unlinkat(dirfd, tmp, 0);
	return ok ? 0 : -1;
}

int record_write(const char *dir, const record_head_t *h, char commit[35], size_t *files, char *why, size_t cap) {
	int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		snprintf(why, cap, "%s: %s", dir, strerror(errno));
		return -1;
	}
	size_t n = 0;
	char err[512] = "";
	image_t *img = list_images(dirfd, &n, err, sizeof(err));
	json_t *r = NULL;
	char *text = NULL;
	int rc = -1;
	if (!img || digest_all(dirfd, h->full, img, n, err, sizeof(err)))
		goto out;
	if (commit_id(h->session, h->attempt, h->members, commit)) {
		snprintf(err, sizeof(err), "cannot derive the commit id from the members");
		goto out;
	}
	char at[32];
	iso_now(at);
	/* the key order of writeRecord's object: the digest is over JSON.stringify of it */
	r = json_object();
	json_t *list = json_array();
	int bad = !r || !list;
	bad |= json_object_set_new(r, "format", json_string(RECORD_FORMAT));
	bad |= json_object_set_new(r, "session", json_string(h->session));
	bad |= json_object_set_new(r, "attempt", json_integer(h->attempt));
	bad |= json_object_set_new(r, "commit", json_string(commit));
	bad |= json_object_set_new(r, "tree", json_string(h->tree));
	bad |= json_object_set_new(r, "host", json_string(h->host));
	bad |= json_object_set(r, "members", h->members);
	bad |= json_object_set_new(r, "checksum", json_string(h->full ? "full" : "sampled"));
	bad |= json_object_set_new(r, "committedAt", json_string(at));
	for (size_t i = 0; !bad && i < n; i++) {
		json_t *f = json_object();
		json_t *name = json_string(img[i].name); /* NULL for a name that is not UTF-8 */
		bad |= !f || !name;
		if (!bad) {
			bad |= json_object_set_new(f, "name", name);
			bad |= json_object_set_new(f, "size", json_integer(img[i].size));
			bad |= json_object_set_new(f, "sha256", json_string(img[i].sha256));
			bad |= json_array_append_new(list, f);
		} else {
			json_decref(f);
			json_decref(name);
		}
	}
	bad |= json_object_set_new(r, "files", list);
	char hex[65];
	if (bad || record_digest(r, hex) || json_object_set_new(r, "digest", json_string(hex)) ||
	    !(text = json_dumps(r, JSON_INDENT(1) | JSON_PRESERVE_ORDER))) {
		snprintf(err, sizeof(err), "cannot form the record (a name that is not UTF-8?)");
		goto out;
	}
	size_t tl = strlen(text);
	char *nl = realloc(text, tl + 2);
	if (!nl) {
		snprintf(err, sizeof(err), "out of memory");
		goto out;
	}
	text = nl;
	memcpy(text + tl, "\n", 2);
	if (put_record(dirfd, text, err, sizeof(err)))
		goto out;
	if (fsync(dirfd)) {
		snprintf(err, sizeof(err), "fsync of the directory: %s", strerror(errno));
		goto out;
	}
	*files = n;
	rc = 0;
out:
	if (rc)
		snprintf(why, cap, "%s: %s", dir, err);
	free(text);
	json_decref(r);
	free(img);
	close(dirfd);
	return rc;
}
