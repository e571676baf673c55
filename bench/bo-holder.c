/*
 * Benchmark helper: maps one memfd of SIZE MiB COUNT times (each mapping a
 * separate VMA at its own address), prints the addresses, and waits.
 *   bo-holder SIZE_MIB COUNT
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
	if (argc != 3)
		return 2;
	size_t size = (size_t)atol(argv[1]) << 20;
	int count = atoi(argv[2]);
	int fd = memfd_create("bench-bo", 0);
	if (fd < 0 || ftruncate(fd, (off_t)size))
		return 1;
	for (int i = 0; i < count; i++) {
		unsigned char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			return 1;
		if (i == 0)
			for (size_t off = 0; off < size; off += 4096)
				p[off] = (unsigned char)(off >> 12);
		printf("%lx\n", (unsigned long)p);
	}
	printf("ready\n");
	fflush(stdout);
	pause();
	return 0;
}
