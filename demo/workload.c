/*
 * Demo/test workload: one process tree of P processes sharing memory that is
 * mapped at a different virtual address in every process.
 *
 *   workload --tree K --procs P --shm /dev/shm/NAME
 *
 * A: 4 MiB MAP_SHARED|MAP_ANONYMOUS, made by the root, pattern-filled, then
 *    mremap'd by every process of the tree to its own address.
 * B: the file --shm (shared by all trees of a run), mapped by every process at
 *    its own address. It holds one status slot per process, which the demo
 *    and the tests read straight from the file.
 * C: a memfd ("stagegate-memfd", 64 KiB) made by the root, mapped by every
 *    process of the tree at its own address.
 * D: a SysV shared memory segment (64 KiB) made by the root (the tree runs in
 *    its own IPC namespace), attached by every process at its own address.
 *
 * Every 10 ms each process: checks a window of A's pattern through its own
 * mapping, bumps its counter in A, (root) sums its children's counters seen
 * through A, and updates its slot in B. A gap of more than 250 ms between two
 * ticks means the process was frozen (checkpointed, then restored): it
 * records when it stopped and when it ran again.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <time.h>
#include <unistd.h>

#define A_SIZE (4u << 20)
#define PATTERN_SIZE (1u << 20)
#define B_SIZE (1u << 20)
#define SLOT_SIZE 128
#define SLOTS_OFFSET 4096
#define MAX_TREES 64
#define MAX_PROCS 16
#define SLOT_MAGIC 0x53474154u /* "SGAT" */
#define A_BASE 0x500000000000ull
#define B_BASE 0x540000000000ull
#define C_BASE 0x580000000000ull
#define D_BASE 0x5c0000000000ull
#define SMALL_SIZE (64u << 10)
#define STRIDE 0x4000000ull /* 64 MiB between per-process addresses */
#define GAP_MS 250

struct slot {
	uint32_t magic;
	uint32_t tree;
	uint32_t idx;
	int32_t pid; /* pid inside the tree's pid namespace */
	uint64_t a_addr;
	uint64_t b_addr;
	uint64_t counter;
	uint64_t last_ms;
	uint64_t frozen_at_ms;
	uint64_t resumed_at_ms;
	uint32_t gaps;
	uint32_t pattern_ok;
	uint64_t peer_seen; /* root: sum of its children's counters, read through A */
	uint64_t started_ms;
};
_Static_assert(sizeof(struct slot) <= SLOT_SIZE, "slot too large");

static unsigned tree_k, nprocs;

static uint64_t now_ms(void) {
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline uint8_t pattern(uint32_t i) { return (uint8_t)(i * 131u + 17u * tree_k + (i >> 12)); }

static void fail(const char *what) {
	perror(what);
	exit(1);
}

static void run(unsigned idx, uint8_t *a, const char *shm, int memfd, int shmid) {
	uint64_t a_addr = A_BASE + (uint64_t)(tree_k * MAX_PROCS + idx) * STRIDE;
	uint64_t b_addr = B_BASE + (uint64_t)(tree_k * MAX_PROCS + idx) * STRIDE;
	a = mremap(a, A_SIZE, A_SIZE, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)a_addr);
	if (a == MAP_FAILED)
		fail("mremap A");
	int fd = open(shm, O_RDWR);
	if (fd < 0)
		fail("open shm");
	uint8_t *b = mmap((void *)b_addr, B_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
	if (b == MAP_FAILED)
		fail("mmap B");
	close(fd); /* the mapping keeps the file; no fd to restore */
	uint64_t slot_no = (uint64_t)(tree_k * MAX_PROCS + idx);
	uint8_t *c = mmap((void *)(C_BASE + slot_no * STRIDE), SMALL_SIZE, PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_FIXED_NOREPLACE, memfd, 0);
	if (c == MAP_FAILED)
		fail("mmap C");
	close(memfd);
	uint8_t *d = shmat(shmid, (void *)(D_BASE + slot_no * STRIDE), 0);
	if (d == (void *)-1)
		fail("shmat D");

	volatile struct slot *s = (struct slot *)(b + SLOTS_OFFSET + (tree_k * MAX_PROCS + idx) * SLOT_SIZE);
	volatile uint64_t *counters = (uint64_t *)(a + PATTERN_SIZE);
	memset((void *)s, 0, SLOT_SIZE);
	s->tree = tree_k;
	s->idx = idx;
	s->pid = getpid();
	s->a_addr = a_addr;
	s->b_addr = b_addr;
	s->pattern_ok = 1;
	s->started_ms = now_ms();
	s->magic = SLOT_MAGIC;

	uint32_t window = 0;
	for (uint64_t n = 1;; n++) {
		uint64_t t = now_ms();
		if (s->last_ms && t - s->last_ms > GAP_MS) {
			s->frozen_at_ms = s->last_ms;
			s->resumed_at_ms = t;
			s->gaps++;
		}
		/* check a 64 KiB window of the pattern through this process's mapping */
		for (uint32_t i = window; i < window + 65536; i++)
			if (a[i] != pattern(i))
				s->pattern_ok = 0;
		window = (window + 65536) % PATTERN_SIZE;
		for (uint32_t i = 0; i < SMALL_SIZE; i += 4096)
			if (c[i] != pattern(i) || d[i] != pattern(i + 1))
				s->pattern_ok = 0;
		counters[idx] = n;
		if (idx == 0) {
			uint64_t sum = 0;
			for (unsigned c = 1; c < nprocs; c++)
				sum += counters[c];
			s->peer_seen = sum;
		}
		s->counter = n;
		s->last_ms = t;
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

int main(int argc, char **argv) {
	const char *shm = NULL;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--tree"))
			tree_k = (unsigned)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--procs"))
			nprocs = (unsigned)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--shm"))
			shm = argv[i + 1];
	}
	if (!shm || tree_k >= MAX_TREES || nprocs < 1 || nprocs > MAX_PROCS) {
		fprintf(stderr, "usage: workload --tree K(<%d) --procs P(1..%d) --shm FILE\n", MAX_TREES, MAX_PROCS);
		return 2;
	}
	uint8_t *a = mmap(NULL, A_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED)
		fail("mmap A");
	for (uint32_t i = 0; i < PATTERN_SIZE; i++)
		a[i] = pattern(i);
	int memfd = memfd_create("stagegate-memfd", 0);
	if (memfd < 0 || ftruncate(memfd, SMALL_SIZE))
		fail("memfd");
	uint8_t *c = mmap(NULL, SMALL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	int shmid = shmget(IPC_PRIVATE, SMALL_SIZE, IPC_CREAT | 0600);
	uint8_t *d = shmid < 0 ? (void *)-1 : shmat(shmid, NULL, 0);
	if (c == MAP_FAILED || d == (void *)-1)
		fail("memfd/shm setup");
	for (uint32_t i = 0; i < SMALL_SIZE; i++) {
		c[i] = pattern(i);
		d[i] = pattern(i + 1);
	}
	munmap(c, SMALL_SIZE);
	shmdt(d);
	for (unsigned idx = 1; idx < nprocs; idx++) {
		pid_t p = fork();
		if (p < 0)
			fail("fork");
		if (p == 0)
			run(idx, a, shm, memfd, shmid);
	}
	run(0, a, shm, memfd, shmid);
	return 0;
}
