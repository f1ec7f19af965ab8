/* nvptx_emu_banks.c: shared-memory bank conflicts of emulated launches, in wavefronts (the model is
 * described in nvptx_emu.h, beside emu_bank_summary). Threads run until they block, so the lanes of a
 * warp reach an instruction at different times: a lane's n-th pass through an instruction since the
 * last barrier joins the warp's n-th request of it, and requests are counted at the next barrier (or the
 * block's end), when every lane that will join has. Counts are kept per instruction. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nvptx_emu_banks.h"
#include "nvptx_emu_internal.h"

#define BANKS 32
#define LANES 32

typedef struct bank_request {
  int site, kind, bytes;
  int next;        /* the warp's next request of the same site since the last flush; -1: none */
  uint32_t lanes;  /* the lanes that joined */
  uint32_t offset[LANES];
} bank_request;

typedef struct bank_warp {
  bank_request *requests;
  int count, capacity;
  int *first, *last;     /* per site: its first and last request since the flush (valid where seen) */
  uint32_t *seen;        /* per site: the flush epoch first/last belong to */
} bank_warp;

typedef struct bank_site {
  int kind;
  int64_t requests, wavefronts, ideal;
} bank_site;

struct emu_banks {
  int warp_count, site_count;
  uint32_t epoch;
  bank_warp *warps;
  bank_site *sites;
};

emu_banks *emu_banks_create(int threads, int sites) {
  emu_banks *banks = calloc(1, sizeof *banks);
  if (!banks) return NULL;
  banks->warp_count = threads / LANES;
  banks->site_count = sites > 0 ? sites : 1;
  banks->epoch = 1;
  banks->warps = calloc((size_t)banks->warp_count, sizeof *banks->warps);
  banks->sites = calloc((size_t)banks->site_count, sizeof *banks->sites);
  int ok = banks->warps && banks->sites;
  for (int w = 0; ok && w < banks->warp_count; w++) {
    bank_warp *warp = &banks->warps[w];
    warp->first = malloc((size_t)banks->site_count * sizeof *warp->first);
    warp->last = malloc((size_t)banks->site_count * sizeof *warp->last);
    warp->seen = calloc((size_t)banks->site_count, sizeof *warp->seen);
    ok = warp->first && warp->last && warp->seen;
  }
  if (!ok) {
    emu_banks_free(banks);
    return NULL;
  }
  return banks;
}

void emu_banks_free(emu_banks *banks) {
  if (!banks) return;
  for (int w = 0; banks->warps && w < banks->warp_count; w++) {
    free(banks->warps[w].requests);
    free(banks->warps[w].first);
    free(banks->warps[w].last);
    free(banks->warps[w].seen);
  }
  free(banks->warps);
  free(banks->sites);
  free(banks);
}

/* The wavefronts one request takes and the ideal for its bytes, added to *wavefronts and *ideal. */
static void bank_count(const bank_request *r, int64_t *wavefronts, int64_t *ideal) {
  const int phase_lanes = r->bytes >= 16 ? 8 : r->bytes == 8 ? 16 : 32;
  for (int first = 0; first < LANES; first += phase_lanes) {
    uint32_t words[LANES * 5];  /* a lane's bytes span at most 5 words (16 bytes, misaligned) */
    int n = 0;
    for (int lane = first; lane < first + phase_lanes; lane++) {
      if (!(r->lanes >> lane & 1u)) continue;
      uint32_t begin = r->offset[lane] / 4, end = (r->offset[lane] + (uint32_t)r->bytes - 1) / 4;
      for (uint32_t word = begin; word <= end && word < begin + 5; word++) {
        int known = 0;
        for (int i = 0; i < n && !known; i++) known = words[i] == word;
        if (!known) words[n++] = word;
      }
    }
    if (n == 0) continue;
    int per_bank[BANKS] = {0}, most = 0;
    for (int i = 0; i < n; i++)
      if (++per_bank[words[i] % BANKS] > most) most = per_bank[words[i] % BANKS];
    *wavefronts += most;
    *ideal += (n + BANKS - 1) / BANKS;
  }
}

static bank_request *bank_new_request(emu_banks *banks, bank_warp *warp, int site, int kind, int bytes) {
  if (warp->count == warp->capacity) {
    int capacity = warp->capacity ? 2 * warp->capacity : 256;
    bank_request *grown = realloc(warp->requests, (size_t)capacity * sizeof *grown);
    if (!grown) return NULL;  /* the request goes uncounted; the launch itself is unaffected */
    warp->requests = grown;
    warp->capacity = capacity;
  }
  int index = warp->count++;
  bank_request *r = &warp->requests[index];
  memset(r, 0, sizeof *r);
  r->site = site;
  r->kind = kind;
  r->bytes = bytes;
  r->next = -1;
  if (warp->seen[site] != banks->epoch) {
    warp->seen[site] = banks->epoch;
    warp->first[site] = index;
  } else {
    warp->requests[warp->last[site]].next = index;
  }
  warp->last[site] = index;
  return r;
}

void emu_banks_thread_access(emu_banks *banks, int thread, int site, int kind, uint32_t offset, int bytes) {
  if (!banks || site < 0 || site >= banks->site_count || thread / LANES >= banks->warp_count) return;
  bank_warp *warp = &banks->warps[thread / LANES];
  const uint32_t bit = 1u << (thread % LANES);
  bank_request *r = NULL;
  if (warp->seen[site] == banks->epoch)
    for (int i = warp->first[site]; i >= 0 && r == NULL; i = warp->requests[i].next)
      if (!(warp->requests[i].lanes & bit)) r = &warp->requests[i];
  if (r == NULL) r = bank_new_request(banks, warp, site, kind, bytes);
  if (r == NULL) return;
  r->lanes |= bit;
  r->offset[thread % LANES] = offset;
  if (bytes > r->bytes) r->bytes = bytes;
}

void emu_banks_ldmatrix(emu_banks *banks, int site, const uint32_t offsets[32]) {
  if (!banks || site < 0 || site >= banks->site_count) return;
  bank_request r;
  memset(&r, 0, sizeof r);
  r.bytes = 16;
  r.lanes = 0xffffffffu;
  memcpy(r.offset, offsets, sizeof r.offset);
  bank_site *s = &banks->sites[site];
  s->kind = EMU_BANKS_LDMATRIX;
  s->requests++;
  bank_count(&r, &s->wavefronts, &s->ideal);
}

void emu_banks_flush(emu_banks *banks) {
  if (!banks) return;
  for (int w = 0; w < banks->warp_count; w++) {
    bank_warp *warp = &banks->warps[w];
    for (int i = 0; i < warp->count; i++) {
      const bank_request *r = &warp->requests[i];
      bank_site *s = &banks->sites[r->site];
      s->kind = r->kind;
      s->requests++;
      bank_count(r, &s->wavefronts, &s->ideal);
    }
    warp->count = 0;
  }
  banks->epoch++;  /* every site's chain is stale */
}

void emu_banks_reset(emu_banks *banks) {
  if (!banks) return;
  for (int w = 0; w < banks->warp_count; w++) banks->warps[w].count = 0;
  banks->epoch++;
  memset(banks->sites, 0, (size_t)banks->site_count * sizeof *banks->sites);
}

void emu_kernel_banks(const emu_kernel *kernel, emu_bank_summary out[EMU_BANKS_KINDS]) {
  memset(out, 0, EMU_BANKS_KINDS * sizeof *out);
  for (int k = 0; k < EMU_BANKS_KINDS; k++) out[k].worst = 1.0;
  const emu_banks *banks = kernel->banks;
  if (!banks) return;
  for (int site = 0; site < banks->site_count; site++) {
    const bank_site *s = &banks->sites[site];
    if (s->requests == 0 || s->kind < 0 || s->kind >= EMU_BANKS_KINDS) continue;
    emu_bank_summary *sum = &out[s->kind];
    sum->requests += s->requests;
    sum->wavefronts += s->wavefronts;
    sum->ideal += s->ideal;
    double ratio = s->ideal > 0 ? (double)s->wavefronts / (double)s->ideal : 1.0;
    if (ratio > sum->worst) {
      sum->worst = ratio;
      snprintf(sum->worst_site, sizeof sum->worst_site, "%s",
               site < kernel->site_count ? kernel->sites[site].text : "(unknown instruction)");
    }
  }
}

void emu_kernel_banks_reset(emu_kernel *kernel) { emu_banks_reset(kernel->banks); }
