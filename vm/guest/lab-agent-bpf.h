/* SPDX-License-Identifier: GPL-2.0 */
#ifndef LAB_AGENT_BPF_H
#define LAB_AGENT_BPF_H

#include <stddef.h>

/* Every entry of the BPF map pinned at pin, as text; NULL with errno set on failure. */
char *slurp_bpf_map(const char *pin, size_t *len);

#endif
