/* nvptx_emu_warp.h: what one warp-wide NVIDIA instruction computes, as plain C over all 32 lanes at
 * once: mma.sync m16n8k16 (f16/bf16 operands, f32 accumulators), ldmatrix m8n8 x4 (plain and .trans)
 * shfl.sync bfly and vote.sync.any. The fragment layouts are written from the PTX ISA's text ("Matrix Fragments for
 * mma.m16n8k16 with floating point type", "Warp-level matrix load instruction: ldmatrix", "shfl.sync"),
 * not from src/tile/: the emulator exists to check the tile layer's layout helpers independently. The
 * emulator's scheduler (nvptx_emu_block.c) gathers the lanes' operands and calls these. */
#ifndef FJ_TESTS_NVPTX_EMU_WARP_H
#define FJ_TESTS_NVPTX_EMU_WARP_H
#include <stdint.h>

#define EMU_WARP 32

/* d = a * b + c for one m16n8k16 tile. a[lane][0..3] are the four .f16x2/.bf16x2 A registers of each
 * lane (low half = the lower-numbered element), b[lane][0..1] the two B registers, c and d the four f32
 * accumulators. Products are exact in fp32; they are summed in fp32 in k order onto c. */
void emu_warp_mma_m16n8k16(int bf16, const uint32_t a[EMU_WARP][4], const uint32_t b[EMU_WARP][2],
                           const float c[EMU_WARP][4], float d[EMU_WARP][4]);

/* ldmatrix.sync.aligned.m8n8.x4[.trans].b16: rows[lane] is the 16-byte row lane gives the address of
 * (row lane % 8 of matrix lane / 8); out[lane][m] is the register of matrix m that lane receives. */
void emu_warp_ldmatrix_x4(int transpose, const unsigned char *const rows[EMU_WARP],
                          uint32_t out[EMU_WARP][4]);

/* shfl.sync.bfly.b32 with every lane taking part: value of lane ^ b[lane] where that lane is inside
 * the lane's segment and clamp (c[lane]: clamp value in bits 0..4, segment mask in bits 8..12), else
 * the lane's own value. */
void emu_warp_shfl_bfly(const uint32_t value[EMU_WARP], const uint32_t b[EMU_WARP], const uint32_t c[EMU_WARP],
                        uint32_t out[EMU_WARP]);

/* vote.sync.any.pred with every lane taking part: every lane receives 1 when pred[lane] is nonzero in
 * any lane, else 0. */
void emu_warp_vote_any(const uint32_t pred[EMU_WARP], uint32_t out[EMU_WARP]);
#endif
