/*
 * The hash table demo_host builds and demo_dpu reads: its layout in host
 * memory, its hash function, and the keys and values, which are a pure
 * function of the key's index so each side can check the other.
 *
 * Every address field holds a host virtual address. The host follows them
 * as pointers. The dpu side follows them with HMAF reads, or, in mapping
 * mode, as pointers into its mirror of the host's memory: the very same
 * bits when the mirror sits at the host's addresses.
 */
#ifndef HMAF_DEMO_TABLE_H
#define HMAF_DEMO_TABLE_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define DEMO_MAGIC        0x31424154464d4448ull /* "HDMFTAB1" */
#define DEMO_NBUCKETS     (1u << 20)
#define DEMO_KEYS_DEFAULT 1000000u
#define DEMO_KEY_INLINE   16 /* a key this short lives wholly in its node */
#define DEMO_KEY_MAX      64
#define DEMO_VALUE_MAX    40
#define DEMO_UPDATE_EVERY 100 /* the dpu side rewrites every 100th value */

/* Where the host asks for its buckets and arena (one mapping, buckets
 * first): far from where kernels put heaps, libraries and stacks, so the
 * dpu side most likely has the same addresses free for its mirror. */
#define DEMO_MAP_HINT 0x5a0000000000ull

/* Published as root "table", exposed read-only. The bucket array and the
 * arena are whole pages, as a mirror of them fetches whole pages. */
struct demo_table {
    uint64_t magic;    /* DEMO_MAGIC: the root is what we think it is */
    uint64_t nbuckets; /* a power of two */
    uint64_t buckets;  /* address of uint64_t[nbuckets], each a chain head */
    uint64_t count;    /* keys stored, with indexes 0 .. count - 1 */
    uint64_t arena;    /* nodes and strings: [arena, arena + arena_len) */
    uint64_t arena_len;
};

/* One chain link. 56 bytes: a lookup of a short key reads one node, with
 * no second trip for the key. */
struct demo_node {
    uint64_t next;  /* next node in the bucket's chain; 0 ends it */
    uint64_t hash;  /* demo_hash() of the key: most mismatches end here */
    uint64_t key;   /* address of the key bytes (not NUL-terminated) */
    uint64_t value; /* address of the value bytes */
    uint32_t key_len;
    uint32_t value_len;
    char key_inline[DEMO_KEY_INLINE]; /* the key, when key_len fits */
};

/* FNV-1a, then a 64-bit finalizer: the bucket index takes the low bits,
 * which plain FNV mixes poorly for keys that differ only at the end. */
static inline uint64_t demo_hash(const char *key, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (size_t i = 0; i < len; i++) {
        h = (h ^ (uint8_t)key[i]) * 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

/* "key:0000042"; every 16th key is long, so lookups also exercise keys
 * kept out of the node. Returns the length (no NUL is counted). */
static inline size_t demo_key(char buf[DEMO_KEY_MAX], uint32_t idx)
{
    const char *tail = idx % 16 == 15 ? "/kept-out-of-node" : "";

    return (size_t)snprintf(buf, DEMO_KEY_MAX, "key:%07u%s", idx, tail);
}

/* "value-of-0000042-" and filler, 20 to 40 bytes long. */
static inline size_t demo_value(char buf[DEMO_VALUE_MAX], uint32_t idx)
{
    size_t len = 20 + idx % 21;
    size_t n = (size_t)snprintf(buf, DEMO_VALUE_MAX, "value-of-%07u-", idx);

    for (; n < len; n++) {
        buf[n] = (char)('a' + (idx + n) % 26);
    }
    return len;
}

static inline int demo_is_updated(uint32_t idx)
{
    return idx % DEMO_UPDATE_EVERY == 0;
}

/* The dpu side's replacement: "updated:42" padded with '.' to the old
 * length, so the update fits where the old value was. */
static inline void demo_updated_value(char buf[DEMO_VALUE_MAX], uint32_t idx,
                                      size_t len)
{
    char tmp[DEMO_VALUE_MAX + 1];
    int n = snprintf(tmp, sizeof(tmp), "updated:%u", idx);

    memset(buf, '.', len);
    memcpy(buf, tmp, (size_t)n < len ? (size_t)n : len);
}

/* Both programs take "[FLAG] ADDRESS". *flag_set is 1 with FLAG, and with
 * a comch address, where the roles are fixed (the dpu side is comch's
 * server, the host its client). Only the address's scheme is checked:
 * enough to catch an option taken for the address before any work; the
 * library judges the rest. NULL when malformed. */
static inline const char *demo_parse_args(int argc, char **argv,
                                          const char *flag, int *flag_set)
{
    const char *address = argv[argc - 1];

    if (argc == 3 && strcmp(argv[1], flag) == 0) {
        *flag_set = 1;
    } else if (argc != 2) {
        return NULL;
    }
    if (strncmp(address, "unix:", 5) != 0 && strncmp(address, "tcp:", 4) != 0 &&
        strncmp(address, "comch:", 6) != 0) {
        return NULL;
    }
    if (strncmp(address, "comch:", 6) == 0) {
        *flag_set = 1;
    }
    return address;
}

#endif
