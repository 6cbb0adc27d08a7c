/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * HMAF's DOCA emulation: memory maps. One range per mmap.
 *
 * State machine, as DOCA documents it:
 *   create -> set_memrange (once), set_permissions, add_dev -> start
 *   started: bufs may point into it; it may be exported; no setters
 *   (BAD_STATE; add_dev NOT_PERMITTED). stop refuses while bufs point into
 *   it (NOT_PERMITTED); stopping an exported mmap frees its export
 *   descriptor and invalidates every mmap created from it, and it cannot be
 *   started again. destroy stops implicitly.
 * An mmap created from an export is started, not backed by local memory,
 * and can be neither configured, exported, stopped nor restarted: destroy
 * it. Its addresses are the exporter's virtual addresses.
 * Default permissions: LOCAL_READ_WRITE.
 */
#ifndef DOCA_MMAP_H_
#define DOCA_MMAP_H_

#include <stddef.h>
#include <stdint.h>

#include <doca_error.h>
#include <doca_types.h>

struct doca_dev;
struct doca_devinfo;
struct doca_mmap;

doca_error_t doca_mmap_create(struct doca_mmap **mmap);
doca_error_t doca_mmap_destroy(struct doca_mmap *mmap);
doca_error_t doca_mmap_start(struct doca_mmap *mmap);
doca_error_t doca_mmap_stop(struct doca_mmap *mmap);

doca_error_t doca_mmap_set_memrange(struct doca_mmap *mmap, void *addr,
                                    size_t len);
doca_error_t doca_mmap_set_permissions(struct doca_mmap *mmap,
                                       uint32_t access_mask);
doca_error_t doca_mmap_add_dev(struct doca_mmap *mmap, struct doca_dev *dev);
/* The descriptor belongs to the mmap and lives until it stops. Needs a
 * started mmap with a PCI permission (else NOT_PERMITTED) and dev added to
 * it (else NOT_FOUND). */
doca_error_t doca_mmap_export_pci(struct doca_mmap *mmap,
                                  const struct doca_dev *dev,
                                  const void **export_desc,
                                  size_t *export_desc_len);
/* user_data may be NULL. A malformed descriptor is INVALID_VALUE; one whose
 * exporter already stopped it (or exited) is DRIVER. */
doca_error_t doca_mmap_create_from_export(const union doca_data *user_data,
                                          const void *export_desc,
                                          size_t export_desc_len,
                                          struct doca_dev *dev,
                                          struct doca_mmap **mmap);

doca_error_t
doca_mmap_cap_is_export_pci_supported(const struct doca_devinfo *devinfo,
                                      uint8_t *mmap_export);
doca_error_t doca_mmap_cap_is_create_from_export_pci_supported(
    const struct doca_devinfo *devinfo, uint8_t *from_export);

#endif
