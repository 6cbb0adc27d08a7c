/**
 * @file version.h
 * @brief Library version and the export macro.
 */
#ifndef HMAF_VERSION_H
#define HMAF_VERSION_H

#define HMAF_VERSION_MAJOR 0
#define HMAF_VERSION_MINOR 1
#define HMAF_VERSION_PATCH 0

/** Version of the host <-> dpu wire protocol (handshake and mailbox). */
#define HMAF_PROTOCOL_VERSION 1

#if defined(__GNUC__)
#define HMAF_API __attribute__((visibility("default")))
#else
#define HMAF_API
#endif

#endif /* HMAF_VERSION_H */
