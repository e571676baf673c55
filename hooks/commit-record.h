/*
 * The commit record in C (commit-record.c); src/checkpoint/commit-record.ts
 * is the reference for every rule here.
 */
#ifndef STAGEGATE_COMMIT_RECORD_H
#define STAGEGATE_COMMIT_RECORD_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define RECORD_NAME "stagegate-commit.json"
#define RECORD_FORMAT "stagegate-commit/1"
#define MAX_RECORD_FILES 100000
#define SAMPLE_BYTES (1 << 20)
/* Images are read this much at a time: a larger buffer only costs page faults to touch. */
#define DIGEST_CHUNK (128 << 10)
#define MAX_SAFE_INTEGER 9007199254740991LL

/* A regular file of at most `max` bytes read whole, no symlink followed (a record, the hook's
 * commit mark): its bytes (one more allocated, for a NUL) and *len, or NULL. */
uint8_t *read_small(const char *path, size_t max, size_t *len);

/* Loads libcrypto's sha256 (the dynamic build only): 0, or -1 when it cannot. */
int crypto_load(void);
void *sha_begin(void);
void sha_update(void *c, const void *p, size_t n);
/* Ends `c` and writes its digest as 64 hex digits. */
int sha_end(void *c, char hex[65]);

/* sha256 hex of JSON.stringify(record without its "digest"); -1 where this file cannot reproduce it. */
int record_digest(json_t *r, char hex[65]);

/* The set's commit id ("c-" and 32 hex digits) from its session, attempt and members (commitId). */
int commit_id(const char *session, long long attempt, json_t *members, char out[35]);

/* Whether a record covers the file `name` (CRIU's images and stats-dump), and whether it is a page image. */
int covered(const char *name);
int is_pages(const char *name);

/* The digest of the open image `fd` of `size` bytes as hashImage writes it: sha256 of it whole,
 * or of a page image's size and both ends ("sampled:"), `buf` of DIGEST_CHUNK. 0, or -1 when it
 * could not be read whole (shorter than its size, a read error). */
int image_digest(int fd, const char *name, long long size, int sampled_mode, unsigned char *buf, char out[80]);

/* Runs `each(ctx, i, buf)` for every i below `n` on as many threads as CPUs (16 at most, this
 * one included), each with a buffer of DIGEST_CHUNK, until all are done or one returns non-zero
 * (the rest are then not started). 0, or -1 when one failed or a buffer could not be had. */
int hash_parallel(size_t n, int (*each)(void *ctx, size_t i, unsigned char *buf), void *ctx);

/* What one tree's record says besides its files (writeRecord's argument). */
typedef struct {
	const char *session, *tree, *host;
	long long attempt;
	json_t *members; /* [{tree, host, run}], in the coordinator's order */
	int full;        /* checksum "full": page images hashed whole */
} record_head_t;

/* Writes `dir`'s commit record durably, as writeRecord does: every covered image hashed and
 * fsync'd, then the record under a temporary name, fsync'd, renamed into place, the directory
 * fsync'd. 0 with the commit id and the number of files; -1 with why in `why`. */
int record_write(const char *dir, const record_head_t *h, char commit[35], size_t *files, char *why, size_t cap);

#endif
