/*
 * strata's C interface on the simulated device: resources, adaptors, allocation, statistics,
 * logging, and the error codes of bad calls. Built with the system C compiler and run by
 * tests/c_api.rs; exits 0 when every check passes.
 *
 * usage: sim LOG_PATH
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strata.h"

static int passed = 0;
static int failed = 0;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (cond) {                                                                        \
            passed++;                                                                      \
        } else {                                                                           \
            failed++;                                                                      \
            fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__,        \
                    __LINE__, #cond, strata_last_error_message());                         \
        }                                                                                  \
    } while (0)

/* A call that must succeed. */
#define OK(call) CHECK_STATUS(call, STRATA_STATUS_OK)

/* A call that must return `expected`. */
#define CHECK_STATUS(call, expected)                                                       \
    do {                                                                                   \
        strata_status got_ = (call);                                                       \
        if (got_ == (expected)) {                                                          \
            passed++;                                                                      \
        } else {                                                                           \
            failed++;                                                                      \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s (last error: %s)\n",       \
                    __FILE__, __LINE__, #call, strata_status_name(got_),                   \
                    strata_status_name(expected), strata_last_error_message());            \
        }                                                                                  \
    } while (0)

static const uint64_t GiB = 1ull << 30;
static const uint64_t MiB = 1ull << 20;

static size_t handle_count(void) {
    size_t n = 0;
    OK(strata_resource_count(&n));
    return n;
}

/* A pool with statistics and a log over a simulated device: allocate, free, read counters. */
static void pool_with_adaptors(const char *log_path) {
    strata_resource *device = NULL, *pool = NULL, *stats = NULL, *logged = NULL;
    OK(strata_sim_device_create(4 * GiB, &device));
    strata_pool_options options = {0};
    options.initial_size = 64 * MiB;
    OK(strata_pool_create(device, &options, &pool));
    OK(strata_statistics_create(pool, &stats));
    OK(strata_logging_create(stats, log_path, &logged));

    void *stream = (void *)0x5a;
    void *blocks[16];
    uint64_t bytes = 0;
    for (int i = 0; i < 16; i++) {
        uint64_t size = 1000 * (uint64_t)(i + 1);
        OK(strata_allocate(logged, size, 0, stream, &blocks[i]));
        CHECK(blocks[i] != NULL);
        CHECK(((uintptr_t)blocks[i] % 256) == 0);
        bytes += size;
    }
    strata_statistics s;
    OK(strata_resource_statistics(logged, &s)); /* through the logging adaptor */
    CHECK(s.current_bytes == (int64_t)bytes);
    CHECK(s.current_count == 16);
    CHECK(s.peak_bytes == (int64_t)bytes);

    for (int i = 0; i < 16; i += 2) {
        OK(strata_deallocate(logged, blocks[i], 1000 * (uint64_t)(i + 1), 0, stream));
    }
    OK(strata_resource_statistics(stats, &s));
    CHECK(s.current_count == 8);
    CHECK(s.peak_count == 16);
    CHECK(s.total_count == 16);
    CHECK(s.peak_bytes == (int64_t)bytes);
    CHECK(s.current_bytes < s.peak_bytes);

    /* A larger alignment is honoured. */
    void *aligned = NULL;
    OK(strata_allocate(logged, 4096, 1 << 16, stream, &aligned));
    CHECK(((uintptr_t)aligned % (1 << 16)) == 0);
    OK(strata_deallocate(logged, aligned, 4096, 1 << 16, stream));

    for (int i = 1; i < 16; i += 2) {
        OK(strata_deallocate(logged, blocks[i], 1000 * (uint64_t)(i + 1), 0, stream));
    }
    OK(strata_resource_statistics(stats, &s));
    CHECK(s.current_bytes == 0 && s.current_count == 0);
    CHECK(s.total_count == 17);

    /* The pool has no statistics of its own; the device has no log. */
    CHECK_STATUS(strata_resource_statistics(pool, &s), STRATA_STATUS_UNSUPPORTED);
    CHECK_STATUS(strata_logging_flush(device), STRATA_STATUS_UNSUPPORTED);
    OK(strata_logging_flush(logged));

    /* The log is RMM's CSV: a header, then 17 allocations and 17 frees. */
    FILE *f = fopen(log_path, "r");
    CHECK(f != NULL);
    if (f) {
        char line[256];
        int lines = 0, allocs = 0, frees = 0;
        while (fgets(line, sizeof line, f)) {
            if (lines == 0) {
                CHECK(strcmp(line, "Thread,Time,Action,Pointer,Size,Stream\n") == 0);
            } else {
                allocs += strstr(line, ",allocate,") != NULL;
                frees += strstr(line, ",free,") != NULL;
                CHECK(strstr(line, ",5a\n") != NULL); /* the stream, hex without 0x */
            }
            lines++;
        }
        fclose(f);
        CHECK(lines == 35);
        CHECK(allocs == 17 && frees == 17);
    }

    /* Destroying the device handle first is fine: the pool above holds it. */
    OK(strata_resource_destroy(device));
    void *p = NULL;
    OK(strata_allocate(logged, 512, 0, stream, &p));
    OK(strata_deallocate(logged, p, 512, 0, stream));
    OK(strata_resource_destroy(logged));
    OK(strata_resource_destroy(stats));
    OK(strata_resource_destroy(pool));
}

/* Bad calls return their error codes and change nothing. */
static void bad_calls(void) {
    strata_resource *device = NULL, *pool = NULL, *stats = NULL;
    OK(strata_sim_device_create(GiB, &device));
    OK(strata_pool_create(device, NULL, &pool));
    OK(strata_statistics_create(pool, &stats));
    void *p = NULL, *q = NULL;

    /* Zero size, bad alignment, null out-pointers. */
    CHECK_STATUS(strata_allocate(stats, 0, 0, NULL, &p), STRATA_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(strata_last_error_message(), "zero") != NULL);
    CHECK_STATUS(strata_allocate(stats, 256, 3, NULL, &p), STRATA_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(strata_allocate(stats, 256, 0, NULL, NULL), STRATA_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(strata_sim_device_create(GiB, NULL), STRATA_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(strata_deallocate(stats, NULL, 256, 0, NULL), STRATA_STATUS_INVALID_ARGUMENT);
    strata_resource *never = NULL;
    CHECK_STATUS(strata_logging_create(stats, NULL, &never), STRATA_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(strata_logging_create(stats, "/nonexistent-dir/x/log.csv", &never),
                 STRATA_STATUS_IO_ERROR);
    strata_arena_options no_size = {0};
    CHECK_STATUS(strata_arena_create(device, &no_size, &never), STRATA_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(strata_arena_create(device, NULL, &never), STRATA_STATUS_INVALID_ARGUMENT);

    /* Double free, a free of an address never handed out, a wrong size. */
    OK(strata_allocate(stats, 4096, 0, NULL, &p));
    OK(strata_allocate(stats, 4096, 0, NULL, &q));
    CHECK_STATUS(strata_deallocate(stats, (char *)p + 256, 4096, 0, NULL),
                 STRATA_STATUS_NOT_ALLOCATED);
    CHECK_STATUS(strata_deallocate(stats, p, 256, 0, NULL), STRATA_STATUS_SIZE_MISMATCH);
    OK(strata_deallocate(stats, p, 4096, 0, NULL));
    CHECK_STATUS(strata_deallocate(stats, p, 4096, 0, NULL), STRATA_STATUS_DOUBLE_FREE);
    CHECK(strstr(strata_last_error_message(), "double free") != NULL);
    strata_statistics s;
    OK(strata_resource_statistics(stats, &s));
    CHECK(s.current_count == 1 && s.current_bytes == 4096); /* the bad frees changed nothing */
    OK(strata_deallocate(stats, q, 4096, 0, NULL));

    /* Unknown handles: null, made up, an ordinary pointer, destroyed. */
    CHECK_STATUS(strata_allocate(NULL, 256, 0, NULL, &p), STRATA_STATUS_UNKNOWN_HANDLE);
    CHECK_STATUS(strata_allocate((strata_resource *)(uintptr_t)0x1234, 256, 0, NULL, &p),
                 STRATA_STATUS_UNKNOWN_HANDLE);
    CHECK_STATUS(strata_resource_statistics((strata_resource *)&s, &s),
                 STRATA_STATUS_UNKNOWN_HANDLE);
    strata_resource *doomed = NULL;
    OK(strata_statistics_create(pool, &doomed));
    OK(strata_resource_destroy(doomed));
    CHECK_STATUS(strata_allocate(doomed, 256, 0, NULL, &p), STRATA_STATUS_UNKNOWN_HANDLE);
    CHECK(strstr(strata_last_error_message(), "destroyed") != NULL);
    CHECK_STATUS(strata_resource_destroy(doomed), STRATA_STATUS_UNKNOWN_HANDLE);
    CHECK_STATUS(strata_pool_create(doomed, NULL, &never), STRATA_STATUS_UNKNOWN_HANDLE);
    CHECK(never == NULL);
    /* Its slot is reused by the next handle, under a new generation: the old one stays dead. */
    strata_resource *reborn = NULL;
    OK(strata_statistics_create(pool, &reborn));
    CHECK(reborn != doomed);
    CHECK_STATUS(strata_resource_statistics(doomed, &s), STRATA_STATUS_UNKNOWN_HANDLE);
    OK(strata_resource_statistics(reborn, &s));
    OK(strata_resource_destroy(reborn));

    /* Out of memory: the device's capacity, and a limiting adaptor. */
    CHECK_STATUS(strata_allocate(stats, 2 * GiB, 0, NULL, &p), STRATA_STATUS_OUT_OF_MEMORY);
    strata_resource *limited = NULL;
    OK(strata_limiting_create(stats, MiB, &limited));
    OK(strata_allocate(limited, MiB, 0, NULL, &p));
    CHECK_STATUS(strata_allocate(limited, 256, 0, NULL, &q), STRATA_STATUS_OUT_OF_MEMORY);
    OK(strata_deallocate(limited, p, MiB, 0, NULL));
    OK(strata_resource_destroy(limited));

    /* Messages and names. */
    CHECK(strcmp(strata_status_name(STRATA_STATUS_DOUBLE_FREE), "STRATA_STATUS_DOUBLE_FREE") == 0);
    CHECK(strcmp(strata_status_name(12345), "STRATA_STATUS_UNKNOWN") == 0);

    OK(strata_resource_destroy(stats));
    OK(strata_resource_destroy(pool));
    OK(strata_resource_destroy(device));
}

/* The stream-ordered pool, the arena and binning on simulated streams. */
static void stream_resources(void) {
    strata_resource *device = NULL, *spool = NULL, *arena = NULL, *bins = NULL;
    OK(strata_sim_device_create(4 * GiB, &device));
    strata_pool_options po = {0};
    po.initial_size = 16 * MiB;
    po.max_streams = 4;
    OK(strata_stream_pool_create(device, &po, &spool));
    void *s1 = (void *)0x100, *s2 = (void *)0x200;
    void *a = NULL, *b = NULL;
    OK(strata_allocate(spool, MiB, 0, s1, &a));
    OK(strata_deallocate(spool, a, MiB, 0, s1));
    OK(strata_allocate(spool, MiB, 0, s1, &b));
    CHECK(a == b); /* reused at once on its own stream */
    OK(strata_deallocate(spool, b, MiB, 0, s1));
    OK(strata_allocate(spool, MiB, 0, s2, &b)); /* another stream may take it after ordering */
    OK(strata_deallocate(spool, b, MiB, 0, s2));

    strata_arena_options ao = {0};
    ao.arena_size = 256 * MiB;
    OK(strata_arena_create(device, &ao, &arena));
    OK(strata_allocate(arena, 4096, 0, s1, &a));
    OK(strata_allocate(arena, 8 * MiB, 0, s2, &b));
    OK(strata_deallocate(arena, a, 4096, 0, s1));
    OK(strata_deallocate(arena, b, 8 * MiB, 0, s2));
    CHECK_STATUS(strata_allocate(arena, GiB, 0, s1, &a), STRATA_STATUS_OUT_OF_MEMORY);

    strata_binning_options bo = {0};
    bo.min_exponent = 8;
    bo.max_exponent = 16;
    OK(strata_binning_create(spool, &bo, &bins));
    OK(strata_allocate(bins, 300, 0, NULL, &a));  /* a bin */
    OK(strata_allocate(bins, MiB, 0, NULL, &b));  /* the upstream */
    OK(strata_deallocate(bins, a, 300, 0, NULL));
    OK(strata_deallocate(bins, b, MiB, 0, NULL));
    bo.min_exponent = 20;
    bo.max_exponent = 10;
    strata_resource *never = NULL;
    CHECK_STATUS(strata_binning_create(spool, &bo, &never), STRATA_STATUS_INVALID_ARGUMENT);

    OK(strata_resource_destroy(bins));
    OK(strata_resource_destroy(arena));
    OK(strata_resource_destroy(spool));
    OK(strata_resource_destroy(device));
}

/* CUDA without a GPU: errors, not crashes. (With a driver and a device, the calls succeed.) */
static void cuda_without_gpu(void) {
    int count = -1;
    strata_status st = strata_cuda_device_count(&count);
    CHECK(st == STRATA_STATUS_OK || st == STRATA_STATUS_NO_DRIVER);
    if (st != STRATA_STATUS_OK || count == 0) {
        strata_resource *r = NULL;
        st = strata_cuda_memory_create(0, &r);
        CHECK(st == STRATA_STATUS_NO_DRIVER || st == STRATA_STATUS_NO_DEVICE);
        CHECK(r == NULL);
        st = strata_default_resource(0, &r);
        CHECK(st == STRATA_STATUS_NO_DRIVER || st == STRATA_STATUS_NO_DEVICE);
        /* PyTorch's hooks: NULL on failure, and a NULL free is ignored. */
        CHECK(strata_torch_alloc(1024, 0, NULL) == NULL);
        strata_torch_free(NULL, 1024, 0, NULL);
        strata_statistics a, res;
        OK(strata_default_statistics(0, &a, &res));
        CHECK(a.total_count == 0 && res.current_bytes == 0);
    }
    strata_resource *none = NULL;
    CHECK_STATUS(strata_cuda_memory_create(-1, &none), STRATA_STATUS_INVALID_ARGUMENT);
    CHECK(none == NULL);
    CHECK(strata_torch_alloc(0, 0, NULL) == NULL); /* size 0: no allocation, no error */
    strata_default_config bad = {0};
    bad.kind = 99;
    CHECK_STATUS(strata_default_configure(&bad), STRATA_STATUS_INVALID_ARGUMENT);
    strata_default_config good = {0};
    good.kind = STRATA_KIND_POOL;
    good.initial_size = 64 * MiB;
    OK(strata_default_configure(&good));
    CHECK_STATUS(strata_default_statistics(-1, NULL, NULL), STRATA_STATUS_NO_DEVICE);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s LOG_PATH\n", argv[0]);
        return 2;
    }
    CHECK(strcmp(strata_last_error_message(), "") == 0);
    size_t before = handle_count();
    pool_with_adaptors(argv[1]);
    bad_calls();
    stream_resources();
    CHECK(handle_count() == before); /* every handle was destroyed */
    cuda_without_gpu();
    printf("c api: %d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
