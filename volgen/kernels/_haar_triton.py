"""The Triton side of `volgen.kernels.haar` (imported on first use only, so a CPU install never needs Triton).
Helpers are module-level @triton.jit functions: kernels can call them, under the interpreter too."""
import triton
import triton.language as tl


@triton.jit
def forward_block(x000, x001, x010, x011, x100, x101, x110, x111, low):
    """The 8 subbands of one 2x2x2 block (x_dhw): butterflies along W, then H, then D."""
    lw00, hw00 = x000 + x001, x000 - x001
    lw01, hw01 = x010 + x011, x010 - x011
    lw10, hw10 = x100 + x101, x100 - x101
    lw11, hw11 = x110 + x111, x110 - x111
    ll0, hl0, lh0, hh0 = lw00 + lw01, lw00 - lw01, hw00 + hw01, hw00 - hw01
    ll1, hl1, lh1, hh1 = lw10 + lw11, lw10 - lw11, hw10 + hw11, hw10 - hw11
    norm = 0.35355339059327373
    return ((ll0 + ll1) * norm / low, (lh0 + lh1) * norm, (hl0 + hl1) * norm, (hh0 + hh1) * norm,   # aaa..add
            (ll0 - ll1) * norm, (lh0 - lh1) * norm, (hl0 - hl1) * norm, (hh0 - hh1) * norm)          # daa..ddd


@triton.jit
def inverse_block(s0, s1, s2, s3, s4, s5, s6, s7, low):
    """The 2x2x2 block (x_dhw) of 8 subbands: the same butterflies (the transform is its own inverse)."""
    s0 = s0 * low
    a0, a1 = s0 + s4, s0 - s4
    b0, b1 = s1 + s5, s1 - s5
    c0, c1 = s2 + s6, s2 - s6
    d0, d1 = s3 + s7, s3 - s7
    norm = 0.35355339059327373
    return ((a0 + c0 + b0 + d0) * norm, (a0 + c0 - b0 - d0) * norm,
            (a0 - c0 + b0 - d0) * norm, (a0 - c0 - b0 + d0) * norm,
            (a1 + c1 + b1 + d1) * norm, (a1 + c1 - b1 - d1) * norm,
            (a1 - c1 + b1 - d1) * norm, (a1 - c1 - b1 + d1) * norm)


@triton.jit
def load_block(ptr, base, H, W, mask):
    return (tl.load(ptr + base, mask=mask, other=0.0).to(tl.float32),
            tl.load(ptr + base + 1, mask=mask, other=0.0).to(tl.float32),
            tl.load(ptr + base + W, mask=mask, other=0.0).to(tl.float32),
            tl.load(ptr + base + W + 1, mask=mask, other=0.0).to(tl.float32),
            tl.load(ptr + base + H * W, mask=mask, other=0.0).to(tl.float32),
            tl.load(ptr + base + H * W + 1, mask=mask, other=0.0).to(tl.float32),
            tl.load(ptr + base + H * W + W, mask=mask, other=0.0).to(tl.float32),
            tl.load(ptr + base + H * W + W + 1, mask=mask, other=0.0).to(tl.float32))


@triton.jit
def store_block(ptr, base, H, W, mask, v0, v1, v2, v3, v4, v5, v6, v7):
    tl.store(ptr + base, v0, mask=mask)
    tl.store(ptr + base + 1, v1, mask=mask)
    tl.store(ptr + base + W, v2, mask=mask)
    tl.store(ptr + base + W + 1, v3, mask=mask)
    tl.store(ptr + base + H * W, v4, mask=mask)
    tl.store(ptr + base + H * W + 1, v5, mask=mask)
    tl.store(ptr + base + H * W + W, v6, mask=mask)
    tl.store(ptr + base + H * W + W + 1, v7, mask=mask)


@triton.jit
def load_bands(ptr, src, band, mask):
    return (tl.load(ptr + src, mask=mask, other=0.0).to(tl.float32),
            tl.load(ptr + src + band, mask=mask, other=0.0).to(tl.float32),
            tl.load(ptr + src + 2 * band, mask=mask, other=0.0).to(tl.float32),
            tl.load(ptr + src + 3 * band, mask=mask, other=0.0).to(tl.float32),
            tl.load(ptr + src + 4 * band, mask=mask, other=0.0).to(tl.float32),
            tl.load(ptr + src + 5 * band, mask=mask, other=0.0).to(tl.float32),
            tl.load(ptr + src + 6 * band, mask=mask, other=0.0).to(tl.float32),
            tl.load(ptr + src + 7 * band, mask=mask, other=0.0).to(tl.float32))


@triton.jit
def store_bands(ptr, src, band, mask, s0, s1, s2, s3, s4, s5, s6, s7):
    tl.store(ptr + src, s0, mask=mask)
    tl.store(ptr + src + band, s1, mask=mask)
    tl.store(ptr + src + 2 * band, s2, mask=mask)
    tl.store(ptr + src + 3 * band, s3, mask=mask)
    tl.store(ptr + src + 4 * band, s4, mask=mask)
    tl.store(ptr + src + 5 * band, s5, mask=mask)
    tl.store(ptr + src + 6 * band, s6, mask=mask)
    tl.store(ptr + src + 7 * band, s7, mask=mask)


@triton.jit
def lanes(n, D2, H2, W2, BLOCK: tl.constexpr):
    """One lane per block (b, c, i, j, k): its image offset, its subband offset, its (b, c) and the mask."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    k = offs % W2
    j = (offs // W2) % H2
    i = (offs // (W2 * H2)) % D2
    bc = offs // (W2 * H2 * D2)
    H, W = 2 * H2, 2 * W2
    base = bc * (2 * D2) * H * W + (2 * i) * H * W + (2 * j) * W + 2 * k
    src = bc * 8 * D2 * H2 * W2 + i * H2 * W2 + j * W2 + k
    return base, src, bc, offs < n


@triton.jit
def dwt(x_ptr, z_ptr, n, D2, H2, W2, low, BLOCK: tl.constexpr):
    base, out, bc, mask = lanes(n, D2, H2, W2, BLOCK)
    v = load_block(x_ptr, base, 2 * H2, 2 * W2, mask)
    s = forward_block(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], low)
    store_bands(z_ptr, out, D2 * H2 * W2, mask, s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7])


@triton.jit
def idwt(z_ptr, x_ptr, n, D2, H2, W2, low, BLOCK: tl.constexpr):
    base, src, bc, mask = lanes(n, D2, H2, W2, BLOCK)
    s = load_bands(z_ptr, src, D2 * H2 * W2, mask)
    v = inverse_block(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], low)
    store_block(x_ptr, base, 2 * H2, 2 * W2, mask, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7])


@triton.jit
def keep_known(z_ptr, known_ptr, mask_ptr, out_ptr, n, known_bc, D2, H2, W2, low, BLOCK: tl.constexpr):
    # decode one block, keep the known voxels (mask 0) and the estimate inside the mask (mask 1), encode
    base, src, bc, lane = lanes(n, D2, H2, W2, BLOCK)
    H, W = 2 * H2, 2 * W2
    known_base = base - (bc - bc % known_bc) * (2 * D2) * H * W        # the known image broadcasts over samples
    s = load_bands(z_ptr, src, D2 * H2 * W2, lane)
    v = inverse_block(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], low)
    k = load_block(known_ptr, known_base, H, W, lane)
    m = load_block(mask_ptr, known_base, H, W, lane)
    t = forward_block(k[0] + m[0] * (v[0] - k[0]), k[1] + m[1] * (v[1] - k[1]), k[2] + m[2] * (v[2] - k[2]),
                      k[3] + m[3] * (v[3] - k[3]), k[4] + m[4] * (v[4] - k[4]), k[5] + m[5] * (v[5] - k[5]),
                      k[6] + m[6] * (v[6] - k[6]), k[7] + m[7] * (v[7] - k[7]), low)
    store_bands(out_ptr, src, D2 * H2 * W2, lane, t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7])


@triton.jit
def plane_sums(v0, v1, v2, v3, v4, v5, v6, v7, AXIS: tl.constexpr):
    """The block's voxel pairs along AXIS summed: one value per in-plane position p = 2a + b (a, b the other two
    axes in order)."""
    if AXIS == 2:
        return v0 + v1, v2 + v3, v4 + v5, v6 + v7
    elif AXIS == 1:
        return v0 + v2, v1 + v3, v4 + v6, v5 + v7
    else:
        return v0 + v4, v1 + v5, v2 + v6, v3 + v7


@triton.jit
def along_axis(r0, r1, r2, r3, AXIS: tl.constexpr):
    """The block (x_dhw) of four in-plane values repeated along AXIS: the inverse pairing of plane_sums."""
    if AXIS == 2:
        return r0, r0, r1, r1, r2, r2, r3, r3
    elif AXIS == 1:
        return r0, r1, r0, r1, r2, r3, r2, r3
    else:
        return r0, r1, r2, r3, r0, r1, r2, r3


@triton.jit
def thick_slice_block(bc, u, w, axis_block, D2, H2, W2, AXIS: tl.constexpr):
    """(image offset, subband offset) of the block at in-plane block (u, w) and block `axis_block` along AXIS."""
    if AXIS == 2:
        i, j, k = u, w, axis_block
    elif AXIS == 1:
        i, j, k = u, axis_block, w
    else:
        i, j, k = axis_block, u, w
    H, W = 2 * H2, 2 * W2
    base = bc * (2 * D2) * H * W + (2 * i) * H * W + (2 * j) * W + 2 * k
    return base, bc * 8 * D2 * H2 * W2 + i * H2 * W2 + j * W2 + k


@triton.jit
def keep_thick_slices(z_ptr, obs_ptr, out_ptr, n, obs_bc, U, V, T, D2, H2, W2, low, o_a, o_b, o_t, o_bc,
                      M: tl.constexpr, AXIS: tl.constexpr, BLOCK: tl.constexpr):
    # one lane per (b, c, in-plane block (u, w), thick slice t): the M Haar blocks along AXIS that make up 2M thin
    # slices. Pass 1 decodes them for the thick slice's in-plane means; pass 2 decodes again, adds observed - mean
    # to every thin slice and encodes (the second read of the same blocks comes from cache).
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    lane = offs < n
    t = offs % T
    w = (offs // T) % V
    u = (offs // (T * V)) % U
    bc = offs // (T * V * U)
    band = D2 * H2 * W2
    m0 = tl.zeros((BLOCK,), dtype=tl.float32)
    m1 = tl.zeros((BLOCK,), dtype=tl.float32)
    m2 = tl.zeros((BLOCK,), dtype=tl.float32)
    m3 = tl.zeros((BLOCK,), dtype=tl.float32)
    for q in tl.static_range(M):
        base, src = thick_slice_block(bc, u, w, t * M + q, D2, H2, W2, AXIS)
        s = load_bands(z_ptr, src, band, lane)
        v = inverse_block(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], low)
        p = plane_sums(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], AXIS)
        m0 += p[0]
        m1 += p[1]
        m2 += p[2]
        m3 += p[3]
    obs = (bc % obs_bc) * o_bc + (2 * u) * o_a + (2 * w) * o_b + t * o_t
    scale = 1.0 / (2 * M)
    r0 = tl.load(obs_ptr + obs, mask=lane, other=0.0).to(tl.float32) - m0 * scale
    r1 = tl.load(obs_ptr + obs + o_b, mask=lane, other=0.0).to(tl.float32) - m1 * scale
    r2 = tl.load(obs_ptr + obs + o_a, mask=lane, other=0.0).to(tl.float32) - m2 * scale
    r3 = tl.load(obs_ptr + obs + o_a + o_b, mask=lane, other=0.0).to(tl.float32) - m3 * scale
    r = along_axis(r0, r1, r2, r3, AXIS)
    for q in tl.static_range(M):
        base, src = thick_slice_block(bc, u, w, t * M + q, D2, H2, W2, AXIS)
        s = load_bands(z_ptr, src, band, lane)
        v = inverse_block(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], low)
        e = forward_block(v[0] + r[0], v[1] + r[1], v[2] + r[2], v[3] + r[3], v[4] + r[4], v[5] + r[5],
                          v[6] + r[6], v[7] + r[7], low)
        store_bands(out_ptr, src, band, lane, e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7])
