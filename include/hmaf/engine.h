/**
 * @file engine.h
 * @brief Which engines this library has, and whether each works here.
 *
 * An engine moves the bytes (docs/engines.md): cma on one machine, ucx
 * across machines, doca on a BlueField. Which ones a library has is fixed
 * when it is built; whether one works is a property of the machine and of
 * the process (a seccomp filter, a missing device). hmaf_engine_list()
 * asks each engine, without opening anything, and says why not in words a
 * person can act on. The hmaf-info tool prints it with the checks around
 * it (docs/troubleshooting.md).
 *
 * Thread safety: hmaf_engine_list() may be called from any thread, at any
 * time, also while sessions and agents run.
 */
#ifndef HMAF_ENGINE_H
#define HMAF_ENGINE_H

#include <stddef.h>

#include <hmaf/version.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Room for an engine's name, with its NUL. */
#define HMAF_ENGINE_NAME_MAX 16
/** Room for the reason an engine is not usable, with its NUL. */
#define HMAF_ENGINE_REASON_MAX 384

/** One built engine, as hmaf_engine_list() describes it. */
typedef struct hmaf_engine_info {
    /** [in] sizeof(hmaf_engine_info_t), set by the caller in the first
     * entry it passes (it is the size of every entry of the array); each
     * entry written gets it too. A later version that adds fields at the
     * end still accepts the size of this one, and fills only what fits. */
    size_t size;
    /** [out] the name a session or agent asks for (params.engine,
     * HMAF_ENGINE), NUL-terminated. */
    char name[HMAF_ENGINE_NAME_MAX];
    /** [out] 1 when the engine can run in this process, else 0. */
    int usable;
    /** [out] 0 when usable; else the HMAF_ error its check gave (HMAF_EPERM:
     * something denies it; HMAF_ENOTSUP: the kernel or system lacks it;
     * HMAF_ENOENGINE: no device for it). A session that names an unusable
     * engine fails with HMAF_ENOENGINE, and the log says this reason. */
    int error;
    /** [out] "" when usable; else one line: what is missing and, where
     * there is one, what to do ("...: allow process_vm_readv in the
     * seccomp profile"), NUL-terminated. */
    char reason[HMAF_ENGINE_REASON_MAX];
} hmaf_engine_info_t;

/**
 * @brief List the engines built into this library. The first is the
 * default, which a session or agent that names none (params.engine NULL
 * and HMAF_ENGINE unset) takes — cma; the others are taken by name only.
 *
 * Usability is checked now, in this process, with cheap calls that open
 * nothing: a usable engine can still fail at connect (the peer, its
 * permissions, its device), and says why there.
 *
 * @param [in,out] entries  an array of count entries, entries[0].size set
 *                          to sizeof(hmaf_engine_info_t); may be NULL when
 *                          count is 0 (to ask how many there are).
 * @param [in]  count       entries in the array.
 * @param [out] count_out   the number of built engines, written on 0 and
 *                          on HMAF_ENOSPC; must not be NULL.
 * @return 0 (entries[0 .. *count_out - 1] filled, the rest untouched);
 *         HMAF_ENOSPC (count is smaller than the number of engines:
 *         nothing filled, *count_out says how many entries are needed);
 *         HMAF_EINVAL (count_out NULL, entries NULL with count > 0, or
 *         entries[0].size not a size this library knows).
 */
HMAF_API int hmaf_engine_list(hmaf_engine_info_t *entries, size_t count,
                              size_t *count_out);

#ifdef __cplusplus
}
#endif

#endif /* HMAF_ENGINE_H */
