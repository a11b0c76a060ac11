// Spatial max and min with their first indices, in one pass over a CPU tensor.
//
// PyTorch's CPU argmax/argmin run a scalar loop per row (about 10x the time of amax on
// the 8x8 maps of a CIFAR ResNet), and SPEM's backward needs both indices. Here each
// row is reduced with vector max/min, keeping each chunk's lane-wise extremes, then the
// first index of each extreme is found by testing those chunk extremes and opening one
// chunk, while the row is still in L1. Semantics follow torch.max(dim) / torch.min(dim):
// NaN propagates (its first index is returned) and ties go to the first occurrence.
//
// Input: a contiguous (outer, len, inner) tensor, reduced over len. NCHW maps come in as
// (B*C, H*W, 1) rows, channels_last maps as (B, H*W, C) columns.
// Output: values (2, outer, inner) in the input dtype and int64 indices, the max plane
// then the min plane: a stack of two pooled maps, so that the gate's elementwise ops
// downstream run along contiguous channels.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/llvmMathExtras.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

namespace {

using at::vec::Vectorized;

template <typename T>
inline bool beats_max(T v, T best) {
  return v > best || (v != v && best == best);
}

template <typename T>
inline bool beats_min(T v, T best) {
  return v < best || (v != v && best == best);
}

// Exact scalar scan of p[0], p[stride], ... (len of them), writing max and min to
// vo[0], vo[plane] and their positions to io[0], io[plane] (reduced precision compared in
// float). Serves rows shorter than a vector or holding NaN, and the channel tail of columns.
template <typename T>
inline void scan_scalar(const T* p, int64_t len, int64_t stride, T* vo, int64_t* io, int64_t plane) {
  using acc_t = at::opmath_type<T>;
  acc_t mx = p[0], mn = p[0];
  int64_t imx = 0, imn = 0;
  for (int64_t l = 1; l < len; ++l) {
    const acc_t v = p[l * stride];
    if (beats_max(v, mx)) {
      mx = v;
      imx = l;
    }
    if (beats_min(v, mn)) {
      mn = v;
      imn = l;
    }
  }
  vo[0] = p[imx * stride];
  vo[plane] = p[imn * stride];
  io[0] = imx;
  io[plane] = imn;
}

// Lanes of v equal to t, as bits (zero_mask() marks the lanes where "differs" is false).
template <typename T>
inline uint64_t hits(const Vectorized<T>& v, const Vectorized<T>& t) {
  return static_cast<uint64_t>((v != t).zero_mask());
}

#if defined(CPU_CAPABILITY_AVX512)
// One mask compare instead of ATen's compare, mask-to-vector and zero test.
template <>
inline uint64_t hits(const Vectorized<float>& v, const Vectorized<float>& t) {
  return _mm512_cmp_ps_mask(v, t, _CMP_EQ_OQ);
}

template <>
inline uint64_t hits(const Vectorized<double>& v, const Vectorized<double>& t) {
  return _mm512_cmp_pd_mask(v, t, _CMP_EQ_OQ);
}
#endif

// The vector paths compare without NaN handling and sum their lanes instead: the sum is
// NaN if a NaN was summed (or both infinities), and those inputs are then redone exactly.
template <typename T>
inline bool sum_is_nan(const Vectorized<T>& sum) {
  const T total = at::vec::vec_reduce_all<T>([](Vectorized<T>& a, Vectorized<T>& b) { return a + b; }, sum);
  return total != total;
}

// Rows are reduced in chunks of four vectors. The reduction stores each chunk's lane-wise
// extreme (one vector), so the search for the first occurrence tests one vector per chunk
// and opens only the chunk that holds it.
template <typename T>
constexpr int64_t chunk_size() {
  return 4 * Vectorized<T>::size();
}

// First position of target in the NaN-free p[0, len), where it occurs; ext holds the
// lane-wise extremes of the row's `chunks` leading chunks.
template <typename T>
inline int64_t first_index(const T* p, int64_t len, const T* ext, int64_t chunks, T target) {
  using Vec = Vectorized<T>;
  constexpr int64_t V = Vec::size();
  static_assert(chunk_size<T>() <= 64, "a chunk's hit bits must fit in a uint64_t");
  const Vec t(target);
  for (int64_t c = 0; c < chunks; ++c) {
    if (hits(Vec::loadu(ext + c * V), t) != 0) {
      const T* q = p + c * chunk_size<T>();
      uint64_t h = 0;
      for (int64_t k = 0; k < 4; ++k) {
        h |= hits(Vec::loadu(q + k * V), t) << (k * V);
      }
      return c * chunk_size<T>() + c10::llvm::countTrailingZeros(h);
    }
  }
  int64_t i = chunks * chunk_size<T>();
  for (; i + V <= len; i += V) {
    const uint64_t h = hits(Vec::loadu(p + i), t);
    if (h != 0) {
      return i + c10::llvm::countTrailingZeros(h);
    }
  }
  while (p[i] != target) ++i;
  return i;
}

template <typename T>
struct Extremes {
  T top, bottom;
  int64_t top_index, bottom_index;
};

// One row of at least one vector: its max, min and their first positions. clamp_min and
// clamp_max are the plain lane max/min, exact on NaN-free data (ATen's maximum/minimum
// spend three more instructions each on NaN). Returns false for rows whose lane sum is
// NaN, which then take the exact scalar scan.
template <typename T>
inline bool reduce_row_vec(const T* p, int64_t len, T* ext_max, T* ext_min, Extremes<T>& out) {
  using Vec = Vectorized<T>;
  constexpr int64_t V = Vec::size();
  const int64_t chunks = len / chunk_size<T>();
  Vec mx = Vec::loadu(p), mn = mx, sum(T(0));
  for (int64_t c = 0; c < chunks; ++c) {
    const T* q = p + c * chunk_size<T>();
    const Vec v0 = Vec::loadu(q), v1 = Vec::loadu(q + V), v2 = Vec::loadu(q + 2 * V), v3 = Vec::loadu(q + 3 * V);
    const Vec chunk_max = at::vec::clamp_min(at::vec::clamp_min(v0, v1), at::vec::clamp_min(v2, v3));
    const Vec chunk_min = at::vec::clamp_max(at::vec::clamp_max(v0, v1), at::vec::clamp_max(v2, v3));
    chunk_max.store(ext_max + c * V);
    chunk_min.store(ext_min + c * V);
    mx = at::vec::clamp_min(mx, chunk_max);
    mn = at::vec::clamp_max(mn, chunk_min);
    sum = sum + ((v0 + v1) + (v2 + v3));
  }
  int64_t i = chunks * chunk_size<T>();
  for (; i + V <= len; i += V) {
    const Vec v = Vec::loadu(p + i);
    mx = at::vec::clamp_min(mx, v);
    mn = at::vec::clamp_max(mn, v);
    sum = sum + v;
  }
  T top = at::vec::vec_reduce_all<T>([](Vec& a, Vec& b) { return at::vec::clamp_min(a, b); }, mx);
  T bottom = at::vec::vec_reduce_all<T>([](Vec& a, Vec& b) { return at::vec::clamp_max(a, b); }, mn);
  bool tail_nan = false;
  for (; i < len; ++i) {
    top = std::max(top, p[i]);
    bottom = std::min(bottom, p[i]);
    tail_nan |= p[i] != p[i];
  }
  if (tail_nan || sum_is_nan(sum)) {
    return false;
  }
  out = {top, bottom, first_index(p, len, ext_max, chunks, top), first_index(p, len, ext_min, chunks, bottom)};
  return true;
}

// Reduced precision rows (bf16/fp16 under autocast) are widened to float first, which is
// exact, and take the same vector path as float.
template <typename T>
void reduce_rows(const T* x, T* val, int64_t* idx, int64_t rows, int64_t len) {
  using acc_t = at::opmath_type<T>;
  constexpr bool widen = !std::is_same_v<T, acc_t>;
  at::parallel_for(0, rows, std::max<int64_t>(1, 32768 / len), [&](int64_t begin, int64_t end) {
    // per thread: the chunk extremes of the row at hand (max then min), and the widened row
    std::vector<acc_t> ext(2 * (len / chunk_size<acc_t>()) * Vectorized<acc_t>::size());
    std::vector<acc_t> wide(widen ? len : 0);
    for (int64_t r = begin; r < end; ++r) {
      const T* p = x + r * len;
      if (len >= Vectorized<acc_t>::size()) {
        const acc_t* q = nullptr;
        if constexpr (widen) {
          at::vec::convert(p, wide.data(), len);
          q = wide.data();
        } else {
          q = p;
        }
        Extremes<acc_t> e;
        if (reduce_row_vec(q, len, ext.data(), ext.data() + ext.size() / 2, e)) {
          val[r] = static_cast<T>(e.top);
          val[rows + r] = static_cast<T>(e.bottom);
          idx[r] = e.top_index;
          idx[rows + r] = e.bottom_index;
          continue;
        }
      }
      scan_scalar(p, len, 1, val + r, idx + r, rows);
    }
  });
}

// One vector of lanes in the accumulation type: bf16/fp16 widen to float (exactly).
template <typename T>
inline Vectorized<at::opmath_type<T>> load_wide(const T* p) {
  if constexpr (std::is_same_v<T, at::opmath_type<T>>) {
    return Vectorized<T>::loadu(p);
  } else {
    Vectorized<float> out;
    at::vec::load_to_float(p, out);
    return out;
  }
}

// channels_last: reduce over len with the contiguous inner (channel) axis in the lanes;
// each lane keeps its running extremes and where it saw them (a strict compare keeps the
// first). The plain pass returns false if its lane sum is NaN: the NaN-aware pass then
// redoes the group.
template <typename T, bool nan_aware>
inline bool reduce_columns_vec(const T* p, int64_t len, int64_t inner, T* vo, int64_t* io, int64_t plane) {
  using acc_t = at::opmath_type<T>;
  using Vec = Vectorized<acc_t>;
  constexpr int64_t V = Vec::size();
  Vec vmx = load_wide(p), vmn = vmx, imx(acc_t(0)), imn(acc_t(0)), sum = vmx;
  for (int64_t l = 1; l < len; ++l) {
    const Vec v = load_wide(p + l * inner);
    Vec gt = v > vmx, lt = v < vmn;
    if constexpr (nan_aware) {
      gt = gt | ((v != v) & (vmx == vmx));
      lt = lt | ((v != v) & (vmn == vmn));
    } else {
      sum = sum + v;
    }
    const Vec here(static_cast<acc_t>(l));  // exact: max_min() checks len < 2^24 for columns
    vmx = Vec::blendv(vmx, v, gt);
    imx = Vec::blendv(imx, here, gt);
    vmn = Vec::blendv(vmn, v, lt);
    imn = Vec::blendv(imn, here, lt);
  }
  if constexpr (!nan_aware) {
    if (sum_is_nan(sum)) {
      return false;
    }
  }
  acc_t lanes[V];
  const auto write = [&](const Vec& values, const Vec& positions, int64_t offset) {
    values.store(lanes);
    for (int64_t k = 0; k < V; ++k) vo[offset + k] = static_cast<T>(lanes[k]);
    positions.store(lanes);
    for (int64_t k = 0; k < V; ++k) io[offset + k] = static_cast<int64_t>(lanes[k]);
  };
  write(vmx, imx, 0);
  write(vmn, imn, plane);
  return true;
}

template <typename T>
void reduce_columns(const T* x, T* val, int64_t* idx, int64_t outer, int64_t len, int64_t inner) {
  constexpr int64_t V = Vectorized<at::opmath_type<T>>::size();
  const int64_t plane = outer * inner;
  at::parallel_for(0, outer, 1, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      const T* p = x + o * len * inner;
      T* vo = val + o * inner;
      int64_t* io = idx + o * inner;
      int64_t c = 0;
      for (; c + V <= inner; c += V) {
        if (!reduce_columns_vec<T, false>(p + c, len, inner, vo + c, io + c, plane)) {
          reduce_columns_vec<T, true>(p + c, len, inner, vo + c, io + c, plane);
        }
      }
      for (; c < inner; ++c) {
        scan_scalar<T>(p + c, len, inner, vo + c, io + c, plane);
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> max_min(const at::Tensor& x) {
  TORCH_CHECK(x.device().is_cpu(), "spe_lightning_cpu::max_min is a CPU kernel, got a tensor on ", x.device());
  TORCH_CHECK(x.dim() == 3 && x.size(1) > 0, "spe_lightning_cpu::max_min expects (outer, len, inner) with len > 0, got ",
              x.sizes());
  TORCH_CHECK(x.size(2) == 1 || x.size(1) < (int64_t{1} << 24),
              "spe_lightning_cpu::max_min counts column positions in float lanes: fewer than 2^24 allowed, got ",
              x.size(1));
  const at::Tensor input = x.contiguous();
  const int64_t outer = input.size(0), len = input.size(1), inner = input.size(2);
  at::Tensor val = at::empty({2, outer, inner}, input.options());
  at::Tensor idx = at::empty({2, outer, inner}, input.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, input.scalar_type(), "spe_lightning_cpu::max_min", [&] {
    const scalar_t* in = input.const_data_ptr<scalar_t>();
    if (inner != 1) {
      reduce_columns<scalar_t>(in, val.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(), outer, len, inner);
    } else {
      reduce_rows<scalar_t>(in, val.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(), outer, len);
    }
  });
  return {val, idx};
}

}  // namespace

TORCH_LIBRARY(spe_lightning_cpu, m) {
  m.def("max_min(Tensor x) -> (Tensor values, Tensor indices)");
}

TORCH_LIBRARY_IMPL(spe_lightning_cpu, CPU, m) {
  m.impl("max_min", &max_min);
}
