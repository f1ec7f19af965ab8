/* attention_fwd_nvptx.c: the flash-attention forward for NVIDIA GPUs (sm_80 and later), as a kernel
 * family: its tuning space, its constraints, its default, and the generator of one block.
 *
 * The algorithm is FlashAttention-2's. A block owns block_m queries of one (batch, head); its warps
 * split those rows (16 * m_tiles rows each, m_tiles = block_m / (16 * warps)), so every softmax
 * statistic stays inside one warp. The Q tile is loaded once into shared memory (and, with
 * q_in_regs, into registers); K and V stream through a `stages`-deep ring of shared tiles filled
 * asynchronously while the previous tile is being used. For each K/V tile: S = Q K^T on tensor
 * cores, masked only where the tile crosses the causal diagonal or the end of the sequence, the
 * online softmax update (running row max m of the base-2 logits c S, c = scale * log2 e, and row sum
 * l), P = 2^(c S - m) as one fma and one ex2 per score, rounded into A fragments in registers, and
 * O = alpha O + P V. After the loop the block's coordinates are derived again from the block index
 * rather than held in registers across it (the loop needs every register). Causal attention is
 * aligned to the bottom right (query i sees keys j <= i + seqlen_kv - seqlen_q), and tiles past the
 * last query's diagonal are never visited. With logit soft-capping each score passes through a scaled
 * tanh before the masks; with attention sinks each row's running state starts from its head's sink (a
 * key of that score and a zero value). An fp8 KV cache's tiles stream raw through a ring of staging tiles
 * (cp.async, as the others), and each is widened into one operand tile in shared memory just before its
 * use (its k_scale is in the scores' scale, its v_scale in the final division). Rows that see no key at
 * all end as zeros (and LSE -inf, or the sink), never NaN. */
#include "kernels/kernel_family.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "backends/cuda/cuda_codegen.h"
#include "core/error.h"
#include "kernels/attention_fwd_gpu_abi.h"
#include "kernels/attention_fwd_nvptx_combine.h"
#include "kernels/attention_merge_nvptx.h"
#include "tile/tile_gpu.h"

enum { P_BLOCK_M, P_BLOCK_N, P_WARPS, P_STAGES, P_Q_IN_REGS, P_SWIZZLE, P_PACK_GQA, P_SPLIT_KV, P_O_SPLIT, P_COUNT };

static const kernel_param params[P_COUNT] = {
    [P_BLOCK_M] = {"block_m", "queries per block (16 * warps * m-tiles per warp)", 2, {64, 128}},
    [P_BLOCK_N] = {"block_n", "keys per K/V tile", 4, {16, 32, 64, 128}},
    [P_WARPS] = {"warps", "warps per block; they split the block's queries", 2, {4, 8}},
    [P_STAGES] = {"stages", "K/V tiles in flight in the cp.async ring", 2, {2, 3}},
    [P_Q_IN_REGS] = {"q_in_regs", "1: Q fragments kept in registers; 0: re-read from shared memory", 2, {0, 1}},
    [P_SWIZZLE] = {"swizzle", "1: xor-swizzled shared tiles (no ldmatrix bank conflicts)", 2, {0, 1}},
    [P_PACK_GQA] = {"pack_gqa", "1: a block's queries are the query heads of one KV head at each position",
                    2, {0, 1}, .optional = 1},
    [P_SPLIT_KV] = {"split_kv", "1 (decode): a job's keys may be cut over several blocks, merged by a second kernel, "
                    "when the launch finds SMs idle and a workspace", 2, {0, 1}, .optional = 1},
    [P_O_SPLIT] = {"o_split", "warps sharing each row tile, each holding 1/o_split of O's columns (v wider than "
                   "256, as MLA's absorbed decode: 512; 1 elsewhere)", 3, {1, 2, 4}, .optional = 1},
};

#define GENERATOR_VERSION 21  /* 21: tails of 6 mod 8 chunks swizzled by other row bits (conflict-free ldmatrix) */

/* A budget on the registers one thread's fragments take in the main loop (32-bit registers), as a
 * weighted count fitted to what ptxas does: O (live throughout); half of S (the fp32 scores live only
 * from Q K^T until P is packed, which happens before O's rescale); one and a half times Q when it
 * stays in registers; and twice the K and V fragments loaded ahead of the mma.syncs, block_n / 4 and
 * head_dim / 8. Addresses, loop state and row statistics take the rest. Measured with ptxas 13 over the
 * whole space at head dims 64, 80, 96, 128 and 256, sm_80 and sm_90a, bf16, generator version 8
 * (818 kernels): every config at or under 226 assembles with no local memory (688 of them, among them
 * FlashAttention-2's own 128 x 64 tiles of 4 warps at d = 128), the lowest that spills counts 228
 * (tests/test_ptxas.c checks d = 64 and 128 on every run).
 * A strided head dim (the synchronous, element-by-element load path) keeps the earlier rule, O + 2 S +
 * Q + the fragments loaded ahead <= 224, and adds strided_copy_fits below. */
#define FRAGMENT_REGISTER_BUDGET 226
#define STRIDED_FRAGMENT_REGISTER_BUDGET 224
/* pack_gqa's grouped row addresses cost ptxas registers at that edge: FA2's 128 x 64 tile of 4 warps
 * at d = 128 (weight 224) spills 4-56 bytes with it (ptxas 13, sm_80 and sm_90a, generator version 9),
 * while the next heaviest contiguous configs (214 and under) assemble clean packed or not. */
#define PACKED_FRAGMENT_REGISTER_BUDGET 220
/* A varlen kernel (seqlens_kv) holds its sequence's key count and diagonal in registers across the
 * loop, where the others re-read them from the parameter space: ptxas 13 then spilled 4-16 bytes in
 * the two d = 128 tiles that sit at 254-255 registers without it (FA2's 128 x 64 of 4 warps, weight
 * 224, and 64 x 128 of 4 warps, whose weight of 192 the fit underestimates), and in no other config
 * of the d = 64/128 spaces (generator version 10, sm_80 and sm_90a). */
#define VARLEN_FRAGMENT_REGISTER_BUDGET 220
/* A split_kv kernel's part ends at a tile held across the loop (and its epilogue has two ways out):
 * ptxas 13 spilled 4-16 bytes in the same two tiles (generator version 12, decode keys, d = 64/128/256,
 * sm_80 and sm_90a, 724 kernels), so it takes the varlen rules. */
#define SPLIT_FRAGMENT_REGISTER_BUDGET 220
/* A paged kernel (block_table) computes each copied row's address from a table entry: without
 * seqlens_kv, FA2's 128 x 64 tile of 4 warps at d = 128 (weight 224) spilled 8 bytes (sm_80, 3 stages,
 * generator version 11) and no other config of the d = 64/128/256 spaces at pages of 16; with it, the
 * varlen budget applies anyway. */
#define PAGED_FRAGMENT_REGISTER_BUDGET 220
/* A sliding-window kernel holds its first diagonal across the loop and masks a tile's lower edge too:
 * FA2's 128 x 64 tile of 4 warps at d = 128 spilled 8 bytes on sm_90a with it (ptxas 13, generator
 * version 13), so it takes the varlen rules; over the causal window spaces of d = 64 and 128 (616
 * kernels, sm_80 and sm_90a) one more spilled (d = 64, 128 x 128 of 4 warps with 3 stages, 8 bytes on
 * sm_90a), which config_valid refuses with its neighbours of 3 stages. */
#define WINDOW_FRAGMENT_REGISTER_BUDGET 220
/* A ragged-query kernel (cu_seqlens_q) holds its sequence's first row and query count: over the causal
 * spaces of d = 64 and 128 (640 kernels, ptxas 13, sm_80 and sm_90a, generator version 14) 14 spilled
 * 8-32 bytes, all of them in the two shapes config_valid refuses (one m16 tile per warp with 128-key
 * tiles at d = 128, as varlen; two m16 tiles with 128-key tiles and pack_gqa at d = 64); it takes the
 * varlen budget. */

/* A strided head dim is copied element by element, and ptxas issues a thread's loads of the next K and
 * V tiles ahead of their stores to shared memory: those elements, 2 block_n head_dim / threads of them,
 * share the registers with O. Fitted on 614 strided configs (ptxas 13, head dims 64, 80, 96, 128 and
 * 256, sm_80 and sm_90a, fp16 and bf16, generator version 8; FJ_PTXAS_STRIDED=1 runs them): with the
 * budget alone 73 of them spilled; with at most 80 copied elements per thread and O + those elements
 * <= 128 (192 with swizzled tiles, whose ldmatrix addresses take fewer registers) none do, and 512 of
 * the 541 that did not spill stay in the space. */
#define STRIDED_MAX_COPIED_ELEMENTS 80
#define STRIDED_O_AND_COPIED_BUDGET 128
#define STRIDED_O_AND_COPIED_BUDGET_SWIZZLED 192
/* v's head dim apart from Q's and K's: see config_valid */
#define DV_NARROW_4_WARP_BUDGET 190
#define DV_WIDE_UNSWIZZLED_LIMIT 216

typedef struct shape {
  int block_m, block_n, warps, stages, q_in_regs, swizzle, pack_gqa, split_kv;
  /* O's columns split over o_split warps that share each row tile (v wider than 256): row_warps tiles
   * of rows, each warp holding slice_v of O's columns (it computes its rows' scores in full) */
  int o_split, row_warps, slice_v;
  int head_dim, padded_dim, m_tiles, causal, window, has_lse, d_contiguous, varlen, page_size, varlen_q, sinks,
      softcap, varlen_k, alibi;
  /* key.bias: an additive bias read per score, fp32 or of the dtype; with bias_unit_keys a row's keys are
   * consecutive elements (a stride of 1, not a parameter) */
  int bias, bias_f32, bias_unit_keys;
  int head_dim_v, padded_dim_v;  /* V's and O's: MLA's differs from Q's and K's */
  int kv_fp8;   /* 0, or the fp8 dtype of k and v (an fp8 cache): its tiles are staged raw, then widened */
  /* K/V tiles are copied synchronously through registers: a strided head dim (the register rules of that
   * path apply; an fp8 cache's bytes are then staged by byte loads, under the same rules) */
  int sync_kv;
  dtype_id dtype;
} shape;

/* Keys whose queries fall in buckets up to 2^4 are decode steps (a few queries against a long cache). */
#define DECODE_SEQLEN_BUCKET 4

static int round_up(int x, int to) { return (x + to - 1) / to * to; }

static shape shape_of(const attention_key *key, const kernel_config *config) {
  shape s;
  memset(&s, 0, sizeof s);
  s.block_m = config->values[P_BLOCK_M];
  s.block_n = config->values[P_BLOCK_N];
  s.warps = config->values[P_WARPS];
  s.stages = config->values[P_STAGES];
  s.q_in_regs = config->values[P_Q_IN_REGS];
  s.swizzle = config->values[P_SWIZZLE];
  s.pack_gqa = config->values[P_PACK_GQA];
  s.split_kv = config->values[P_SPLIT_KV];
  s.o_split = config->values[P_O_SPLIT] > 0 ? config->values[P_O_SPLIT] : 1;
  s.row_warps = s.warps / s.o_split;
  s.head_dim = key->head_dim;
  /* Tiles are whole k16 steps wide: a head dim of 8 mod 16 is zero-padded in shared memory (the
   * padding adds 0 to every score and its output columns are never stored). */
  s.padded_dim = round_up(key->head_dim, 16);
  s.head_dim_v = core_key_head_dim_v(key);
  s.padded_dim_v = round_up(s.head_dim_v, 16);
  s.slice_v = s.padded_dim_v / s.o_split;
  s.m_tiles = s.row_warps > 0 ? s.block_m / (16 * s.row_warps) : 0;
  s.causal = key->causal;
  s.window = key->window;
  s.has_lse = key->has_lse;
  s.d_contiguous = key->d_contiguous;
  s.varlen = key->varlen;
  s.varlen_q = key->varlen_q;
  s.varlen_k = key->varlen_k;
  s.alibi = key->alibi;
  s.bias = key->bias != 0;
  s.bias_f32 = (key->bias & KEY_BIAS_DTYPE_MASK) == KEY_BIAS_F32;
  s.bias_unit_keys = !(key->bias & KEY_BIAS_STRIDED_KEYS);
  s.sinks = key->sinks;
  s.softcap = key->softcap;
  s.page_size = key->page_size;
  s.kv_fp8 = key->kv_fp8;
  s.sync_kv = !key->d_contiguous;
  s.dtype = (dtype_id)key->dtype;
  return s;
}

/* Dynamic shared memory: the Q tile, then `stages` K tiles and `stages` V tiles; with an fp8 cache one K
 * and one V tile of the operand dtype, then the `stages` staging tiles of each, one byte an element. */
static size_t shared_bytes(const shape *s) {
  size_t bn = (size_t)s->block_n, kv_cols = (size_t)s->padded_dim + (size_t)s->padded_dim_v;
  size_t q = (size_t)s->block_m * (size_t)s->padded_dim * 2;
  if (s->kv_fp8) return q + bn * kv_cols * 2 + (size_t)s->stages * bn * kv_cols;
  return q + (size_t)s->stages * bn * kv_cols * 2;
}

/* Registers of one thread's part of the O accumulator (fp32, m_tiles x its slice of V's head_dim / 8
 * n8 tiles). */
static int o_registers(const shape *s) { return s->m_tiles * (s->slice_v / 8) * 4; }

/* Fragment registers one thread needs in the main loop, as the budgets above weigh them. */
static int fragment_registers(const shape *s) {
  int o = o_registers(s);
  int scores = s->m_tiles * (s->block_n / 8) * 4;
  int q = s->q_in_regs ? s->m_tiles * (s->padded_dim / 16) * 4 : 0;
  int loaded_ahead = s->block_n / 4 + s->slice_v / 8;  /* K's for S, V's for O */
  if (s->sync_kv) return o + 2 * scores + q + loaded_ahead;
  return (2 * o + scores + 3 * q + 4 * loaded_ahead) / 2;
}

static int fragment_budget(const shape *s) {
  if (s->sync_kv) return STRIDED_FRAGMENT_REGISTER_BUDGET;
  if (s->varlen || s->varlen_q || s->alibi || s->bias) return VARLEN_FRAGMENT_REGISTER_BUDGET;
  if (s->split_kv) return SPLIT_FRAGMENT_REGISTER_BUDGET;
  if (s->page_size > 0) return PAGED_FRAGMENT_REGISTER_BUDGET;
  if (s->window) return WINDOW_FRAGMENT_REGISTER_BUDGET;
  return s->pack_gqa ? PACKED_FRAGMENT_REGISTER_BUDGET : FRAGMENT_REGISTER_BUDGET;
}

/* 1 where the synchronous K/V copies (a strided head dim) leave O its registers (always 1 for cp.async
 * copies); else 0 and why. */
static int strided_copy_fits(const shape *s, char *why, size_t why_size) {
  if (!s->sync_kv) return 1;
  int copied = s->block_n * (s->padded_dim + s->padded_dim_v) / (32 * s->warps);
  int o = o_registers(s);
  int budget = s->swizzle ? STRIDED_O_AND_COPIED_BUDGET_SWIZZLED : STRIDED_O_AND_COPIED_BUDGET;
  if (copied <= STRIDED_MAX_COPIED_ELEMENTS && o + copied <= budget) return 1;
  snprintf(why, why_size,
           "strided head dim: each thread copies %d elements of the next K/V tiles (block_n=%d d=%d dv=%d "
           "warps=%d; at most %d) beside %d registers of O (block_m=%d); O + copied over %d (swizzle=%d) ptxas "
           "spills", copied, s->block_n, s->padded_dim,
           s->padded_dim_v, s->warps, STRIDED_MAX_COPIED_ELEMENTS, o, s->block_m, budget, s->swizzle);
  return 0;
}

/* The first of the key's features that cost registers, for config_valid's messages. */
static const char *feature_named(const shape *s) {
  if (s->varlen_k) return "packed keys (cu_seqlens_k)";
  if (s->varlen) return "varlen (seqlens_kv)";
  if (s->split_kv) return "split_kv=1";
  if (s->window) return "a sliding window";
  if (s->varlen_q) return "ragged queries (cu_seqlens_q)";
  if (s->sinks) return "attention sinks";
  if (s->alibi) return "ALiBi";
  if (s->bias) return "an additive bias (attn_bias)";
  return "logit soft-capping";
}

/* A warp holds at most this many of O's columns in registers; a wider v (MLA's absorbed decode, 512)
 * splits O's columns over o_split warps that share the row tile, in whole 64-column slices. */
#define NVPTX_O_COLUMNS_MAX 256

static int problem_supported(const attention_key *key, char *why, size_t why_size) {
  if (key->dtype != DTYPE_F16 && key->dtype != DTYPE_BF16) {
    snprintf(why, why_size, "dtype %s: the NVIDIA kernels use fp16/bf16 tensor cores only (fp32 runs on the cpu backend)",
             core_dtype_name((dtype_id)key->dtype));
    return 0;
  }
  int head_dim_v = core_key_head_dim_v(key);
  if (head_dim_v > NVPTX_O_COLUMNS_MAX && head_dim_v % 128 != 0) {
    snprintf(why, why_size, "v's head dim %d: past %d the NVIDIA kernels split O's columns over 2 or 4 warps in "
             "whole 64-column slices, so it must be a multiple of 128 (MLA's 512 is)", head_dim_v, NVPTX_O_COLUMNS_MAX);
    return 0;
  }
  return 1;
}

static int config_valid(const attention_key *key, const jit_target *target, const kernel_config *config,
                        char *why, size_t why_size) {
  if (!problem_supported(key, why, why_size)) return 0;
  shape s = shape_of(key, config);
  if (!core_head_dim_valid(s.head_dim)) {
    snprintf(why, why_size, "head_dim=%d: must be a multiple of 8 in [8, %d]", s.head_dim, CORE_HEAD_DIM_MAX);
    return 0;
  }
  if (!core_head_dim_valid(s.head_dim_v)) {
    snprintf(why, why_size, "v's head_dim=%d: must be a multiple of 8 in [8, %d]", s.head_dim_v, CORE_HEAD_DIM_MAX);
    return 0;
  }
  int wide_v = s.padded_dim_v > NVPTX_O_COLUMNS_MAX;
  if (wide_v ? s.o_split < 2 : s.o_split != 1) {
    snprintf(why, why_size, "o_split=%d: v's dv=%d %s", s.o_split, s.padded_dim_v,
             wide_v ? "is wider than one warp's O (256 columns): split it over 2 or 4 warps"
                    : "fits one warp's O: o_split=1");
    return 0;
  }
  if (s.o_split > 1 && (s.warps % s.o_split != 0 || s.slice_v % 64 != 0 || s.head_dim_v % 64 != 0)) {
    snprintf(why, why_size, "o_split=%d: warps=%d and v's dv=%d must split into whole 64-column slices",
             s.o_split, s.warps, s.head_dim_v);
    return 0;
  }
  if (s.q_in_regs && s.padded_dim > 16 * TILE_GPU_MAX_K_STEPS) {
    snprintf(why, why_size, "q_in_regs=1: Q's fragments at d=%d are %d k16 steps; registers hold at most %d",
             s.padded_dim, s.padded_dim / 16, TILE_GPU_MAX_K_STEPS);
    return 0;
  }
  if (s.row_warps <= 0 || s.block_m % (16 * s.row_warps) != 0 || s.m_tiles < 1) {
    snprintf(why, why_size, "block_m=%d is not a multiple of 16 * %d warps of rows (warps=%d, o_split=%d)",
             s.block_m, s.row_warps, s.warps, s.o_split);
    return 0;
  }
  if (s.m_tiles > TILE_GPU_MAX_M_TILES) {
    snprintf(why, why_size, "block_m=%d with warps=%d gives %d m16 tiles per warp; at most %d", s.block_m,
             s.warps, s.m_tiles, TILE_GPU_MAX_M_TILES);
    return 0;
  }
  if (s.block_n % 16 != 0 || s.block_n / 8 > TILE_GPU_MAX_N_TILES) {
    snprintf(why, why_size, "block_n=%d: must be a multiple of 16 up to %d", s.block_n, 8 * TILE_GPU_MAX_N_TILES);
    return 0;
  }
  if (s.stages < 2) {
    snprintf(why, why_size, "stages=%d: the cp.async ring needs at least 2", s.stages);
    return 0;
  }
  size_t limit = cuda_ir_shared_limit(target->cpu);
  if (limit == 0) {
    snprintf(why, why_size, "arch '%s' has no known shared-memory size", target->cpu);
    return 0;
  }
  size_t bytes = shared_bytes(&s);
  if (bytes > limit) {
    snprintf(why, why_size, "needs %zu bytes of shared memory (block_m=%d block_n=%d stages=%d d=%d dv=%d); %s has %zu",
             bytes, s.block_m, s.block_n, s.stages, s.padded_dim, s.padded_dim_v, target->cpu, limit);
    return 0;
  }
  if ((s.varlen || s.split_kv || s.window || s.varlen_q || s.sinks || s.softcap || s.alibi || s.bias) && s.m_tiles == 1 &&
      s.block_n == 128 && s.padded_dim >= 128) {
    snprintf(why, why_size,
             "%s: block_n=128 with one m16 tile per warp at d=%d holds 254 registers without it; ptxas spills "
             "with it", feature_named(&s), s.padded_dim);
    return 0;
  }
  /* An additive bias loads each score's element beside the scores. Over the causal d = 64 and 128 spaces
   * (ptxas 13, sm_80 and sm_90a, 2026-12-07; fp32 and bf16 biases) every kernel that spilled
   * (8-228 bytes) had two m16 tiles per warp and one of these key tiles: 128 keys (FA2's d = 64 default),
   * 64 with Q in registers at d = 64, 32 at d = 128; and one (16 bytes) one m16 tile, 128 keys and Q in
   * registers at d = 64. Those shapes go. */
  int bias_two_tiles = s.m_tiles == 2 && (s.block_n == 128 || (s.padded_dim == 64 && s.block_n == 64 && s.q_in_regs) ||
                                          (s.padded_dim > 64 && s.block_n == 32));
  int bias_one_tile = s.m_tiles == 1 && s.block_n == 128 && s.q_in_regs;
  if (s.bias && (bias_two_tiles || bias_one_tile)) {
    snprintf(why, why_size,
             "an additive bias (attn_bias): block_n=%d%s with %s m16 tile%s per warp holds 255 registers at d=%d; "
             "ptxas spills with each score's bias loaded beside it", s.block_n, s.q_in_regs ? " and Q in registers" : "",
             s.m_tiles == 2 ? "two" : "one", s.m_tiles == 2 ? "s" : "", s.padded_dim);
    return 0;
  }
  if (s.softcap && s.m_tiles == 2 && s.block_n == 128) {
    snprintf(why, why_size,
             "logit soft-capping: block_n=128 with two m16 tiles per warp holds 255 registers at d=%d; ptxas spills "
             "with the tanh of each score in most of these", s.padded_dim);
    return 0;
  }
  /* ALiBi holds each row's slope and diagonal key beside the scores: over the causal d = 64 and 128
   * spaces (616 kernels, ptxas 13, sm_80 and sm_90a, 2026-12-06) the 13 that spilled (20-108 spill
   * stores) were all d = 64 tiles of two m16 tiles per warp with 128-key tiles, or 64-key ones with Q in
   * registers; those shapes go, 32 kernels in all. */
  if (s.alibi && s.m_tiles == 2 && s.padded_dim == 64 && (s.block_n == 128 || (s.block_n == 64 && s.q_in_regs))) {
    snprintf(why, why_size,
             "ALiBi: block_n=%d%s with two m16 tiles per warp holds 255 registers at d=%d; ptxas spills with each "
             "row's slope and diagonal key", s.block_n, s.block_n == 64 ? " and Q in registers" : "", s.padded_dim);
    return 0;
  }
  if ((s.varlen_q || s.sinks) && s.pack_gqa && s.m_tiles == 2 && s.block_n == 128) {
    snprintf(why, why_size,
             "%s with pack_gqa: block_n=128 with two m16 tiles per warp holds 255 registers at d=%d; ptxas spills "
             "with the %s and the grouped row addresses",
             s.varlen_q ? "ragged queries (cu_seqlens_q)" : "attention sinks", s.padded_dim,
             s.varlen_q ? "sequence's first row" : "rows' sinks");
    return 0;
  }
  /* An fp8 cache's tiles take the cp.async rules (they are staged raw); beside packed rows, over the causal
   * E4M3 spaces of d = 64 and 128 (648 kernels, ptxas 13, sm_80 and sm_90a, 2026-12-07) the one kernel
   * that spilled (8 bytes) was d = 64's packed 128 x 128 tile of 4 warps: that shape goes. */
  if (s.kv_fp8 && s.pack_gqa && s.m_tiles == 2 && s.block_n == 128) {
    snprintf(why, why_size,
             "an fp8 cache with pack_gqa: block_n=128 with two m16 tiles per warp holds 255 registers at d=%d; ptxas "
             "spills with the staging's addresses and the grouped row addresses", s.padded_dim);
    return 0;
  }
  if ((s.sinks || s.softcap) && s.m_tiles == 2 && s.block_n >= 64 && s.padded_dim >= 128) {
    snprintf(why, why_size,
             "%s: block_n=%d with two m16 tiles per warp holds 255 registers at d=%d; ptxas spills with it in some "
             "of these", s.sinks ? "attention sinks" : "logit soft-capping", s.block_n, s.padded_dim);
    return 0;
  }
  if (s.window && s.m_tiles == 2 && s.block_n == 128 && s.stages >= 3) {
    snprintf(why, why_size,
             "a sliding window: block_n=128 with two m16 tiles per warp and %d stages holds 255 registers at d=%d; "
             "ptxas spills with the window's masks",
             s.stages, s.padded_dim);
    return 0;
  }
  if (s.page_size > 0 && s.m_tiles == 2 && s.block_n == 128) {
    snprintf(why, why_size,
             "paged (block_table): block_n=128 with two m16 tiles per warp holds 253-255 registers at d=%d; "
             "ptxas spills with some page sizes", s.padded_dim);
    return 0;
  }
  if (s.split_kv && key->seqlen_bucket > DECODE_SEQLEN_BUCKET) {
    snprintf(why, why_size, "split_kv=1 is for decode steps (seqlen_q at most %d); this key's seqlen_q bucket is 2^%d",
             1 << DECODE_SEQLEN_BUCKET, key->seqlen_bucket);
    return 0;
  }
  if (s.pack_gqa && key->heads == key->kv_heads) {
    snprintf(why, why_size, "pack_gqa=1 needs grouped KV heads; heads=%d, kv_heads=%d", key->heads, key->kv_heads);
    return 0;
  }
  int registers = fragment_registers(&s);
  /* v with a head dim of its own (MLA): ptxas 13 over the causal spaces of d = 192 and 64 with v's 128
   * (534 kernels, sm_80 and sm_90a, 2026-12-07) spilled 8-48 bytes in 21 that the budget keeps. Where Q
   * and K are the wider (192), all of them had 4 warps and weighed over 190 (the 8-warp tiles of the same
   * fragments assemble clean: a thread of 4 warps issues twice the copies of the wider Q and K tiles);
   * where V is the wider, two of 4 warps, 2 stages and no swizzle at 216 and over. Those shapes go (45
   * clean ones with them). */
  if (s.padded_dim > s.padded_dim_v && s.warps == 4 && registers > DV_NARROW_4_WARP_BUDGET) {
    snprintf(why, why_size,
             "d=%d over v's dv=%d with 4 warps weighs %d registers of fragments (over %d): ptxas spills with the "
             "wider Q and K tiles' copies", s.padded_dim, s.padded_dim_v, registers, DV_NARROW_4_WARP_BUDGET);
    return 0;
  }
  if (s.padded_dim < s.padded_dim_v && s.warps == 4 && s.stages == 2 && !s.swizzle &&
      registers >= DV_WIDE_UNSWIZZLED_LIMIT) {
    snprintf(why, why_size,
             "v's dv=%d over d=%d with 4 warps, 2 stages and no swizzle weighs %d registers of fragments (at least "
             "%d): ptxas spills in some of these", s.padded_dim_v, s.padded_dim, registers, DV_WIDE_UNSWIZZLED_LIMIT);
    return 0;
  }
  if (registers > fragment_budget(&s)) {
    snprintf(why, why_size,
             "weighs %d registers of fragments per thread (O, S%s of %d m16 tiles, K/V loaded ahead; d=%d dv=%d "
             "block_n=%d%s%s); over %d ptxas spills",
             registers, s.q_in_regs ? ", Q" : "", s.m_tiles, s.padded_dim, s.padded_dim_v, s.block_n,
             s.sync_kv ? ", strided head dim" : "", s.pack_gqa ? ", pack_gqa" : "",
             fragment_budget(&s));
    return 0;
  }
  return strided_copy_fits(&s, why, why_size);
}

/* FlashAttention-2's choices for Ampere/Hopper where the register budget holds them, in order of
 * preference per head dim (at d = 256 its tiles do not fit: the nearest that do stand in); the first
 * one this target can hold wins, and the last one of each list fits in 99 KB (sm_86/89/120). The last
 * column: blocks that must fit in one SM's shared memory for the choice to stand (the arch's per-block
 * limit stands in for the SM's, 1 KB larger). FA2's own tiles of 4 warps with two m16 tiles per warp
 * (128 x 128 at d = 64, 128 x 64 up to d = 128; 255 registers) keep 8 warps busy per SM only as two
 * blocks: 2 x 80 KB at d = 64, 2 x 96 KB at d = 128 (sm_90 and sm_100; sm_80 up to d = 96). Elsewhere
 * 8 warps of one m16 tile each stand in, one block per SM, where Q in registers is free (256 threads
 * of 172 or 195 registers leave room for one block either way) and saves the Q ldmatrix of every K/V
 * tile (d = 128: 501 SASS instructions per tile instead of 520).
 * A decode step (at most 16 positions) packs grouped query heads into one block's rows, so that a KV
 * head's cache is streamed once rather than once per query head, and takes the smallest tile of rows
 * (64: one m16 tile per warp) with Q in registers and three stages in flight: its time is the stream
 * of K/V, not the tensor cores; and it may split each job's keys over several blocks (split_kv), since
 * batch x KV heads blocks leave most SMs of a large GPU idle. Not yet measured on a GPU: the tuner's
 * winners replace these wherever it has run. */
#define DEFAULT_TABLE_PARAMS 6 /* the tables' columns: block_m ... swizzle, then the blocks per SM */
static void default_config(const attention_key *key, const jit_target *target, kernel_config *out) {
  static const int small[][7] = {
      {128, 128, 4, 2, 0, 1, 2}, {128, 64, 8, 2, 1, 1, 1}, {128, 64, 8, 2, 0, 1, 1}, {64, 64, 4, 2, 0, 1, 1}};
  static const int medium[][7] = {{128, 64, 4, 2, 0, 1, 2}, {128, 64, 8, 2, 1, 1, 1}, {128, 64, 8, 2, 0, 1, 1},
                                  {64, 64, 4, 2, 0, 1, 1},  {64, 32, 4, 2, 0, 1, 1}};
  static const int large[][7] = {{128, 32, 8, 2, 0, 1, 1}, {64, 32, 4, 2, 0, 1, 1}, {64, 16, 4, 2, 0, 1, 1}};
  char why[256];
  if (core_key_head_dim_v(key) > NVPTX_O_COLUMNS_MAX) {
    /* v wider than one warp's O (MLA's absorbed decode: q and k 576, v 512, every query head on one KV
     * head): 8 warps, O's columns in 2 slices (4 where 2 do not fit), Q re-read from shared memory (its
     * 36 k16 steps do not fit registers), K/V tiles of 32 keys (16 where shared memory is smaller).
     * Not yet run on a GPU. */
    static const int wide[][DEFAULT_TABLE_PARAMS + 1] = {
        {64, 32, 8, 2, 0, 1, 2}, {64, 32, 8, 2, 0, 1, 4}, {64, 16, 8, 2, 0, 1, 2}, {64, 16, 8, 2, 0, 1, 4}};
    for (int i = 0; i < (int)(sizeof wide / sizeof wide[0]); i++) {
      memset(out, 0, sizeof *out);
      for (int p = 0; p < DEFAULT_TABLE_PARAMS; p++) out->values[p] = wide[i][p];
      out->values[P_O_SPLIT] = wide[i][DEFAULT_TABLE_PARAMS];
      out->values[P_PACK_GQA] = key->heads > key->kv_heads;
      out->values[P_SPLIT_KV] = key->seqlen_bucket <= DECODE_SEQLEN_BUCKET;
      if (config_valid(key, target, out, why, sizeof why)) return;
    }
    return;
  }
  if (key->seqlen_bucket <= DECODE_SEQLEN_BUCKET) {
    const int pack = key->heads > key->kv_heads;
    const int decode[][DEFAULT_TABLE_PARAMS] = {{64, 64, 4, 3, 1, 1}, {64, 32, 4, 3, 1, 1}, {64, 32, 4, 2, 0, 1}};
    for (int i = 0; i < (int)(sizeof decode / sizeof decode[0]); i++) {
      memset(out, 0, sizeof *out);
      for (int p = 0; p < DEFAULT_TABLE_PARAMS; p++) out->values[p] = decode[i][p];
      out->values[P_PACK_GQA] = pack;
      out->values[P_SPLIT_KV] = 1;
      out->values[P_O_SPLIT] = 1;
      if (config_valid(key, target, out, why, sizeof why)) return;
    }
  }
  const int widest = key->head_dim > core_key_head_dim_v(key) ? key->head_dim : core_key_head_dim_v(key);
  const int(*list)[7] = widest <= 64 ? small : widest <= 128 ? medium : large;
  int count = widest <= 64    ? (int)(sizeof small / sizeof small[0])
              : widest <= 128 ? (int)(sizeof medium / sizeof medium[0])
                              : (int)(sizeof large / sizeof large[0]);
  for (int i = 0; i < count; i++) {
    memset(out, 0, sizeof *out);
    for (int p = 0; p < DEFAULT_TABLE_PARAMS; p++) out->values[p] = list[i][p];
    out->values[P_O_SPLIT] = 1;
    shape s = shape_of(key, out);
    int blocks = list[i][DEFAULT_TABLE_PARAMS];
    if (blocks > 1 && (size_t)blocks * shared_bytes(&s) > cuda_ir_shared_limit(target->cpu))
      continue;
    if (config_valid(key, target, out, why, sizeof why)) return;
  }
  /* Nothing fits (fp32, or a head dim the family refuses): the last choice, which config_valid will
   * explain when the runtime asks. */
}

static void codegen_key(const attention_key *key, char *buffer, size_t size) {
  char extra[96];
  core_key_extra_text(key, extra, sizeof extra);
  snprintf(buffer, size, "dtype=%s d=%d causal=%d%s lse=%d dcontig=%d%s%s%s", core_dtype_name((dtype_id)key->dtype),
           key->head_dim, key->causal, key->window ? " window=1" : "", key->has_lse, key->d_contiguous,
           key->varlen ? " varlen=1" : "", key->varlen_q ? " varlen_q=1" : "", extra);
}

/* As on the CPU: a block's rows are block_m queries of one (batch, head slot), a slot being a query
 * head, or with pack_gqa a KV head whose rows run over (position, query head of its group). */
static int64_t job_count(const attention_problem *problem, const kernel_config *config) {
  return kernel_row_tile_jobs(problem, config->values[P_BLOCK_M], config->values[P_PACK_GQA]);
}

static size_t scratch_bytes(const attention_key *key, const kernel_config *config) {
  shape s = shape_of(key, config);
  return shared_bytes(&s);
}

static int block_threads(const attention_key *key, const kernel_config *config) {
  (void)key;
  return config->values[P_WARPS] * 32;
}

static int splits_kv(const kernel_config *config) { return config->values[P_SPLIT_KV] == 1; }

/* ---- the generator ---------------------------------------------------------------------------------- */

#define P_OFF(field) offsetof(gpu_attention_params, field)

/* One division of a block index by a parameter, through the divider the host filled beside it. */
static LLVMValueRef divide_by(tile_gpu *tg, LLVMValueRef n, size_t divider) {
  return tile_gpu_divide(tg, n, tile_gpu_param_i32(tg, divider + offsetof(gpu_divider, magic)),
                         tile_gpu_param_i32(tg, divider + offsetof(gpu_divider, shift)));
}

/* The position of a tile row: the row itself, or with pack_gqa the row / group (i64 in and out). */
static LLVMValueRef row_position(tile_gpu *tg, const shape *s, LLVMValueRef row) {
  if (!s->pack_gqa) return row;
  LLVMValueRef row32 = LLVMBuildTrunc(tg->tb.b, row, tg->tb.i32, "");
  return LLVMBuildZExt(tg->tb.b, divide_by(tg, row32, P_OFF(group_divider)), tg->tb.i64, "");
}

/* pack_gqa: the view's rows become (position, query head of the group) pairs, heads head_stride apart. */
static void group_rows_by_head(tile_gpu *tg, tile_gpu_global *view, LLVMValueRef head_stride) {
  tile_gpu_global_group_rows(tg, view, tile_gpu_param_i32(tg, P_OFF(group)), head_stride,
                             tile_gpu_param_i32(tg, P_OFF(group_divider) + offsetof(gpu_divider, magic)),
                             tile_gpu_param_i32(tg, P_OFF(group_divider) + offsetof(gpu_divider, shift)));
}

/* Sequence b's row of the block table (paged kernels). */
static LLVMValueRef block_table_row(tile_gpu *tg, LLVMValueRef b) {
  tile_builder *tb = &tg->tb;
  LLVMValueRef table = LLVMBuildIntToPtr(tb->b, tile_gpu_param_i64(tg, P_OFF(block_table)), tg->global_ptr, "");
  LLVMValueRef at = tile_mul(tb, b, tile_gpu_param_i64(tg, P_OFF(block_table_stride[0])));
  return LLVMBuildGEP2(tb->b, tb->i32, table, &at, 1, "");
}

/* How a view's rows are laid out beyond one stride: Q and O under pack_gqa run over (position, query
 * head of the group); K and V of a paged cache over the pages of the sequence's block-table row. */
typedef enum { ROWS_PLAIN, ROWS_GROUPED, ROWS_PAGED } row_layout;

/* One (batch, head) of a tensor as rows (sequence) x columns (head dim), from row first_row (a ragged
 * sequence's first query; NULL: 0). ROWS_GROUPED: h is the group's first query head and the rows are
 * seqlen_q * group (position, head) pairs. ROWS_PAGED: the tensor is a pool of pages (its first stride a
 * page's) and the rows those of batch b's pages. */
static void head_view(tile_gpu *tg, const shape *s, tile_gpu_global *view, size_t pointer, size_t strides,
                      LLVMValueRef b, LLVMValueRef h, LLVMValueRef first_row, LLVMValueRef rows, row_layout layout) {
  tile_builder *tb = &tg->tb;
  LLVMValueRef stride[4];
  for (int i = 0; i < 4; i++) stride[i] = tile_gpu_param_i64(tg, strides + (size_t)i * sizeof(int64_t));
  if (s->d_contiguous) stride[3] = tile_i64(tb, 1);
  LLVMValueRef offset = tile_mul(tb, h, stride[2]);
  if (first_row != NULL) offset = tile_add(tb, offset, tile_mul(tb, first_row, stride[1]));
  if (layout != ROWS_PAGED) offset = tile_add(tb, offset, tile_mul(tb, b, stride[0]));
  /* an fp8 cache's k and v: elements of one byte, converted as they are copied */
  int fp8 = s->kv_fp8 && (pointer == P_OFF(k) || pointer == P_OFF(v));
  int columns = pointer == P_OFF(v) || pointer == P_OFF(o) ? s->head_dim_v : s->head_dim;
  LLVMValueRef base = fp8 ? tile_gpu_fp8_element_address(tg, tile_gpu_param_global(tg, pointer), offset)
                          : tile_gpu_element_address(tg, tile_gpu_param_global(tg, pointer), offset);
  LLVMValueRef group = layout == ROWS_GROUPED ? tile_gpu_param_i32(tg, P_OFF(group)) : NULL;
  if (group != NULL) rows = tile_mul(tb, rows, LLVMBuildZExt(tb->b, group, tb->i64, ""));
  tile_gpu_global_init(tg, view, base, stride[1], stride[3], rows, columns, s->d_contiguous && !fp8);
  if (fp8) tile_gpu_global_fp8(tg, view, s->d_contiguous);
  if (group != NULL) group_rows_by_head(tg, view, stride[2]);
  if (layout == ROWS_PAGED)
    tile_gpu_global_page_rows(tg, view, block_table_row(tg, b), tile_gpu_param_i64(tg, P_OFF(block_table_stride[1])),
                              s->page_size, stride[0], tile_gpu_param_i64(tg, P_OFF(pages)));
}

/* The block row where this warp's rows start (rows are split between warps in 16 * m_tiles slices; with
 * o_split, o_split consecutive warps share each slice). */
static LLVMValueRef warp_first_row(tile_gpu *tg, const shape *s) {
  LLVMValueRef row_warp = s->o_split == 1 ? tg->warp : LLVMBuildUDiv(tg->tb.b, tg->warp, tile_gpu_i32(tg, s->o_split), "");
  return tile_mul(&tg->tb, LLVMBuildZExt(tg->tb.b, row_warp, tg->tb.i64, ""), tile_i64(&tg->tb, 16 * s->m_tiles));
}

/* The first of O's columns this warp holds (i64): 0, or with o_split its slice's. */
static LLVMValueRef warp_first_column(tile_gpu *tg, const shape *s) {
  if (s->o_split == 1) return tile_i64(&tg->tb, 0);
  LLVMValueRef slice = LLVMBuildURem(tg->tb.b, tg->warp, tile_gpu_i32(tg, s->o_split), "");
  return tile_mul(&tg->tb, LLVMBuildZExt(tg->tb.b, slice, tg->tb.i64, ""), tile_i64(&tg->tb, s->slice_v));
}

/* Narrows a view of O's rows to the columns [col0, col0 + cols) a warp holds. */
static void slice_columns(tile_gpu *tg, tile_gpu_global *view, LLVMValueRef col0, int cols) {
  LLVMValueRef offset = tile_mul(&tg->tb, col0, view->col_stride);
  view->base = view->f32 ? LLVMBuildGEP2(tg->tb.b, tg->tb.f32, view->base, &offset, 1, "")
                         : tile_gpu_element_address(tg, view->base, offset);
  view->cols = cols;
}

/* Runs the LSE's stores of one warp of each row tile only (the o_split warps of a tile hold the same
 * row statistics): opens a branch the caller closes with tile_if_end, or none (*open = 0). */
static void lse_writer_begin(tile_gpu *tg, const shape *s, LLVMValueRef col0, tile_if *branch, int *open) {
  *open = s->o_split > 1;
  if (*open) tile_if_begin(&tg->tb, branch, tile_lt(&tg->tb, col0, tile_i64(&tg->tb, 1)));
}

/* For each of this thread's rows, which keys of the tile starting at key n0 it may see, as columns
 * [first, end): end counts those before seqlen_kv and, when causal, j <= query + last_diagonal (query:
 * the row's position); with a window, first skips those j < query + first_diagonal. */
static void keys_visible(tile_gpu *tg, const shape *s, tile_gpu_rows *first, tile_gpu_rows *end, LLVMValueRef warp_row0,
                         LLVMValueRef q0, LLVMValueRef n0, LLVMValueRef seqlen_kv, LLVMValueRef last_diagonal,
                         LLVMValueRef first_diagonal) {
  tile_builder *tb = &tg->tb;
  tile_gpu_rows rows;
  tile_gpu_rows_index(tg, &rows, s->m_tiles, warp_row0);
  first->m_tiles = end->m_tiles = s->m_tiles;
  for (int r = 0; r < 2 * s->m_tiles; r++) {
    LLVMValueRef limit = seqlen_kv;
    LLVMValueRef query = s->causal || s->window ? row_position(tg, s, tile_add(tb, q0, rows.v[r])) : NULL;
    if (s->causal) limit = tile_min(tb, seqlen_kv, tile_add(tb, tile_add(tb, query, last_diagonal), tile_i64(tb, 1)));
    end->v[r] = tile_sub(tb, limit, n0);
    first->v[r] = s->window ? tile_sub(tb, tile_add(tb, query, first_diagonal), n0) : NULL;
  }
}

/* Which tile of rows of which (batch, head slot) a block owns, and the KV head it reads (GQA: heads /
 * kv_heads query heads share one). Causal blocks take the longest tiles first. */
typedef struct block_coordinates {
  LLVMValueRef batch, head, kv_head, q0;  /* i64; head: the first query head; q0: the tile's first row */
  LLVMValueRef part;                      /* i64: which part of the job's keys (split_kv), else 0 */
} block_coordinates;

static block_coordinates block_coordinates_of(tile_gpu *tg, const shape *s, LLVMValueRef block_index) {
  tile_builder *tb = &tg->tb;
  LLVMBuilderRef ir = tb->b;
  /* In 32 bits (the backend launches fewer than 2^31 blocks) and without divide instructions: they
   * would cost ~100 instructions per block here, and again in the epilogue. */
  LLVMValueRef index = LLVMBuildTrunc(ir, block_index, tb->i32, "");
  LLVMValueRef part = NULL;
  if (s->split_kv) {  /* block = job * kv_splits + part */
    LLVMValueRef job = divide_by(tg, index, P_OFF(kv_splits_divider));
    LLVMValueRef parts = LLVMBuildTrunc(ir, tile_gpu_param_i64(tg, P_OFF(kv_splits)), tb->i32, "");
    part = LLVMBuildSub(ir, index, LLVMBuildMul(ir, job, parts, ""), "");
    index = job;
  }
  /* head slots: query heads, or KV heads when packed (the host's heads_divider divides by these) */
  LLVMValueRef slots = LLVMBuildTrunc(ir, tile_gpu_param_i64(tg, s->pack_gqa ? P_OFF(kv_heads) : P_OFF(heads)),
                                      tb->i32, "");
  LLVMValueRef q_tiles = LLVMBuildTrunc(ir, tile_gpu_param_i64(tg, P_OFF(q_tiles)), tb->i32, "");
  LLVMValueRef batch_slot = divide_by(tg, index, P_OFF(q_tiles_divider));
  LLVMValueRef tile_index = LLVMBuildSub(ir, index, LLVMBuildMul(ir, batch_slot, q_tiles, ""), "");
  if (s->causal) tile_index = LLVMBuildSub(ir, LLVMBuildSub(ir, q_tiles, tile_gpu_i32(tg, 1), ""), tile_index, "");
  LLVMValueRef batch = divide_by(tg, batch_slot, P_OFF(heads_divider));
  LLVMValueRef slot = LLVMBuildSub(ir, batch_slot, LLVMBuildMul(ir, batch, slots, ""), "");
  LLVMValueRef head = slot, kv_head = slot;
  if (s->pack_gqa)
    head = LLVMBuildMul(ir, slot, tile_gpu_param_i32(tg, P_OFF(group)), "");
  else
    kv_head = divide_by(tg, slot, P_OFF(group_divider));
  block_coordinates at;
  at.batch = LLVMBuildZExt(ir, batch, tb->i64, "");
  at.head = LLVMBuildZExt(ir, head, tb->i64, "");
  at.kv_head = LLVMBuildZExt(ir, kv_head, tb->i64, "");
  at.q0 = tile_mul(tb, LLVMBuildZExt(ir, tile_index, tb->i64, ""), tile_i64(tb, s->block_m));
  at.part = part != NULL ? LLVMBuildZExt(ir, part, tb->i64, "") : tile_i64(tb, 0);
  return at;
}

/* A varlen kernel's sequence b has seqlens_kv[b] keys: read once per block from global memory and
 * clamped to [0, seqlen_kv] (the host cannot check device values), so that no read leaves k and v. */
static LLVMValueRef sequence_keys(tile_gpu *tg, LLVMValueRef b, LLVMValueRef seqlen_kv) {
  tile_builder *tb = &tg->tb;
  LLVMValueRef base = LLVMBuildIntToPtr(tb->b, tile_gpu_param_i64(tg, P_OFF(seqlens_kv)), tg->global_ptr, "");
  LLVMValueRef at = tile_mul(tb, b, tile_gpu_param_i64(tg, P_OFF(seqlens_kv_stride)));
  LLVMValueRef n = LLVMBuildLoad2(tb->b, tb->i32, LLVMBuildGEP2(tb->b, tb->i32, base, &at, 1, ""), "keys");
  n = LLVMBuildSExt(tb->b, n, tb->i64, "");
  return tile_min(tb, tile_max(tb, n, tile_i64(tb, 0)), seqlen_kv);
}

/* The rows of one head slot: seqlen_q positions, or with pack_gqa seqlen_q x group (position, head)
 * pairs. */
static LLVMValueRef slot_rows(tile_gpu *tg, const shape *s, LLVMValueRef seqlen_q) {
  if (!s->pack_gqa) return seqlen_q;
  return tile_mul(&tg->tb, seqlen_q, LLVMBuildZExt(tg->tb.b, tile_gpu_param_i32(tg, P_OFF(group)), tg->tb.i64, ""));
}

/* The head's sink (key.sinks) as the first term of each of this thread's rows' running state: a key of
 * score sink2 = sinks[h] log2 e (the units of the row maximum) and a zero value, seen before any other:
 * max sink2, and sum 1 in the first lane of each row's quad (the epilogue's reduction adds the quad's
 * four). The online softmax and the epilogue then need nothing more: a row that sees no key ends as 0
 * with the LSE sink2. Only the first part of a split job holds it, so that the combine counts it once.
 * Packed rows are (position, head) pairs: each its own head. Read once per block, before the loop, so
 * that no register is held across it or spent in the epilogue. */
/* The query head of the block's row `row` at `position`: the block's head, or with pack_gqa (rows are
 * (position, head of the group) pairs) the group's first head plus the row's place in its group. */
static LLVMValueRef row_head(tile_gpu *tg, const shape *s, const block_coordinates *at, LLVMValueRef row,
                             LLVMValueRef position) {
  if (!s->pack_gqa) return at->head;
  tile_builder *tb = &tg->tb;
  LLVMValueRef group = LLVMBuildZExt(tb->b, tile_gpu_param_i32(tg, P_OFF(group)), tb->i64, "");
  return tile_add(tb, at->head, tile_sub(tb, row, tile_mul(tb, position, group)));
}

static void seed_sinks(tile_gpu *tg, const shape *s, const block_coordinates *at, LLVMValueRef warp_row0,
                       tile_gpu_rows *row_max, tile_gpu_rows *row_sum) {
  tile_builder *tb = &tg->tb;
  LLVMBuilderRef ir = tb->b;
  tile_gpu_rows rows;
  tile_gpu_rows_index(tg, &rows, s->m_tiles, warp_row0);
  LLVMValueRef sinks = tile_gpu_param_global(tg, P_OFF(sinks));
  LLVMValueRef stride = tile_gpu_param_i64(tg, P_OFF(sinks_stride));
  LLVMValueRef first_part = LLVMBuildICmp(ir, LLVMIntEQ, at->part, tile_i64(tb, 0), "");
  LLVMValueRef quad_first = LLVMBuildICmp(ir, LLVMIntEQ, LLVMBuildAnd(ir, tg->lane, tile_gpu_i32(tg, 3), ""),
                                          tile_gpu_i32(tg, 0), "");
  LLVMValueRef one = LLVMBuildSelect(ir, LLVMBuildAnd(ir, first_part, quad_first, ""), tile_f32(tb, 1.0f),
                                     tile_f32(tb, 0.0f), "");
  for (int r = 0; r < 2 * s->m_tiles; r++) {
    LLVMValueRef row = tile_add(tb, at->q0, rows.v[r]);
    LLVMValueRef head = row_head(tg, s, at, row, row_position(tg, s, row));
    LLVMValueRef index = tile_mul(tb, head, stride);
    LLVMValueRef sink = LLVMBuildLoad2(ir, tb->f32, LLVMBuildGEP2(ir, tb->f32, sinks, &index, 1, ""), "");
    LLVMValueRef sink2 = LLVMBuildFMul(ir, sink, tile_f32(tb, 1.4426950408889634f), "sink2");
    row_max->v[r] = LLVMBuildSelect(ir, first_part, sink2, tile_f32(tb, -INFINITY), "");
    row_sum->v[r] = one;
  }
}

/* ALiBi (key.alibi): each raw score of this thread's rows gets slope unit |diagonal key - key| added,
 * unit = -1 / softmax_scale (the kernel scales raw scores afterwards), the slope that of the row's head
 * (with pack_gqa each row its own) and sequence; the diagonal key of a row at position i is i + diagonal. */
static void add_alibi(tile_gpu *tg, const shape *s, const block_coordinates *at, tile_gpu_acc *scores,
                      LLVMValueRef warp_row0, LLVMValueRef n0, LLVMValueRef diagonal, LLVMValueRef unit) {
  tile_builder *tb = &tg->tb;
  LLVMBuilderRef ir = tb->b;
  tile_gpu_rows rows, slope, centre;
  tile_gpu_rows_index(tg, &rows, s->m_tiles, warp_row0);
  LLVMValueRef slopes = tile_gpu_param_global(tg, P_OFF(alibi));
  LLVMValueRef batch_at = tile_mul(tb, at->batch, tile_gpu_param_i64(tg, P_OFF(alibi_stride[0])));
  LLVMValueRef head_stride = tile_gpu_param_i64(tg, P_OFF(alibi_stride[1]));
  slope.m_tiles = centre.m_tiles = s->m_tiles;
  for (int r = 0; r < 2 * s->m_tiles; r++) {
    LLVMValueRef row = tile_add(tb, at->q0, rows.v[r]);
    LLVMValueRef position = row_position(tg, s, row);
    LLVMValueRef index = tile_add(tb, batch_at, tile_mul(tb, row_head(tg, s, at, row, position), head_stride));
    LLVMValueRef value = LLVMBuildLoad2(ir, tb->f32, LLVMBuildGEP2(ir, tb->f32, slopes, &index, 1, ""), "slope");
    slope.v[r] = LLVMBuildFMul(ir, value, unit, "");
    centre.v[r] = LLVMBuildSIToFP(ir, tile_sub(tb, tile_add(tb, position, diagonal), n0), tb->f32, "");
  }
  tile_gpu_add_distance(tg, scores, &slope, &centre);
}

/* An additive bias (key.bias): each raw score of the tile gets unit x attn_bias[b][h][i][j] added (unit =
 * 1 / (softmax_scale k_scale): the kernel scales raw scores afterwards), i the row's position and h its
 * head (with pack_gqa each row its own), j the key, both within the sequence. The view is made anew in
 * each trip (a few instructions) rather than held in registers across the loop. */
static void add_bias(tile_gpu *tg, const shape *s, const block_coordinates *at, tile_gpu_acc *scores,
                     LLVMValueRef warp_row0, LLVMValueRef n0, LLVMValueRef seqlen_q, LLVMValueRef seqlen_kv) {
  tile_builder *tb = &tg->tb;
  LLVMValueRef stride[4];
  for (int i = 0; i < 4; i++) stride[i] = tile_gpu_param_i64(tg, P_OFF(attn_bias_stride) + (size_t)i * sizeof(int64_t));
  if (s->bias_unit_keys) stride[3] = tile_i64(tb, 1);  /* a constant: element offsets fold into the loads */
  LLVMValueRef offset = tile_add(tb, tile_mul(tb, at->batch, stride[0]), tile_mul(tb, at->head, stride[1]));
  LLVMValueRef bias = tile_gpu_param_global(tg, P_OFF(attn_bias));
  LLVMValueRef base = s->bias_f32 ? LLVMBuildGEP2(tb->b, tb->f32, bias, &offset, 1, "") : tile_gpu_element_address(tg, bias, offset);
  tile_gpu_global view;
  tile_gpu_global_init(tg, &view, base, stride[2], stride[3], slot_rows(tg, s, seqlen_q), s->block_n, 0);
  view.f32 = s->bias_f32;
  if (s->pack_gqa) group_rows_by_head(tg, &view, stride[1]);
  tile_gpu_add_global(tg, scores, &view, at->q0, warp_row0, n0, seqlen_kv, tile_gpu_param_f32(tg, P_OFF(bias_unit)));
}

/* The block's rows of O (scaled by inverse, rounded to the dtype) to o, and with has_lse their
 * LSE = log2_sum ln 2 to lse ([batch, head, seq]: rows are positions, or (position, head) pairs when
 * packed). */
static void store_result(tile_gpu *tg, const shape *s, const tile_gpu_acc *out, const tile_gpu_rows *inverse,
                         const tile_gpu_rows *log2_sum, const block_coordinates *at, LLVMValueRef warp_row0,
                         LLVMValueRef col0) {
  tile_builder *tb = &tg->tb;
  LLVMBuilderRef ir = tb->b;
  LLVMValueRef seqlen_q = tile_gpu_param_i64(tg, P_OFF(seqlen_q)), q_start = NULL;
  if (s->varlen_q) attention_fwd_nvptx_sequence_queries(tg, at->batch, seqlen_q, &q_start, &seqlen_q);
  tile_gpu_global o;
  head_view(tg, s, &o, P_OFF(o), P_OFF(o_stride), at->batch, at->head, q_start, seqlen_q,
            s->pack_gqa ? ROWS_GROUPED : ROWS_PLAIN);
  if (s->o_split > 1) slice_columns(tg, &o, col0, s->slice_v);
  tile_gpu_store(tg, out, inverse, &o, at->q0, warp_row0);
  if (!s->has_lse) return;
  tile_if writer;
  int open;
  lse_writer_begin(tg, s, col0, &writer, &open);
  tile_gpu_rows lse;
  lse.m_tiles = s->m_tiles;
  for (int r = 0; r < 2 * s->m_tiles; r++)
    lse.v[r] = LLVMBuildFMul(ir, log2_sum->v[r], tile_f32(tb, 0.69314718055994531f), "");
  LLVMValueRef lse_base = tile_gpu_param_global(tg, P_OFF(lse));
  LLVMValueRef head_stride = tile_gpu_param_i64(tg, P_OFF(lse_stride[1]));
  LLVMValueRef lse_offset = tile_add(tb, tile_mul(tb, at->batch, tile_gpu_param_i64(tg, P_OFF(lse_stride[0]))),
                                     tile_mul(tb, at->head, head_stride));
  if (q_start != NULL)
    lse_offset = tile_add(tb, lse_offset, tile_mul(tb, q_start, tile_gpu_param_i64(tg, P_OFF(lse_stride[2]))));
  lse_base = LLVMBuildGEP2(ir, tb->f32, lse_base, &lse_offset, 1, "");
  tile_gpu_global lse_view;
  tile_gpu_global_init(tg, &lse_view, lse_base, tile_gpu_param_i64(tg, P_OFF(lse_stride[2])), tile_i64(tb, 1),
                       slot_rows(tg, s, seqlen_q), 1, 0);
  if (s->pack_gqa) group_rows_by_head(tg, &lse_view, head_stride);
  tile_gpu_store_rows(tg, &lse, &lse_view, at->q0, warp_row0);
  if (open) tile_if_end(tb, &writer);
}

/* A split part's rows: O scaled by inverse as fp32 to o_partial, log2_sum to lse_partial, at the rows
 * of gpu_attention_params ((part * batch + b) * heads + h) * seqlen_q + position (packed: the heads of
 * the group seqlen_q rows apart). The part LSE is taken whether or not the call asked for one. */
static void store_part(tile_gpu *tg, const shape *s, const tile_gpu_acc *out, const tile_gpu_rows *inverse,
                       const tile_gpu_rows *log2_sum, const block_coordinates *at, LLVMValueRef warp_row0,
                       LLVMValueRef col0) {
  tile_builder *tb = &tg->tb;
  LLVMBuilderRef ir = tb->b;
  LLVMValueRef seqlen_q = tile_gpu_param_i64(tg, P_OFF(seqlen_q));
  LLVMValueRef slab = tile_add(tb, tile_mul(tb, at->part, tile_gpu_param_i64(tg, P_OFF(batch))), at->batch);
  slab = tile_add(tb, tile_mul(tb, slab, tile_gpu_param_i64(tg, P_OFF(heads))), at->head);
  LLVMValueRef first_row = tile_mul(tb, slab, seqlen_q);  /* of (part, b, head), position 0 */
  /* a ragged sequence's rows: its own count, in the slab of seqlen_q positions */
  LLVMValueRef queries = seqlen_q, q_start;
  if (s->varlen_q) attention_fwd_nvptx_sequence_queries(tg, at->batch, seqlen_q, &q_start, &queries);
  LLVMValueRef rows = slot_rows(tg, s, queries);

  LLVMValueRef d = tile_i64(tb, s->head_dim_v);
  LLVMValueRef o_offset = tile_mul(tb, first_row, d);
  LLVMValueRef o_base = LLVMBuildGEP2(ir, tb->f32, tile_gpu_param_global(tg, P_OFF(o_partial)), &o_offset, 1, "");
  tile_gpu_global o;
  tile_gpu_global_init(tg, &o, o_base, d, tile_i64(tb, 1), rows, s->head_dim_v, 0);
  o.f32 = 1;
  if (s->pack_gqa) group_rows_by_head(tg, &o, tile_mul(tb, seqlen_q, d));
  if (s->o_split > 1) slice_columns(tg, &o, col0, s->slice_v);
  tile_gpu_store(tg, out, inverse, &o, at->q0, warp_row0);
  tile_if writer;
  int open;
  lse_writer_begin(tg, s, col0, &writer, &open);

  LLVMValueRef lse_base = LLVMBuildGEP2(ir, tb->f32, tile_gpu_param_global(tg, P_OFF(lse_partial)), &first_row, 1, "");
  tile_gpu_global lse;
  tile_gpu_global_init(tg, &lse, lse_base, tile_i64(tb, 1), tile_i64(tb, 1), rows, 1, 0);
  if (s->pack_gqa) group_rows_by_head(tg, &lse, seqlen_q);
  tile_gpu_store_rows(tg, log2_sum, &lse, at->q0, warp_row0);
  if (open) tile_if_end(tb, &writer);
}

static fj_status generate(LLVMModuleRef module, const attention_key *key, const jit_target *target,
                          const kernel_config *config, const char *function_name) {
  char why[256];
  if (!config_valid(key, target, config, why, sizeof why))
    return core_error(FJ_INVALID_ARGUMENT, "attention_fwd_nvptx: invalid config: %s", why);
  const shape s = shape_of(key, config);
  const int BM = s.block_m, BN = s.block_n, D = s.padded_dim, DV = s.padded_dim_v, STAGES = s.stages;
  const int SLICE = s.slice_v;  /* O's columns one warp holds: DV, or DV / o_split */

  tile_gpu tgs, *tg = &tgs;
  tile_gpu_begin(tg, module, target, function_name, sizeof(gpu_attention_params), s.dtype, s.warps);
  tile_builder *tb = &tg->tb;
  LLVMBuilderRef ir = tb->b;

  /* ---- parameters ---- */
  LLVMValueRef seqlen_q = tile_gpu_param_i64(tg, P_OFF(seqlen_q));
  LLVMValueRef seqlen_kv = tile_gpu_param_i64(tg, P_OFF(seqlen_kv));
  LLVMValueRef scale_log2 = tile_gpu_param_f32(tg, P_OFF(scale_log2));
  /* A masked score is one whose scaled logit is -inf: -inf for a positive scale, +inf for a negative. */
  LLVMValueRef masked_score = LLVMBuildSelect(ir, LLVMBuildFCmp(ir, LLVMRealOLT, scale_log2, tile_f32(tb, 0.0f), ""),
                                              tile_f32(tb, INFINITY), tile_f32(tb, -INFINITY), "");

  block_coordinates at = block_coordinates_of(tg, &s, tile_gpu_block_index(tg));
  LLVMValueRef b = at.batch, kv_h = at.kv_head, q0 = at.q0;
  LLVMValueRef k_start = NULL;  /* packed keys: this sequence's first row of k and v */
  if (s.varlen_k)
    attention_fwd_nvptx_sequence_keys(tg, b, seqlen_kv, &k_start, &seqlen_kv);
  else if (s.varlen)
    seqlen_kv = sequence_keys(tg, b, seqlen_kv);
  LLVMValueRef q_start = NULL;
  if (s.varlen_q) {  /* this sequence's queries; a block whose tile lies past them has nothing to do */
    attention_fwd_nvptx_sequence_queries(tg, b, seqlen_q, &q_start, &seqlen_q);
    tile_return_unless(tb, tile_lt(tb, q0, slot_rows(tg, &s, seqlen_q)));
  }
  /* Bottom-right aligned: query i sees keys j <= i + last_diagonal when causal and j >= i +
   * first_diagonal with a window. */
  LLVMValueRef diagonal = tile_sub(tb, seqlen_kv, seqlen_q);
  LLVMValueRef last_diagonal = s.causal ? tile_add(tb, diagonal, tile_gpu_param_i64(tg, P_OFF(window_right))) : NULL;
  LLVMValueRef first_diagonal = s.window ? tile_sub(tb, diagonal, tile_gpu_param_i64(tg, P_OFF(window_left))) : NULL;
  /* ALiBi's slopes are in the scaled scores' units: -1 / softmax_scale takes them to the raw scores' */
  LLVMValueRef alibi_unit = s.alibi ? LLVMBuildFDiv(ir, tile_f32(tb, -1.4426950408889634f), scale_log2, "") : NULL;

  tile_gpu_global q, k, v;
  const row_layout kv_rows = s.page_size > 0 ? ROWS_PAGED : ROWS_PLAIN;
  head_view(tg, &s, &q, P_OFF(q), P_OFF(q_stride), b, at.head, q_start, seqlen_q,
            s.pack_gqa ? ROWS_GROUPED : ROWS_PLAIN);
  head_view(tg, &s, &k, P_OFF(k), P_OFF(k_stride), b, kv_h, k_start, seqlen_kv, kv_rows);
  head_view(tg, &s, &v, P_OFF(v), P_OFF(v_stride), b, kv_h, k_start, seqlen_kv, kv_rows);

  /* ---- shared memory: Q, then the ring of K tiles, then the ring of V tiles; with an fp8 cache, one K
   * and one V tile, then the staging rings of raw K and V bytes (shared_bytes) ---- */
  const int k_bytes = BN * D * 2, v_bytes = BN * DV * 2, q_bytes = BM * D * 2, v_ring = q_bytes + STAGES * k_bytes;
  const int k_staging = q_bytes + k_bytes + v_bytes, v_staging = k_staging + STAGES * BN * D;
  tile_gpu_shared q_tile = {tile_gpu_i32(tg, 0), BM, D, s.swizzle, 0};
#define RING(offset, stage, tile_bytes, cols, swizzled)                                             \
  ((tile_gpu_shared){LLVMBuildAdd(ir, tile_gpu_i32(tg, (offset)),                                  \
                                  LLVMBuildMul(ir, (stage), tile_gpu_i32(tg, (tile_bytes)), ""), ""), \
                     BN, (cols), (swizzled), 0})
#define K_RING(stage) RING(q_bytes, stage, k_bytes, D, s.swizzle)
#define V_RING(stage) RING(v_ring, stage, v_bytes, DV, s.swizzle)
#define K_STAGING(stage) RING(k_staging, stage, BN * D, D, s.swizzle)
#define V_STAGING(stage) RING(v_staging, stage, BN * DV, DV, s.swizzle)
/* The K and V tiles of rows [row, row + BN) into ring stage `stage`: as they are, or an fp8 cache's raw */
#define COPY_KV_TILES(stage, row)                                                \
  do {                                                                           \
    tile_gpu_shared k_to = s.kv_fp8 ? K_STAGING(stage) : K_RING(stage);          \
    tile_gpu_shared v_to = s.kv_fp8 ? V_STAGING(stage) : V_RING(stage);          \
    if (s.kv_fp8) {                                                              \
      tile_gpu_copy_fp8_raw(tg, &k_to, &k, (row));                               \
      tile_gpu_copy_fp8_raw(tg, &v_to, &v, (row));                               \
    } else {                                                                     \
      tile_gpu_copy(tg, &k_to, &k, (row));                                       \
      tile_gpu_copy(tg, &v_to, &v, (row));                                       \
    }                                                                            \
  } while (0)
  const tile_gpu_shared k_widened = {tile_gpu_i32(tg, q_bytes), BN, D, s.swizzle, 0};
  const tile_gpu_shared v_widened = {tile_gpu_i32(tg, q_bytes + k_bytes), BN, DV, s.swizzle, 0};

  /* K/V tiles this Q tile reads: causal tiles stop after the last query's diagonal; windowed ones
   * start at the tile of the first query's first key. */
  LLVMValueRef kv_end = seqlen_kv;
  if (s.causal) {
    LLVMValueRef last_position = row_position(tg, &s, tile_add(tb, q0, tile_i64(tb, BM - 1)));
    LLVMValueRef end = tile_add(tb, tile_add(tb, last_position, tile_i64(tb, 1)), last_diagonal);
    kv_end = tile_max(tb, tile_i64(tb, 0), tile_min(tb, seqlen_kv, end));
  }
  LLVMValueRef kv_tiles = LLVMBuildSDiv(ir, tile_add(tb, kv_end, tile_i64(tb, BN - 1)), tile_i64(tb, BN), "");
  LLVMValueRef first = tile_i64(tb, 0);
  if (s.window) {
    LLVMValueRef start = tile_add(tb, row_position(tg, &s, q0), first_diagonal);
    first = LLVMBuildUDiv(ir, tile_max(tb, tile_i64(tb, 0), start), tile_i64(tb, BN), "");
  }
  /* This block's tiles [first, last): all of them, or with split_kv its part's (maybe none). */
  LLVMValueRef last = kv_tiles;
  if (s.split_kv) {
    LLVMValueRef per_part = tile_gpu_param_i64(tg, P_OFF(kv_split_tiles));
    first = tile_add(tb, first, tile_mul(tb, at.part, per_part));
    last = tile_min(tb, kv_tiles, tile_add(tb, first, per_part));
  }

  /* ---- prologue: Q, and the first stages - 1 K/V tiles, one cp.async group each ---- */
  tile_gpu_copy(tg, &q_tile, &q, q0);
  tile_gpu_commit(tg);
  for (int stage = 0; stage < STAGES - 1; stage++) {
    LLVMValueRef tile = tile_add(tb, first, tile_i64(tb, stage));
    tile_if present;
    tile_if_begin(tb, &present, tile_lt(tb, tile, last));
    LLVMValueRef ring_stage = LLVMBuildTrunc(ir, LLVMBuildURem(ir, tile, tile_i64(tb, STAGES), ""), tb->i32, "");
    COPY_KV_TILES(ring_stage, tile_mul(tb, tile, tile_i64(tb, BN)));
    tile_if_end(tb, &present);
    tile_gpu_commit(tg);  /* empty groups too: group n always holds tile n */
  }

  LLVMValueRef warp_row0 = warp_first_row(tg, &s);
  tile_gpu_afrag q_frag;
  if (s.q_in_regs) {
    tile_gpu_wait(tg, STAGES - 1);  /* the Q group; the K/V groups may still be in flight */
    tile_gpu_sync(tg);
    tile_gpu_load_a(tg, &q_frag, &q_tile, warp_row0, s.m_tiles);
  }

  /* ---- running state: O, and per row the max m (base-2 logits) and this thread's part of the sum l */
  tile_gpu_acc out;
  tile_gpu_acc_init(tg, &out, s.m_tiles, SLICE / 8, 0.0f);
  tile_gpu_acc_make_var(tg, &out);
  tile_gpu_rows row_max, row_sum;
  tile_gpu_rows_init(tg, &row_max, s.m_tiles, tile_f32(tb, -INFINITY));
  tile_gpu_rows_init(tg, &row_sum, s.m_tiles, tile_f32(tb, 0.0f));
  if (s.sinks) seed_sinks(tg, &s, &at, warp_row0, &row_max, &row_sum);
  tile_gpu_rows_make_var(tg, &row_max);
  tile_gpu_rows_make_var(tg, &row_sum);

  tile_loop kv_loop;
  LLVMValueRef j = tile_for(tb, &kv_loop, first, last, tile_i64(tb, 1), "kv");
  {
    tile_gpu_refresh_lanes(tg);
    /* Tile j has landed (for every thread after the barrier), and every warp is done with tile j - 1,
     * whose stage the next copy overwrites. */
    tile_gpu_wait(tg, STAGES - 2);
    tile_gpu_sync(tg);
    LLVMValueRef next = tile_add(tb, j, tile_i64(tb, STAGES - 1));
    tile_if more;
    tile_if_begin(tb, &more, tile_lt(tb, next, last));
    LLVMValueRef next_stage = LLVMBuildTrunc(ir, LLVMBuildURem(ir, next, tile_i64(tb, STAGES), ""), tb->i32, "");
    if (s.page_size > 0) {
      /* The block-table row anew from a block index LLVM cannot merge with the first read: a few
       * instructions per tile instead of a pointer held in registers across the loop, where paged
       * kernels sit at the 255-register edge. */
      block_coordinates again = block_coordinates_of(tg, &s, tile_gpu_block_index_opaque(tg));
      k.table = v.table = block_table_row(tg, again.batch);
    }
    COPY_KV_TILES(next_stage, tile_mul(tb, next, tile_i64(tb, BN)));
    tile_if_end(tb, &more);
    tile_gpu_commit(tg);

    LLVMValueRef stage = LLVMBuildTrunc(ir, LLVMBuildURem(ir, j, tile_i64(tb, STAGES), ""), tb->i32, "");
    tile_gpu_shared k_tile = K_RING(stage);
    tile_gpu_shared v_tile = V_RING(stage);
    if (s.kv_fp8) {
      /* Tile j's raw bytes have landed (the barrier above); every warp is done with the widened tiles of
       * tile j - 1 (the same barrier): widen tile j into them, and let every warp see it. */
      tile_gpu_shared k_raw = K_STAGING(stage), v_raw = V_STAGING(stage);
      tile_gpu_convert_fp8(tg, &k_widened, &k_raw, (dtype_id)s.kv_fp8);
      tile_gpu_convert_fp8(tg, &v_widened, &v_raw, (dtype_id)s.kv_fp8);
      tile_gpu_sync(tg);
      k_tile = k_widened;
      v_tile = v_widened;
    }
    LLVMValueRef n0 = tile_mul(tb, j, tile_i64(tb, BN));
    warp_row0 = warp_first_row(tg, &s);

    /* S = Q K^T; scale_log2 * S are the base-2 logits, applied inside the max and the exp2 below */
    tile_gpu_acc scores;
    tile_gpu_acc_init(tg, &scores, s.m_tiles, BN / 8, 0.0f);
    tile_gpu_dot(tg, &scores, s.q_in_regs ? &q_frag : NULL, &q_tile, warp_row0, &k_tile, 1, D / 16);

    /* Mask keys past the end, past each query's diagonal and before its window, only in tiles that
     * have any. */
    LLVMValueRef past_end = tile_lt(tb, seqlen_kv, tile_add(tb, n0, tile_i64(tb, BN)));
    LLVMValueRef needs_mask = past_end;
    if (s.causal) {
      LLVMValueRef first_position = row_position(tg, &s, q0);
      LLVMValueRef crosses =
          tile_lt(tb, tile_add(tb, first_position, last_diagonal), tile_add(tb, n0, tile_i64(tb, BN - 1)));
      needs_mask = LLVMBuildOr(ir, needs_mask, crosses, "");
    }
    if (s.window) {
      LLVMValueRef last_position = row_position(tg, &s, tile_add(tb, q0, tile_i64(tb, BM - 1)));
      LLVMValueRef crosses = tile_lt(tb, n0, tile_add(tb, last_position, first_diagonal));
      needs_mask = LLVMBuildOr(ir, needs_mask, crosses, "");
    }
    /* soft-capping (key.softcap), before the masks: q.k becomes softcap_out tanh(softcap_in q.k) */
    if (s.softcap)
      tile_gpu_tanh_scaled(tg, &scores, tile_gpu_param_f32(tg, P_OFF(softcap_in)), tile_gpu_param_f32(tg, P_OFF(softcap_out)));
    if (s.alibi) add_alibi(tg, &s, &at, &scores, warp_row0, n0, diagonal, alibi_unit);
    if (s.bias) add_bias(tg, &s, &at, &scores, warp_row0, n0, seqlen_q, seqlen_kv);
    tile_gpu_rows first_seen, end_seen;
    keys_visible(tg, &s, &first_seen, &end_seen, warp_row0, q0, n0, seqlen_kv, last_diagonal, first_diagonal);
    tile_gpu_mask_columns(tg, &scores, s.window ? &first_seen : NULL, &end_seen, needs_mask, masked_score);

    /* Online softmax. A row that has seen no key keeps max -inf; subtracting 0 instead keeps its P
     * and its rescale factor exactly 0. */
    tile_gpu_rows_load(tg, &row_max);
    tile_gpu_rows_load(tg, &row_sum);
    tile_gpu_rows new_max, base, alpha, tile_sum;
    tile_gpu_row_max_scaled(tg, &scores, scale_log2, &row_max, &new_max);
    tile_gpu_rows_replace_neg_inf(tg, &new_max, 0.0f, &base);
    tile_gpu_rows_binary(tg, TILE_GPU_ROWS_SUB, &row_max, &base, &alpha);
    tile_gpu_rows_exp2(tg, &alpha, &alpha);
    tile_gpu_exp2_scaled_minus_rows(tg, &scores, scale_log2, &base);  /* scores now hold P */
    tile_gpu_row_sum_partial(tg, &scores, &tile_sum);
    tile_gpu_rows_binary(tg, TILE_GPU_ROWS_MUL, &row_sum, &alpha, &row_sum);
    tile_gpu_rows_binary(tg, TILE_GPU_ROWS_ADD, &row_sum, &tile_sum, &row_sum);
    for (int r = 0; r < 2 * s.m_tiles; r++) row_max.v[r] = new_max.v[r];
    tile_gpu_rows_store(tg, &row_max);
    tile_gpu_rows_store(tg, &row_sum);

    /* O = alpha O + P V, P rounded to the input dtype in registers. P is packed first: across the
     * rescale's branch its fp32 scores would hold twice the registers (FA2's 128 x 64 tiles of 4 warps
     * fit at d = 128 only this way). */
    tile_gpu_afrag p_frag;
    tile_gpu_acc_to_a(tg, &scores, &p_frag);
    tile_gpu_acc_load(tg, &out);
    tile_gpu_scale_rows_unless_one(tg, &out, &alpha);
    tile_gpu_shared v_columns = v_tile;  /* with o_split, this warp's slice of V's columns */
    if (s.o_split > 1)
      v_columns = tile_gpu_shared_columns(tg, &v_tile, LLVMBuildTrunc(ir, warp_first_column(tg, &s), tb->i32, ""), SLICE);
    tile_gpu_dot(tg, &out, &p_frag, NULL, NULL, &v_columns, 0, BN / 16);
    tile_gpu_acc_store(tg, &out);
  }
  tile_end_for(tb, &kv_loop);
  tile_gpu_refresh_lanes(tg);
  warp_row0 = warp_first_row(tg, &s);
  tile_gpu_wait(tg, 0);  /* nothing may be in flight when the block exits */

  /* ---- epilogue: O / l, and log2 of each row's sum of exponentials (-inf for a row that saw nothing);
   * to o and lse, or with split_kv to this part's rows of the workspace ---- */
  tile_gpu_acc_load(tg, &out);
  tile_gpu_rows_load(tg, &row_max);
  tile_gpu_rows_load(tg, &row_sum);
  tile_gpu_rows_reduce_sum(tg, &row_sum);
  tile_gpu_rows inverse, log2_sum;
  tile_gpu_rows_reciprocal_or_zero(tg, &row_sum, &inverse);
  if (s.kv_fp8) {  /* an fp8 cache's values are v / v_scale: o = v_scale sum p v / l */
    LLVMValueRef v_scale = tile_gpu_param_f32(tg, P_OFF(v_scale));
    for (int r = 0; r < 2 * s.m_tiles; r++) inverse.v[r] = LLVMBuildFMul(ir, inverse.v[r], v_scale, "");
  }
  log2_sum.m_tiles = s.m_tiles;
  for (int r = 0; r < 2 * s.m_tiles; r++) {
    LLVMValueRef l = row_sum.v[r];
    LLVMValueRef seen = LLVMBuildFCmp(ir, LLVMRealOGT, l, tile_f32(tb, 0.0f), "");
    LLVMValueRef log2_l = tile_gpu_lg2(tg, LLVMBuildSelect(ir, seen, l, tile_f32(tb, 1.0f), ""));
    log2_sum.v[r] = LLVMBuildSelect(ir, seen, LLVMBuildFAdd(ir, row_max.v[r], log2_l, ""), tile_f32(tb, -INFINITY), "");
  }
  at = block_coordinates_of(tg, &s, tile_gpu_block_index_opaque(tg));
  LLVMValueRef col0 = warp_first_column(tg, &s);
  if (!s.split_kv) {
    store_result(tg, &s, &out, &inverse, &log2_sum, &at, warp_row0, col0);
  } else {
    LLVMValueRef split = tile_lt(tb, tile_i64(tb, 1), tile_gpu_param_i64(tg, P_OFF(kv_splits)));
    tile_if parts, whole;
    tile_if_begin(tb, &parts, split);
    store_part(tg, &s, &out, &inverse, &log2_sum, &at, warp_row0, col0);
    tile_if_end(tb, &parts);
    tile_if_begin(tb, &whole, LLVMBuildNot(ir, split, ""));
    store_result(tg, &s, &out, &inverse, &log2_sum, &at, warp_row0, col0);
    tile_if_end(tb, &whole);
  }
  tile_gpu_end(tg);
#undef RING
#undef K_RING
#undef V_RING
#undef K_STAGING
#undef V_STAGING
#undef COPY_KV_TILES
  if (!s.split_kv) return FJ_OK;
  char combine[160];
  snprintf(combine, sizeof combine, "%s%s", function_name, GPU_COMBINE_SUFFIX);
  return attention_fwd_nvptx_generate_combine(module, key, target, combine);
}
#undef P_OFF

const kernel_family attention_fwd_nvptx_family = {
    .name = "attention_fwd_nvptx",
    .backend = "cuda",
    .generator_version = GENERATOR_VERSION,
    .params_bytes = sizeof(gpu_attention_params),
    .num_params = P_COUNT,
    .params = params,
    .problem_supported = problem_supported,
    .config_valid = config_valid,
    .default_config = default_config,
    .generate = generate,
    .codegen_key = codegen_key,
    .job_count = job_count,
    .scratch_bytes = scratch_bytes,
    .block_threads = block_threads,
    .splits_kv = splits_kv,
    .generate_merge = attention_merge_nvptx_generate,
};
