/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * HMAF's DOCA emulation: devices and representors. The device list comes
 * from DOCA_EMU_DEVICES, every device lists the representors named in
 * DOCA_EMU_REPS (see doca_emu.h). An opened device or representor keeps
 * its own copy of the info, so the lists may be destroyed right after open.
 * PCI addresses compare as "0000:b1:00.0" or "b1:00.0", case-insensitively.
 */
#ifndef DOCA_DEV_H_
#define DOCA_DEV_H_

#include <stdint.h>

#include <doca_error.h>
#include <doca_types.h>

struct doca_devinfo;
struct doca_devinfo_rep;
struct doca_dev;
struct doca_dev_rep;

enum doca_devinfo_rep_filter {
    DOCA_DEVINFO_REP_FILTER_ALL = 0,
    DOCA_DEVINFO_REP_FILTER_NET = 1 << 1,
    DOCA_DEVINFO_REP_FILTER_EMULATED = 1 << 2, /* the emulation has none */
};

#define DOCA_DEVINFO_PCI_ADDR_SIZE     13 /* "0000:b1:00.0" and NUL */
#define DOCA_DEVINFO_REP_PCI_ADDR_SIZE 13

/* The list is NULL-terminated as well as counted. */
doca_error_t doca_devinfo_create_list(struct doca_devinfo ***dev_list,
                                      uint32_t *nb_devs);
doca_error_t doca_devinfo_destroy_list(struct doca_devinfo **dev_list);
doca_error_t doca_devinfo_is_equal_pci_addr(const struct doca_devinfo *devinfo,
                                            const char *pci_addr_str,
                                            uint8_t *is_equal);
doca_error_t doca_dev_open(struct doca_devinfo *devinfo, struct doca_dev **dev);
doca_error_t doca_dev_close(struct doca_dev *dev);
struct doca_devinfo *doca_dev_as_devinfo(const struct doca_dev *dev);

doca_error_t
doca_devinfo_rep_create_list(struct doca_dev *dev, int filter,
                             struct doca_devinfo_rep ***dev_list_rep,
                             uint32_t *nb_devs_rep);
doca_error_t
doca_devinfo_rep_destroy_list(struct doca_devinfo_rep **dev_list_rep);
doca_error_t
doca_devinfo_rep_is_equal_pci_addr(const struct doca_devinfo_rep *devinfo_rep,
                                   const char *pci_addr_str, uint8_t *is_equal);
doca_error_t doca_dev_rep_open(struct doca_devinfo_rep *devinfo,
                               struct doca_dev_rep **dev_rep);
doca_error_t doca_dev_rep_close(struct doca_dev_rep *dev);

#endif
