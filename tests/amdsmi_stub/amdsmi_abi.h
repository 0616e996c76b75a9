/*
 * The part of AMD's amdsmi.h (ROCm/amdsmi include/amd_smi/amdsmi.h, library 26.x as shipped
 * with ROCm 7.0, the release the amdsmi 7.0.2 wrapper was generated from) that the stand-in
 * library implements: the status codes it returns and the structs the wrapper hands it.
 * Field order, widths and enum values follow the header; the natural C alignment gives the
 * same offsets as the wrapper's ctypes definitions (which spell the padding out), and
 * amdsmi_stub_layout() lets the tests compare the two.
 */
#ifndef AMDSMI_STUB_ABI_H
#define AMDSMI_STUB_ABI_H

#include <stdint.h>

#define AMDSMI_MAX_STRING_LENGTH 256

typedef uint32_t amdsmi_status_t; /* an enum in the header: 32 bits */
enum {
    AMDSMI_STATUS_SUCCESS = 0,
    AMDSMI_STATUS_INVAL = 1,
    AMDSMI_STATUS_NOT_SUPPORTED = 2,
    AMDSMI_STATUS_NO_PERM = 10,
    AMDSMI_STATUS_INIT_ERROR = 18,
    AMDSMI_STATUS_NOT_FOUND = 31,
    AMDSMI_STATUS_NOT_INIT = 32,
    AMDSMI_STATUS_DRIVER_NOT_LOADED = 34,
    AMDSMI_STATUS_INSUFFICIENT_SIZE = 41,
    AMDSMI_STATUS_UNEXPECTED_DATA = 43,
};

typedef void *amdsmi_processor_handle;
typedef void *amdsmi_socket_handle;

/* PCI address: 3 + 5 + 8 + 48 bits of one 64-bit word. */
typedef union {
    struct {
        uint64_t function_number : 3;
        uint64_t device_number : 5;
        uint64_t bus_number : 8;
        uint64_t domain_number : 48;
    } bdf;
    uint64_t as_uint;
} amdsmi_bdf_t;

typedef struct {
    char market_name[AMDSMI_MAX_STRING_LENGTH];
    uint32_t vendor_id;
    char vendor_name[AMDSMI_MAX_STRING_LENGTH];
    uint32_t subvendor_id;
    uint64_t device_id;
    uint32_t rev_id;
    char asic_serial[AMDSMI_MAX_STRING_LENGTH];
    uint32_t oam_id;                  /* 0xFFFFFFFF if not supported */
    uint32_t num_of_compute_units;    /* 0xFFFFFFFF if not supported */
    uint64_t target_graphics_version; /* e.g. 0x942 for gfx942 */
    uint32_t subsystem_id;
    uint32_t reserved[21];
} amdsmi_asic_info_t;

typedef struct {
    uint32_t vram_type; /* amdsmi_vram_type_t */
    char vram_vendor[AMDSMI_MAX_STRING_LENGTH];
    uint64_t vram_size; /* MB */
    uint32_t vram_bit_width;
    uint64_t vram_max_bandwidth; /* GB/s */
    uint64_t reserved[37];
} amdsmi_vram_info_t;

typedef struct {
    uint32_t major;
    uint32_t minor;
    uint32_t release;
    const char *build;
} amdsmi_version_t;

#endif
