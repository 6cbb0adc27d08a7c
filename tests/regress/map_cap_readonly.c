/* Regression: params.map_max_resident did not hold for a writable mirror of
 * a read-only exposure. Eviction writes a dirty page back before dropping
 * it; against a read-only exposure that write-back fails with HMAF_EACCES,
 * so the page stayed, and every later fault rescanned the mapping with
 * failing write-backs while the resident set grew without bound (316 KiB
 * under a 16 KiB cap). The cap must hold after every single page written,
 * and hmaf_map_sync() must still report the refusal. The same run over a
 * read-write exposure is the control.
 *
 * Pages are written in a scattered order so no fault looks sequential:
 * readahead stays at one page and only eviction decides what is resident. */
#include <string.h>

#include "check.h"
#include "target.h"

#define CAP    (16u << 10)
#define PAGES  80u
#define STRIDE 37u /* coprime with PAGES: every page once, never in order */

static hmaf_session_t *connect_capped(const struct target *t)
{
    hmaf_session_params_t p;

    target_session_params(t, &p);
    p.map_max_resident = CAP;
    return target_connect_params(&p);
}

/* Write one byte into each of PAGES pages of root `name`; the cap must
 * hold after each. Evictions are counted only where write-back can work
 * (what happens to refused pages' counters is the fix's business).
 * Returns hmaf_map_sync()'s verdict. */
static int write_pages(hmaf_session_t *s, const char *name, int writes_back)
{
    hmaf_map_params_t p;
    hmaf_map_t *map;
    hmaf_map_stats_t st = HMAF_MAP_STATS_INIT;
    uint64_t root, worst = 0;
    size_t len, page = 4096;
    uint8_t *base;
    int ret;

    CHECK_OK(hmaf_session_lookup(s, name, &root, &len));
    CHECK(len >= (PAGES + 1) * page);
    hmaf_map_params_init(&p);
    p.flags = HMAF_MAP_ANYWHERE; /* writable: no HMAF_MAP_READ_ONLY */
    ret = hmaf_map_create(s, root, (PAGES + 1) * page, &p, &map);
    if (ret == HMAF_ENOTSUP) {
        SKIP("userfaultfd is not available to this process (valgrind?)");
    }
    CHECK_OK(ret);
    base = hmaf_map_local(map, root);
    CHECK(base != NULL);
    for (unsigned i = 0; i < PAGES; i++) {
        unsigned at = (i * STRIDE) % PAGES;
        base[(size_t)at * page + 100] ^= 0xff; /* changed: dirty */
        CHECK_OK(hmaf_map_stats(map, &st));
        worst = st.resident_bytes > worst ? st.resident_bytes : worst;
        if (st.resident_bytes > CAP) {
            fprintf(stderr,
                    "%s: %llu bytes resident after %u pages written, cap %u\n",
                    name, (unsigned long long)st.resident_bytes, i + 1, CAP);
            CHECK(st.resident_bytes <= CAP);
        }
    }
    CHECK_OK(hmaf_map_stats(map, &st));
    CHECK(st.evictions > 0 || !writes_back);
    CHECK_EQ(st.fault_errors, 0);
    ret = hmaf_map_sync(map);
    printf("%s: worst resident %llu bytes (cap %u), %llu evictions, sync %s\n",
           name, (unsigned long long)worst, CAP,
           (unsigned long long)st.evictions, hmaf_err_name(ret));
    hmaf_map_destroy(map);
    return ret;
}

int main(void)
{
    struct target t;
    hmaf_session_t *s;
    uint8_t back[8];
    uint64_t buf;

    target_start_standard(&t);
    s = connect_capped(&t);
    /* Control: evicted pages are written back, the cap holds. */
    CHECK_OK(write_pages(s, "buf", 1));
    CHECK_OK(hmaf_session_lookup(s, "buf", &buf, NULL));
    CHECK_OK(hmaf_session_read(s, back, buf + 100, 1));
    CHECK_EQ(back[0], target_pattern(100, 1) ^ 0xff); /* reached the host */
    /* The bug: a read-only exposure mirrored writable. */
    CHECK_ERR(write_pages(s, "ro", 0), HMAF_EACCES);
    CHECK_OK(hmaf_session_ping(s));
    hmaf_session_destroy(s);
    CHECK_EQ(target_stop(&t), 0);
    printf("map_cap_readonly: ok\n");
    return 0;
}
