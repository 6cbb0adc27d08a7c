/* SPDX-License-Identifier: BSD-3-Clause */
/* HMAF's DOCA emulation: types shared by every object (see doca_emu.h). */
#ifndef DOCA_TYPES_H_
#define DOCA_TYPES_H_

#include <stdint.h>

/* Opaque user data carried by objects and tasks. */
union doca_data {
    void *ptr;
    uint64_t u64;
};

/* Who may touch an mmap's range. The two PCI flags exclude each other;
 * exporting for the other side of PCI needs one of them. */
enum doca_access_flag {
    DOCA_ACCESS_FLAG_LOCAL_READ_ONLY = 0,
    DOCA_ACCESS_FLAG_LOCAL_READ_WRITE = (1 << 0),
    DOCA_ACCESS_FLAG_RDMA_READ = (1 << 1),
    DOCA_ACCESS_FLAG_RDMA_WRITE = (1 << 2),
    DOCA_ACCESS_FLAG_RDMA_ATOMIC = (1 << 3),
    DOCA_ACCESS_FLAG_PCI_READ_ONLY = (1 << 4),
    DOCA_ACCESS_FLAG_PCI_READ_WRITE = (1 << 5),
    DOCA_ACCESS_FLAG_PCI_RELAXED_ORDERING = (1 << 6),
};

#endif
