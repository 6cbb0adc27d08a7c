/* Read/write round trips from 1 B to 64 MiB against a real host process:
 * unaligned starts and ends, ranges spanning two exposures, vectored. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "target.h"

static uint64_t buf_addr;

static void read_at(hmaf_session_t *s, uint8_t *tmp, uint64_t off, size_t len)
{
    memset(tmp, 0, len);
    CHECK_OK(hmaf_session_read(s, tmp, buf_addr + off, len));
    CHECK_PATTERN(tmp, len, off, 1);
}

static void test_reads(hmaf_session_t *s, uint8_t *tmp)
{
    static const size_t sizes[] = {1, 7, 64, 4095, 4096, 4097, 65539,
                                   1 << 20, 16 << 20};
    static const uint64_t offsets[] = {0, 1, 4093, 12345};

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        for (size_t j = 0; j < sizeof(offsets) / sizeof(offsets[0]); j++) {
            read_at(s, tmp, offsets[j], sizes[i]);
        }
        /* Straddle the boundary between the two exposures. */
        if (sizes[i] > 1) {
            read_at(s, tmp, STD_SPLIT - sizes[i] / 2, sizes[i]);
        }
        read_at(s, tmp, STD_BUF_LEN - sizes[i], sizes[i]); /* last bytes */
    }
    read_at(s, tmp, 0, STD_BUF_LEN); /* the whole 64 MiB + 8 KiB */
}

static void test_vectored(hmaf_session_t *s)
{
    enum { N = 300 };
    hmaf_seg_t segs[N];
    static uint8_t bufs[N][97];

    for (int i = 0; i < N; i++) {
        segs[i].local = bufs[i];
        segs[i].len = 1 + (size_t)i % 97;
        segs[i].remote_addr = buf_addr + (uint64_t)i * 222461 % STD_BUF_LEN;
        if (segs[i].remote_addr + segs[i].len > buf_addr + STD_BUF_LEN) {
            segs[i].remote_addr = buf_addr;
        }
    }
    segs[7].remote_addr = buf_addr + STD_SPLIT - 20; /* crosses the split */
    segs[7].len = 60;
    CHECK_OK(hmaf_session_readv(s, segs, N));
    for (int i = 0; i < N; i++) {
        CHECK_PATTERN(bufs[i], segs[i].len, segs[i].remote_addr - buf_addr, 1);
    }
}

/* Write pattern 2 over the whole buffer in uneven pieces, then let the
 * host check every byte. */
static void test_writes(struct target *t, hmaf_session_t *s, uint8_t *tmp)
{
    uint64_t off = 0;
    size_t len = 1;

    while (off < STD_BUF_LEN) {
        size_t n = len < STD_BUF_LEN - off ? len : STD_BUF_LEN - off;
        target_fill(tmp, n, off, 2);
        CHECK_OK(hmaf_session_write(s, buf_addr + off, tmp, n));
        off += n;
        len = len * 3 + 1; /* 1, 4, 13, ... up to 16M+: many shapes */
        if (len > (16u << 20)) {
            len = 4097;
        }
    }
    CHECK_EQ(target_command(t, 'v'), 1);
    memset(tmp, 0, 1 << 20);
    CHECK_OK(hmaf_session_read(s, tmp, buf_addr + STD_SPLIT - 1000, 1 << 20));
    CHECK_PATTERN(tmp, 1 << 20, STD_SPLIT - 1000, 2);
}

int main(void)
{
    struct target t;
    hmaf_session_t *s;
    hmaf_session_stats_t st = HMAF_SESSION_STATS_INIT;
    size_t len = 0;
    uint8_t *tmp = malloc(STD_BUF_LEN);

    CHECK(tmp != NULL);
    target_start_standard(&t);
    s = target_connect(&t);
    CHECK_OK(hmaf_session_lookup(s, "buf", &buf_addr, &len));
    CHECK_EQ(len, STD_BUF_LEN);
    test_reads(s, tmp);
    test_vectored(s);
    test_writes(&t, s, tmp);
    CHECK_OK(hmaf_session_stats(s, &st));
    CHECK_EQ(st.registrations, 2); /* the two exposures, once each */
    CHECK(st.cache_hits > st.cache_misses);
    CHECK(st.bytes_read >= STD_BUF_LEN);
    CHECK(st.bytes_written == STD_BUF_LEN);
    hmaf_session_destroy(s);
    CHECK_EQ(target_stop(&t), 0);
    free(tmp);
    printf("test_rw: ok\n");
    return 0;
}
