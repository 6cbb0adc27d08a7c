/**
 * @file version.h
 * @brief Library version and the export macro.
 */
#ifndef HMAF_VERSION_H
#define HMAF_VERSION_H

/** Major version of these headers. */
#define HMAF_VERSION_MAJOR 0
/** Minor version of these headers. */
#define HMAF_VERSION_MINOR 1
/** Patch level of these headers. */
#define HMAF_VERSION_PATCH 0
/** The version as one number, major * 10000 + minor * 100 + patch. */
#define HMAF_VERSION_NUMBER                                                    \
    (HMAF_VERSION_MAJOR * 10000 + HMAF_VERSION_MINOR * 100 + HMAF_VERSION_PATCH)

/** Version of the host <-> dpu wire protocol (handshake, mailbox, and
 * what the channel carries after the handshake). 2: the host nudges a
 * session to look at a revocation; each side closes its end to say it
 * stopped. 3: blobs in HELLO and WELCOME are length-prefixed and of
 * variable length (up to 1536 bytes), mailbox slots are 2048 bytes. 4: a
 * DEREGISTER gives back up to 29 regions of one epoch at once. 5: a
 * REGISTER may give back up to 27 regions of one epoch too. 6: requests
 * of up to 1784 bytes, atomics, the host's heap, notifications both ways. */
#define HMAF_PROTOCOL_VERSION 6

/** Marks the library's exported calls (it is built with hidden visibility). */
#if defined(__GNUC__)
#define HMAF_API __attribute__((visibility("default")))
#else
#define HMAF_API
#endif

/**
 * @brief The version of the library running, "major.minor.patch": it may
 * differ from the headers' (HMAF_VERSION_*) by a patch or, while the major
 * version is 0, not at all by a minor: the soname changes with it
 * (libhmaf.so.0.1), since 0.x releases may break the ABI.
 * @return static text, never NULL.
 */
HMAF_API const char *hmaf_version(void);
/**
 * @brief The same as HMAF_VERSION_NUMBER counts it.
 * @return major * 10000 + minor * 100 + patch of the library running.
 */
HMAF_API unsigned hmaf_version_number(void);

#endif /* HMAF_VERSION_H */
