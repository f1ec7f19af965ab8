/*
 * flashjit.h: the one public header of flashjit, a library that JIT-compiles flash-attention kernels
 * for the device it finds and tunes them. Everything here is C11; every handle is opaque; every
 * function that can fail returns fj_status and leaves a thread-local message in fj_last_error().
 * Tensors cross the boundary as DLPack DLTensor (strides in elements, NULL strides = row-major);
 * the library never owns, frees or keeps caller memory beyond a call.
 */
#ifndef FLASHJIT_H
#define FLASHJIT_H

#include <stddef.h>
#include <stdint.h>
#include <dlpack/dlpack.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(FJ_BUILDING)
#define FJ_API __attribute__((visibility("default")))
#else
#define FJ_API
#endif

#define FJ_VERSION_MAJOR 0
#define FJ_VERSION_MINOR 1
#define FJ_VERSION_PATCH 0

/* Status codes and their strings come from this one list. */
#define FJ_STATUS_MAP(X)                                                          \
  X(OK, 0, "ok")                                                                  \
  X(INVALID_ARGUMENT, 1, "invalid argument")                                      \
  X(UNSUPPORTED, 2, "unsupported")                                                \
  X(NO_DEVICE, 3, "no such device")                                               \
  X(OUT_OF_MEMORY, 4, "out of memory")                                            \
  X(COMPILE_FAILED, 5, "kernel compilation failed")                               \
  X(DRIVER, 6, "driver error")                                                    \
  X(IO, 7, "input/output error")                                                  \
  X(INTERNAL, 8, "internal error")

typedef enum fj_status {
#define FJ_STATUS_ENUM_(name, value, text) FJ_##name = value,
  FJ_STATUS_MAP(FJ_STATUS_ENUM_)
#undef FJ_STATUS_ENUM_
} fj_status;

/* A static string for a status ("invalid argument"); "unknown status" for values outside the list. */
FJ_API const char *fj_status_string(fj_status status);

/* The message of the last failed call on this thread, naming the argument and the values that were
 * wrong ("k.shape[3]=96 but q.shape[3]=128"); "" when no call has failed. Valid until the next call
 * into flashjit on the same thread. Never NULL. */
FJ_API const char *fj_last_error(void);

/* The library's version, "MAJOR.MINOR.PATCH"; a static string, never NULL. */
FJ_API const char *fj_version_string(void);

/* ---- log messages ----
 * The library reports what a caller may want to know but that is no call's failure (a cache file it
 * could not write, a tuned config it could not use, at the info and debug levels which kernel each
 * shape gets and why). By default each message is a line "flashjit: <level>: <message>" on stderr, and
 * the level is FLASHJIT_LOG's (error, warn, info, debug or off; warn when unset). */
typedef enum fj_log_level {
  FJ_LOG_OFF = -1,  /* fj_set_log_level only: no messages */
  FJ_LOG_ERROR = 0,
  FJ_LOG_WARN = 1,
  FJ_LOG_INFO = 2,
  FJ_LOG_DEBUG = 3
} fj_log_level;

/* Receives one message (without the "flashjit: <level>: " prefix and without a newline; valid only
 * during the call) on the thread that logged it: the caller's, or one of the library's worker or
 * compile threads. Messages are handed over one at a time. A message logged from inside the handler
 * (a flashjit call it makes) goes to stderr instead, so a handler never deadlocks or recurses. */
typedef void (*fj_log_handler)(fj_log_level level, const char *message, void *user);

/* Sends every message at or above the log level to handler, with user passed through, instead of
 * stderr; NULL restores stderr. Process-wide; always FJ_OK. When it returns, the previous handler is no
 * longer running on any other thread and will not be called again, so its user data may be freed. */
FJ_API fj_status fj_set_log_handler(fj_log_handler handler, void *user);

/* Sets the process's log level, overriding FLASHJIT_LOG: FJ_LOG_OFF, FJ_LOG_ERROR ... FJ_LOG_DEBUG.
 * FJ_INVALID_ARGUMENT (and no change) for any other value. */
FJ_API fj_status fj_set_log_level(int level);

/* DLPack 1.1's type codes of the fp8 types k and v may have (DLDataType.code, with bits 8 and lanes 1);
 * an older dlpack.h has no name for them. */
#define FJ_DLPACK_FLOAT8_E4M3FN 10
#define FJ_DLPACK_FLOAT8_E5M2 12

/* ---- context ------------------------------------------------------------------------------------ */

typedef struct fj_context fj_context;

typedef struct fj_context_options {
  /* Set by fj_context_options_init; lets the struct grow without breaking callers. */
  uint32_t struct_size;
  /* "auto" (the best device found; also when NULL), "cpu", "cuda:N" (NVIDIA), later "hip:N".
   * The environment variable FLASHJIT_DEVICE is used when this is NULL. */
  const char *device;
  /* Where compiled kernels (and the tuning database) live. NULL: FLASHJIT_CACHE_DIR, else
   * $XDG_CACHE_HOME/flashjit, else ~/.cache/flashjit. Created if missing. */
  const char *cache_dir;
  /* Worker threads for the CPU device; 0 = one per online core. */
  int num_threads;
  /* Non-zero: compile every kernel in memory, never read or write the disk cache. */
  int disable_disk_cache;
  /* Non-zero: do not note the problems this context's calls serve. By default the first call of each
   * problem key adds one line (its sizes, in the shapes-file format) to <cache>/served-<device>.txt, e.g.
   * served-cuda-0.txt, once across all processes sharing the cache, for `flashjit tune --served`; a
   * folder that cannot be written just leaves no line. Benchmarks and tuners set it (their calls are not
   * traffic). No effect with disable_disk_cache, which writes nothing to disk. */
  int disable_served_log;
} fj_context_options;

/* Fills the first `size` bytes of *options (the caller's sizeof, which may be a smaller struct of an
 * older header or a larger one of a newer) with the defaults, struct_size the bytes written; writes
 * nothing past them. Bindings that declare the struct themselves (ctypes) call this with its size.
 * NULL, or size under 4: nothing. */
FJ_API void fj_context_options_init_size(fj_context_options *options, size_t size);
/* The same with the whole struct of the library's own header. In C the macro makes every call pass the
 * caller's own sizeof, so a program built against an older header stays inside its struct. */
FJ_API void fj_context_options_init(fj_context_options *options);
#define fj_context_options_init(options) fj_context_options_init_size((options), sizeof *(options))

/* Creates a context on the device that options selects. options may be NULL (all defaults).
 * Returns FJ_INVALID_ARGUMENT (bad option values, NULL out), FJ_NO_DEVICE (no such device),
 * FJ_OUT_OF_MEMORY, FJ_IO (cache directory unusable). *out is set to NULL on failure.
 * A context may be used from several threads at once. */
FJ_API fj_status fj_context_create(const fj_context_options *options, fj_context **out);

/* Destroys a context and every kernel it loaded. NULL is accepted and does nothing. Always FJ_OK. */
FJ_API fj_status fj_context_destroy(fj_context *context);

/* Copies the name of the context's device ("cpu: AMD EPYC ..."), truncated to size, NUL-terminated. */
FJ_API fj_status fj_context_device_name(const fj_context *context, char *buffer, size_t size);

/* A problem described by its sizes alone (no tensors): what a deployment serves, for warming a context
 * up before traffic arrives (and what `flashjit tune` and `flashjit cache warm` read from a shapes file
 * or a preset). The tensors it stands for are packed, row-major [batch, seq, heads, head_dim]. */
typedef struct fj_problem_shape {
  /* Set by fj_problem_shape_init. */
  uint32_t struct_size;
  /* fp32, fp16 or bf16 as DLPack spells them ({kDLFloat,32,1}, {kDLFloat,16,1}, {kDLBfloat,16,1}). */
  DLDataType dtype;
  int64_t batch, seqlen_q, seqlen_kv;  /* batch >= 1, seqlen_q >= 1, seqlen_kv >= 0 */
  int heads, kv_heads;                 /* heads a multiple of kv_heads */
  int head_dim;                        /* a multiple of 8 from 8 to 576 */
  int causal;                          /* as fj_attention_args.causal */
  int with_lse;                        /* non-zero: the calls will ask for the LSE */
  /* Non-zero: the calls give seqlens_kv (each sequence its own key count, seqlen_kv at most). */
  int varlen;
  /* > 0: the calls read a paged cache (block_table) of pages of this many keys; seqlen_kv is then
   * each sequence's keys (the tuner's tensors give every sequence ceil(seqlen_kv / page_size) pages,
   * and seqlens_kv = seqlen_kv when varlen). 0: k and v are [batch, seqlen_kv, ...]. */
  int page_size;
  /* As fj_attention_args.windowed, window_left and window_right (0, -1, -1 by default: no window). */
  int windowed;
  int64_t window_left, window_right;
  /* Non-zero: the calls give cu_seqlens_q (ragged queries, seqlen_q then their max_seqlen_q; the
   * tuner's tensors give every sequence seqlen_q queries). */
  int varlen_q;
  /* Non-zero: the calls give sinks (fj_attention_args.sinks). */
  int sinks;
  /* As fj_attention_args.softcap (0: none); the tuner's calls use this value. */
  float softcap;
  /* k's and v's dtype when the calls read an fp8 KV cache: FJ_DLPACK_FLOAT8_E4M3FN or _E5M2 (bits 8,
   * lanes 1); {0, 0, 0} (the default) or dtype itself: k and v of dtype. Warming up loads the fp8
   * kernel; the tuner tunes the problem with k and v of dtype, whose winner the fp8 calls use. */
  DLDataType kv_dtype;
  /* Non-zero: the calls give cu_seqlens_k (packed keys, every sequence seqlen_kv of them; not with a
   * page_size), and alibi_slopes. Warming up loads their kernels; the tuner tunes the problem with
   * seqlens_kv instead of packed keys and without ALiBi, whose winners such calls use. */
  int packed_k;
  int alibi;
  /* v's (and o's) head dim when it differs from head_dim (DeepSeek's MLA prefill: head_dim 192,
   * head_dim_v 128); 0 (the default): head_dim. A multiple of 8 from 8 to 576. */
  int head_dim_v;
  /* attn_bias's dtype when the calls give one: fp32 or dtype itself; {0, 0, 0} (the default): none.
   * Warming up loads the kernel that adds it (of a bias whose keys are consecutive elements, as a packed
   * tensor's are; another stride along the keys has a kernel of its own); the tuner tunes the problem
   * without it, whose winner the calls with a bias use. */
  DLDataType attn_bias_dtype;
} fj_problem_shape;

/* Fills *shape with the defaults: bf16, batch 1, 8 heads and kv heads, seqlen 2048 (q and kv), head
 * dim 128, not causal, no window, no LSE; the first `size` bytes only, as fj_context_options_init_size. */
FJ_API void fj_problem_shape_init_size(fj_problem_shape *shape, size_t size);
FJ_API void fj_problem_shape_init(fj_problem_shape *shape);
#define fj_problem_shape_init(shape) fj_problem_shape_init_size((shape), sizeof *(shape))

/* Compiles (or loads from the disk cache) and loads into the context the kernel that calls of each of
 * the count shapes will use (the tuned winner for the context's device when the tuning database has
 * one, else the default), so that the first real call of a shape costs no compile. A call whose
 * sequence lengths fall into the same power-of-two bucket as a warmed shape reuses its kernel.
 * shapes may be NULL only when count is 0. *loaded (may be NULL) gets the number of shapes whose
 * kernel is now loaded. Stops at the first failure: FJ_INVALID_ARGUMENT naming the shape and field
 * ("shapes[2].head_dim=96 ..."), FJ_UNSUPPORTED, FJ_COMPILE_FAILED, FJ_OUT_OF_MEMORY. The shapes are
 * only read during the call. */
FJ_API fj_status fj_context_warmup(fj_context *context, const fj_problem_shape *shapes, size_t count,
                                   size_t *loaded);

/* ---- attention ---------------------------------------------------------------------------------- */

typedef struct fj_attention_args {
  /* Set by fj_attention_args_init. */
  uint32_t struct_size;
  /* q: [batch, seqlen_q, heads, head_dim]; k, v: [batch, seqlen_kv, kv_heads, head_dim];
   * o: like q. Any strides (in elements; packed QKV views work); fp32, fp16 or bf16, all four the same
   * dtype, except that k and v may both be fp8 (an fp8 KV cache, see k_scale); head_dim a multiple of
   * 8 from 8 to 576; heads a multiple of kv_heads (GQA/MQA). v (and with it o) may have a head dim of its own, also a multiple of 8 from 8 to 576
   * (DeepSeek's MLA prefill: q and k 192, v and o 128; its absorbed decode: q and k 576, one KV head,
   * v the first 512 columns of k's own cache, a view of the same memory; on NVIDIA GPUs a v wider
   * than 256 must be a multiple of 128, FJ_UNSUPPORTED otherwise); softmax_scale's default is still
   * 1/sqrt(q's head_dim).
   * o must not overlap q, k, v or lse, and must not overlap itself. */
  const DLTensor *q;
  const DLTensor *k;
  const DLTensor *v;
  DLTensor *o;
  /* Optional, NULL for none: [batch, heads, seqlen_q] fp32, the natural-log sum of exp of each
   * scaled score row; -inf for a row with no key to attend to. */
  DLTensor *lse;
  /* Multiplies q.k before the softmax. 0 selects 1/sqrt(head_dim). Must be finite. */
  float softmax_scale;
  /* Non-zero: query i attends key j only when j <= i + seqlen_kv - seqlen_q (aligned to the
   * bottom-right corner, as FlashAttention does). A query with no key to attend to gives 0. */
  int causal;
  /* GPU backends: the stream to launch on (CUstream / hipStream_t); NULL = the default stream.
   * Ignored by the CPU, which returns when the result is written. A call may be captured into a CUDA
   * graph, its shape's first call included (its setup runs with the thread's capture mode relaxed);
   * replays launch what was captured, reading seqlens_kv, block_table and cu_seqlens_* anew. */
  void *stream;
  /* Optional, NULL for none: [batch] int32 on q's device, how many keys each sequence has. Sequence
   * b attends to keys 0 .. seqlens_kv[b] - 1 of k and v only (a KV cache filled to different lengths,
   * FlashAttention's cache_seqlens), and with causal its queries align to its own last key. Each value
   * must be from 0 to seqlen_kv (k.shape[1]); a sequence with 0 keys gives 0 (LSE -inf). On the CPU a
   * value outside is refused (FJ_INVALID_ARGUMENT); on a GPU, whose memory the call does not read, the
   * kernel clamps it into that range. */
  const DLTensor *seqlens_kv;
  /* Optional, NULL for none: a paged KV cache (vLLM's block tables). block_table is [batch, max_pages]
   * int32 on q's device; k and v are then page pools [pages, page_size, kv_heads, head_dim], and key j
   * of sequence b is row j % page_size of page block_table[b][j / page_size]. seqlen_kv is then
   * max_pages * page_size (at most 2^31 - 1), and seqlens_kv says how many of those keys each sequence
   * has. Only the entries a sequence reads (ceil(its keys / page_size)) need be filled; each must be
   * from 0 to pages - 1 (k.shape[0]). On the CPU an entry outside is refused (FJ_INVALID_ARGUMENT); on
   * a GPU, whose memory the call does not read, the kernel reads page 0 for it. Pages may be shared
   * between sequences, in any order. */
  const DLTensor *block_table;
  /* Optional, NULL for none: scratch memory the call may write, [bytes] uint8 on q's device, 16-byte
   * aligned, apart from every other argument. With it, a GPU call that would leave most of the
   * device's SMs idle (a decode step: batch x KV heads blocks) cuts each sequence's keys into parts run
   * by blocks of their own and merges them with a second kernel on the same stream (split-KV, with a
   * kernel whose config has split_kv=1, the decode default). It uses at most the bytes
   * fj_attention_workspace_size reports: a smaller workspace gives fewer parts, none gives none (the
   * result is the same, only slower). Nothing in it is kept between calls, but two calls that may run
   * at the same time (two streams) need two workspaces. The CPU, which splits a decode step's keys
   * over its threads, puts the parts there when it is large enough, else allocates its own. */
  DLTensor *workspace;
  /* Sliding-window (local) attention, FlashAttention's window_size, read only when windowed is
   * non-zero (so that args zeroed by hand have none): with window_left >= 0, query i attends key j only
   * when j >= i + seqlen_kv - seqlen_q - window_left (its diagonal key and the window_left keys before
   * it: Mistral's, Gemma's and gpt-oss's local layers pass sliding_window - 1); with window_right >= 0,
   * only when j <= i + seqlen_kv - seqlen_q + window_right. -1, the default, leaves that side open.
   * causal is window_right = 0, so with causal window_right must be -1 or 0. seqlen_kv is each
   * sequence's own where seqlens_kv is given. A query with no key in its window gives 0 (LSE -inf). */
  int windowed;
  int64_t window_left;
  int64_t window_right;
  /* Optional, NULL for none: ragged queries, FlashAttention's cu_seqlens_q (a batch of prompts of
   * different lengths packed end to end, as an engine's prefill or mixed prefill/decode step gives
   * them). [batch + 1] int32 on q's device: sequence b's queries are rows cu_seqlens_q[b] ..
   * cu_seqlens_q[b + 1] - 1 of q and o, which are then [total_q, heads, head_dim], and of lse, then
   * [heads, total_q]; batch is cu_seqlens_q.shape[0] - 1, and k, v, seqlens_kv and block_table are as
   * above for that batch. The offsets must not decrease, from cu_seqlens_q[0] >= 0 to
   * cu_seqlens_q[batch] <= total_q; rows outside them are not touched. max_seqlen_q, read only with
   * cu_seqlens_q, is the longest sequence's query count (from 0 to total_q): the kernel is chosen and
   * the launch sized by it. Causal masks and windows align each sequence's queries to its own last key.
   * On the CPU offsets or lengths outside these bounds are refused (FJ_INVALID_ARGUMENT); on a GPU,
   * whose memory the call does not read, the kernel clamps them into [0, total_q] and each length to
   * max_seqlen_q, so that it never writes outside o and lse. */
  const DLTensor *cu_seqlens_q;
  int64_t max_seqlen_q;
  /* Optional, NULL for none: attention sinks (gpt-oss's learned per-head logits), [heads] fp32 on q's
   * device. Each head's softmax gets one more term in its denominator, as if every query also saw a key
   * of score sinks[h] (in the units of the scaled scores, softmax_scale x q.k) whose value is zero:
   *     o = sum_j e^(s_j) v_j / (e^(sinks[h]) + sum_j e^(s_j)),
   * so a query may give part of its weight to nothing. The LSE counts that term too (o = sum_j
   * e^(s_j - lse) v_j still holds; merging two calls' results by their LSE would count it twice, so
   * give sinks to one of them); a query with no key to attend to gives 0 and LSE sinks[h]. Each value
   * must be finite: on the CPU one that is not is refused (FJ_INVALID_ARGUMENT); on a GPU, whose memory
   * the call does not read, it gives NaN in that head's rows (and writes nowhere else). */
  const DLTensor *sinks;
  /* Logit soft-capping (Gemma 2's attn_logit_softcapping, Grok's; FlashAttention's softcap): above 0,
   * each scaled score s = softmax_scale x q.k becomes softcap x tanh(s / softcap) before the masks and
   * the softmax, so that no logit passes +-softcap; 0, the default, leaves the scores as they are.
   * Must be finite and not negative. On NVIDIA GPUs tanh is the hardware's tanh.approx (relative error
   * about 2^-11, as FlashAttention's). */
  float softcap;
  /* Optional, NULL for none: packed keys, FlashAttention's cu_seqlens_k (the keys and values of a batch
   * of prompts packed end to end, as flash_attn_varlen_func takes them beside cu_seqlens_q). [batch + 1]
   * int32 on q's device: sequence b's keys are rows cu_seqlens_k[b] .. cu_seqlens_k[b + 1] - 1 of k and
   * v, which are then [total_k, kv_heads, head_dim]; batch is q's (or cu_seqlens_q's). The offsets must
   * not decrease, from cu_seqlens_k[0] >= 0 to cu_seqlens_k[batch] <= total_k; rows outside them are not
   * read. max_seqlen_k, read only with cu_seqlens_k, is the longest sequence's key count (from 0 to
   * total_k) and stands for seqlen_kv. Causal masks and windows align each sequence's queries to its own
   * last key. Not with seqlens_kv or block_table (a packed sequence's keys are all of its rows; a paged
   * cache has its own layout). Kernels are chosen by the winner tuned for seqlens_kv (`flashjit tune
   * --varlen`): the work is the same. On the CPU offsets or lengths outside these bounds are refused
   * (FJ_INVALID_ARGUMENT); on a GPU, whose memory the call does not read, the kernel clamps them into
   * [0, total_k] and each length to max_seqlen_k, so that it never reads outside k and v. */
  const DLTensor *cu_seqlens_k;
  int64_t max_seqlen_k;
  /* Optional, NULL for none: ALiBi (BLOOM's, MPT's linear biases), FlashAttention's alibi_slopes: fp32
   * [heads] or [batch, heads] on q's device. The scaled score of query i and key j of head h (sequence
   * b) gets -slope x |i + seqlen_kv - seqlen_q - j| added, slope = alibi_slopes[h] (or [b][h]), after
   * soft-capping and before the masks and the softmax; seqlen_kv and seqlen_q are each sequence's own
   * (the bias is 0 on a query's diagonal key and grows with the distance either side). Each value must
   * be finite: on the CPU one that is not is refused (FJ_INVALID_ARGUMENT); on a GPU, whose memory the
   * call does not read, it gives NaN or infinities in that head's rows (and writes nowhere else). */
  const DLTensor *alibi_slopes;
  /* An fp8 KV cache (vLLM's kv_cache_dtype="fp8", FlashInfer's fp8 pages): k and v both
   * FJ_DLPACK_FLOAT8_E4M3FN or both FJ_DLPACK_FLOAT8_E5M2 (bits 8, lanes 1) beside q and o of fp32,
   * fp16 or bf16. They hold the keys and values divided by k_scale and v_scale, the per-tensor scales
   * the cache was quantized with: the call attends to k_scale x k and v_scale x v. 0, the default,
   * selects 1; each must be finite and not negative, and they are read only when k and v are fp8.
   * The kernels convert each element exactly (every fp8 value is an fp16 and a bf16 value) as they copy
   * their K/V tiles; on NVIDIA GPUs the raw bytes arrive by cp.async and are widened in shared memory. */
  float k_scale;
  float v_scale;
  /* How a decode step's keys may be cut into parts run side by side (split-KV), merged by their LSEs:
   *  0 (the default): as the library sees fit for the device, from the batch (a GPU with a workspace, or
   *    the CPU's threads): fastest, but a row's last bits then depend on the batch it came in;
   *  > 0: every sequence's keys in parts of this many (rounded up to the kernel's key tile), whatever the
   *    batch, so that each row's result depends on its own sequence alone: batch-invariant and
   *    deterministic (serving that must reproduce a sequence's output, RL rollouts checked against a
   *    trainer). At most 64 parts: seqlen_kv / kv_split_keys <= 64, else FJ_INVALID_ARGUMENT. On a GPU the
   *    parts live in args.workspace (fj_attention_workspace_size gives the size); without one the call
   *    does not cut (also batch-invariant), and one too small is FJ_INVALID_ARGUMENT;
   *  -1: never cut (batch-invariant too, slower for short batches of long caches).
   * Steps of more than 16 queries are never cut when it is set (their jobs fill the device uncut), and the
   * 64-part bound does not apply to them. */
  int64_t kv_split_keys;
  /* Optional, NULL for none: an additive bias of the scores (PyTorch SDPA's float attn_mask, xformers'
   * attn_bias; a boolean mask is 0 where a key may be seen and -inf where not: padding masks, the tree
   * masks of speculative decoding, T5's relative position biases). [batch, heads, seqlen_q, seqlen_kv],
   * each dimension of that size or 1 (broadcast, as is a stride of 0), fp32 or q's dtype, on q's device,
   * any strides, apart from o and lse. Element [b][h][i][j] is added to the scaled score of sequence b's
   * query i and key j in head h (softmax_scale x q.k, after soft-capping and ALiBi), before the causal
   * mask and the window. seqlen_q and seqlen_kv are the call's: max_seqlen_q with cu_seqlens_q,
   * max_seqlen_k with cu_seqlens_k, block_table.shape[1] x page_size with a paged cache; i and j count
   * within each sequence (a padded bias, as for padded tensors). -inf masks a key; a query whose every
   * key is masked gives 0 and LSE -inf (SDPA gives NaN there). The call does not read the values to check
   * them: +inf or NaN give NaN in that query's row, and nothing is written anywhere else. */
  const DLTensor *attn_bias;
} fj_attention_args;

/* Fills *args with the defaults: no tensors, scale 0 (1/sqrt(head_dim)), not causal, no window (-1,
 * -1), NULL stream; the
 * first `size` bytes only, as fj_context_options_init_size (the struct grows: a ctypes binding of an
 * older layout passes its own size and is read only that far). */
FJ_API void fj_attention_args_init_size(fj_attention_args *args, size_t size);
FJ_API void fj_attention_args_init(fj_attention_args *args);
#define fj_attention_args_init(args) fj_attention_args_init_size((args), sizeof *(args))

/* o = softmax(scale * q k^T + mask) v, per batch and head (head h reads kv head h / (heads/kv_heads)).
 * Returns FJ_INVALID_ARGUMENT for any argument it cannot take, writing nothing; FJ_UNSUPPORTED for a
 * valid problem this device cannot run (a dtype, a memory kind); FJ_COMPILE_FAILED, FJ_DRIVER,
 * FJ_OUT_OF_MEMORY. The first call for a new problem compiles (or loads from the disk cache) a kernel;
 * later calls reuse it. A zero-length sequence is valid: nothing to write, or zeros for seqlen_kv=0. */
FJ_API fj_status fj_attention_forward(fj_context *context, const fj_attention_args *args);

/* *bytes = the most workspace (fj_attention_args.workspace) a call with these args would use: 0 where
 * it would not split its keys (enough blocks or jobs to fill the device; a kernel without split_kv).
 * Validates args as fj_attention_forward does (args->workspace may be NULL) and gets the kernel the
 * call will use (compiling it, or loading it from the disk cache, the first time), but launches
 * nothing. The size depends on batch, heads, seqlen_q, head_dim and seqlen_kv, so one workspace of the
 * largest shape's size serves every smaller call; it is never more than 128 x batch x heads x
 * seqlen_q x (head_dim + 1) x 4 bytes, a bound to allocate by without asking. FJ_INVALID_ARGUMENT where
 * bytes is NULL. */
FJ_API fj_status fj_attention_workspace_size(fj_context *context, const fj_attention_args *args, size_t *bytes);

/* ---- merging two results of the same queries ------------------------------------------------------ */

/* Two results of the same queries over disjoint sets of keys, each with its LSE (a prefix shared by many
 * sequences and each sequence's own keys, two chunks of a long cache, two devices' halves), merged into
 * the result over both sets: per (batch, query, head) row, in fp32,
 *     o = (e^lse_a o_a + e^lse_b o_b) / (e^lse_a + e^lse_b),   lse = log(e^lse_a + e^lse_b).
 * A side with lse -inf (no key) weighs nothing; -inf on both sides gives 0 and -inf. */
typedef struct fj_merge_args {
  /* Set by fj_merge_args_init. */
  uint32_t struct_size;
  /* [batch, seqlen_q, heads, head_dim], all three of one dtype (fp32, fp16 or bf16) and shape; ragged
   * queries ([total_q, heads, head_dim]) go as [1, total_q, heads, head_dim]. o may be o_a or o_b itself
   * (the same address and strides: merged in place); otherwise it must not overlap them. */
  const DLTensor *o_a, *o_b;
  DLTensor *o;
  /* fp32 [batch, heads, seqlen_q] as fj_attention_forward writes it (ragged: [1, heads, total_q]). lse may
   * be NULL (not written), or lse_a or lse_b itself. */
  const DLTensor *lse_a, *lse_b;
  DLTensor *lse;
  /* A GPU launch's stream (as fj_attention_args.stream); the CPU ignores it. */
  void *stream;
} fj_merge_args;

/* Fills the first `size` bytes of *args with the defaults (no tensors, the NULL stream), as
 * fj_attention_args_init_size does. */
FJ_API void fj_merge_args_init_size(fj_merge_args *args, size_t size);
FJ_API void fj_merge_args_init(fj_merge_args *args);
#define fj_merge_args_init(args) fj_merge_args_init_size((args), sizeof *(args))

/* Merges args' two results on the context's device: on the CPU it returns when done, on a GPU once the
 * launch is enqueued on args->stream (its kernel compiled once per dtype, and kept in the disk cache).
 * FJ_INVALID_ARGUMENT naming the argument and the values for tensors that disagree in shape, dtype or
 * device, or an output that overlaps anything but the input it replaces; FJ_OK at once for empty ones. */
FJ_API fj_status fj_attention_merge(fj_context *context, const fj_merge_args *args);

#ifdef __cplusplus
}
#endif
#endif /* FLASHJIT_H */
