/**
 * @file hmaf.h
 * @brief HMAF umbrella header: include this one.
 *
 * HMAF lets a process running beside a host process read and write the
 * host's memory. The host side (host.h) runs an agent that exposes ranges
 * and publishes named roots; the dpu side (session.h) connects and reads
 * and writes host addresses. Errors are in error.h.
 */
#ifndef HMAF_HMAF_H
#define HMAF_HMAF_H

#include <hmaf/version.h>
#include <hmaf/error.h>
#include <hmaf/types.h>
#include <hmaf/engine.h>
#include <hmaf/host.h>
#include <hmaf/session.h>
#include <hmaf/map.h>
#include <hmaf/atomic.h>
#include <hmaf/notify.h>
#include <hmaf/seqlock.h>
#include <hmaf/heap.h>
#include <hmaf/log.h>
#include <hmaf/config.h>

#endif /* HMAF_HMAF_H */
